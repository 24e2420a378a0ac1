"""The panoptic tables at full fidelity (issue #26): declared experiments with the datasets'
recipes and evaluation, the smoke test's shrunk runs, the evaluation fits, and one run end to
end on a Cityscapes fixture in its real on-disk layout."""

import importlib

import numpy as np
import pytest

from reproductions import runner, trained
from tests.test_data_readers import CATEGORIES, write_cityscapes, write_fixture
from training import experiments, full_recipes

DATASET_OF = {2: "coco", 4: "mapillary", 5: "cityscapes", 6: "cityscapes", 7: "cityscapes", 8: "cityscapes"}


@pytest.mark.parametrize("table", sorted(DATASET_OF))
def test_every_panoptic_table_declares_the_papers_models_by_its_datasets_recipe(table):
    spec = importlib.import_module(f"reproductions.table{table}").SPEC
    dataset = DATASET_OF[table]
    assert spec.full, f"table {table} declares no full experiments"
    reported_rows = set(runner.load_reported(table)["row"])
    evaluation = full_recipes.evaluation(dataset)
    for row, experiment in spec.full:
        assert row in reported_rows
        # An -ms row: its single-scale row's training (the same run), evaluated at several scales + flip.
        assert (len(experiment.inference_scales) > 1 and experiment.flip) == row.endswith("-ms")
        assert experiment.proxy_width is None and not experiment.backbone_changes  # the preset's own model
        assert experiment.data.name == dataset and experiment.recipe == full_recipes.recipe(dataset)
        assert experiment.input_size == evaluation["eval_size"] and experiment.eval_fit == evaluation["eval_fit"]
        assert experiment.validate_every == evaluation["validate_every"] > 0
        assert experiment.postprocess() == {name: evaluation[name] for name in (
            "stuff_area", "nms_kernel", "top_k", "center_threshold", "label_divisor")}
    presets = {row.row: row.preset for row in spec.rows}
    assert all(experiment.preset == (presets.get(row) or experiment.preset) for row, experiment in spec.full)


def test_the_smoke_test_shrinks_a_full_panoptic_run_and_nothing_else():
    cityscapes = trained.as_run(experiments.panoptic_full("axial-deeplab-s-cityscapes", "cityscapes"), True)
    assert cityscapes.recipe.crop_size == (65, 129) and cityscapes.input_size == (65, 129)
    assert cityscapes.recipe.batch_size == 2 and cityscapes.recipe.warmup_steps == 0
    assert cityscapes.eval_scale == 1 / 16 and cityscapes.eval_fit == "pad"  # 1024 x 2048 images into 65 x 129
    assert cityscapes.validate_every == trained.SMOKE_STEPS  # the smoke test validates once, at its end
    pixels = experiments.proxy_pixel_settings((65, 129))
    assert (cityscapes.stuff_area, cityscapes.nms_kernel, cityscapes.recipe.center_sigma) == (
        pixels.stuff_area, pixels.nms_kernel, pixels.center_sigma)
    assert cityscapes.preset == "axial-deeplab-s-cityscapes" and cityscapes.proxy_width is None
    coco = trained.as_run(experiments.panoptic_full("axial-deeplab-s-coco", "coco"), True)
    assert coco.input_size == (65, 65) and coco.eval_scale == 1.0 and coco.eval_fit == "longest-pad"
    full = experiments.panoptic_full("axial-deeplab-s-coco", "coco")
    assert trained.as_run(full, False) == full


