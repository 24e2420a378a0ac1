"""The paper's panoptic recipes at full fidelity, one per dataset, read from recipes/panoptic.csv
(issue #26, part 1).

Sec. 4: "we strictly follow Panoptic-DeepLab [19], except using a linear warm up RAdam +
Lookahead optimizer (with the same learning rate 0.001)", with ImageNet-pretrained backbones.
Every value is data, in one file, each with its source: the paper, Panoptic-DeepLab's recipe
where the paper defers to it, deeplab2's configuration files as the reference implementation, or
`assumed` with the reason where no source here gives it (the README's "Full fidelity" shows the
table).  `recipe(dataset)` gives the training Recipe, `evaluation(dataset)` the post-processing
and evaluation input, `setting(dataset, name)` any one value.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

from training.recipe import Recipe

RECIPES_FILE = Path(__file__).resolve().parent.parent / "recipes" / "panoptic.csv"
DATASETS = ("cityscapes", "coco", "mapillary")
STATUSES = ("paper", "panoptic-deeplab", "deeplab2", "assumed")
SETTINGS = ("crop_size", "batch_size", "steps", "optimizer", "learning_rate", "warmup_steps", "schedule",
            "scale_range", "center_sigma", "small_instance_area", "bn_momentum", "init", "eval_size",
            "eval_fit", "center_threshold", "nms_kernel", "top_k", "stuff_area", "label_divisor", "validate_every")
EVAL_FITS = ("pad", "longest-pad")  # training/experiments.py evaluate_panoptic


class RecipeFileError(ValueError):
    """recipes/panoptic.csv is missing a value, or holds one that does not parse."""


@functools.lru_cache(maxsize=None)
def table() -> dict[tuple[str, str], dict]:
    """{(dataset, setting): {"value", "status", "source"}} from recipes/panoptic.csv."""
    rows = {}
    with RECIPES_FILE.open(newline="") as handle:
        for line in csv.DictReader(handle):
            key = (line["dataset"], line["setting"])
            if None in line or None in line.values():  # a line of more or fewer fields than the header
                raise RecipeFileError(f"{RECIPES_FILE.name}: {key[0]} {key[1]}: not 5 fields (quote a source "
                                      "that holds a comma)")
            if key in rows:
                raise RecipeFileError(f"{RECIPES_FILE.name}: {key[0]} {key[1]} is given twice")
            if line["status"] not in STATUSES:
                raise RecipeFileError(f"{RECIPES_FILE.name}: {key[0]} {key[1]}: unknown status {line['status']!r}")
            rows[key] = {"value": line["value"], "status": line["status"], "source": line["source"]}
    missing = [(d, s) for d in DATASETS for s in SETTINGS if (d, s) not in rows]
    if missing:
        raise RecipeFileError(f"{RECIPES_FILE.name}: no value for " + ", ".join(f"{d} {s}" for d, s in missing))
    return rows


def setting(dataset: str, name: str):
    """One value, parsed: sizes "HxW" as (H, W), ranges "a-b" as (a, b), numbers as numbers."""
    text = table()[dataset, name]["value"]
    try:
        if name in ("crop_size", "eval_size"):
            height, width = text.split("x")
            return int(height), int(width)
        if name == "scale_range":
            low, high = text.split("-")
            return float(low), float(high)
        if name in ("batch_size", "steps", "warmup_steps", "small_instance_area", "nms_kernel", "top_k",
                    "stuff_area", "label_divisor", "validate_every"):
            return int(text)
        if name in ("learning_rate", "center_sigma", "bn_momentum", "center_threshold"):
            return float(text)
        if name == "eval_fit" and text not in EVAL_FITS:
            raise ValueError(text)
    except ValueError:
        raise RecipeFileError(f"{RECIPES_FILE.name}: {dataset} {name}: cannot read {text!r}") from None
    return text


def recipe(dataset: str, seed: int = 0) -> Recipe:
    """The training recipe of `dataset` (checkpoints every 1000 steps, as deeplab2's configs)."""
    return Recipe(steps=setting(dataset, "steps"), batch_size=setting(dataset, "batch_size"),
                  crop_size=setting(dataset, "crop_size"), learning_rate=setting(dataset, "learning_rate"),
                  warmup_steps=setting(dataset, "warmup_steps"), checkpoint_every=1000, seed=seed,
                  optimizer=setting(dataset, "optimizer"), schedule=setting(dataset, "schedule"),
                  center_sigma=setting(dataset, "center_sigma"),
                  small_instance_area=setting(dataset, "small_instance_area"),
                  scale_range=setting(dataset, "scale_range"))


def evaluation(dataset: str) -> dict:
    """The evaluation input size, how an image fits it, and PostProcessConfig's settings of `dataset`."""
    return {"eval_size": setting(dataset, "eval_size"), "eval_fit": setting(dataset, "eval_fit"),
            **{name: setting(dataset, name) for name in ("center_threshold", "nms_kernel", "top_k", "stuff_area",
                                                         "label_divisor", "validate_every")}}


def markdown() -> str:
    """The recipe table for the README: one line per setting, a column per dataset, each value
    with its status (sources in recipes/panoptic.csv)."""
    rows = table()
    lines = ["| setting | " + " | ".join(DATASETS) + " |", "|---|" + "---|" * len(DATASETS)]
    for name in SETTINGS:
        cells = [f"{rows[d, name]['value']} ({rows[d, name]['status']})" for d in DATASETS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
