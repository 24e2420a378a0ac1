"""The training fidelities' table: mean and std over seeds, trend comparison with the paper."""

import dataclasses
import json
import re
import statistics
import sys
import types

import numpy as np
import pandas as pd
import pytest

from reproductions import runner, trained
from reproductions.table1 import SPEC

# The paper's Top-1 (Tab. 1): resnet50 76.9, sasa 77.4, bn 77.7, ps 78.1, axial 77.5, full 78.1.


def fake_results(means: dict[str, list[float]]) -> dict:
    return {row: [{"seed": s, "metrics": {"Top-1": v}} for s, v in enumerate(values)]
            for row, values in means.items()}


def table(means):
    return trained.build_trained_table(SPEC, "proxy", fake_results(means))


def test_order_as_in_the_paper_agrees_everywhere():
    df, trends = table({"resnet50": [70, 71, 72], "conv-stem-attention-sasa": [73, 73, 73],
                        "conv-stem-attention-bn": [75, 75, 75], "conv-stem-ps-attention": [80, 80, 80],
                        "conv-stem-axial-attention": [74, 74, 74], "full-axial-attention": [80, 81, 79]})
    assert list(df.columns) == trained.COLUMNS
    assert set(df["status"]) == {"trend_agrees"}
    resnet = df[df["row"] == "resnet50"].iloc[0]
    assert (resnet["measured"], resnet["std"], resnet["seeds"], resnet["fidelity"]) == ("71.0000", "1.0000", "0,1,2", "proxy")
    assert "mean ± std over 3 seeds" in resnet["note"] and "Fashion-MNIST" in resnet["note"]
    assert trends["Top-1"]["disagreeing_pairs"] == 0
    assert trends["Top-1"]["kendall_tau"] == pytest.approx(1.0)


def test_a_metric_the_design_declared_not_learnt_is_never_ordered_against_the_paper(tmp_path, monkeypatch):
    design = tmp_path / "proxy_design.json"
    monkeypatch.setattr(trained, "DESIGN_FILE", design)
    means = {"resnet50": [74, 74, 74], "conv-stem-attention-sasa": [73, 73.5, 74]}  # ordered unlike the paper
    design.write_text(json.dumps({"not_measurable": ["Top-1"], "tables": {"1": {}}}))
    df, trends = table(means)
    run = df[df["row"].isin(means)]
    assert set(run["status"]) == {"not_measurable"} and trends == {}
    assert all("not measurable: the pilot declared it not learnt" in note for note in run["note"])
    design.write_text(json.dumps({"not_measurable": ["Top-1"], "tables": {"6": {}}}))  # another table's design
    df, _ = table(means)
    assert set(df[df["row"].isin(means)]["status"]) == {"trend_disagrees"}
    full = trained.build_trained_table(SPEC, "full", fake_results(means))[0]
    assert set(full[full["row"].isin(means)]["status"]) == {"off"}


def test_a_panoptic_table_keeps_thing_and_stuff_pq_of_every_seed(tmp_path, monkeypatch):
    from reproductions.table6 import SPEC as TABLE6

    design = tmp_path / "proxy_design.json"
    design.write_text(json.dumps({"not_measurable": ["PQ_Th", "AP"], "tables": {"6": {}}}))
    monkeypatch.setattr(trained, "DESIGN_FILE", design)
    metrics = [{"PQ": 30.0 + s, "PQ_Th": 0.1 * s, "PQ_St": 60.0 + s, "AP": 0.0, "mIoU": 36.0} for s in range(3)]
    results = {"resnet50": [{"seed": s, "metrics": m} for s, m in enumerate(metrics)]}
    df, _ = trained.build_trained_table(TABLE6, "proxy", results)
    cells = df[df["row"] == "resnet50"].set_index("metric")
    assert set(cells.index) == {"PQ", "PQ_Th", "PQ_St", "AP", "mIoU"}  # the paper prints PQ, AP, mIoU only
    assert cells.at["PQ_St", "values"] == "60.0000;61.0000;62.0000" and cells.at["PQ_St", "reported"] == ""
    assert cells.at["PQ_St", "status"] == "measured_only"
    assert cells.at["PQ_Th", "status"] == cells.at["AP", "status"] == "not_measurable"


