"""deeplab2's Axial-DeepLab model zoo on Cityscapes val, full fidelity: a released checkpoint,
converted (models/checkpoints.py), evaluated by this suite, beside the zoo table's numbers.

    python -m models.checkpoints deeplab2 CKPT --preset deeplab2-max-deeplab-s-backbone-cityscapes \\
        --output zoo/max_s.weights.h5
    python -m reproductions.model_zoo --weights zoo/max_s.weights.h5 --data-dir DATA

The table is g3doc/projects/axial_deeplab.md's "Cityscapes Panoptic Segmentation" (beside the
checkout as ../shared/paper/003_aa2f8f118d60f19e.txt), transcribed in reported/model_zoo.csv:
its columns evaluated "by the official script" ([*]: PQ, mIoU), which this suite's evaluator
reproduces (README, "Evaluation").  The [**] columns (deeplab2's own pipeline, and AP^Mask) are
not transcribed.

Protocol, as deeplab2's evaluation of these models (configs/cityscapes/axial_deeplab/*.textproto,
evaluator.proto, trainer/evaluator.py): single scale; each 1024 x 2048 image padded at the
bottom and right to 1025 x 2049 with the mean pixel; the heads upsampled with aligned corners
to that size (offsets rescaled); Panoptic-DeepLab post-processing with center threshold 0.1,
NMS kernel 13, the top 400 centers, stuff area 2048, label divisor 1000, thing classes from
the dataset's categories (Cityscapes' 11-18); the prediction cropped back; PQ and mIoU over
the 500 val images of DATA/cityscapes/ (data/coco_panoptic.py's layout, after the official
csCreatePanopticImgs).  One difference: deeplab2 keeps, of more than 400 centers, those scoring
above the 400th, this suite the 400 highest (equal unless scores tie at the cut).

Writes tables/model_zoo.full.csv and .md (columns as tables/table<N>.csv), one line per
reported cell.  One run evaluates one checkpoint; rows measured by earlier runs are kept, so
the table fills up model by model.  Status: `match` when the measured value rounds to the
printed one, else `off`; rows not evaluated yet are `not_measured`.  Expected time: about a
second per image for the smaller models on a recent GPU; hours on 2 CPU cores.

`--input-size H W` builds the model at another (padded) input size: only for quick checks on
small images (the tests' tiny Cityscapes fixture); the table's protocol is 1025 x 2049.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from reproductions import runner
from runtime.cli import OneLineParser
from training import full_recipes

REPORTED_FILE = runner.REPORTED_DIR / "model_zoo.csv"
STEM = "model_zoo.full"
# deeplab2's Cityscapes evaluator settings for the zoo (see the module docstring): the same as
# the full path's Cityscapes evaluation (recipes/panoptic.csv), read from one place.
POSTPROCESS = {name: full_recipes.evaluation("cityscapes")[name]
               for name in ("center_threshold", "nms_kernel", "top_k", "stuff_area", "label_divisor")}


class ZooError(Exception):
    """Bad input: printed as one line, exit code 2."""


def load_reported() -> pd.DataFrame:
    return pd.read_csv(REPORTED_FILE, dtype=str, keep_default_na=False)


def resolve(args):
    """The preset (with its overrides) the weights belong to: from the converter's sidecar
    OUT.json, or --preset and the override flags."""
    from models import checkpoints

    weights = Path(args.weights)
    if not weights.is_file():
        raise ZooError(f"weights not found: {weights}")
    try:
        record = checkpoints.read_sidecar(weights)
        cli_overrides = checkpoints.overrides_from(args)
    except checkpoints.ConversionError as error:
        raise ZooError(str(error)) from None
    if record is None and not args.preset:
        raise ZooError(f"no {checkpoints.sidecar_path(weights).name} beside {weights.name} (written by "
                       "python -m models.checkpoints): name the model with --preset")
    name = args.preset or record["preset"]
    overrides = dict(record.get("overrides", {})) if record else {}
    if record and args.preset and args.preset != record["preset"]:
        raise ZooError(f"--preset {args.preset} but {weights.name} was converted for {record['preset']}")
    if "num_blocks" in overrides:
        overrides["num_blocks"] = tuple(overrides["num_blocks"])
    overrides.update(cli_overrides)
    try:
        preset = checkpoints.resolve_preset(name, overrides)
    except checkpoints.ConversionError as error:
        raise ZooError(str(error)) from None
    if not preset.zoo_row:
        raise ZooError(f"{name} is not a model of the Cityscapes model zoo; its presets are "
                       "deeplab2-...-cityscapes")
    return preset, overrides, record


def evaluate(preset, weights, data_dir, input_size) -> tuple[dict, int]:
    """Metrics of the converted model on Cityscapes val, and the number of images."""
    from data import coco_panoptic
    from training.experiments import ExperimentError, evaluate_panoptic

    try:
        records, categories = coco_panoptic.records(Path(data_dir) / "cityscapes", "cityscapes", "val")
    except coco_panoptic.DatasetError as error:
        raise ZooError(str(error)) from None
    if len(categories) != preset.model.num_classes:
        raise ZooError(f"{preset.name} predicts {preset.model.num_classes} classes but the dataset has "
                       f"{len(categories)} categories")
    model = preset.build(input_size)
    try:
        model.load_weights(str(weights))
    except (ValueError, OSError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ZooError(f"{weights} does not load into {preset.name}: {first}") from None
    try:
        metrics = evaluate_panoptic(model, records, categories, input_size,
                                    fit=full_recipes.evaluation("cityscapes")["eval_fit"], **POSTPROCESS)
    except (coco_panoptic.DatasetError, ExperimentError) as error:
        raise ZooError(str(error)) from None
    return metrics, len(records)


def build_table(reported: pd.DataFrame, previous: pd.DataFrame | None, row: str | None, metrics: dict,
                note: str) -> pd.DataFrame:
    """One line per reported cell: the evaluated row's new values, earlier measurements kept."""
    earlier = {}
    if previous is not None:
        for _, line in previous.iterrows():
            if line["measured"] != "":
                earlier[(line["row"], line["metric"])] = line.to_dict()
    lines = []
    for _, cell in reported.iterrows():
        key = (cell["row"], cell["metric"])
        line = {"table": "model_zoo", "row": cell["row"], "metric": cell["metric"], "unit": cell["unit"],
                "reported": cell["value"], "measured": "", "fidelity": "full", "delta": "", "rel_delta": "",
                "status": "not_measured", "note": "no converted checkpoint evaluated yet "
                                                  "(python -m reproductions.model_zoo --help)"}
        value = metrics.get(cell["metric"]) if cell["row"] == row else None
        if cell["row"] == row and value is None:
            line["note"] = f"{note}; no value (no class of this kind in the ground truth)"
        elif value is not None:
            delta = value - float(cell["value"])
            line.update(measured=f"{value:.4f}", delta=f"{delta:+.4f}",
                        rel_delta=f"{delta / float(cell['value']):+.4f}",
                        status="match" if runner.rounds_to(value, cell["value"]) else "off", note=note)
        elif key in earlier and cell["row"] != row:
            line = {c: earlier[key].get(c, "") for c in runner.COLUMNS}
        lines.append(line)
    return pd.DataFrame(lines, columns=runner.COLUMNS).fillna("")


