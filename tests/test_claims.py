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


# --- issue #25, part 5: one rule, kept ---------------------------------------------------------

import zlib

import pandas as pd

from reproductions.claims import AllOf, Difference, Equivalence, SameAs, ScaleGain, Trend

NOISE = {Cell(1, f"n{i}", "Top-1"): v for i, v in enumerate(([70.0, 75.0, 80.0], [72.0, 74.0, 78.0]) * 5)}
NOISE_TESTS = {f"noise{i}": Difference(Cell(1, f"n{2 * i}", "Top-1"), Cell(1, f"n{2 * i + 1}", "Top-1"))
               for i in range(5)}


def decide_with(monkeypatch, tests: dict, values: dict, runs: dict | None = None, **kwargs):
    """claims.decide over constructed claims and values (reported/claims.csv replaced)."""
    monkeypatch.setattr(claims, "TESTS", tests)
    monkeypatch.setattr(claims, "load_claims", lambda: pd.DataFrame(
        {"id": list(tests), "statement": "s", "cells": "", "table": "1"}))
    m = Measurements({(str(c.table), c.row, c.metric): v for c, v in values.items()}, runs=runs, **kwargs)
    return claims.decide(m).set_index("claim")


def test_an_equivalence_is_contradicted_only_through_the_holm_family(monkeypatch):
    """T8-axial-decoder's case: the 95 % interval lies beyond the margin, but the claim is
    contradicted only if its p passes Holm over the family, like every other noisy verdict."""
    a, b = Cell(8, "ad", "PQ"), Cell(8, "conv", "PQ")
    values = {a: [64.0, 65.0, 66.0], b: [60.0, 61.0, 62.0]}  # interval [+1.7, +6.3], margin 1
    alone = decide_with(monkeypatch, {"eq": Equivalence(a, b, 1.0)}, values)
    assert alone.loc["eq", "verdict"] == "contradicted"
    family = decide_with(monkeypatch, {"eq": Equivalence(a, b, 1.0), **NOISE_TESTS}, {**values, **NOISE})
    assert family.loc["eq", "verdict"] == "inconclusive"
    assert "Holm-adjusted 0.128 over 6 claims" in family.loc["eq", "note"]


def test_equivalence_has_one_p_at_the_5_percent_level():
    inside = claims.equivalence_test(np.array([60.0, 60.1, 59.9]), np.array([60.05, 60.0, 60.1]), 1.0)
    beyond = claims.equivalence_test(np.array([64.0, 65.0, 66.0]), np.array([60.0, 61.0, 62.0]), 1.0)
    assert inside["side"] == "inside" and inside["p"] == pytest.approx(2 * inside["p_tost"])
    assert beyond["side"] == "beyond" and beyond["p"] == pytest.approx(2 * beyond["p_beyond"])
    low, high = beyond["interval"]  # p < 0.05 exactly when the 95 % interval lies beyond the margin
    assert (beyond["p"] < 0.05) == (low > 1.0 or high < -1.0)


def test_a_claim_on_another_claims_trainings_is_counted_once(monkeypatch):
    """T4-l-vs-x71 on T2-l-vs-x71's trainings: not in the family, its verdict is T2-l's."""
    cells = {t: (Cell(t, "l", "PQ"), Cell(t, "x71", "PQ")) for t in (2, 4)}
    values = {c: v for t in (2, 4) for c, v in zip(cells[t], ([75.0, 76.0, 75.5], [72.0, 73.0, 74.0]))}  # p 0.032
    tests = {"T2": Difference(*cells[2]), "T4": SameAs("T2", Difference(*cells[4]))}
    same = {(t, r): {str(s): f"{r}-run{s}" for s in range(3)} for t in ("2", "4") for r in ("l", "x71")}
    df = decide_with(monkeypatch, tests, values, same)
    assert df.loc["T2", "verdict"] == df.loc["T4", "verdict"] == "supported"  # counted twice: 2 x 0.032
    assert "over 1 claims" in df.loc["T2", "note"]
    assert "not independent" in df.loc["T4", "note"] and "run ids per seed match" in df.loc["T4", "note"]
    assert "declared" in decide_with(monkeypatch, tests, values).loc["T4", "note"]  # no provenance
    other = {**same, ("4", "l"): {str(s): f"other-run{s}" for s in range(3)}}
    apart = decide_with(monkeypatch, tests, values, other)  # other trainings: decided on its own
    assert set(apart["verdict"]) == {"inconclusive"} and "over 2 claims" in apart.loc["T4", "note"]