def test_a_swapped_pair_is_named_on_both_rows_with_its_noise():
    # The paper has resnet50 (76.9) below sasa (77.4); here resnet50 is above it.
    df, trends = table({"resnet50": [74, 74, 74], "conv-stem-attention-sasa": [73, 73.5, 74],
                        "conv-stem-attention-bn": [75, 75, 75], "conv-stem-ps-attention": [80, 80, 80],
                        "conv-stem-axial-attention": [74.5, 74.5, 74.5], "full-axial-attention": [81, 81, 81]})
    status = df.set_index("row")["status"]
    assert status["resnet50"] == status["conv-stem-attention-sasa"] == "trend_disagrees"
    assert status["conv-stem-ps-attention"] == "trend_agrees"
    note = df.set_index("row").at["resnet50", "note"]
    assert "vs conv-stem-attention-sasa: paper -0.5, proxy +0.50 (within seed noise)" in note
    assert trends["Top-1"]["disagreeing_pairs"] == 1


def test_full_fidelity_compares_values():
    results = fake_results({"resnet50": [76.9, 76.9, 76.9]})
    df, _ = trained.build_trained_table(SPEC, "full", results)
    row = df[df["row"] == "resnet50"].iloc[0]
    assert row["status"] == "match" and row["delta"] == "+0.0000"


def test_the_time_estimate_prefers_the_seeds_finished_under_todays_configuration(tmp_path, monkeypatch):
    # A re-designed table's written times (version 1) can be far from today's runs: a row's
    # pending seeds, when it has some, say how long its next runs take.
    (tmp_path / "tables").mkdir()
    monkeypatch.setattr(runner, "ROOT", tmp_path)
    written = {"seed_runs": {"resnet50": [{"seed": 0, "seconds": 100.0}], "stand-alone": [{"seed": 0, "seconds": 50.0}]}}
    (tmp_path / "tables" / "table1.proxy.provenance.json").write_text(json.dumps(written))
    steps = [{"row": row, "source": "train"} for row in ("resnet50", "stand-alone", "other")]
    assert trained.estimate_seconds(SPEC, "proxy", steps) == 100 + 50 + 75
    pending = {"resnet50": [{"seed": 1, "seconds": 400.0}, {"seed": 2, "seconds": 600.0}]}
    (tmp_path / "tables" / "table1.proxy.pending.json").write_text(json.dumps(pending))
    # ResNet-50 now takes 5 times its written time: so will the stand-alone row.
    assert trained.estimate_seconds(SPEC, "proxy", steps) == 500 + 250 + statistics.median([500, 250])
    assert trained.estimate_seconds(SPEC, "proxy", [{"row": "resnet50", "source": "cache"}]) == 0


def test_a_run_logged_to_a_file_prints_a_line_per_run(monkeypatch, capsys, tmp_path):
    # Under pytest stderr is not a terminal, as under nohup or CI: no bar, a line per run.
    from training import experiments

    monkeypatch.setattr(experiments, "run", lambda experiment, seed, **_: {"seed": seed, "metrics": {"Top-1": 70.0}})
    monkeypatch.setattr(trained, "committed_results", lambda *_: {})
    monkeypatch.setattr(experiments, "CACHE_DIR", tmp_path)
    results = trained.run_experiments(SPEC, "proxy", (0, 1, 2), progress=True)
    announced, *lines = capsys.readouterr().err.splitlines()
    total = 3 * len(SPEC.proxy)
    # First what will happen, and about how long it takes (from the committed runs' times).
    assert re.fullmatch(rf"table 1 proxy: {total} runs: 0 from the committed results, 0 from the cache, {total} to "
                        r"train \(about \d+ min at the committed runs' pace\)", announced), announced
    assert len(lines) == total and sum(len(r) for r in results.values()) == total
    assert lines[0].startswith(f"table 1 proxy: run 1/{total} done (resnet50, seed 0, ")
    assert lines[-1].startswith(f"table 1 proxy: run {total}/{total} done (full-axial-attention, seed 2, ")
    trained.run_experiments(SPEC, "proxy", (0, 1, 2), progress=False)
    assert capsys.readouterr().err == ""  # --quiet stays quiet


