"""Every preset builds and counts, equals its golden counts, and cites real paper rows."""

import importlib

import pytest

from models import presets
from reproductions import runner

ALL = presets.paper_presets()  # deeplab2-layout presets: tests/test_deeplab2.py


@pytest.mark.parametrize("name", ALL)
def test_preset_builds_counts_and_equals_golden(name):
    # measure_counts builds the preset symbolically and counts it (cached on disk by code
    # fingerprint, so run_all.py --check in the same CI run reuses these counts).
    counts = runner.measure_counts(name)
    assert counts["params"] > 0 and counts["madds"] > 0
    assert counts["params"] + counts["uncounted_params"] == sum(counts["params_by_op"].values())
    assert sum(counts["madds_by_op"].values()) == counts["madds"]
    golden = runner.load_golden()[name]
    assert (counts["params"], counts["madds"]) == (golden["params"], golden["madds"]), (
        "counts changed: update reproductions/golden_counts.json on purpose "
        "(python run_all.py --update-golden)"
    )


@pytest.mark.parametrize("name", ["resnet50", "full-axial-resnet-w0.5", "axial-deeplab-s-coco",
                                  "panoptic-deeplab-x71-mapillary"])
def test_preset_outputs(name):
    import keras

    preset = presets.get(name)
    with keras.StatelessScope():
        model = preset.build()
    if preset.model.__class__.__name__ == "ClassifierSpec":
        assert model.output.shape[-1] == 1000
    else:
        h, w = (-(-n // 4) for n in preset.input_size)
        assert model.output["semantic"].shape[1:] == (h, w, preset.model.num_classes)
        assert model.output["offset"].shape[1:] == (h, w, 2)


@pytest.mark.parametrize("name", ALL)
def test_preset_cites_rows_of_the_paper(name):
    preset = presets.get(name)
    assert preset.cites, f"{name} cites no paper row"
    for table, row in preset.cites:
        assert row in set(runner.load_reported(table)["row"]), f"{name}: no row {row!r} in table {table}"


@pytest.mark.parametrize("table", range(1, 10))
def test_every_paper_row_is_declared(table):
    spec = importlib.import_module(f"reproductions.table{table}").SPEC
    assert {r.row for r in spec.rows} == set(runner.load_reported(table)["row"])
    for r in spec.rows:
        if r.preset:
            assert (table, r.row) in presets.get(r.preset).cites


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(KeyError, match="known presets"):
        presets.get("axial-resnet-xxl")


def test_width_multiplier_scales_every_channel():
    spec = presets.get("axial-resnet-conv-stem-w0.5").backbone
    assert spec.stage_widths == (64, 128, 256, 512)
    assert spec.channels(64) == 32  # the stem scales too (Sec. 4.1: "all the channels")
