"""Training engine: a tiny Axial-DeepLab on the panoptic proxy, interrupted and resumed exactly."""

import numpy as np
import pytest

from data import proxy
from models.backbones import BackboneSpec
from models.panoptic_deeplab import PanopticDeepLabSpec
from training.engine import Recipe, Trainer
from training.pipeline import PanopticBatches

NUM_CLASSES = 8   # proxy category ids 1..7 (0 unused)


@pytest.fixture(scope="module")
def proxy_root(tmp_path_factory):
    return proxy.write_dataset(tmp_path_factory.mktemp("proxy"), "train", count=4, size=(48, 64), seed=0)


def tiny_model():
    spec = PanopticDeepLabSpec(BackboneSpec("axial", width_multiplier=0.125, stem="three_conv", span=9,
                                            output_stride=16, stage_blocks=(1, 1, 1, 1)), NUM_CLASSES)
    return spec.build((33, 33))


def make_trainer(root, workdir, strategy="default"):
    recipe = Recipe(steps=4, batch_size=2, crop_size=(33, 33), checkpoint_every=2, seed=7)
    batches = PanopticBatches(root, "coco", "train", recipe.batch_size, recipe.crop_size, seed=recipe.seed)
    return Trainer(tiny_model, batches, recipe, workdir, strategy=strategy)


@pytest.mark.jax
def test_batches_are_a_function_of_seed_and_step(proxy_root):
    a = PanopticBatches(proxy_root, "coco", "train", 2, (33, 33), seed=3)
    b = PanopticBatches(proxy_root, "coco", "train", 2, (33, 33), seed=3)
    images_a, targets_a = a.batch(5)
    images_b, targets_b = b.batch(5)
    assert images_a.shape == (2, 33, 33, 3)
    assert (images_a == images_b).all() and (targets_a["semantic"] == targets_b["semantic"]).all()
    assert not (a.batch(6)[0] == images_a).all()


KILLED_RUN = """
import os, signal, sys
from pathlib import Path
from tests import fast_graphs
from tests.test_training_engine import make_trainer
from training import engine

fast_graphs.use()

write = engine.StepLog.write

def write_then_die(log, record):
    write(log, record)
    if record["step"] == 2:  # killed once step 2's record is written: steps 0-2 finished, ckpt 2 saved
        os.kill(os.getpid(), signal.SIGKILL)

engine.StepLog.write = write_then_die
make_trainer(Path(sys.argv[1]), Path(sys.argv[2])).train(progress=False)
"""


def read_log(workdir):
    import json

    return [json.loads(line) for line in (workdir / "log.jsonl").read_text().splitlines()]


@pytest.mark.jax
@pytest.mark.heavy
def test_killed_and_resumed_run_equals_uninterrupted_and_logs_every_step_once(proxy_root, tmp_path):
    import os
    import subprocess
    import sys

    from reproductions.runner import ROOT

    uninterrupted = make_trainer(proxy_root, tmp_path / "a").train(progress=False)
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(proxy_root), str(tmp_path / "b")], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    # Every finished step reached the disk before the kill (issue #10, item 3).
    assert [r["step"] for r in read_log(tmp_path / "b")] == [0, 1, 2]
    resumed_trainer = make_trainer(proxy_root, tmp_path / "b")
    assert resumed_trainer.step == 2
    resumed_trainer.train(progress=False)
    log = read_log(tmp_path / "b")
    assert [r["step"] for r in log] == [0, 1, 2, 3]  # step 2, trained again, logged once
    want = [r["total"] for r in uninterrupted]
    np.testing.assert_allclose([r["total"] for r in log], want, rtol=1e-6)
    assert all(np.isfinite(want)) and len(set(np.round(want, 6))) > 1