def test_rows_that_train_the_same_model_count_as_one_run(monkeypatch):
    # At the small scale Tab. 7's spans 5, 9 and 17 all become span 1: one training per seed.
    from reproductions.table7 import SPEC as TABLE7
    from training import experiments

    monkeypatch.setattr(experiments, "run", lambda experiment, seed, **_: {"seed": seed, "seconds": 100.0,
                                                                          "metrics": {"PQ": 40.0}})
    results = trained.run_experiments(TABLE7, "proxy", (0, 1, 2), progress=False)
    runs = [r for row_runs in results.values() for r in row_runs]
    assert len(runs) == 18 and len(trained.distinct_runs(runs)) == 12
    assert results["axial-resnet-l-span5"][1]["run"] == results["axial-resnet-l-span17"][1]["run"]
    assert results["axial-resnet-l-span5"][1]["run"] != results["axial-resnet-l-span5"][2]["run"]
    assert len(trained.distinct_runs([{"seed": 0}, {"seed": 0}])) == 2  # records without an id stay apart


def test_each_finished_seed_is_kept_in_tables_until_the_table_is_written(output_dir, monkeypatch):
    # Issue #25: a table is hours of training here, so each seed is written to tables/ as it
    # finishes (to commit), read back instead of trained after an interruption or on a new
    # machine, and taken out of the pending file once the written table holds it.
    import dataclasses

    from training import experiments
    from training.recipe import TrainingError

    # Rows of their own (2 steps): no run id of the committed Tab. 1 can stand for them.
    spec = dataclasses.replace(SPEC, proxy=tuple(
        (row, dataclasses.replace(e, recipe=dataclasses.replace(e.recipe, steps=2))) for row, e in SPEC.proxy[:2]))
    rows = [row for row, _ in spec.proxy]
    monkeypatch.setattr(experiments, "CACHE_DIR", output_dir / "no-cache")
    monkeypatch.setattr(experiments, "stale_reason", lambda *_: "")
    monkeypatch.setattr(trained, "preflight", lambda *_, **__: None)
    trained_now = []

    def run(experiment, seed, **_):
        if len(trained_now) == 4:
            raise TrainingError("interrupted")
        trained_now.append(seed)
        return {"seed": seed, "metrics": {"Top-1": 70.0 + seed}, "identity": {"model": "fixed"},
                "seconds": 5.0, "machine": "Some CPU, 2 cores, tensorflow on cpu", "curve": [[1, 2.0]]}

    monkeypatch.setattr(experiments, "run", run)
    with pytest.raises(runner.ReproductionError, match="interrupted"):
        trained.run_experiments(spec, "proxy", (0, 1, 2), progress=False)
    pending_file = output_dir / "tables" / "table1.proxy.pending.json"
    pending = json.loads(pending_file.read_text())
    assert {row: [r["seed"] for r in runs] for row, runs in pending.items()} == {rows[0]: [0, 1, 2], rows[1]: [0]}
    assert pending[rows[0]][2]["metrics"] == {"Top-1": 72.0} and pending[rows[0]][2]["curve"] == [[1, 2.0]]
    # A new machine: no cache; the four kept seeds are read, the other two trained.
    trained_now.clear()
    trained.run_trained_table(spec, "proxy", (0, 1, 2), progress=False)
    assert trained_now == [1, 2]
    written = json.loads((output_dir / "tables" / "table1.proxy.provenance.json").read_text())
    assert [r["seed"] for r in written["seed_runs"][rows[1]]] == [0, 1, 2]
    assert written["values"][rows[0]]["Top-1"] == pytest.approx([70.0, 71.0, 72.0])
    assert not pending_file.exists()


def test_too_few_seeds_is_an_error():
    with pytest.raises(runner.ReproductionError, match="at least 3 seeds"):
        trained.run_experiments(SPEC, "proxy", (0, 1))


def test_a_table_without_experiments_says_so():
    from reproductions.table3 import SPEC as TABLE3  # COCO test-dev: scored by a server, reported only

    with pytest.raises(runner.ReproductionError, match="declares no proxy experiments"):
        trained.experiments_of(TABLE3, "proxy")


