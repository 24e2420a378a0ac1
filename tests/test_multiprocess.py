"""Training across processes (issue #24, part 3).

Two local processes on CPU, one device each, train a small model (a strided convolution with
BN, the paper's pair of axial-attention layers with their BNs, a classifier head) for 3 steps
on a global batch of 4 -- JAX through jax.distributed (its coordinator on 127.0.0.1), TensorFlow
as two MultiWorkerMirroredStrategy workers of TF_CONFIG (on 127.0.0.1) -- and the result equals
one process's run on the same global batch: the loss of every step and every final weight
(BN's moving statistics included).  Each process builds only its own half of every batch (the
pipeline's slots), and only the chief writes: checkpoints, log.jsonl and recipe.json in its
run folder, nothing at all from the other process (its run and cache folders stay absent).

Tolerance, both backends: losses rtol 1e-5; weights rtol 1e-5 and atol 1e-6.  Two processes
compute the same function as one, with float32 sums in another order: the batch means of the
loss and of BN's moments, and the gradients, are partial sums per process added by one
all-reduce.  A reordered sum moves a value by a few ulps (1.2e-7 relative), and three steps
carry that to about 1e-7 here (measured: losses 0 (JAX) and 9e-8 relative (TensorFlow),
weights 1.2e-7 absolute on both, the trained model's logits 3e-8 and 6e-8), so the tolerance
has a margin of about 100 for the reorderings of other machines and libraries.  What it must catch is a wrong share: the
same half fed by both processes moves the losses by 15 % and the weights by 7e-3 (measured on
one process with that batch).  Both processes feeding the whole batch would not move them at
all (the mean of a batch twice is the batch's), which is why the test checks what each
process built.  The two processes' own numbers agree exactly (each holds the replicated
result of the same all-reduce).

The file runs as a script too: `python tests/test_multiprocess.py ROLE RESULTS WORKDIR` is one
process of a test (ROLE: reference, or the process index), configured by the environment the
test gives it (KERAS_BACKEND, and KERAS_DISTRIBUTION_* or TF_CONFIG).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
STEPS, BATCH, SIZE, CLASSES, PROCESSES = 3, 4, (16, 16), 4, 2
TIMEOUT = 300  # seconds for a whole two-process run (15-80 s here, on 2 cores shared with other work)
LOSS_RTOL, WEIGHT_RTOL, WEIGHT_ATOL = 1e-5, 1e-5, 1e-6


# --- one process of a test ---------------------------------------------------------------------

def small_model():
    import keras

    from models.blocks import AxialAttentionOp, conv_bn

    inputs = keras.Input((*SIZE, 3), name="image")
    x = conv_bn(inputs, 8, 3, strides=2, name="stem")                        # BN: global statistics
    x = AxialAttentionOp(span=None, num_heads=2)(x, 8, 1, "axial")           # its BNs too
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="head")(x))


def images(count: int = 8):
    """uint8 images of 20 x 24 pixels, a label each: the classification pipeline's input."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (20, 24, 3), dtype=np.uint8) for _ in range(count)]


def work(role: str, results: Path, workdir: Path) -> None:
    from training.engine import Recipe, Trainer
    from training.pipeline import ClassificationBatches

    built = []

    class RecordedBatches(ClassificationBatches):
        """The pipeline, noting which examples of which step this process builds."""

        def batch(self, step, slots=None):
            chosen = range(self.batch_size) if slots is None else slots
            built.append([step, chosen.start, chosen.stop])
            return super().batch(step, slots)

    pictures = images()
    records = [(i, i % CLASSES) for i in range(len(pictures))]
    recipe = Recipe(steps=STEPS, batch_size=BATCH, crop_size=SIZE, learning_rate=0.01, checkpoint_every=2,
                    seed=5)
    batches = RecordedBatches(records, pictures.__getitem__, BATCH, SIZE, seed=recipe.seed)
    began = time.perf_counter()
    trainer = Trainer(small_model, batches, recipe, workdir,
                      strategy="default" if role == "reference" else "multi-worker")
    logs = trainer.train(progress=False)
    placement = trainer.placement
    # Evaluation as the suite does it (experiments.py): each process predicts alone.
    logits = np.asarray(trainer.model.predict_on_batch(ClassificationBatches.batch(batches, 0)[0]))
    np.savez(results / f"{role}.npz", *trainer.model.get_weights())
    (results / f"{role}.json").write_text(json.dumps({
        "losses": [r["total"] for r in logs], "built": built, "seconds": round(time.perf_counter() - began, 1),
        "logits": logits.tolist(),
        "process": [placement.process_index, placement.process_count], "chief": trainer.chief,
        "replicas": placement.replicas}))


