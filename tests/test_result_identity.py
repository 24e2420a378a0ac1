"""What a result is keyed on, and caches that are checked when read (issue #23).

- training/identity.py: a stored result stands while today's code computes the same numbers
  (its fingerprint), whatever its source text; it falls when the numbers change.
- A damaged cache entry (counts, a seed's metrics) is recomputed with one line, never a
  traceback, and a valid JSON whose number changed is caught by its checksum.
- Ctrl-C during training ends the process within about a second on both backends, with one
  line and exit 130, and the last checkpoint resumes.
"""

import json
import sys

import pytest

from reproductions import runner
from tests.interrupts import interrupt
from training import experiments, identity


# --- fingerprints ------------------------------------------------------------------------------

def _stored(**parts):
    return {"source": "code-of-another-day", "model": [1.0, 2.0, -3.0], "path": [0.5], "data": None, **parts}


@pytest.fixture
def today(monkeypatch):
    """Today's code: another source text, and fingerprints we choose."""
    current = {"source": "code-of-today", "model": [1.0, 2.0, -3.0], "path": [0.5], "data": None}
    monkeypatch.setattr(identity, "source_hash", lambda: "code-of-today")
    monkeypatch.setattr(identity, "fingerprint", lambda experiment: current)
    return current


def test_a_result_stands_while_the_numbers_do_whatever_the_source_text(today):
    experiment = None  # the fingerprint is patched: nothing is built
    assert identity.differences(_stored(), experiment) == []  # an exact refactor
    today["model"] = [1.0 + 1e-7, 2.0, -3.0]  # float32 reordering
    assert identity.differences(_stored(), experiment) == []
    today["model"] = [1.01, 2.0, -3.0]  # a layer that computes something else
    assert identity.differences(_stored(), experiment) == ["model"]
    today["path"], today["data"] = [0.6], [1.0]
    assert identity.differences(_stored(), experiment) == ["model", "path", "data"]
    # Stored under today's source: the numbers are today's by construction, nothing is compared.
    assert identity.differences(_stored(source="code-of-today", model=[9.0]), experiment) == []


@pytest.mark.parametrize("stored", [None, {}, {"source": "x"}, _stored(model=[float("nan"), 2.0, -3.0]),
                                    _stored(model=[1.0, 2.0])], ids=["none", "empty", "partial", "nan", "shape"])
def test_a_missing_or_broken_fingerprint_never_stands(today, stored):
    assert identity.differences(stored, None) != []


@pytest.mark.jax
def test_the_model_fingerprint_is_repeatable_and_sees_the_architecture():
    from reproductions import proxies

    tiny = proxies.classification("resnet50")
    tiny = experiments.Experiment(tiny.preset, tiny.data, tiny.recipe, (32, 32),
                                  backbone_changes=(("stage_blocks", (1, 1, 1, 1)),))
    deeper = experiments.Experiment(tiny.preset, tiny.data, tiny.recipe, (32, 32),
                                    backbone_changes=(("stage_blocks", (1, 1, 2, 1)),))
    first = identity.model_fingerprint(tiny)
    assert identity._close(first, identity.model_fingerprint(tiny))
    assert not identity._close(first, identity.model_fingerprint(deeper))
    assert identity.config_key(tiny) != identity.config_key(deeper)


# --- caches checked when read ------------------------------------------------------------------

