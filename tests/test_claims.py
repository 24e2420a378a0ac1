"""The claims' statistical rules on constructed values, and the claims file itself (issue #14)."""

import re

import numpy as np
import pytest

from reproductions import claims, runner
from reproductions.claims import Cell, Measurements

A, B = Cell(1, "a", "Top-1"), Cell(1, "b", "Top-1")
CLEAR = [80.0, 80.5, 79.5]
BELOW = [70.0, 70.5, 69.5]
OVERLAPPING_A, OVERLAPPING_B = [70.0, 75.0, 80.0], [72.0, 74.0, 78.0]


def seeds(**cells):
    return {(str(c.table), c.row, c.metric): v for c, v in cells.values()}


def verdict(test, values: dict, family_p: dict | None = None):
    m = Measurements({(str(c.table), c.row, c.metric): v for c, v in values.items()})
    result = test.evaluate(m, np.random.default_rng(0))
    adjusted = claims.holm({"x": result.p_value, **(family_p or {})})["x"] if result.p_value is not None else None
    return claims._verdict(result, adjusted, 1 + len(family_p or {}))[0], result


@pytest.mark.parametrize("a,b,expected", [
    (CLEAR, BELOW, "supported"),            # a clear effect on the paper's side
    (BELOW, CLEAR, "contradicted"),         # a clear effect on the other side
    (OVERLAPPING_A, OVERLAPPING_B, "inconclusive"),  # noise is neither agreement nor disagreement
])
def test_difference_rule(a, b, expected):
    assert verdict(claims.Difference(A, B), {A: a, B: b})[0] == expected


def test_welch_interval_and_p_equal_scipy():
    from scipy import stats

    a, b = np.array([1.0, 2.5, 3.1, 2.2]), np.array([0.3, 0.9, 1.7])
    t = claims.difference_test(a, b)
    assert t["p"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-9)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert t["interval"] == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert t["resolution"] > t["interval"][1] - t["effect"]  # 80 % power needs more than the half-width


def test_a_clear_effect_can_still_be_inconclusive_after_holm():
    _, result = verdict(claims.Difference(A, B), {A: [75.0, 76.0, 75.5], B: [72.0, 73.0, 74.0]})
    assert 0.01 < result.p_value < 0.05
    alone, _ = verdict(claims.Difference(A, B), {A: [75.0, 76.0, 75.5], B: [72.0, 73.0, 74.0]})
    with_family, _ = verdict(claims.Difference(A, B), {A: [75.0, 76.0, 75.5], B: [72.0, 73.0, 74.0]},
                             {f"other{i}": 0.5 for i in range(5)})
    assert (alone, with_family) == ("supported", "inconclusive")


LEVELS = (5, 9, 17, 33, 65)


def trend_values(means, spread=0.2):
    return {Cell(7, f"s{lv}", "PQ"): [m - spread, m, m + spread] for lv, m in zip(LEVELS, means)}


@pytest.mark.parametrize("means,expected", [
    ((50, 52, 54, 56, 58), "supported"),
    ((58, 56, 54, 52, 50), "contradicted"),
])
def test_trend_rule(means, expected):
    test = claims.Trend(tuple(Cell(7, f"s{lv}", "PQ") for lv in LEVELS), LEVELS)
    result, details = verdict(test, trend_values(means))
    assert result == expected and abs(details.effect) > details.resolution


def test_trend_of_noise_is_inconclusive():
    rng = np.random.default_rng(3)
    values = {Cell(7, f"s{lv}", "PQ"): list(50 + rng.normal(0, 3, 3)) for lv in LEVELS}
    test = claims.Trend(tuple(values), LEVELS)
    assert verdict(test, values)[0] == "inconclusive"


@pytest.mark.parametrize("a,b,expected", [
    ([60.0, 60.1, 59.9], [60.05, 60.0, 60.1], "supported"),     # within the 1-point margin, tightly
    ([64.0, 64.1, 63.9], [60.0, 60.1, 59.9], "contradicted"),   # 4 points apart: beyond the margin
    ([55.0, 60.0, 65.0], [58.0, 62.0, 61.0], "inconclusive"),   # too noisy to say either
])
def test_equivalence_rule(a, b, expected):
    assert verdict(claims.Equivalence(A, B, 1.0), {A: a, B: b})[0] == expected


def test_frontier_rule():
    family = (Cell(9, "f1", "Top-1"), Cell(9, "f2", "Top-1"))
    reference = (Cell(9, "r1", "Top-1"), Cell(9, "r2", "Top-1"), Cell(9, "r3", "Top-1"))
    costs = {("9", "f1", "Params"): 2.0, ("9", "f2", "Params"): 4.0, ("9", "r1", "Params"): 1.0,
             ("9", "r2", "Params"): 3.0, ("9", "r3", "Params"): 6.0}
    test = claims.Frontier(family, (reference,), "Params")
    for shift, expected in ((5.0, "supported"), (-5.0, "contradicted")):
        values = {c: [70 + shift + d for d in (-0.2, 0, 0.2)] for c in family}
        values.update({c: [70 + d for d in (-0.2, 0, 0.2)] for c in reference})
        m = Measurements({(str(c.table), c.row, c.metric): v for c, v in values.items()}, costs=costs)
        result = test.evaluate(m, np.random.default_rng(0))
        assert result.effect == pytest.approx(shift)
        assert claims._verdict(result, result.p_value, 1)[0] == expected


def test_count_rule_is_exact():
    test = claims.Fewer("small", "big", 1)
    m = Measurements(counts={("1", "small", "Params"): 10, ("1", "big", "Params"): 20,
                             ("1", "small", "M-Adds"): 3, ("1", "big", "M-Adds"): 2})
    result = test.evaluate(m, None)
    assert claims._verdict(result, None, 0)[0] == "contradicted"  # fewer Params but more M-Adds
    assert "M-Adds: big / small = 0.67x" in result.note


def test_holm_matches_its_definition():
    adjusted = claims.holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adjusted == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})


def test_claims_without_measurements_are_not_run_and_every_claim_is_listed():
    df = claims.decide(Measurements())
    assert list(df["claim"]) == list(claims.load_claims()["id"])
    untestable = df[df["claim"] == "T1-full-best"].iloc[0]
    assert untestable["verdict"] == "inconclusive" and "not built" in untestable["note"]
    assert set(df["verdict"]) == {"not run", "inconclusive"}


def test_every_claim_has_a_test_on_cells_the_paper_reports():
    reported = {t: runner.load_reported(t) for t in range(1, 10)}
    for _, claim in claims.load_claims().iterrows():
        assert claim["id"] in claims.TESTS, claim["id"]
        for cell in claim["cells"].split(";"):
            table, row, metric = cell.split("/")
            if table.isdigit():
                r = reported[int(table)]
                assert ((r["row"] == row) & (r["metric"] == metric)).any(), (claim["id"], cell)


def test_numbers_in_claim_statements_are_the_cells_reported_values():
    """A statement quotes the paper: each decimal number in it is one of its cells' reported
    values, or a percentage / ratio from the paper's text (followed by % or x)."""
    reported = {t: runner.load_reported(t) for t in range(1, 10)}
    for _, claim in claims.load_claims().iterrows():
        values = set()
        for cell in claim["cells"].split(";"):
            table, row, metric = cell.split("/")
            if table.isdigit():
                r = reported[int(table)]
                values |= set(r[(r["row"] == row) & (r["metric"] == metric)]["value"])
        for number in re.findall(r"(?<![\w.])(?<!Sec\. )(\d+\.\d+)(?![\d.]*\s*(?:%|x))", claim["statement"]):
            assert number in values, (claim["id"], number)