# --- the tests ---------------------------------------------------------------------------------

def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_processes(backend: str, tmp_path: Path, environments: dict[str, dict]) -> dict:
    """Starts one process per role of `environments` with its environment, all at once, and
    trains the reference meanwhile (in this process when its backend is `backend`, which saves
    a start-up of the library, else in a process of its own); waits (bounded) for all; returns
    {role: (its json, its weights)}.  Each role has its own cache folder."""
    results = tmp_path / "results"
    results.mkdir()
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("KERAS_DISTRIBUTION_", "TF_CONFIG", "XLA_FLAGS", "JAX_", "TPU_NAME"))}
    base.update(PYTHONPATH=str(ROOT), KERAS_BACKEND=backend, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
                XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    import keras

    here = keras.backend.backend() == backend
    roles = {**environments, **({} if here else {"reference": {}})}
    logs = {role: tmp_path / f"{role}.out" for role in roles}
    processes = {}
    try:
        for role, env in roles.items():
            with open(logs[role], "w") as out:
                processes[role] = subprocess.Popen(
                    [sys.executable, __file__, role, str(results), str(tmp_path / f"run-{role}")], cwd=ROOT,
                    env={**base, "AXIAL_DEEPLAB_CACHE_DIR": str(tmp_path / f"cache-{role}"), **env},
                    stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + TIMEOUT
        if here:
            work("reference", results, tmp_path / "run-reference")
        for role, process in processes.items():
            try:
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{backend} process {role} still running after {TIMEOUT} s:\n"
                            f"{logs[role].read_text()[-3000:]}")
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    for role, process in processes.items():
        assert process.returncode == 0, f"{backend} process {role} exited {process.returncode}:\n" \
                                        f"{logs[role].read_text()[-3000:]}"
    found = {}
    for role in [*environments, "reference"]:
        with np.load(results / f"{role}.npz") as weights:
            found[role] = (json.loads((results / f"{role}.json").read_text()),
                           [weights[f"arr_{i}"] for i in range(len(weights.files))])
    return found


def check_equal_to_one_process(found: dict, tmp_path: Path) -> dict:
    """The checks common to both backends; returns the largest differences measured."""
    reference, reference_weights = found["reference"]
    share = BATCH // PROCESSES
    differences = {}
    for p in range(PROCESSES):
        result, weights = found[str(p)]
        assert result["process"] == [p, PROCESSES] and result["chief"] == (p == 0)
        assert result["replicas"] == PROCESSES
        # Its own half of every batch, built once; nothing else.
        assert result["built"] == [[step, p * share, (p + 1) * share] for step in range(STEPS)]
        np.testing.assert_allclose(result["losses"], reference["losses"], rtol=LOSS_RTOL)
        assert len(weights) == len(reference_weights)
        for got, want in zip(weights, reference_weights):
            np.testing.assert_allclose(got, want, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL)
        # Its own evaluation of a batch: the batch's logits, as one process's model gives them.
        assert np.shape(result["logits"]) == (BATCH, CLASSES)
        np.testing.assert_allclose(result["logits"], reference["logits"], rtol=WEIGHT_RTOL, atol=10 * WEIGHT_ATOL)
        differences[p] = {
            "loss_rel": max(abs(a - b) / abs(b) for a, b in zip(result["losses"], reference["losses"])),
            "weight_abs": max(float(np.max(np.abs(g - w))) for g, w in zip(weights, reference_weights)),
            "logit_abs": float(np.max(np.abs(np.subtract(result["logits"], reference["logits"]))))}
    # (Keras' PyDataset path under TensorFlow builds the first two batches twice: it peeks.)
    assert {tuple(b) for b in reference["built"]} == {(step, 0, BATCH) for step in range(STEPS)}
    # The two processes hold one replicated result.
    assert found["0"][0]["losses"] == found["1"][0]["losses"]
    for a, b in zip(found["0"][1], found["1"][1]):
        np.testing.assert_array_equal(a, b)
    # Only the chief wrote the run's files; the other process created nothing.
    chief = tmp_path / "run-0"
    assert sorted(p.name for p in chief.iterdir()) == ["checkpoints", "log.jsonl", "recipe.json"]
    assert [json.loads(line)["step"] for line in (chief / "log.jsonl").read_text().splitlines()] == [0, 1, 2]
    assert (chief / "checkpoints" / f"ckpt-{STEPS}.weights.h5").exists()
    assert not (tmp_path / "run-1").exists() and not (tmp_path / "cache-1").exists()
    print(f"largest differences from one process: {differences}; "
          f"seconds: {[found[r][0]['seconds'] for r in ('reference', '0', '1')]}")
    return differences


@pytest.mark.heavy
def test_two_jax_processes_train_as_one(tmp_path):
    """Runs in either lane (its processes are JAX's whatever the test's backend), once: it is
    not marked `jax`, so the TensorFlow lane runs it."""
    port, = free_ports(1)
    cluster = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}",
               "KERAS_DISTRIBUTION_NUM_PROCESSES": str(PROCESSES)}
    found = run_processes("jax", tmp_path, {
        str(p): {**cluster, "KERAS_DISTRIBUTION_PROCESS_ID": str(p)} for p in range(PROCESSES)})
    check_equal_to_one_process(found, tmp_path)