def test_t4_is_declared_on_t2s_trainings():
    t4 = claims.TESTS["T4-l-vs-x71"]
    assert isinstance(t4, SameAs) and t4.claim == "T2-l-vs-x71"
    assert [(c.row, c.metric) for c in t4.cells()] == [(c.row, c.metric) for c in claims.TESTS["T2-l-vs-x71"].cells()]


def test_a_trend_counts_each_training_once():
    """T7-span's case: spans 5, 9, 17 are one training at the small scale."""
    from scipy.stats import kendalltau

    rows = [Cell(7, f"span{lv}", "PQ") for lv in LEVELS]
    shared = [40.0, 44.0, 42.0]
    values = {rows[0]: shared, rows[1]: shared, rows[2]: shared, rows[3]: [41.0, 45.0, 44.0],
              rows[4]: [43.0, 46.0, 44.5]}
    runs = {("7", r.row): {str(s): f"run-{i}-{s}" if i > 2 else f"run-shared-{s}" for s in range(3)}
            for i, r in enumerate(rows)}
    test = claims.Trend(tuple(rows), LEVELS)
    keyed = {(str(c.table), c.row, c.metric): v for c, v in values.items()}
    once = test.evaluate(Measurements(keyed, runs=runs), np.random.default_rng(0))
    levels = [5] * 3 + [33] * 3 + [65] * 3
    assert once.effect == pytest.approx(kendalltau(levels, shared + values[rows[3]] + values[rows[4]]).statistic)
    assert "5 (= 9, 17: one training), 33, 65, over 3 rows that are distinct trainings (9 seed values)" in once.note
    thrice = test.evaluate(Measurements(keyed), np.random.default_rng(0))  # no provenance: rows taken as distinct
    assert "over 5 rows that are distinct trainings" in thrice.note and "taken as distinct trainings" in thrice.note
    assert thrice.effect != pytest.approx(once.effect)


def test_kendall_tau_b_equals_scipy_with_ties():
    from scipy.stats import kendalltau

    rng = np.random.default_rng(1)
    x = np.repeat([1.0, 2.0, 3.0, 4.0], 3)
    ys = rng.integers(0, 4, (20, 12)).astype(float)
    assert claims.tau_b(x, ys) == pytest.approx([kendalltau(x, y).statistic for y in ys])


@pytest.mark.parametrize("test,values", [
    (claims.Difference(A, B), {A: [80.0] * 3, B: [70.0] * 3}),
    (claims.Equivalence(A, B, 1.0), {A: [64.0] * 3, B: [60.0] * 3}),
    (claims.Trend(tuple(Cell(7, f"s{lv}", "PQ") for lv in LEVELS), LEVELS),
     {Cell(7, f"s{lv}", "PQ"): [float(lv)] * 3 for lv in LEVELS}),
])
def test_no_spread_on_either_side_is_not_measurable_never_significant(test, values):
    result, details = verdict(test, values)
    assert result == "inconclusive" and details.p_value is None and details.interval is None
    assert details.not_measurable.startswith("not measurable: no compared row varies")


def test_one_side_without_spread_is_still_measured():
    result, details = verdict(claims.Difference(A, B), {A: [80.0] * 3, B: [70.0, 70.5, 69.5]})
    assert result == "supported" and details.p_value < 0.05 and not details.not_measurable


def test_a_part_that_is_zero_everywhere_is_not_measurable_and_never_the_part_shown():
    pq, ap = Difference(Cell(6, "a", "PQ"), Cell(6, "b", "PQ")), Difference(Cell(6, "a", "AP"), Cell(6, "b", "AP"))
    zero = {Cell(6, "a", "AP"): [0.0] * 3, Cell(6, "b", "AP"): [0.0] * 3}
    result, details = verdict(AllOf((pq, ap)), {Cell(6, "a", "PQ"): CLEAR, Cell(6, "b", "PQ"): BELOW, **zero})
    assert details.parts[1].not_measurable.endswith("the metric is 0 on every seed of every compared row")
    assert result == "inconclusive"  # the AP part cannot hold, so the claim cannot be supported
    assert details.effect == pytest.approx(10.0) and details.unit == "PQ" and "cannot be supported" in details.note
    result, details = verdict(AllOf((ap, pq)), {Cell(6, "a", "PQ"): BELOW, Cell(6, "b", "PQ"): CLEAR, **zero})
    assert result == "contradicted" and details.effect == pytest.approx(-10.0)  # a measured part against
    result, details = verdict(AllOf((ap,)), zero)
    assert result == "inconclusive" and details.p_value is None and details.effect is None


