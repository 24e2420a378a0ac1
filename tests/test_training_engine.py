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


def test_batches_are_a_function_of_seed_and_step(proxy_root):
    a = PanopticBatches(proxy_root, "coco", "train", 2, (33, 33), seed=3)
    b = PanopticBatches(proxy_root, "coco", "train", 2, (33, 33), seed=3)
    images_a, targets_a = a.batch(5)
    images_b, targets_b = b.batch(5)
    assert images_a.shape == (2, 33, 33, 3)
    assert (images_a == images_b).all() and (targets_a["semantic"] == targets_b["semantic"]).all()
    assert not (a.batch(6)[0] == images_a).all()


def test_interrupted_and_resumed_run_equals_uninterrupted(proxy_root, tmp_path):
    uninterrupted = make_trainer(proxy_root, tmp_path / "a").train(progress=False)
    first = make_trainer(proxy_root, tmp_path / "b").train(until=2, progress=False)
    resumed_trainer = make_trainer(proxy_root, tmp_path / "b")      # a fresh process would do the same
    assert int(resumed_trainer.step.numpy()) == 2
    resumed = resumed_trainer.train(progress=False)
    got = [r["total"] for r in first + resumed]
    want = [r["total"] for r in uninterrupted]
    assert len(got) == len(want) == 4
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert all(np.isfinite(want)) and len(set(np.round(want, 6))) > 1
    assert (tmp_path / "b" / "log.jsonl").read_text().count("\n") == 4


def test_mirrored_strategy_over_two_cpus_matches_one_device():
    # A fresh process: logical devices must be configured before TensorFlow starts.
    import json
    import subprocess
    import sys

    from reproductions.runner import ROOT

    out = subprocess.run([sys.executable, "tests/mirrored_check.py"], cwd=ROOT, capture_output=True, text=True,
                         timeout=900, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["default_replicas"] == 1 and result["mirrored_replicas"] == 2
    # Each replica gets its own half of the batch, not a copy of the whole of it.
    assert result["mirrored_shards"] == [[1, 33, 33, 3], [1, 33, 33, 3]]
    np.testing.assert_allclose(result["mirrored"], result["default"], rtol=1e-4, atol=1e-5)
