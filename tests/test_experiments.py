"""Experiments (train preset X by recipe Y on data D, evaluate with Z): the proxy rule, the
paper's recipes, and the full-fidelity path on tiny fixtures in the datasets' on-disk formats."""

import json

import numpy as np
import pytest

from tests.test_imagenet_readers import write_tree
from training import experiments
from training.experiments import Data, Experiment, ExperimentError
from training.recipe import Recipe


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


def test_the_proxy_rule_scales_xception71_like_every_backbone():
    from models import counting

    experiment = Experiment("panoptic-deeplab-x71-cityscapes", Data("panoptic-proxy", 4, 2, (65, 65)),
                            Recipe(steps=1, batch_size=1, crop_size=(33, 33)), (65, 65))
    spec = experiments.model_spec(experiment, 7)
    assert spec.backbone.width_multiplier == experiments.PROXY_WIDTH and spec.num_classes == 7
    model = spec.build((33, 33))
    # Every Xception channel count x 0.25: the exit flow's last separable conv has 2048 / 4 outputs.
    assert model.get_layer("block8_unit1_sepconv3_pointwise").filters == 512
    assert counting.count(model).params < 46_745_486 / 8


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


@pytest.mark.heavy
def test_another_evaluation_of_a_finished_run_reuses_its_training(tmp_path, monkeypatch):
    # The scale stress test evaluates the trained models again at other test sizes: the
    # training folder is keyed by what is trained, each evaluation is a file of its own.
    import dataclasses

    monkeypatch.setattr(experiments, "CACHE_DIR", tmp_path / "runs")
    monkeypatch.setattr(experiments, "DATA_CACHE_DIR", tmp_path / "data")
    data = Data("panoptic-proxy", train=2, val=1, render_size=(33, 33))
    experiment = Experiment("resnet50-deeplab-cityscapes", data, Recipe(steps=1, batch_size=1, crop_size=(33, 33)),
                            (33, 33), stuff_area=16)
    first = experiments.run(experiment, seed=0, progress=False)
    log = experiments.workdir(experiment, 0) / "log.jsonl"
    assert len(log.read_text().splitlines()) == 1
    stressed = experiments.run(dataclasses.replace(experiment, test_ratios=(0.5, 2.0)), seed=0, progress=False)
    assert len(log.read_text().splitlines()) == 1                    # no step trained again
    assert {"PQ@0.5", "PQ@2", "AP@2"} <= set(stressed["metrics"])
    assert stressed["metrics"]["PQ"] == first["metrics"]["PQ"]       # the same weights at the same size
    # The same model under another preset name (Tab. 2's COCO row vs Tab. 6's Cityscapes row
    # differ only by their class count, which the proxy data sets) is the same run.
    assert experiments.workdir(dataclasses.replace(experiment, preset="resnet50-deeplab-cityscapes"), 0) == \
        experiments.workdir(experiment, 0)


def test_missing_dataset_folder_names_it(tmp_path):
    experiment = experiments.imagenet_full("resnet50")
    with pytest.raises(ExperimentError, match=f"dataset folder {tmp_path}/imagenet not found"):
        experiments.run(experiment, 0, data_dir=tmp_path)
    with pytest.raises(ExperimentError, match="needs --data-dir"):
        experiments.run(experiment, 0, data_dir=None)
