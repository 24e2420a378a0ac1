"""The pilot's design rules (reproductions/pilot.py) on constructed values: the power formula,
the "learns the task" rule, the seeds within the budget, and no design for a task not learnt."""

import math

import pytest

from reproductions import pilot


def result(seed, pq=40.0, things=20.0, stuff=60.0, curve=((225, 39.5), (300, 40.0)), seconds=200.0):
    return {"seed": seed, "metrics": {"PQ": pq, "PQ_Th": things, "PQ_St": stuff, "mIoU": 50.0, "AP": 5.0},
            "validation": [[step, value, 0, 0, 0] for step, value in curve], "seconds": seconds,
            "experiment": "constructed", "machine": None}


def test_resolvable_effect_is_the_two_sample_t_power_formula():
    from scipy import stats

    expected = (stats.t.ppf(0.975, 8) + stats.t.ppf(0.8, 8)) * 1.0 * math.sqrt(2 / 5)
    assert pilot.resolvable(1.0, 5, 0.05) == pytest.approx(expected)
    assert pilot.resolvable(2.0, 5, 0.05) == pytest.approx(2 * expected)
    assert pilot.resolvable(1.0, 10, 0.05) < pilot.resolvable(1.0, 5, 0.05) < pilot.resolvable(1.0, 5, 0.05 / 18)


def test_family_counts_the_claims_that_can_enter_holm():
    assert pilot.family_size() == 18


def test_a_task_is_learnt_only_with_things_stuff_and_a_flat_curve():
    assert pilot.learns([result(s) for s in range(5)]) == (True, "")
    ok, why = pilot.learns([result(0), result(1, things=0.5)])
    assert not ok and "thing PQ below 5" in why and "0.5" in why
    ok, why = pilot.learns([result(0, curve=((225, 30.0), (300, 40.0)))])
    assert not ok and "still moving" in why
    ok, why = pilot.learns([result(0, curve=())])
    assert not ok and "no validation curve" in why


def test_design_declares_seeds_within_the_budget_and_their_resolution():
    record = pilot.design([result(s, pq=40.0 + s) for s in range(5)])
    assert record["learns_the_task"] and record["pilot"]["std"]["PQ"] == pytest.approx(1.5811, abs=1e-3)
    for table, d in record["tables"].items():
        assert 3 <= d["seeds"] <= pilot.MAX_SEEDS
        if d["seeds"] > 3:
            assert d["estimated_seconds"] <= pilot.BUDGET_SECONDS
        assert d["resolvable_PQ_holm"] > d["resolvable_PQ"] > 0
    assert record["tables"]["4"]["seeds"] == record["tables"]["2"]["seeds"]  # Tab. 4 trains Tab. 2's models
    assert "misses the goal" in record["decision"]


def test_things_not_learnt_are_not_measurable_and_no_pq_means_no_design():
    record = pilot.design([result(s, things=0.2) for s in range(5)])
    assert not record["learns_the_task"] and record["not_measurable"] == ["PQ_Th"] and record["tables"]
    assert "not measurable on this proxy: PQ_Th" in record["decision"]
    record = pilot.design([result(s, pq=2.0, things=0.0, stuff=4.0) for s in range(5)])
    assert "tables" not in record and record["decision"].startswith("no design")
    assert "Learns the task: False" in pilot.markdown(record)


def test_the_report_states_the_design(monkeypatch):
    from reproductions import report

    record = pilot.design([result(s, pq=40.0 + s, things=0.2) for s in range(5)])
    monkeypatch.setattr(report, "_proxy_design", lambda: record)
    html = report.render()
    assert "pilot and design" in html and "40.0, 41.0, 42.0, 43.0, 44.0" in html
    assert "not measurable on this proxy: PQ_Th" in html


def test_a_panoptic_proxy_runs_the_seeds_of_its_design(monkeypatch):
    import run_all

    monkeypatch.setattr(pilot, "design_seeds", lambda table: (0, 1, 2, 3, 4, 5, 6) if table == 6 else None)
    args = run_all.parse_arguments(["--tables", "6", "--fidelity", "proxy"])
    assert run_all.table_seeds(args, 6) == (0, 1, 2, 3, 4, 5, 6)
    assert run_all.table_seeds(args, 1) == (0, 1, 2)  # no design: the default
    args = run_all.parse_arguments(["--tables", "6", "--fidelity", "proxy", "--seeds", "0,1,2"])
    assert run_all.table_seeds(args, 6) == (0, 1, 2)  # --seeds wins
    args = run_all.parse_arguments(["--tables", "6", "--fidelity", "proxy", "--proxy-scale", "large"])
    assert run_all.table_seeds(args, 6) == (0, 1, 2, 3, 4)  # the large scale's own


def test_no_design_refuses_the_compared_tables(monkeypatch, tmp_path):
    import run_all
    from reproductions import runner

    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "proxy_design.json").write_text('{"decision": "no design: PQ not learnt"}')
    monkeypatch.setattr(runner, "ROOT", tmp_path)
    with pytest.raises(pilot.NoDesign, match="no design"):
        pilot.design_seeds(6)
    assert pilot.design_seeds(1) is None  # not a panoptic table
    args = run_all.parse_arguments(["--tables", "6", "--fidelity", "proxy"])
    with pytest.raises(runner.ReproductionError, match="declared no design"):
        run_all.table_seeds(args, 6)
