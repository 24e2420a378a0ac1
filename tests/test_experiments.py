"""Experiments (train preset X by recipe Y on data D, evaluate with Z): the proxy rule, the
paper's recipes, and the full-fidelity path on tiny fixtures in the datasets' on-disk formats."""

import json

import numpy as np
import pytest

from tests.test_data_readers import write_fixture
from tests.test_imagenet_readers import write_tree
from training import experiments
from training.recipe import Recipe
from training.experiments import Data, Experiment, ExperimentError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(experiments, "CACHE_DIR", tmp_path / "cache")


def test_proxy_rule_scales_widths_and_heads_and_nothing_else():
    from models import presets

    experiment = experiments.classification_proxy("full-axial-resnet-w0.5")
    spec = experiments.model_spec(experiment, num_classes=10)
    paper = presets.get("full-axial-resnet-w0.5").model.backbone
    assert spec.num_classes == 10
    assert spec.backbone.width_multiplier == paper.width_multiplier * experiments.PROXY_WIDTH
    assert spec.backbone.num_heads == paper.num_heads * experiments.PROXY_WIDTH
    assert (spec.backbone.stem, spec.backbone.span, spec.backbone.depth) == (paper.stem, paper.span, paper.depth)
    full = experiments.model_spec(experiments.imagenet_full("full-axial-resnet-w0.5"), num_classes=1000)
    assert full.backbone == paper


def test_proxy_models_average_batch_norm_statistics_faster():
    import keras

    proxy = experiments.classification_proxy("ps-attention-resnet50-w1")
    model = experiments._builder(proxy, experiments.model_spec(proxy, 10), (32, 32))()
    norms = [l for l in model._flatten_layers(include_self=False) if isinstance(l, keras.layers.BatchNormalization)]
    inside_attention = [l for l in norms if l.name in ("qkv_norm", "similarity_norm", "output_norm")]
    assert inside_attention and {l.momentum for l in norms} == {experiments.PROXY_BN_MOMENTUM}
    full = experiments.imagenet_full("ps-attention-resnet50-w1")
    model = experiments._builder(full, experiments.model_spec(full, 10), (32, 32))()
    assert {l.momentum for l in model._flatten_layers(include_self=False)
            if isinstance(l, keras.layers.BatchNormalization)} == {0.99}


def test_xception_has_no_proxy_width():
    experiment = Experiment("panoptic-deeplab-x71-cityscapes", Data("panoptic-proxy", 4, 2, (65, 65)),
                            Recipe(steps=1, batch_size=1, crop_size=(33, 33)), (65, 65))
    with pytest.raises(ExperimentError, match="Xception-71 has one fixed width"):
        experiments.model_spec(experiment, 7)


def test_imagenet_recipe_batch_sizes_follow_the_paper():
    # Sec. 4: batch 512 for Full Axial-ResNets, 1024 for the others, lr scaled linearly.
    full, conv_stem = experiments.imagenet_full("full-axial-resnet-w0.5"), experiments.imagenet_full("resnet50")
    assert (full.recipe.batch_size, conv_stem.recipe.batch_size) == (512, 1024)
    assert conv_stem.recipe.learning_rate == 2 * full.recipe.learning_rate
    assert conv_stem.recipe.steps * 1024 == pytest.approx(90 * experiments.IMAGENET_TRAIN_IMAGES, rel=1e-3)
    assert full.proxy_width is None and full.eval_crop_fraction == 0.875


def test_full_imagenet_path_on_a_class_folder_fixture(tmp_path):
    write_tree(tmp_path / "data" / "imagenet")
    recipe = Recipe(steps=2, batch_size=2, crop_size=(32, 32), optimizer="sgd-nesterov", schedule="cosine",
                    label_smoothing=0.1, learning_rate=0.01)
    experiment = Experiment("resnet50", Data("imagenet"), recipe, (32, 32), eval_crop_fraction=0.875)
    result = experiments.run(experiment, seed=0, data_dir=tmp_path / "data", progress=False)
    assert set(result["metrics"]) == {"Top-1"}
    correct = result["metrics"]["Top-1"] * 3 / 100                                 # 3 val images
    assert correct == pytest.approx(round(correct)) and 0 <= round(correct) <= 3
    workdir = experiments.workdir(experiment, 0, tmp_path / "data")
    log = (workdir / "log.jsonl").read_text().splitlines()
    assert len(log) == 2 and all(np.isfinite(json.loads(line)["total"]) for line in log)
    # A finished run is a file read: no more training steps are logged.
    again = experiments.run(experiment, seed=0, data_dir=tmp_path / "data", progress=False)
    assert again == result and not result["capped"]
    assert len((workdir / "log.jsonl").read_text().splitlines()) == 2
    # Capped at one step (a smoke test): a run of its own, and it says so.
    capped = experiments.run(experiment, seed=0, data_dir=tmp_path / "data", progress=False, max_steps=1)
    assert capped["capped"] and capped["steps"] == 1


def test_full_panoptic_path_on_a_cityscapes_fixture(tmp_path):
    root = tmp_path / "data" / "cityscapes"
    write_fixture(root, "cityscapes", "train")
    write_fixture(root, "cityscapes", "val")
    experiment = Experiment("resnet50-deeplab-cityscapes", Data("cityscapes"),
                            Recipe(steps=1, batch_size=1, crop_size=(33, 33)), (33, 33), stuff_area=1)
    result = experiments.run(experiment, seed=0, data_dir=tmp_path / "data", progress=False)
    metrics = result["metrics"]
    assert set(metrics) == {"PQ", "PQ_Th", "PQ_St", "mIoU"}
    for name in ("PQ", "PQ_Th", "PQ_St", "mIoU"):
        assert 0 <= metrics[name] <= 100
    assert not result["capped"]


def test_missing_dataset_folder_names_it(tmp_path):
    experiment = experiments.imagenet_full("resnet50")
    with pytest.raises(ExperimentError, match=f"dataset folder {tmp_path}/imagenet not found"):
        experiments.run(experiment, 0, data_dir=tmp_path)
    with pytest.raises(ExperimentError, match="needs --data-dir"):
        experiments.run(experiment, 0, data_dir=None)