class ConstantModel:
    """Heads that call every image pixel class `index` (a stuff class) and, if `padding` is given,
    every padding pixel (the mean pixel, 0 after normalisation) class `padding`, with constant
    offsets (dy, dx): where they land on the ground truth shows how an evaluation fit maps
    outputs back (a crop that kept padding would paint the image `padding`)."""

    def __init__(self, classes: int, index: int, stride: int = 4, offset=(0.0, 0.0), padding: int | None = None):
        self.classes, self.index, self.stride, self.offset, self.inputs = classes, index, stride, offset, []
        self.padding = padding

    def predict_on_batch(self, images):
        self.inputs.append(images.shape[1:3])
        h, w = ((n - 1) // self.stride + 1 for n in images.shape[1:3])
        semantic = np.zeros((1, h, w, self.classes), np.float32)
        semantic[..., self.index] = 5.0
        if self.padding is not None:  # the heads' pixel (i, j) sees input (stride i, stride j)
            padded = np.abs(images[:, ::self.stride, ::self.stride, 0]) < 1e-6
            semantic[padded] = 0.0
            semantic[..., self.padding][padded] = 5.0
        return {"semantic": semantic, "center": np.zeros((1, h, w, 1), np.float32),
                "offset": np.broadcast_to(np.asarray(self.offset, np.float32), (1, h, w, 2)).copy()}


@pytest.mark.parametrize("dataset,fit,size,scale,fed,least", [
    ("coco", "longest-pad", (65, 65), 1.0, (65, 65), 70),            # 192 x 256 resized to 48 x 65, padded
    ("mapillary", "longest-pad", (137, 137), 1.0, (137, 137), 70),
    ("cityscapes", "pad", (65, 129), 1 / 16, (65, 129), 55),         # 192 x 256 scaled to 12 x 16, padded
    ("cityscapes", "pad", (193, 257), 1.0, (193, 257), 70),          # deeplab2's: padded as it is
])
def test_evaluation_fits_return_outputs_on_the_ground_truth(tmp_path, dataset, fit, size, scale, fed, least):
    from data import coco_panoptic

    write_fixture(tmp_path, dataset, "val", images=1, scale=16)
    records, categories = coco_panoptic.records(tmp_path, dataset, "val")
    road, person = sorted(categories).index(7), sorted(categories).index(1)
    model = ConstantModel(len(categories), road, padding=person)
    metrics = experiments.evaluate_panoptic(model, records, categories, size, fit=fit, scale=scale, stuff_area=1)
    assert model.inputs == [fed]
    # Road everywhere on the image would score road's IoU, its 128 pixels over the 176 that are
    # not void (per 12 x 16 block): 72.7.  The stride-4 heads blend image and padding along the
    # bottom and right edges, more so on the 12 x 16 image of the smoke test's scale; a fit that
    # left the padding in the outputs paints more of the image "person" (63.7 with longest-pad's
    # crop left out).
    assert least <= metrics["PQ[road]"] <= 100 * 128 / 176 + 0.5 and metrics["PQ[person]"] == 0
    assert len(CATEGORIES) == len(categories)


@pytest.mark.parametrize("fit,scale", [("pad", 1 / 16), ("longest-pad", 1.0), ("resize", 1.0)])
def test_multi_scale_and_flip_inference_averages_the_passes_on_the_image(tmp_path, fit, scale):
    from data import coco_panoptic

    write_fixture(tmp_path, "cityscapes", "val", images=1, scale=16)
    records, categories = coco_panoptic.records(tmp_path, "cityscapes", "val")
    example = coco_panoptic.load_example(records[0])
    models = {}

    def model_at(size):
        return models.setdefault(size, ConstantModel(len(categories), 1, offset=(2.0, 3.0)))

    single = experiments.image_outputs(model_at, example["image"], (65, 129), fit, scale)
    both = experiments.image_outputs(model_at, example["image"], (65, 129), fit, scale, scales=(0.5, 1.0, 1.5),
                                     flip=True)
    assert sorted(models) == [(33, 65), (65, 129), (97, 193)]           # (n - 1) s + 1 per side
    assert all(len(m.inputs) == (3 if size == (65, 129) else 2) for size, m in models.items())  # + flips
    assert both["semantic"].shape == single["semantic"].shape == (*example["ids"].shape, len(categories))
    # A flipped pass's x offsets are negated back: they cancel; y offsets keep their sign.
    assert np.abs(both["offset"][..., 1]).max() < 1e-4 and both["offset"][..., 0].min() > 0
    probabilities = np.exp(both["semantic"])
    assert np.allclose(probabilities.sum(-1), 1, atol=1e-4) and (both["semantic"].argmax(-1) == 1).all()


def test_an_unknown_fit_is_refused(tmp_path):
    from data import coco_panoptic

    write_fixture(tmp_path, "coco", "val", images=1)
    records, categories = coco_panoptic.records(tmp_path, "coco", "val")
    with pytest.raises(ValueError, match="unknown evaluation fit 'stretch'"):
        experiments.evaluate_panoptic(ConstantModel(2, 1), records, categories, (17, 17), fit="stretch")


def test_a_full_split_is_read_from_disk_one_example_at_a_time(tmp_path):
    from training.pipeline import PanopticBatches

    write_fixture(tmp_path, "cityscapes", "train", images=3, scale=4)
    kwargs = {"batch_size": 2, "crop_size": (33, 33), "seed": 3, "class_of": {1: 0, 7: 1}}
    streamed = PanopticBatches(tmp_path, "cityscapes", "train", in_memory=False, **kwargs)
    held = PanopticBatches(tmp_path, "cityscapes", "train", **kwargs)
    assert streamed.examples is None and len(held.examples) == 3
    for step in (0, 5):
        (a, ta), (b, tb) = streamed.batch(step), held.batch(step)
        assert np.array_equal(a, b) and all(np.array_equal(ta[k], tb[k]) for k in ta)


def test_the_full_path_resizes_only_the_crop_window_and_builds_the_same_examples(tmp_path):
    """resize_window_only (the full path's 2-4x faster augmentation) takes the same random
    draws as the proxy's whole-image resize: the same segment ids, hence identical targets,
    and the same pixels up to float32 rounding."""
    from training.pipeline import PanopticBatches

    write_fixture(tmp_path, "cityscapes", "train", images=3, scale=4)
    kwargs = {"batch_size": 2, "crop_size": (49, 97), "seed": 3, "class_of": {1: 0, 7: 1}, "in_memory": False,
              "center_sigma": 2.0}
    window = PanopticBatches(tmp_path, "cityscapes", "train", resize_window_only=True, **kwargs)
    whole = PanopticBatches(tmp_path, "cityscapes", "train", **kwargs)
    for step in range(6):  # scales both sides of 1: some crops hang over the scaled image
        (a, ta), (b, tb) = window.batch(step), whole.batch(step)
        assert all(np.array_equal(ta[k], tb[k]) for k in ta), step
        assert np.abs(a - b).max() < 1e-5, step


def test_input_threads_follow_the_machine_or_the_variable(monkeypatch):
    monkeypatch.delenv(experiments.INPUT_WORKERS_VARIABLE, raising=False)
    assert 1 <= experiments.full_input_workers() <= 8
    monkeypatch.setenv(experiments.INPUT_WORKERS_VARIABLE, "3")
    assert experiments.full_input_workers() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(experiments.INPUT_WORKERS_VARIABLE, bad)
        with pytest.raises(experiments.ExperimentError, match="AXIAL_DEEPLAB_INPUT_WORKERS must be a whole number"):
            experiments.full_input_workers()


def test_the_window_resizes_equal_resize_pad_and_crop():
    from data.image_ops import resize_bilinear, resize_bilinear_window, resize_nearest, resize_nearest_window

    rng = np.random.default_rng(0)
    for shape in ((50, 70), (50, 70, 3)):
        image = rng.uniform(0, 255, shape).astype(np.float32)
        labels = rng.integers(0, 9, shape[:2])
        for size, top, left in (((91, 40), 10, 3), ((30, 200), 0, 120), ((50, 70), 2, 5)):
            padded = np.zeros((size[0] + 100, size[1] + 100, *shape[2:]), np.float32)
            padded[:size[0], :size[1]] = resize_bilinear(image, size)
            window = resize_bilinear_window(image, size, top, left, (64, 64))
            assert window.shape == (64, 64, *shape[2:])
            assert np.allclose(window, padded[top:top + 64, left:left + 64], rtol=0, atol=1e-3)
            ids = np.full((size[0] + 100, size[1] + 100), -1)
            ids[:size[0], :size[1]] = resize_nearest(labels, size)
            assert np.array_equal(resize_nearest_window(labels, size, top, left, (64, 64), fill=-1),
                                  ids[top:top + 64, left:left + 64])


@pytest.mark.heavy
def test_run_all_full_smoke_test_end_to_end_on_a_cityscapes_fixture(tmp_path, monkeypatch, capsys):
    """The acceptance command's path (issue #26) on Cityscapes' real layout, as the official
    converter writes it: declared rows,
    --data-dir, --rows, one seed, a shrunk training and evaluation, metrics printed."""
    import run_all

    for split in ("train", "val"):  # written by cityscapesScripts' own csCreatePanopticImgs
        write_cityscapes(tmp_path / "data" / "cityscapes", split, images=2, scale=16)
    monkeypatch.setattr(experiments, "CACHE_DIR", tmp_path / "runs" / "experiments")
    (tmp_path / "runs").mkdir()
    tables = {p: p.stat().st_mtime_ns for p in runner.TABLES_DIR.iterdir()}
    assert run_all.main(["--tables", "6", "--fidelity", "full", "--data-dir", str(tmp_path / "data"),
                         "--smoke-test", "--rows", "resnet50", "--seeds", "0", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "table 6 smoke test" in out
    for metric in ("PQ", "AP", "mIoU"):  # Tab. 6's columns
        line = next(line for line in out.splitlines() if line.strip().startswith(f"resnet50 {metric}:"))
        value = line.split(":")[1].split("(")[0].strip()
        assert value == "n/a" or 0 <= float(value) <= 100, line
    assert {p: p.stat().st_mtime_ns for p in runner.TABLES_DIR.iterdir()} == tables  # nothing written
    assert list((tmp_path / "runs").iterdir()) == []                                 # nor its cache


# --- ImageNet -> panoptic (issue #26, part 2) ---------------------------------------------------

def _tiny_panoptic(width=0.125, classes=5):
    from models.backbones import BackboneSpec
    from models.panoptic_deeplab import PanopticDeepLabSpec

    return PanopticDeepLabSpec(BackboneSpec("axial", width_multiplier=width, stem="three_conv", span=9,
                                            output_stride=16, stage_blocks=(1, 1, 1, 1)), classes)


def _pretrained_classifier(spec, path, wrap=False):
    """The ImageNet classifier of `spec`'s backbone with weights unlike any initialisation, saved."""
    from training import transfer
    from training.engine import TaskModel

    classifier = transfer.imagenet_spec(spec).build((33, 33))
    rng = np.random.default_rng(0)
    classifier.set_weights([w + rng.normal(0.1, 0.05, w.shape).astype(w.dtype) for w in classifier.get_weights()])
    (TaskModel(classifier, "classification", None) if wrap else classifier).save_weights(str(path))
    return classifier


@pytest.mark.parametrize("wrap", [False, True], ids=["classifier file", "trainer checkpoint"])
def test_imagenet_weights_initialise_the_backbone_by_name_and_nothing_else(tmp_path, wrap, capsys):
    from training import transfer

    spec = _tiny_panoptic()
    classifier = _pretrained_classifier(spec, tmp_path / "imagenet.weights.h5", wrap)
    model = spec.build((33, 33))
    decoder_before = [np.array(w) for w in model.get_layer("semantic_head_predict").get_weights()]
    account = transfer.initialize(model, spec, tmp_path / "imagenet.weights.h5", tmp_path / "init.json")
    backbone = [layer.name for layer in classifier.layers if layer.weights and layer.name != "head_fc"]
    assert sorted(account.loaded) == sorted(backbone) and account.skipped == ["head_fc"]
    for name in backbone:
        for a, b in zip(model.get_layer(name).get_weights(), classifier.get_layer(name).get_weights()):
            assert np.array_equal(a, b), name
    assert "semantic_head_predict" in account.initialised and all(
        np.array_equal(a, b) for a, b in zip(decoder_before, model.get_layer("semantic_head_predict").get_weights()))
    assert "loaded" in capsys.readouterr().out and (tmp_path / "init.json").exists()


def test_weights_of_another_backbone_are_an_error_not_a_random_backbone(tmp_path):
    from training import transfer

    _pretrained_classifier(_tiny_panoptic(width=0.25), tmp_path / "wider.weights.h5")
    spec = _tiny_panoptic()
    with pytest.raises(transfer.TransferError, match="wider.weights.h5"):
        transfer.initialize(spec.build((33, 33)), spec, tmp_path / "wider.weights.h5")
    (tmp_path / "junk.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(transfer.TransferError, match="not a Keras .weights.h5 file"):
        transfer.initialize(spec.build((33, 33)), spec, tmp_path / "junk.weights.h5")
    with pytest.raises(transfer.TransferError, match="file not found"):
        transfer.initialize(spec.build((33, 33)), spec, tmp_path / "absent.weights.h5")


def test_the_trainer_initialises_a_fresh_run_only(tmp_path):
    from data import proxy
    from training.engine import Recipe, Trainer
    from training.pipeline import PanopticBatches

    root = proxy.write_dataset(tmp_path / "proxy", "train", count=2, size=(33, 33), seed=0)
    recipe = Recipe(steps=1, batch_size=1, crop_size=(33, 33), checkpoint_every=1)
    batches = PanopticBatches(root, "coco", "train", 1, (33, 33))
    calls = []
    def build():
        return _tiny_panoptic(classes=8).build((33, 33))  # proxy ids 1..7
    fresh = Trainer(build, batches, recipe, tmp_path / "run", initialize=calls.append)
    assert calls == [fresh.model]
    fresh.checkpoints.save(fresh.task_model, 1)  # as a trained step would
    Trainer(build, batches, recipe, tmp_path / "run", initialize=calls.append)  # resumes its checkpoint
    assert len(calls) == 1


def test_init_from_is_keyed_on_the_weights_and_checked_before_anything_runs(tmp_path):
    import dataclasses

    import run_all
    from runtime.cli import UsageError
    from training import identity

    experiment = experiments.panoptic_full("axial-deeplab-s-cityscapes", "cityscapes")

    def key(path):
        return identity.config_key(dataclasses.replace(experiment, recipe=dataclasses.replace(
            experiment.recipe, init_from=str(path))))

    (tmp_path / "a.weights.h5").write_bytes(b"a")
    first = key(tmp_path / "a.weights.h5")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "a.weights.h5").write_bytes(b"a")
    assert key(tmp_path / "elsewhere" / "a.weights.h5") == first     # where the file lies: the same run
    (tmp_path / "a.weights.h5").write_bytes(b"b")
    assert key(tmp_path / "a.weights.h5") != first                   # what it holds: another run
    assert identity.config_key(experiment) != first                  # and from the seed, another
    with pytest.raises(UsageError, match="file not found"):
        run_all.parse_arguments(["--tables", "6", "--fidelity", "full", "--data-dir", str(tmp_path),
                            "--init-from", str(tmp_path / "absent.h5")])
    with pytest.raises(UsageError, match="applies to --fidelity full"):
        run_all.parse_arguments(["--tables", "6", "--fidelity", "proxy", "--init-from", str(tmp_path / "a.weights.h5")])
    with pytest.raises(UsageError, match="--resume-changed resumes full runs"):
        run_all.parse_arguments(["--tables", "6", "--fidelity", "proxy", "--resume-changed"])
    spec = trained.initialised_from(importlib.import_module("reproductions.table6").SPEC, "/w.h5")
    assert {e.recipe.init_from for _, e in spec.full} == {"/w.h5"}


def test_the_imagenet_presets_are_axial_deeplabs_backbones_with_its_stem():
    from models import presets
    from training import transfer

    for size in ("s", "m", "l", "xl"):
        imagenet = presets.get(f"axial-deeplab-{size}-imagenet")
        panoptic = presets.get(f"axial-deeplab-{size}-cityscapes").model
        assert imagenet.model == transfer.imagenet_spec(panoptic) and imagenet.backbone.stem == "three_conv"
        assert imagenet.origin == "imagenet-init" and imagenet.name not in presets.paper_presets()


def test_pretrain_refuses_what_it_cannot_pretrain(capsys, tmp_path):
    from training import pretrain

    assert pretrain.main(["resnet50-deeplab-cityscapes", "--data-dir", str(tmp_path)]) == 2
    assert "not an ImageNet initialisation preset; they are: axial-deeplab-l-imagenet" in capsys.readouterr().err
    assert pretrain.main(["axial-deeplab-s-imagenet", "--data-dir", str(tmp_path), "--quiet"]) == 2
    assert f"dataset folder {tmp_path}/imagenet not found" in capsys.readouterr().err
    smoke = pretrain.pretraining_experiment("axial-deeplab-s-imagenet", smoke_test=True)
    assert smoke.recipe.crop_size == (65, 65) and smoke.recipe.batch_size == 2 and smoke.proxy_width is None


def test_a_full_run_trained_by_other_code_resumes_only_when_asked(tmp_path, monkeypatch, capsys):
    import json

    from training import identity

    monkeypatch.setattr(identity, "fingerprint", lambda experiment: {"model": "today"})
    monkeypatch.setattr(identity, "differences", lambda stored, experiment: [] if stored.get("model") == "today"
                        else ["model"])
    full = experiments.panoptic_full("axial-deeplab-s-cityscapes", "cityscapes")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "ckpt-1000.weights.h5").write_bytes(b"days of training")
    (run / "identity.json").write_text(json.dumps({"model": "yesterday"}))
    with pytest.raises(experiments.ExperimentError, match="trained by other code.*--resume-changed"):
        experiments.claim_workdir(run, full)
    assert (run / "checkpoints" / "ckpt-1000.weights.h5").exists()                     # nothing lost
    experiments.claim_workdir(run, full, resume_changed=True)
    assert (run / "checkpoints" / "ckpt-1000.weights.h5").exists()
    record = json.loads((run / "identity.json").read_text())
    assert record["model"] == "today" and record["resumed_across"][0]["stored"] == {"model": "yesterday"}
    assert "resuming the run" in capsys.readouterr().err
    experiments.claim_workdir(run, full)  # today's code wrote it now: no question, and the record stays
    assert json.loads((run / "identity.json").read_text())["resumed_across"] == record["resumed_across"]
    (run / "identity.json").write_text(json.dumps({"model": "yesterday"}))
    with pytest.raises(experiments.ExperimentError, match="trained by other code"):
        experiments.refuse_changed(run, full, resume_changed=False)  # what the other processes ask
    proxy = _on_the_proxy(full)
    (run / "identity.json").write_text(json.dumps({"model": "yesterday"}))
    experiments.claim_workdir(run, proxy)                                              # a proxy run is retrained
    assert not (run / "checkpoints").exists()


def _on_the_proxy(experiment):
    import dataclasses

    return dataclasses.replace(experiment, data=experiments.Data("panoptic-proxy", train=2, val=1,
                                                                 render_size=(33, 33)))


def test_parallel_input_workers_hand_over_the_same_batches_in_order(tmp_path):
    from keras.src.trainers.data_adapters.py_dataset_adapter import (
        PyDatasetAdapter,  # what fit iterates
    )

    from training.engine import StepBatches
    from training.pipeline import PanopticBatches

    write_fixture(tmp_path, "cityscapes", "train", images=3, scale=4)
    batches = PanopticBatches(tmp_path, "cityscapes", "train", 2, (33, 33), seed=1, class_of={1: 0, 7: 1},
                              in_memory=False)
    adapter = PyDatasetAdapter(StepBatches(batches, 3, 9, workers=3), shuffle=False)
    try:
        handed = list(adapter.get_numpy_iterator())
    finally:
        adapter.on_epoch_end()
    assert len(handed) == 6
    for step, (images, targets) in zip(range(3, 9), handed):
        expected_images, expected_targets = batches.batch(step)
        assert np.array_equal(images, expected_images)
        assert all(np.array_equal(targets[k], expected_targets[k]) for k in expected_targets)