def test_a_single_measured_row_has_no_trend():
    df, trends = table({"resnet50": [70, 71, 72]})
    status = df.set_index("row")["status"]
    assert status["resnet50"] == "no_trend" and trends["Top-1"]["kendall_tau"] is None
    assert set(status.drop("resnet50")) == {"not_measured"}           # declared rows without results


@pytest.fixture(scope="module")
def tiny_caches(tmp_path_factory):
    """Experiment and proxy-data caches shared by this module's tests: each tiny run trains once."""
    root = tmp_path_factory.mktemp("tiny-table1-caches")
    from tests.test_classification_proxy import write_fake_fashion_mnist

    write_fake_fashion_mnist(root)
    return root


@pytest.fixture
def tiny_table1(tiny_caches, monkeypatch, output_dir):
    """Tab. 1 with two cheap proxy rows (ResNet-50 cut to one block per stage, 2 training steps)
    on a 2-image-per-class Fashion-MNIST fixture, every output redirected to a fresh folder and
    the caches to the module's."""
    import dataclasses

    import reproductions.table1 as table1
    from training import experiments
    from training.recipe import Recipe

    monkeypatch.setenv("FASHION_MNIST_DIR", str(tiny_caches))
    monkeypatch.setattr(experiments, "CACHE_DIR", tiny_caches / "experiments")
    monkeypatch.setattr(experiments, "DATA_CACHE_DIR", tiny_caches / "proxy-data")
    data = experiments.Data("fashion-mnist", train=2, val=1)
    recipe = Recipe(steps=2, batch_size=4, crop_size=(32, 32))
    one_block = (("stage_blocks", (1, 1, 1, 1)),)  # the path is tested; full depth compiles for minutes
    proxy = tuple((row, experiments.Experiment(preset, data, recipe, (32, 32), backbone_changes=one_block))
                  for row, preset in (("resnet50", "resnet50"), ("conv-stem-attention-bn", "resnet50")))
    monkeypatch.setattr(table1, "SPEC", dataclasses.replace(table1.SPEC, proxy=proxy))
    return output_dir


# The two tests that train the tiny Tab. 1 share one xdist worker (make test: --dist loadgroup),
# so the second reads the first one's runs from the module's cache instead of training again.
@pytest.mark.heavy
@pytest.mark.xdist_group("tiny-table1")
def test_run_all_proxy_end_to_end_writes_the_table_and_report(tiny_table1, capsys):
    import run_all

    assert run_all.main(["--tables", "1", "--fidelity", "proxy", "--quiet"]) == 0
    written = pd.read_csv(tiny_table1 / "tables" / "table1.proxy.csv", dtype=str, keep_default_na=False)
    assert list(written.columns) == trained.COLUMNS
    assert list(written["row"]) == ["resnet50", "conv-stem-attention-bn"]
    assert set(written["seeds"]) == {"0,1,2"} and set(written["fidelity"]) == {"proxy"}
    assert set(written["status"]) <= {"trend_agrees", "trend_disagrees"}
    for value in written["measured"].astype(float):
        assert 0 <= value <= 100 and round(value * 10 / 100 * 3) == pytest.approx(value * 10 / 100 * 3)
    provenance = json.loads((tiny_table1 / "tables" / "table1.proxy.provenance.json").read_text())
    assert provenance["seeds"] == [0, 1, 2] and provenance["config_hash"] == trained.fingerprint(
        __import__("reproductions.table1", fromlist=["SPEC"]).SPEC)
    # Every seed's value is kept, in the CSV and the provenance, with the machine (issue #10, item 4).
    for _, r in written.iterrows():
        values = [float(v) for v in r["values"].split(";")]
        assert len(values) == 3 and np.mean(values) == pytest.approx(float(r["measured"]), abs=1e-3)
        assert provenance["values"][r["row"]][r["metric"]] == pytest.approx(values, abs=1e-4)
    assert provenance["machine"]["backend"] in ("tensorflow", "jax") and provenance["machine"]["device"]
    assert provenance["machine"]["cpu"]["model"] and "training_seconds" in provenance
    assert "<b>proxy (measured)</b>" in (tiny_table1 / "report" / "index.html").read_text()
    # A smoke test runs the same path capped, prints, and writes nothing: not even its cache.
    from training import experiments

    caches = sorted(p.name for p in experiments.CACHE_DIR.parent.iterdir())
    before = {p: p.stat().st_mtime_ns for p in (tiny_table1 / "tables").iterdir()}
    assert run_all.main(["--tables", "1", "--fidelity", "proxy", "--smoke-test", "--seeds", "5", "--quiet"]) == 0
    assert "smoke test (2 steps of batch 2, 8 evaluation images: not results; nothing written)" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (tiny_table1 / "tables").iterdir()} == before
    assert sorted(p.name for p in experiments.CACHE_DIR.parent.iterdir()) == caches
    # trained.metrics_file finds what experiments.run wrote: the check for library bugs (test
    # below) skips exactly the seeds that will not train.
    import reproductions.table1 as table1

    for _, experiment in table1.SPEC.proxy:
        assert all(trained.metrics_file(experiment, seed).exists() for seed in (0, 1, 2))
        assert not trained.metrics_file(experiment, 5).exists()