@pytest.mark.heavy
def test_two_tensorflow_workers_train_as_one(tmp_path):
    ports = free_ports(PROCESSES)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    found = run_processes("tensorflow", tmp_path, {
        str(p): {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": p}})}
        for p in range(PROCESSES)})
    check_equal_to_one_process(found, tmp_path)


# --- the TPU option -----------------------------------------------------------------------------

def test_tpu_flag_is_refused_where_it_names_nothing():
    import run_all
    from runtime.cli import UsageError

    args = run_all.parse_arguments(["--tables", "1", "--fidelity", "proxy", "--strategy", "tpu", "--tpu", "my-tpu",
                                    "--backend", "tensorflow"])
    assert args.tpu == "my-tpu" and args.strategy == "tpu"
    for argv in (["--tpu", "my-tpu"],                                                      # count fidelity
                 ["--tables", "1", "--fidelity", "proxy", "--tpu", "my-tpu"],               # no --strategy tpu
                 ["--tables", "1", "--fidelity", "proxy", "--strategy", "tpu", "--tpu", "x", "--backend", "jax"]):
        with pytest.raises(UsageError, match="--tpu names the TPU of --strategy tpu"):
            run_all.parse_arguments(argv)


def test_tpu_flag_reaches_the_resolver_and_a_missing_tpu_is_one_line(monkeypatch, tmp_path):
    """run_all --tpu NAME -> the suite's own path to the Trainer (run_trained_table, run_experiments,
    experiments._train) -> TPUClusterResolver(tpu=NAME), here one that finds no TPU."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("--tpu is TensorFlow's")
    import run_all
    from reproductions import runner, trained
    from runtime import backend
    from training import experiments

    asked = []

    def resolver(tpu=None, **kwargs):
        asked.append(tpu)
        raise ValueError(f"Could not resolve {tpu}\nsecond line")

    monkeypatch.setenv("TPU_NAME", "placeholder")  # restored afterwards, whatever run_all sets
    monkeypatch.setattr(backend.tensorflow().distribute.cluster_resolver, "TPUClusterResolver", resolver)
    monkeypatch.setattr(trained, "preflight", lambda *a, **k: None)   # (model builds, fingerprints: not this test's)
    monkeypatch.setattr(experiments, "run", lambda experiment, seed, strategy, precision, **_: experiments._train(
        experiment, None, None, tmp_path, False, strategy, precision))
    args = run_all.parse_arguments(["--tables", "1", "--fidelity", "proxy", "--strategy", "tpu", "--tpu", "my-tpu",
                                    "--retrain", "--quiet", "--seeds", "0,1,2"])
    with pytest.raises(runner.ReproductionError) as error:
        run_all.run_trained(args)
    assert asked == ["my-tpu"]
    assert str(error.value).startswith("--strategy tpu: no TPU reachable named 'my-tpu' (Could not resolve my-tpu)")
    assert "\n" not in str(error.value) and "--tpu NAME" in str(error.value)


@pytest.mark.jax
def test_a_tpu_name_under_jax_is_a_one_line_error():
    import keras

    if keras.backend.backend() != "jax":
        pytest.skip("the JAX lane's check")
    from training.engine import Placement, TrainingError

    with pytest.raises(TrainingError, match="leave --tpu out") as error:
        Placement("tpu", tpu="my-tpu")
    assert "\n" not in str(error.value)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from runtime import backend

    if backend.choose() == "tensorflow":
        # One thread per operation: three processes share the machine's cores.
        backend.tensorflow().config.threading.set_intra_op_parallelism_threads(1)
    from tests import fast_graphs

    fast_graphs.use()
    work(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