def _data_parallel_check(backend: str) -> dict:
    # A fresh process: the two CPU devices must be configured before the backend starts.
    import json
    import os
    import subprocess
    import sys

    from reproductions.runner import ROOT

    out = subprocess.run([sys.executable, "tests/mirrored_check.py"], cwd=ROOT, capture_output=True, text=True,
                         timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": backend})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.heavy
def test_mirrored_and_multi_worker_strategies_match_one_device():
    result = _data_parallel_check("tensorflow")
    assert result["default_replicas"] == 1 and result["mirrored_replicas"] == 2
    # Each replica gets its own half of the batch, not a copy of the whole of it.
    assert result["mirrored_shards"] == [[1, 33, 33, 3]] * 2
    np.testing.assert_allclose(result["mirrored"], result["default"], rtol=2e-5)
    # The multi-worker strategy's code path, as one local worker: the single-device numbers.
    assert result["multi-worker_replicas"] == 1
    np.testing.assert_allclose(result["multi-worker"], result["default"], rtol=1e-6)


@pytest.mark.heavy
def test_jax_data_parallel_matches_one_device():
    result = _data_parallel_check("jax")
    assert result["default_replicas"] == 1 and result["mirrored_replicas"] == 2
    # The batch is laid out over the two devices along its first axis.
    assert result["mirrored_shards"] == [[1, 33, 33, 3]] * 2
    np.testing.assert_allclose(result["mirrored"], result["default"], rtol=2e-5)


# --- device choices: strategies and precision --------------------------------------------------

@pytest.mark.jax
def test_precision_auto_is_float32_without_accelerators():
    from training.engine import Placement, resolve_precision

    placement = Placement("default")
    assert resolve_precision("auto", placement) == "float32"          # this machine has no GPU or TPU
    assert resolve_precision("mixed_bfloat16", placement) == "mixed_bfloat16"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("half", placement)


@pytest.mark.jax
def test_tpu_strategy_without_a_tpu_is_a_one_line_error():
    from training.engine import Placement, TrainingError

    with pytest.raises(TrainingError, match="no TPU") as error:
        Placement("tpu")
    assert "\n" not in str(error.value)


class RandomClassificationBatches:
    task = "classification"

    def batch(self, step):
        rng = np.random.default_rng(step)
        return (rng.normal(size=(2, 32, 32, 3)).astype(np.float32),
                {"label": rng.integers(0, 10, 2).astype(np.int32)})


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.heavy
def test_mixed_precision_trains_with_float32_weights(precision, tmp_path):
    import keras

    from models.classifier import ClassifierSpec

    spec = ClassifierSpec(BackboneSpec("axial", width_multiplier=0.125, num_heads=2, stage_blocks=(1, 1, 1, 1)), 10)
    recipe = Recipe(steps=2, batch_size=2, crop_size=(32, 32))
    trainer = Trainer(lambda: spec.build((32, 32)), RandomClassificationBatches(), recipe, tmp_path,
                      precision=precision)
    logs = trainer.train(progress=False)
    compute = {layer.compute_dtype for layer in trainer.model.layers if layer.weights}
    assert compute == {precision.split("_")[1]}
    assert {w.dtype for w in trainer.model.trainable_weights} == {"float32"}
    # float16 needs loss scaling; bfloat16 has float32's exponent range and does not.
    assert isinstance(trainer.task_model.optimizer, keras.optimizers.LossScaleOptimizer) == (precision == "mixed_float16")
    assert all(np.isfinite(r["total"]) for r in logs)
    assert keras.config.dtype_policy().name == "float32"            # the global policy is restored


@pytest.mark.jax
def test_classification_loss_with_label_smoothing():
    from training.losses import classification_loss

    logits = np.array([[2.0, 0.0, 0.0]], np.float32)
    log_p = logits[0] - np.log(np.exp(logits[0]).sum())
    plain = float(classification_loss(np.array([0]), logits)["total"])
    smooth = float(classification_loss(np.array([0]), logits, label_smoothing=0.3)["total"])
    np.testing.assert_allclose(plain, -log_p[0], rtol=1e-6)
    np.testing.assert_allclose(smooth, -(0.8 * log_p[0] + 0.1 * log_p[1] + 0.1 * log_p[2]), rtol=1e-6)


@pytest.mark.jax
def test_classification_batches_are_a_function_of_seed_and_step(tmp_path):
    from PIL import Image

    from training.pipeline import ClassificationBatches

    records = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((20, 24), 40 * i, np.uint8)).save(path)
        records.append((path, i % 2))

    def load(path):
        return np.array(Image.open(path))

    a = ClassificationBatches(records, load, 3, (16, 16), seed=4)
    b = ClassificationBatches(records, load, 3, (16, 16), seed=4)
    images, targets = a.batch(2)
    assert images.shape == (3, 16, 16, 3) and images.dtype == np.float32
    assert -1 <= images.min() and images.max() <= 1
    np.testing.assert_array_equal(images, b.batch(2)[0])
    np.testing.assert_array_equal(targets["label"], b.batch(2)[1]["label"])
    # Every image is one flat grey, so the label follows from the pixel value.
    grey = np.round((images[:, 0, 0, 0] + 1) * 127.5 / 40).astype(int)
    assert (targets["label"] == grey % 2).all()
    # One epoch visits every example once.
    seen = [int(v) for step in range(5) for v in np.round((a.batch(step)[0][:, 0, 0, 0] + 1) * 127.5 / 40)]
    assert sorted(seen[:5]) == [0, 1, 2, 3, 4]