def test_all_of_contradicted_by_one_part_with_bonferroni_over_the_parts():
    parts = tuple(Difference(Cell(6, "a", mt), Cell(6, "b", mt)) for mt in ("PQ", "mIoU"))
    values = {Cell(6, "a", "PQ"): BELOW, Cell(6, "b", "PQ"): CLEAR,
              Cell(6, "a", "mIoU"): OVERLAPPING_A, Cell(6, "b", "mIoU"): OVERLAPPING_B}
    result, details = verdict(AllOf(parts), values)
    assert result == "contradicted" and details.p_value == pytest.approx(2 * details.parts[0].p_value)


def test_scale_gain_is_a_difference_of_gains_in_points_with_a_finite_interval():
    """F4-scale's case: X-71 falls to about 0 PQ at 4x; a ratio over it has no finite interval."""
    l1, x1, l4, x4 = (Cell(2, "l", "PQ"), Cell(2, "x", "PQ"), Cell(2, "l", "PQ@4"), Cell(2, "x", "PQ@4"))
    values = {l1: [40.0, 30.0, 50.0], l4: [41.0, 31.5, 50.5],   # L's own change +1, +1.5, +0.5: paired by seed
              x1: [17.7, 10.3, 6.0], x4: [0.0, 0.0, 0.7]}
    result, details = verdict(ScaleGain(l1, x1, l4, x4), values)
    expected = np.mean([1.0, 1.5, 0.5]) - np.mean([0 - 17.7, 0 - 10.3, 0.7 - 6.0])
    assert details.effect == pytest.approx(expected) and details.unit == "PQ"
    low, high = details.interval
    assert np.isfinite([low, high]).all() and low < expected < high and high - low < 40  # on the metric's scale
    assert "in points" in details.note


def test_each_claims_random_numbers_depend_only_on_its_id(monkeypatch):
    assert claims.rng_for("F3-params").random() == np.random.default_rng([zlib.crc32(b"F3-params"), 0]).random()
    rows = tuple(Cell(7, f"s{lv}", "PQ") for lv in LEVELS)
    values = {c: [50.0 + i + d for d in (-2.0, 0.5, 1.0)] for i, c in enumerate(rows)}
    alone = decide_with(monkeypatch, {"trend": Trend(rows, LEVELS)}, values)
    among = decide_with(monkeypatch, {"first": Trend(rows, LEVELS), "trend": Trend(rows, LEVELS), **NOISE_TESTS},
                        {**values, **NOISE})
    assert alone.loc["trend", "interval"] == among.loc["trend", "interval"]
    assert alone.loc["trend", "resolution"] == among.loc["trend", "resolution"]


def test_the_bootstrap_standard_error_of_a_mean_is_not_understated():
    """Resampling 3 seeds gives a mean's SE sqrt(2/3) x s / sqrt(3); the inflated residuals give s / sqrt(3)."""
    sample = np.array([70.0, 74.0, 79.0])
    t = claims.bootstrap_test([sample], lambda means: means[0], np.random.default_rng(0))
    assert t["resolution"] / 2.8 == pytest.approx(sample.std(ddof=1) / np.sqrt(3), rel=0.05)


def test_frontier_without_spread_is_not_measurable():
    family, reference = (Cell(9, "f", "Top-1"),), (Cell(9, "r1", "Top-1"), Cell(9, "r2", "Top-1"))
    costs = {("9", "f", "Params"): 2.0, ("9", "r1", "Params"): 1.0, ("9", "r2", "Params"): 3.0}
    m = Measurements({("9", "f", "Top-1"): [75.0] * 3, ("9", "r1", "Top-1"): [70.0] * 3,
                      ("9", "r2", "Top-1"): [72.0] * 3}, costs=costs)
    result = claims.Frontier(family, (reference,), "Params").evaluate(m, np.random.default_rng(0))
    assert result.p_value is None and claims._verdict(result, None, 1)[0] == "inconclusive"


def test_the_committed_tables_give_finite_intervals_and_t4_follows_t2():
    df = claims.decide(Measurements.from_tables()).set_index("claim")
    for interval in df["interval"]:
        if interval:
            assert all(np.isfinite(float(v)) for v in interval.strip("[]").split(",")), interval
    assert df.loc["T4-l-vs-x71", "verdict"] == df.loc["T2-l-vs-x71", "verdict"]


