"""The full-fidelity panoptic recipes as data (training/full_recipes.py, recipes/panoptic.csv):
complete, sourced, equal to deeplab2's evaluation settings and to the losses the code trains
with, and shown in the README as they are in the file."""

import pytest

from training import full_recipes, losses


def test_every_dataset_has_every_setting_with_a_source():
    rows = full_recipes.table()
    assert {(d, s) for d in full_recipes.DATASETS for s in full_recipes.SETTINGS} <= set(rows)
    for (dataset, name), row in rows.items():
        assert row["status"] in full_recipes.STATUSES
        assert len(row["source"]) > 20, (dataset, name)  # a source or the reason for an assumption
        full_recipes.setting(dataset, name)  # parses


def test_deeplab2s_evaluation_settings():
    """deeplab2's configs: Cityscapes (axial_deeplab) and COCO (panoptic_deeplab)."""
    assert full_recipes.evaluation("cityscapes") == {"eval_size": (1025, 2049), "eval_fit": "pad",
                                                     "center_threshold": 0.1, "nms_kernel": 13, "top_k": 400,
                                                     "stuff_area": 2048, "label_divisor": 1000,
                                                     "validate_every": 5000}
    coco = full_recipes.evaluation("coco")
    assert (coco["nms_kernel"], coco["top_k"], coco["stuff_area"], coco["label_divisor"]) == (41, 400, 4096, 256)
    assert coco["eval_fit"] == "longest-pad"


def test_recipes_follow_the_paper_and_panoptic_deeplab():
    cityscapes = full_recipes.recipe("cityscapes", seed=3)
    assert (cityscapes.steps, cityscapes.batch_size, cityscapes.crop_size) == (60000, 32, (1025, 2049))
    assert (cityscapes.optimizer, cityscapes.learning_rate, cityscapes.seed) == ("radam-lookahead", 0.001, 3)
    assert (cityscapes.center_sigma, cityscapes.small_instance_area) == (8.0, 4096)
    assert full_recipes.setting("coco", "scale_range") == (0.5, 1.5)
    assert full_recipes.recipe("coco").steps == 200000 and full_recipes.recipe("coco").scale_range == (0.5, 1.5)
    # Sec. 4's sentence is the source of the optimiser and rate on every dataset.
    for dataset in full_recipes.DATASETS:
        assert full_recipes.table()[dataset, "optimizer"]["status"] == "paper"
        assert full_recipes.table()[dataset, "learning_rate"]["status"] == "paper"


def test_the_losses_the_code_trains_with_are_panoptic_deeplabs():
    """The loss weights are the code's constants (training/losses.py), the same as deeplab2's configs."""
    assert (losses.SEMANTIC_WEIGHT, losses.CENTER_WEIGHT, losses.OFFSET_WEIGHT, losses.TOP_K_FRACTION) == \
        (1.0, 200.0, 0.01, 0.2)


def refused(text: str, tmp_path, monkeypatch) -> str:
    """The one-line error of a recipe file holding `text`."""
    broken = tmp_path / "panoptic.csv"
    broken.write_text(text)
    monkeypatch.setattr(full_recipes, "RECIPES_FILE", broken)
    full_recipes.table.cache_clear()
    try:
        with pytest.raises(full_recipes.RecipeFileError) as error:
            full_recipes.table()
    finally:
        full_recipes.table.cache_clear()
    assert "\n" not in str(error.value)
    return str(error.value)


def test_a_damaged_recipe_file_is_a_one_line_error(tmp_path, monkeypatch):
    text = full_recipes.RECIPES_FILE.read_text()
    missing = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("coco,nms_kernel,"))
    assert "no value for coco nms_kernel" in refused(missing, tmp_path, monkeypatch)
    unquoted = text.replace('"Sec. 4: ""with the same learning rate 0.001"""', "Sec. 4, the same learning rate", 1)
    assert "learning_rate: not 5 fields" in refused(unquoted, tmp_path, monkeypatch)


def test_the_readme_shows_the_recipe_table_as_the_file_holds_it():
    readme = (full_recipes.RECIPES_FILE.parent.parent / "README.md").read_text()
    assert full_recipes.markdown() in readme
