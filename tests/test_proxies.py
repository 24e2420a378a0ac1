"""The proxy design rules of reproductions/proxies.py (README, "Proxy fidelity"), checked on
every declared proxy experiment without training anything."""

import importlib

import pytest

from models import presets
from reproductions import proxies, trained

TABLES = [importlib.import_module(f"reproductions.table{n}").SPEC for n in range(1, 10)]
DECLARED = [(spec.table, row, e) for spec in TABLES for row, e in spec.proxy]


def test_the_claims_tables_declare_proxies():
    assert {table for table, _, _ in DECLARED} == {1, 2, 4, 6, 7, 8, 9}


@pytest.mark.parametrize("table,row,experiment", DECLARED, ids=[f"{t}-{r}" for t, r, _ in DECLARED])
def test_every_proxy_keeps_its_last_stage_larger_than_one_position(table, row, experiment):
    backbone = presets.get(experiment.preset).backbone
    stride = backbone.output_stride
    side = min((n - 1) // stride + 1 if experiment.data.task == "panoptic" else n // stride
               for n in experiment.input_size)
    assert side >= 2, f"{row}: the last stage is {side}x{side} at {experiment.input_size}"


def test_spans_keep_the_papers_ratio_to_the_feature_map():
    table7 = importlib.import_module("reproductions.table7").SPEC
    # Small scale, 65 px scenes: 5-row maps at output stride 16 (Cityscapes: 65 rows).
    spans = {row: dict(e.backbone_changes).get("span") for row, e in table7.proxy}
    assert spans == {"resnet101": None, "axial-resnet-l-span5": 1, "axial-resnet-l-span9": 1,
                     "axial-resnet-l-span17": 1, "axial-resnet-l-span33": 3, "axial-resnet-l-span65": 5}
    # Large scale, 257 px: 17-row maps, where the five spans stay five.
    spans = {row: dict(e.backbone_changes).get("span") for row, e in trained.declared(table7, "proxy", "large")}
    assert [spans[f"axial-resnet-l-span{s}"] for s in (5, 9, 17, 33, 65)] == [1, 3, 5, 9, 17]
    # The span figure's ticks name the same spans.
    from reproductions import proxy_figures

    assert proxy_figures.proxy_spans("small") == {5: 1, 9: 1, 17: 1, 33: 3, 65: 5}
    assert proxy_figures.proxy_spans("large") == {5: 1, 9: 3, 17: 5, 33: 9, 65: 17}
    # Global attention stays global; the Full models' local span 15 at 224 px scales with the image.
    assert proxies.classification("axial-resnet-conv-stem-w0.5").backbone_changes == ()
    assert proxies.classification("full-axial-resnet-w0.5").backbone_changes == (("span", 5),)
    large = proxies.at_scale(proxies.classification("full-axial-resnet-w0.5"), "large")
    assert large.input_size == (128, 128) and large.backbone_changes == (("span", 9),)


def test_the_scale_stress_test_evaluates_above_the_training_resolution():
    pairs = dict(importlib.import_module("reproductions.table2").SPEC.proxy)
    for row in ("axial-deeplab-l", "panoptic-deeplab-x71"):
        assert max(pairs[row].test_ratios) == 4.0 and min(pairs[row].test_ratios) < 1.0


def test_the_large_scale_multiplies_steps_data_and_seeds():
    small = proxies.panoptic("resnet50-deeplab-cityscapes")
    large = proxies.at_scale(small, "large")
    assert large.recipe.steps == 4 * small.recipe.steps and large.data.train == 4 * small.data.train
    assert large.data.val == 4 * small.data.val
    assert large.input_size == large.recipe.crop_size == large.data.render_size == (257, 257)
    assert large.stuff_area == proxies.pixel_settings((257, 257)).stuff_area > small.stuff_area
    assert proxies.at_scale(small, "small") == small
    assert len(proxies.SCALES["large"].seeds) >= 5 > len(proxies.SCALES["small"].seeds) >= 3
    spec = importlib.import_module("reproductions.table6").SPEC
    assert all(e.recipe.steps == 4 * proxies.PANOPTIC_RECIPE.steps
               for _, e in trained.declared(spec, "proxy", "large"))


def test_scale_stress_cells_are_measured_only_beside_the_papers_cells():
    spec = importlib.import_module("reproductions.table2").SPEC
    cells = trained._cells(spec, dict(spec.proxy))
    ratios = {c["metric"] for c in cells if c["row"] == "axial-deeplab-l" and "@" in c["metric"]}
    assert ratios == {f"{m}@{r:g}" for m in ("PQ", "PQ_Th", "PQ_St") for r in proxies.SCALE_STRESS_RATIOS}
    assert not any("@" in c["metric"] for c in cells if c["row"] == "axial-deeplab-s")
    assert all(c["value"] == "" for c in cells if "@" in c["metric"])


def test_the_command_line_knows_the_scales_and_their_seeds():
    # run_all.py names them without importing the proxies (its arguments are checked before any library loads).
    import run_all

    assert run_all.PROXY_SCALES == tuple(proxies.SCALES)
    assert run_all.LARGE_SCALE_SEEDS == proxies.SCALES["large"].seeds
    assert run_all.DEFAULT_SEEDS == proxies.SCALES["small"].seeds