DESIGN = {"not_measurable": ["PQ_Th", "AP"], "why_not": "thing PQ below 5",
          "tables": {"6": {"seeds": 5, "resolvable_PQ": 3.9, "resolvable_PQ_holm": 6.25}}}


def test_a_metric_the_design_declared_unlearnt_is_not_measurable_on_its_tables_only():
    ap = Difference(Cell(6, "a", "AP"), Cell(6, "b", "AP"))
    values = {(str(c.table), c.row, c.metric): v for c, v in {Cell(6, "a", "AP"): CLEAR, Cell(6, "b", "AP"): BELOW,
                                                              Cell(1, "a", "AP"): CLEAR, Cell(1, "b", "AP"): BELOW}.items()}
    rng = np.random.default_rng(0)
    declared = ap.evaluate(Measurements(values, design=DESIGN), rng)  # a clear difference, yet declared unlearnt
    assert declared.p_value is None and "pilot declared AP not learnt" in declared.not_measurable
    other_table = Difference(Cell(1, "a", "AP"), Cell(1, "b", "AP")).evaluate(Measurements(values, design=DESIGN), rng)
    assert other_table.p_value is not None and not other_table.not_measurable
    full = ap.evaluate(Measurements(values, design=DESIGN, fidelity="full"), rng)  # the design is the proxy's
    assert full.p_value is not None and not full.not_measurable
    trend = claims.Trend((Cell(6, "a", "AP"), Cell(6, "b", "AP")), (1, 2))
    assert trend.evaluate(Measurements(values, design=DESIGN), rng).not_measurable


def test_the_resolution_column_is_the_designs_for_pq_on_designed_tables(monkeypatch):
    pq = {Cell(6, "a", "PQ"): OVERLAPPING_A, Cell(6, "b", "PQ"): OVERLAPPING_B}
    miou = {Cell(6, "a", "mIoU"): OVERLAPPING_A, Cell(6, "b", "mIoU"): OVERLAPPING_B}
    tests = {"pq": Difference(Cell(6, "a", "PQ"), Cell(6, "b", "PQ")),
             "miou": Difference(Cell(6, "a", "mIoU"), Cell(6, "b", "mIoU")),
             "both": AllOf((Difference(Cell(6, "a", "PQ"), Cell(6, "b", "PQ")),))}
    df = decide_with(monkeypatch, tests, {**pq, **miou}, design=DESIGN)
    runs_own = claims.difference_test(np.array(OVERLAPPING_A), np.array(OVERLAPPING_B))["resolution"]
    assert df.loc["pq", "resolution"] == "6.25" and df.loc["both", "resolution"] == "6.25"
    assert f"the runs' own: {runs_own:.3g}" in df.loc["pq", "note"] and "declared by the design" in df.loc["pq", "note"]
    assert df.loc["miou", "resolution"] == f"{runs_own:.3g}" and "declared" not in df.loc["miou", "note"]
    without = decide_with(monkeypatch, tests, {**pq, **miou})
    assert without.loc["pq", "resolution"] == f"{runs_own:.3g}"


def test_the_family_is_declared_so_a_verdict_does_not_move_when_another_claim_is_not_run(monkeypatch):
    clear = {Cell(1, "a", "Top-1"): [80.0, 80.6, 79.7], Cell(1, "b", "Top-1"): [78.6, 78.9, 78.3]}
    noise = {Cell(1, "c", "Top-1"): OVERLAPPING_A, Cell(1, "d", "Top-1"): OVERLAPPING_B}
    tests = {"clear": Difference(Cell(1, "a", "Top-1"), Cell(1, "b", "Top-1")),
             "other": Difference(Cell(1, "c", "Top-1"), Cell(1, "d", "Top-1"))}
    both = decide_with(monkeypatch, tests, {**clear, **noise})
    alone = decide_with(monkeypatch, tests, clear)          # "other" not run: it still counts, with p = 1
    assert alone.loc["other", "verdict"] == "not run"
    assert both.loc["clear", "verdict"] == alone.loc["clear", "verdict"]
    assert "over 2 claims" in alone.loc["clear", "note"] and "over 2 claims" in both.loc["clear", "note"]
    assert both.loc["clear", "note"].split("Holm-adjusted ")[1][:6] == alone.loc["clear", "note"].split(
        "Holm-adjusted ")[1][:6]