@pytest.mark.xdist_group("tiny-table1")
def test_a_rerun_on_another_machine_is_compared_within_seed_noise(tiny_table1, capsys):
    import run_all

    assert run_all.main(["--tables", "1", "--fidelity", "proxy", "--quiet"]) == 0
    path = tiny_table1 / "tables" / "table1.proxy.provenance.json"
    stored = json.loads(path.read_text())
    # The stored result as if measured on another CPU: other values for the same configuration.
    stored["machine"]["cpu"]["model"] = "Some Other CPU"
    stored["values"]["resnet50"]["Top-1"] = [v + 0.5 for v in stored["values"]["resnet50"]["Top-1"]]
    stored["values"]["conv-stem-attention-bn"]["Top-1"] = [90.0, 91.0, 90.5]
    path.write_text(json.dumps(stored))
    capsys.readouterr()
    assert run_all.main(["--tables", "1", "--fidelity", "proxy", "--quiet"]) == 0  # cached runs: same values
    rerun = json.loads(path.read_text())
    previous = rerun["previous_run"]
    assert previous["machine"].startswith("Some Other CPU")
    comparison = {c["row"]: c for c in previous["comparison"]}
    assert comparison["resnet50"]["difference"] == pytest.approx(-0.5, abs=1e-3)
    assert comparison["conv-stem-attention-bn"]["within_seed_noise"] is False
    assert "re-run of a stored result (Some Other CPU" in capsys.readouterr().err


@pytest.mark.xdist_group("tiny-table1")
def test_committed_results_are_read_not_trained_and_retrain_trains_them(tiny_table1, monkeypatch, capsys):
    # A clean clone: the committed tables, no cache.  What a newcomer's first proxy command does.
    import run_all
    from training import experiments

    assert run_all.main(["--tables", "1", "--fidelity", "proxy", "--quiet"]) == 0
    files = {p: (p.read_text(), p.stat().st_mtime_ns) for p in (tiny_table1 / "tables").glob("table1.proxy.*")}
    monkeypatch.setattr(experiments, "CACHE_DIR", tiny_table1 / "a-clean-clone-has-no-cache")
    monkeypatch.setattr(experiments, "run", lambda *_, **__: pytest.fail("trained a committed run"))
    capsys.readouterr()
    assert run_all.main(["--tables", "1", "--fidelity", "proxy"]) == 0
    out, err = capsys.readouterr()
    assert "table 1 proxy: 6 runs: 6 from the committed results, 0 from the cache, 0 to train; --retrain " \
           "trains every run again" in err
    assert re.search(r"^  resnet50: Top-1 \d+\.\d ± \d+\.\d \(paper 76\.9\)  \[proxy, seeds 0,1,2\]$", out, re.M), out
    # Read, not re-derived: the table's files are as they were, dates included.
    assert {p: (p.read_text(), p.stat().st_mtime_ns) for p in files} == files
    # --retrain trains every run again, from scratch.
    fresh = []
    monkeypatch.setattr(experiments, "run", lambda experiment, seed, fresh_=None, **options: fresh.append(
        options["fresh"]) or {"seed": seed, "metrics": {"Top-1": 50.0}})
    assert run_all.main(["--tables", "1", "--fidelity", "proxy", "--retrain", "--quiet"]) == 0
    assert fresh == [True] * 6


