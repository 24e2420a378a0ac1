"""The panoptic tables at full fidelity (issue #26): declared experiments with the datasets'
recipes and evaluation, the smoke test's shrunk runs, the evaluation fits, and one run end to
end on a Cityscapes fixture in its real on-disk layout."""

import importlib

import numpy as np
import pytest

from reproductions import runner, trained
from tests.test_data_readers import CATEGORIES, write_fixture
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
        assert row in reported_rows and not row.endswith("-ms")  # multi-scale inference: not built yet
        assert experiment.proxy_width is None and not experiment.backbone_changes  # the preset's own model
        assert experiment.data.name == dataset and experiment.recipe == full_recipes.recipe(dataset)
        assert experiment.input_size == evaluation["eval_size"] and experiment.eval_fit == evaluation["eval_fit"]
        assert experiment.postprocess() == {name: evaluation[name] for name in (
            "stuff_area", "nms_kernel", "top_k", "center_threshold", "label_divisor")}
    presets = {row.row: row.preset for row in spec.rows}
    assert all(experiment.preset == (presets.get(row) or experiment.preset) for row, experiment in spec.full)


def test_the_smoke_test_shrinks_a_full_panoptic_run_and_nothing_else():
    cityscapes = trained.as_run(experiments.panoptic_full("axial-deeplab-s-cityscapes", "cityscapes"), True)
    assert cityscapes.recipe.crop_size == (65, 129) and cityscapes.input_size == (65, 129)
    assert cityscapes.recipe.batch_size == 2 and cityscapes.recipe.warmup_steps == 0
    assert cityscapes.eval_scale == 1 / 16 and cityscapes.eval_fit == "pad"  # 1024 x 2048 images into 65 x 129
    pixels = experiments.proxy_pixel_settings((65, 129))
    assert (cityscapes.stuff_area, cityscapes.nms_kernel, cityscapes.recipe.center_sigma) == (
        pixels.stuff_area, pixels.nms_kernel, pixels.center_sigma)
    assert cityscapes.preset == "axial-deeplab-s-cityscapes" and cityscapes.proxy_width is None
    coco = trained.as_run(experiments.panoptic_full("axial-deeplab-s-coco", "coco"), True)
    assert coco.input_size == (65, 65) and coco.eval_scale == 1.0 and coco.eval_fit == "longest-pad"
    full = experiments.panoptic_full("axial-deeplab-s-coco", "coco")
    assert trained.as_run(full, False) == full


class ConstantModel:
    """Heads that call every pixel `category` (stuff): where it lands on the ground truth shows
    how an evaluation fit maps outputs back."""

    def __init__(self, classes: int, index: int, stride: int = 4):
        self.classes, self.index, self.stride, self.inputs = classes, index, stride, []

    def predict_on_batch(self, images):
        self.inputs.append(images.shape[1:3])
        h, w = ((n - 1) // self.stride + 1 for n in images.shape[1:3])
        semantic = np.zeros((1, h, w, self.classes), np.float32)
        semantic[..., self.index] = 5.0
        return {"semantic": semantic, "center": np.zeros((1, h, w, 1), np.float32),
                "offset": np.zeros((1, h, w, 2), np.float32)}


@pytest.mark.parametrize("dataset,fit,size,scale,fed", [
    ("coco", "longest-pad", (65, 65), 1.0, (65, 65)),            # 192 x 256 resized to 48 x 65, padded
    ("mapillary", "longest-pad", (137, 137), 1.0, (137, 137)),
    ("cityscapes", "pad", (65, 129), 1 / 16, (65, 129)),         # 192 x 256 scaled to 12 x 16, padded
    ("cityscapes", "pad", (193, 257), 1.0, (193, 257)),          # deeplab2's: padded as it is
])
def test_evaluation_fits_return_outputs_on_the_ground_truth(tmp_path, dataset, fit, size, scale, fed):
    from data import coco_panoptic

    write_fixture(tmp_path, dataset, "val", images=1, scale=16)
    records, categories = coco_panoptic.records(tmp_path, dataset, "val")
    road = sorted(categories).index(7)
    model = ConstantModel(len(categories), road)
    metrics = experiments.evaluate_panoptic(model, records, categories, size, fit=fit, scale=scale, stuff_area=1)
    assert model.inputs == [fed]
    # Everything predicted road: road's segment matches (IoU of road with the non-void, non-crowd
    # pixels it covers), the people are missed.  A misaligned fit would not reach the ground
    # truth's shape, or would score road differently.
    assert metrics["PQ[road]"] > 50 and metrics["PQ[person]"] == 0
    assert len(CATEGORIES) == len(categories)


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


@pytest.mark.heavy
def test_run_all_full_smoke_test_end_to_end_on_a_cityscapes_fixture(tmp_path, monkeypatch, capsys):
    """The acceptance command's path (issue #26) on Cityscapes' real layout: declared rows,
    --data-dir, --rows, one seed, a shrunk training and evaluation, metrics printed."""
    import run_all

    for split in ("train", "val"):
        write_fixture(tmp_path / "data" / "cityscapes", "cityscapes", split, images=2, scale=16)
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