def to_markdown(df: pd.DataFrame) -> str:
    lines = ["# deeplab2's Axial-DeepLab model zoo, Cityscapes val (full fidelity)", "",
             "Reported = g3doc/projects/axial_deeplab.md, columns evaluated by the official script [*] "
             "(reported/model_zoo.csv); measured = a released checkpoint converted by "
             "`python -m models.checkpoints deeplab2` and evaluated by this suite with deeplab2's protocol. "
             "Generated by `python -m reproductions.model_zoo`; do not edit.", "",
             "| row | metric | reported | measured | delta | status | note |", "|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(r[c]).replace("|", "\\|") for c in
                                        ("row", "metric", "reported", "measured", "delta", "status", "note")) + " |")
    return "\n".join(lines) + "\n"


def make_parser() -> argparse.ArgumentParser:
    from models import checkpoints
    from runtime import backend

    parser = OneLineParser(
        prog="python -m reproductions.model_zoo",
        description="Evaluate a converted deeplab2 Cityscapes checkpoint on Cityscapes val and write the "
                    "model zoo table (tables/model_zoo.full.csv/.md) with the reported numbers beside it.")
    parser.add_argument("--weights", required=True, help="OUT.weights.h5 written by python -m models.checkpoints")
    parser.add_argument("--data-dir", required=True, help="folder holding cityscapes/ (README, 'Full fidelity')")
    parser.add_argument("--preset", help="the deeplab2-...-cityscapes preset (default: from OUT.json)")
    checkpoints.add_override_arguments(parser)
    backend.add_argument(parser)
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="padded evaluation input (default: the preset's 1025 x 2049; smaller only for checks)")
    parser.add_argument("--output-dir", default=str(runner.TABLES_DIR), help="where the table goes (default tables/)")
    return parser


def main(argv=None) -> int:
    from runtime import backend
    from runtime.files import WriteError

    argv = sys.argv[1:] if argv is None else argv
    try:
        backend.choose_from_argv(argv)
    except backend.BackendError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args = make_parser().parse_args(argv)
    try:
        preset, overrides, record = resolve(args)
        input_size = tuple(args.input_size) if args.input_size else preset.input_size
        metrics, images = evaluate(preset, args.weights, args.data_dir, input_size)
    except ZooError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    source = record["source"]["checkpoint"] if record else args.weights
    note = (f"full: {preset.name} from {source}, Cityscapes val ({images} images) at "
            f"{input_size[0]}x{input_size[1]}, deeplab2's protocol")
    if overrides:
        note += f"; a variant ({', '.join(f'{k}={v}' for k, v in overrides.items())}), not the released model"
    out_dir = Path(args.output_dir)
    csv_path = out_dir / f"{STEM}.csv"
    previous = pd.read_csv(csv_path, dtype=str, keep_default_na=False) if csv_path.exists() else None
    df = build_table(load_reported(), previous, preset.zoo_row, metrics, note)
    try:
        runner.write_atomic(csv_path, df.to_csv(index=False))
        runner.write_atomic(out_dir / f"{STEM}.md", to_markdown(df))
    except WriteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    shown = ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if v is not None)
    print(f"{preset.zoo_row}: {shown} ({images} images); wrote {csv_path} and {STEM}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