def test_rows_not_trained_yet_say_so_and_unknown_rows_are_refused():
    df, _ = table({"resnet50": [70, 71, 72], "conv-stem-ps-attention": [60, 61, 62]})
    rows = df.set_index("row")
    assert rows.at["resnet50", "measured"] != "" and rows.at["conv-stem-ps-attention", "measured"] != ""
    assert rows.at["full-axial-attention", "status"] == "not_measured"
    assert "not run yet" in rows.at["full-axial-attention", "note"]
    chosen = trained.experiments_of(SPEC, "proxy", rows=("resnet50",))
    assert [row for row, _ in chosen] == ["resnet50"]
    with pytest.raises(runner.ReproductionError, match="no proxy experiment for row lr-net-50"):
        trained.experiments_of(SPEC, "proxy", rows=("lr-net-50",))


def test_a_model_a_library_bug_would_mistrain_is_refused_before_anything_trains(monkeypatch, tmp_path):
    # oneDNN issue 6035 (runtime/known_problems.py): the Full Axial-ResNet's stem has a strided 1x1
    # convolution on the 3-channel image, whose weight gradient TensorFlow + oneDNN gets wrong or
    # aborts on.  Patched to strike, so the check runs the same where oneDNN is off by default.
    from runtime import known_problems
    from training import experiments

    monkeypatch.setattr(experiments, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(trained, "_REFUSALS", {})
    monkeypatch.setattr(known_problems, "onednn_bug_can_strike", lambda: True)
    pairs = dict(trained.experiments_of(SPEC, "proxy"))
    full = (("full-axial-attention", pairs["full-axial-attention"]),)

    def steps(rows, seeds):
        return trained.plan(SPEC, "proxy", rows, seeds)

    with pytest.raises(runner.ReproductionError, match=r"^table 1, row full-axial-attention: .*stem_block1_shortcut"
                                                       r".*--backend jax, or with TF_ENABLE_ONEDNN_OPTS=0$"):
        trained.refuse_untrainable(SPEC, steps(full, (0, 1, 2)))
    trained.refuse_untrainable(SPEC, steps((("conv-stem-axial-attention", pairs["conv-stem-axial-attention"]),),
                                           (0, 1, 2)))

    # Seeds already trained are read, not trained: not checked (else the refusal above repeats).
    from training import identity

    for seed in (0, 1, 2):
        path = trained.metrics_file(pairs["full-axial-attention"], seed)
        path.parent.mkdir(parents=True)
        stored = {"source": identity.source_hash(), "model": [], "path": [], "data": None}  # today's code
        path.write_text(json.dumps({"metrics": {"Top-1": 50.0}, "seed": seed, "identity": stored}))
    trained.refuse_untrainable(SPEC, steps(full, (0, 1, 2)))
    with pytest.raises(runner.ReproductionError, match="stem_block1_shortcut"):  # seed 3 would train
        trained.refuse_untrainable(SPEC, steps(full, (0, 1, 2, 3)))
    # Where oneDNN is off (or under JAX, or on a GPU) nothing is refused, and nothing is checked.
    monkeypatch.setattr(trained, "_REFUSALS", {})
    monkeypatch.setattr(known_problems, "onednn_bug_can_strike", lambda: False)
    monkeypatch.setattr(known_problems, "training_refusal", lambda _: pytest.fail("checked a model"))
    trained.refuse_untrainable(SPEC, steps(full, (3,)))


def test_run_all_refuses_before_training_any_table(monkeypatch, output_dir, capsys):
    import run_all
    from runtime import known_problems
    from training import experiments

    monkeypatch.setattr(experiments, "CACHE_DIR", output_dir / "cache")
    monkeypatch.setattr(trained, "_REFUSALS", {})
    monkeypatch.setattr(known_problems, "onednn_bug_can_strike", lambda: True)
    monkeypatch.setattr(experiments, "run", lambda *_, **__: pytest.fail("trained before refusing"))
    argv = ["--tables", "1", "--fidelity", "proxy", "--rows", "resnet50,full-axial-attention", "--quiet"]
    assert run_all.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: table 1, row full-axial-attention: ") and "\n" not in error
    assert not (output_dir / "tables").exists()


def test_only_strided_pointwise_convolutions_on_few_channels_are_flagged():
    import keras

    from runtime import known_problems

    image = keras.Input((16, 16, 3))
    wide = keras.layers.Conv2D(16, 3, name="wide")(image)
    model = keras.Model(image, [keras.layers.Conv2D(8, 1, strides=2, name="strided_on_3")(image),
                                keras.layers.Conv2D(8, 1, name="unstrided_on_3")(image),
                                keras.layers.Conv2D(8, 3, strides=2, name="three_by_three_on_3")(image),
                                keras.layers.Conv2D(8, 1, strides=2, name="strided_on_16")(wide)])
    assert known_problems.strided_pointwise_convolutions(model) == ["strided_on_3"]


def test_tensorflow_says_whether_onednn_is_off():
    import os
    import subprocess
    import sys

    script = ("from runtime import backend; backend.choose('tensorflow'); "
              "from runtime import known_problems, machine; "
              "print(known_problems.tensorflow_onednn_on(), known_problems.onednn_bug_can_strike(), "
              "machine.describe(with_device=False)['onednn'])")
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["False", "False", "False"], out.stderr[-2000:]


def _tables_sharing_trainings(output_dir, monkeypatch):
    """Three constructed tables whose rows train the same models: the second evaluates as the
    first does, less its extra test resolution; the third evaluates otherwise.  Training is
    faked (5 s a run); returns the tables and the list of seeds trained."""
    from training import experiments

    two_steps = tuple((row, dataclasses.replace(e, recipe=dataclasses.replace(e.recipe, steps=2)))
                      for row, e in SPEC.proxy[:2])
    first = dataclasses.replace(SPEC, proxy=tuple((row, dataclasses.replace(e, test_ratios=(2.0,)))
                                                  for row, e in two_steps))
    second = dataclasses.replace(SPEC, table=4, proxy=tuple((f"same-{row}", e) for row, e in two_steps))
    third = dataclasses.replace(SPEC, table=8, proxy=tuple(
        (row, dataclasses.replace(e, eval_crop_fraction=0.5)) for row, e in two_steps))
    for spec in (first, second, third):
        monkeypatch.setitem(sys.modules, f"fake_table{spec.table}", types.SimpleNamespace(SPEC=spec))
    monkeypatch.setattr(runner, "TABLE_MODULES", {s.table: f"fake_table{s.table}" for s in (first, second, third)})
    monkeypatch.setattr(experiments, "CACHE_DIR", output_dir / "no-cache")
    monkeypatch.setattr(experiments, "stale_reason", lambda *_: "")
    monkeypatch.setattr(trained, "preflight", lambda *_, **__: None)
    monkeypatch.setattr(trained, "announce", lambda *_: None)
    trained_now = []

    def run(experiment, seed, **_):
        trained_now.append(seed)
        return {"seed": seed, "metrics": {"Top-1": 70.0 + seed, "Top-1@2": 60.0 + seed},
                "identity": {"model": "fixed"}, "seconds": 5.0, "machine": "Some CPU, 2 cores, tensorflow on cpu"}

    monkeypatch.setattr(experiments, "run", run)
    return first, second, third, trained_now


def test_a_training_another_table_committed_is_read_not_trained(output_dir, monkeypatch):
    # Rows of different tables that train the same model share one run; on a new machine (no
    # cache) a table reads such seeds from the table that committed them, when that table's
    # evaluation covers its own (Tab. 4's proxy is Tab. 2's trainings, which Tab. 2 evaluates
    # at more test resolutions too).  Another evaluation of the same training is trained again.
    first, second, third, trained_now = _tables_sharing_trainings(output_dir, monkeypatch)
    trained.run_trained_table(first, "proxy", (0, 1, 2), progress=False)
    assert len(trained_now) == 6
    trained_now.clear()
    read = trained.run_experiments(second, "proxy", (0, 1, 2), progress=False)
    assert trained_now == []
    assert [r["metrics"] for r in read["same-resnet50"]] == [{"Top-1": 70.0 + s} for s in (0, 1, 2)]
    assert {r["shared_from"] for runs in read.values() for r in runs} == {1}
    trained.run_experiments(third, "proxy", (0, 1, 2), progress=False)
    assert trained_now == [0, 1, 2] * 2


def test_a_table_counts_the_time_of_the_trainings_it_ran_not_those_it_read(output_dir, monkeypatch):
    # Tab. 2 reads Axial-DeepLab-S seeds 0-4 from Tab. 6: their seconds are Tab. 6's, and
    # counting them again would overstate what Tab. 2 cost.  The table that trained them keeps
    # counting them when it is run again, even though the other table now holds them too.
    first, second, _, trained_now = _tables_sharing_trainings(output_dir, monkeypatch)
    trained.run_trained_table(first, "proxy", (0, 1, 2), progress=False)
    trained.run_trained_table(second, "proxy", (0, 1, 2), progress=False)
    assert len(trained_now) == 6  # the first table's trainings only
    read = json.loads((output_dir / "tables" / "table4.proxy.provenance.json").read_text())
    assert {r.get("shared_from") for runs in read["seed_runs"].values() for r in runs} == {1}
    assert read["training_seconds"] == 0
    trained.run_trained_table(first, "proxy", (0, 1, 2), progress=False)
    ran = json.loads((output_dir / "tables" / "table1.proxy.provenance.json").read_text())
    assert ran["training_seconds"] == 30.0  # 6 runs of 5 s
    assert not any(r.get("shared_from") for runs in ran["seed_runs"].values() for r in runs)


def test_a_cached_training_is_the_table_s_that_committed_it_first(output_dir, monkeypatch):
    # On the machine that trained them, a second table finds the first table's seeds in the
    # cache (the same evaluation): they are the first table's, and stay so when the first table
    # is run again (its own record says it trained them).
    first, _, _, trained_now = _tables_sharing_trainings(output_dir, monkeypatch)
    from training import experiments

    faked = experiments.run

    def run_and_cache(experiment, seed, **kwargs):
        path = trained.metrics_file(experiment, seed)
        if path.exists():
            return json.loads(path.read_text())
        result = faked(experiment, seed, **kwargs)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result))
        return result

    monkeypatch.setattr(experiments, "run", run_and_cache)
    same = dataclasses.replace(first, table=4, proxy=tuple((f"same-{row}", e) for row, e in first.proxy))
    monkeypatch.setitem(sys.modules, "fake_table4", types.SimpleNamespace(SPEC=same))
    trained.run_trained_table(first, "proxy", (0, 1, 2), progress=False)
    trained.run_trained_table(same, "proxy", (0, 1, 2), progress=False)
    assert len(trained_now) == 6
    steps = trained.plan(same, "proxy", same.proxy, (0, 1, 2))
    assert {s["source"] for s in steps} == {"cache"} and {s.get("shared_from") for s in steps} == {1}
    second_path = output_dir / "tables" / "table4.proxy.provenance.json"
    second = json.loads(second_path.read_text())
    assert second["training_seconds"] == 0

    def second_says(origin):
        marked = {row: [{k: v for k, v in r.items() if k != "shared_from"} | ({"shared_from": origin} if origin else {})
                        for r in runs] for row, runs in second["seed_runs"].items()}
        second_path.write_text(json.dumps({**second, "seed_runs": marked}))

    def first_counts_its_own_time():
        trained.run_trained_table(first, "proxy", (0, 1, 2), progress=False)
        assert not any(s.get("shared_from") for s in trained.plan(first, "proxy", first.proxy, (0, 1, 2)))
        ran = json.loads((output_dir / "tables" / "table1.proxy.provenance.json").read_text())
        assert ran["training_seconds"] == 30.0

    # The second table's record does not say where its seeds came from (written before seeds
    # kept it): the first table's own record, which does not name another, decides.
    second_says(None)
    first_counts_its_own_time()
    # Without its own record, the first table takes the second's word, the number as JSON text.
    (output_dir / "tables" / "table1.proxy.provenance.json").unlink()
    second_says("1")
    first_counts_its_own_time()