def test_a_damaged_count_cache_entry_is_counted_again_with_one_line(monkeypatch, tmp_path, capsys):
    from models import counting, presets

    calls = []

    def count_model(spec, size):
        calls.append(size)
        return counting.Counts(params=1000, madds=5000)

    monkeypatch.setattr(runner, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(counting, "count_model", count_model)
    spec = presets.get("resnet50").model
    assert runner.count_at(spec, (65, 65)).params == 1000 and len(calls) == 1
    assert runner.count_at(spec, (65, 65)).params == 1000 and len(calls) == 1  # read, not counted
    path = runner._cache_file(spec, (65, 65))
    entry = path.read_text()
    for damage in (entry[: len(entry) // 2], "", "[1, 2]", entry.replace("1000", "999", 1)):  # the last: valid JSON
        path.write_text(damage)
        assert runner.count_at(spec, (65, 65)).params == 1000
        err = capsys.readouterr().err
        assert err == f"damaged count cache {runner.shown(path)}: counting again\n", damage
    assert len(calls) == 5 and path.read_text() == entry


def test_recount_counts_from_the_model_never_from_the_cache(monkeypatch, tmp_path):
    # What --check does before it reports a difference from the golden counts: even an entry
    # whose checksum was made to fit a wrong number is not what it reports.
    from models import counting, presets

    monkeypatch.setattr(runner, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(counting, "count_model", lambda spec, size: counting.Counts(params=1000, madds=5000))
    preset = presets.get("resnet50")
    assert runner.measure_counts(preset)["params"] == 1000
    path = runner._cache_file(preset.model, preset.inference_runs()[0])
    forged = {**json.loads(path.read_text())["counts"], "params": 7}
    path.write_text(json.dumps({"counts": forged, "sha256": runner._checksum(forged)}))
    assert runner.measure_counts(preset)["params"] == 7
    assert runner.recount(preset)["params"] == 1000


def test_a_damaged_seed_result_is_evaluated_again_and_changed_numbers_retrain(monkeypatch, tmp_path, capsys, today):
    trainings = []

    def train(experiment, directory, *_):
        trainings.append(directory)
        (directory / "checkpoints").mkdir(parents=True, exist_ok=True)
        return {"Top-1": 50.0}, {}, {}, []

    monkeypatch.setattr(experiments, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(experiments, "_run_classification", train)
    from reproductions import proxies

    experiment = proxies.classification("resnet50")
    first = experiments.run(experiment, 0, progress=False)
    assert first["metrics"] == {"Top-1": 50.0} and first["identity"] == today and len(trainings) == 1
    assert experiments.run(experiment, 0, progress=False)["metrics"] == {"Top-1": 50.0} and len(trainings) == 1
    result_file = next(trainings[0].glob("metrics-*.json"))
    for damage in ('{"metrics": {"Top-1": 5', '{"metrics": {"Top-1": NaN}, "seed": 0}', "{}"):
        result_file.write_text(damage)
        assert experiments.run(experiment, 0, progress=False)["metrics"] == {"Top-1": 50.0}
        assert capsys.readouterr().err == f"cached result {result_file} is damaged: evaluating the run again\n"
    assert len(trainings) == 4 and (trainings[0] / "checkpoints").is_dir()  # the checkpoints were kept
    # The code now computes other numbers: the result and its checkpoints are discarded.
    today["model"] = [5.0, 2.0, -3.0]
    monkeypatch.setattr(identity, "source_hash", lambda: "code-of-tomorrow")
    assert experiments.run(experiment, 0, progress=False)["identity"]["model"] == [5.0, 2.0, -3.0]
    assert capsys.readouterr().err == (f"discarding the run in {trainings[0]}: the code now computes other numbers "
                                       "(model)\n")
    assert len(trainings) == 5


# --- Ctrl-C during training ----------------------------------------------------------------------

INTERRUPTED_RUN = """
import sys
from pathlib import Path
from runtime import backend, processes

processes.exit_promptly_on_interrupt()
backend.choose()
from tests import fast_graphs
from tests.test_training_engine import tiny_model
from training.engine import Recipe, Trainer
from training.pipeline import PanopticBatches

fast_graphs.use()
recipe = Recipe(steps=100000, batch_size=2, crop_size=(33, 33), checkpoint_every=2, seed=7)
batches = PanopticBatches(Path(sys.argv[1]), "coco", "train", 2, (33, 33), seed=7)
try:
    Trainer(tiny_model, batches, recipe, Path(sys.argv[2])).train(progress=False)
except KeyboardInterrupt:  # as run_all.main reports it
    processes.interrupt_reported.set()
    print(processes.INTERRUPTED, file=sys.stderr)
    processes.exit_after_interrupt(130)
"""


@pytest.mark.jax
@pytest.mark.heavy
def test_ctrl_c_ends_training_within_a_second_and_the_checkpoint_resumes(tmp_path):
    from data import proxy
    from runtime import processes
    from tests.test_training_engine import tiny_model
    from training.engine import Checkpoints, Recipe, Trainer
    from training.pipeline import PanopticBatches

    root = proxy.write_dataset(tmp_path / "data", "train", count=4, size=(48, 64), seed=0)
    workdir = tmp_path / "run"
    log = workdir / "log.jsonl"
    code, err, elapsed, _ = interrupt([sys.executable, "-c", INTERRUPTED_RUN, str(root), str(workdir)],
                                   ready=lambda: log.exists() and len(log.read_text().splitlines()) >= 5)
    assert code == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == processes.INTERRUPTED and "Traceback" not in err, err
    assert elapsed < 2.5, f"took {elapsed:.1f} s to stop"
    # The last checkpoint is whole, and a new run resumes from it.
    step = Checkpoints(workdir / "checkpoints").latest()
    assert step >= 2
    recipe = Recipe(steps=step + 2, batch_size=2, crop_size=(33, 33), checkpoint_every=2, seed=7)
    batches = PanopticBatches(root, "coco", "train", 2, (33, 33), seed=7)
    resumed = Trainer(tiny_model, batches, recipe, workdir)
    assert resumed.step == step
    assert [r["step"] for r in resumed.train(progress=False)] == [step, step + 1]
