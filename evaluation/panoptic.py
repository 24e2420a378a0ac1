"""Command-line PQ evaluator for predictions on disk in the COCO panoptic format.

    python -m evaluation.panoptic --gt_json_file G.json --gt_folder G \\
        --pred_json_file P.json --pred_folder P [--json out.json]

Prints the same per-class and All / Things / Stuff table as the official script
(COCO panopticapi, Cityscapes' evalPanopticSemanticLabeling).  A PNG holds segment ids
as R + 256 G + 256^2 B; the JSON describes each segment (id, category_id, iscrowd, area).
Bad input stops with a one-line error naming the file (and, for a field of the wrong type, the
field: `annotations[0].segments_info[2].category_id`) and exit code 2; the JSONs are checked
whole before any PNG is read, and nothing is written.

Like the official script, ground-truth areas are the JSON's `area` fields and ground-truth
PNG ids the JSON does not describe are skipped (evaluation/panoptic_quality.py); where the
input does either, one note line on stderr says so, naming the first PNG concerned, and the
result is the official one.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from evaluation.panoptic_quality import PanopticQuality, Segment
from runtime.cli import OneLineParser, UsageError


class InputError(Exception):
    """Bad input; the message names the file."""


def rgb_to_id(color: np.ndarray) -> np.ndarray:
    color = color.astype(np.uint32)
    return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]


def load_json(path: str, what: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise InputError(f"{what} JSON not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{what} JSON is a folder, not a file: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise InputError(f"{what} JSON is not valid JSON: {path} ({error})") from None
    except OSError as error:  # permission denied, an I/O error
        raise InputError(f"{what} JSON cannot be read: {path} ({error.strerror or error})") from None
    annotations = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(annotations, list) or not all(
            isinstance(a, dict) and {"image_id", "file_name", "segments_info"} <= set(a) for a in annotations):
        raise InputError(f"{what} JSON is not COCO panoptic (needs 'annotations' with image_id, "
                         f"file_name, segments_info): {path}")
    if what == "ground-truth" and not (isinstance(data.get("categories"), list) and all(
            isinstance(c, dict) and "id" in c for c in data["categories"])):
        raise InputError(f"ground-truth JSON is not COCO panoptic (needs 'categories' with ids): {path}")
    check_fields(data, path, what)
    return data


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_flag(value) -> bool:
    return isinstance(value, (int, float)) and value in (0, 1)


def _is_area(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def check_fields(data: dict, path: str, what: str) -> None:
    """The types the evaluation relies on, field by field; InputError names the file and the
    first field that is wrong (`annotations[3].segments_info[0].category_id is "grass"; ...`).
    Ground-truth areas (the official PQ uses them) must be finite numbers >= 0."""
    def wrong(field: str, value, expected: str):
        shown = json.dumps(value)
        shown = shown if len(shown) <= 60 else shown[:56] + " ..."
        raise InputError(f"{what} JSON {path}: {field} is {shown}; expected {expected}")

    for k, category in enumerate(data.get("categories", []) if what == "ground-truth" else []):
        if not _is_int(category["id"]):
            wrong(f"categories[{k}].id", category["id"], "an integer")
        if "isthing" in category and not _is_flag(category["isthing"]):
            wrong(f"categories[{k}].isthing", category["isthing"], "0 or 1")
    for i, annotation in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        if not (_is_int(annotation["image_id"]) or isinstance(annotation["image_id"], str)):
            wrong(f"{where}.image_id", annotation["image_id"], "an integer or a string")
        if not isinstance(annotation["file_name"], str) or not annotation["file_name"]:
            wrong(f"{where}.file_name", annotation["file_name"], "the PNG's file name")
        segments = annotation["segments_info"]
        if not isinstance(segments, list):
            wrong(f"{where}.segments_info", segments, "a list of segments")
        for j, segment in enumerate(segments):
            field = f"{where}.segments_info[{j}]"
            if not isinstance(segment, dict):
                wrong(field, segment, "a segment ({'id': ..., 'category_id': ...})")
            for key in ("id", "category_id"):
                if key not in segment:
                    raise InputError(f"{what} JSON {path}: {field} (image {annotation['image_id']!r}) lacks {key!r}")
                if not _is_int(segment[key]):
                    wrong(f"{field}.{key}", segment[key], "an integer")
            if "iscrowd" in segment and not _is_flag(segment["iscrowd"]):
                wrong(f"{field}.iscrowd", segment["iscrowd"], "0 or 1")
            if what == "ground-truth" and "area" in segment and not _is_area(segment["area"]):
                wrong(f"{field}.area", segment["area"], "a finite number >= 0 (pixels)")


def load_png(folder: str, file_name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    path = Path(folder) / file_name
    try:
        with Image.open(path) as image:
            array = np.array(image.convert("RGB"))
    except FileNotFoundError:
        raise InputError(f"PNG not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"PNG is a folder, not a file: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise InputError(f"PNG cannot be read (corrupt or truncated): {path} ({error})") from None
    return rgb_to_id(array)


def segments_of(annotation: dict, json_path: str, with_area: bool = False) -> dict[int, Segment]:
    """The JSON's segments of one image (their fields checked by `check_fields`); ground truth
    keeps the JSON area (the official rule)."""
    return {int(s["id"]): Segment(int(s["category_id"]), bool(s.get("iscrowd", 0)),
                                  int(s["area"]) if with_area and "area" in s else None)
            for s in annotation["segments_info"]}


def evaluate(gt_json_file: str, gt_folder: str, pred_json_file: str, pred_folder: str,
             progress: bool = False) -> tuple[dict, dict]:
    """(results, categories) with results as PanopticQuality.result()."""
    for folder, what in ((gt_folder, "ground-truth"), (pred_folder, "prediction")):
        if not os.path.isdir(folder):
            raise InputError(f"{what} folder not found: {folder}")
    gt_json = load_json(gt_json_file, "ground-truth")
    if not gt_json["annotations"]:
        raise InputError(f"nothing to evaluate: the ground-truth JSON lists no annotations: {gt_json_file}")
    pred_json = load_json(pred_json_file, "prediction")
    categories = {int(c["id"]): c for c in gt_json["categories"]}
    metric = PanopticQuality({cid: bool(c.get("isthing", 0)) for cid, c in categories.items()})
    predictions = {a["image_id"]: a for a in pred_json["annotations"]}

    from tqdm import tqdm

    area_differs, undescribed = [], []  # (PNG, count) where the official rules change the result
    for gt_ann in tqdm(gt_json["annotations"], desc="images", unit="img", file=sys.stderr,
                       disable=None if progress else True):
        pred_ann = predictions.get(gt_ann["image_id"])
        if pred_ann is None:
            raise InputError(f"no prediction for image {gt_ann['image_id']!r} in {pred_json_file}")
        gt_ids = load_png(gt_folder, gt_ann["file_name"])
        pred_ids = load_png(pred_folder, pred_ann["file_name"])
        gt_segments = segments_of(gt_ann, gt_json_file, with_area=True)
        gt_png = Path(gt_folder) / gt_ann["file_name"]
        ids, counts = np.unique(gt_ids, return_counts=True)
        pixels = dict(zip(ids.tolist(), counts.tolist()))
        differing = sum(1 for k, s in gt_segments.items() if s.area is not None and s.area != pixels.get(k, 0))
        if differing:
            area_differs.append((gt_png, differing))
        extra = len(set(pixels) - {0} - set(gt_segments))
        if extra:
            undescribed.append((gt_png, extra))
        pred_segments = segments_of(pred_ann, pred_json_file)
        pred_png = Path(pred_folder) / pred_ann["file_name"]
        in_png = set(np.unique(pred_ids).tolist()) - {0}
        if in_png - set(pred_segments):
            raise InputError(f"segment ids {sorted(in_png - set(pred_segments))} are in {pred_png} but "
                             f"not in {pred_json_file}")
        if set(pred_segments) - in_png:
            raise InputError(f"segment ids {sorted(set(pred_segments) - in_png)} are in "
                             f"{pred_json_file} but not in {pred_png}")
        for segments, path in ((pred_segments, pred_json_file), (gt_segments, gt_json_file)):
            unknown = {s.category_id for s in segments.values()} - set(categories)
            if unknown:
                raise InputError(f"unknown category ids {sorted(unknown)} for image "
                                 f"{gt_ann['image_id']!r} in {path}")
        if gt_ids.shape != pred_ids.shape:
            raise InputError(f"{pred_png} is {pred_ids.shape} but its ground truth is {gt_ids.shape}")
        try:
            metric.update(gt_ids, gt_segments, pred_ids, pred_segments)
        except ValueError as error:
            raise InputError(f"image {gt_ann['image_id']!r} ({gt_json_file}): {error}") from None
    notes = []
    if area_differs:
        notes.append(f"{sum(n for _, n in area_differs)} ground-truth segment(s) in {len(area_differs)} image(s) "
                     f"have a JSON area unlike their pixel count (first: {area_differs[0][0]}); PQ uses the JSON "
                     "area, as the official script does")
    if undescribed:
        notes.append(f"{sum(n for _, n in undescribed)} ground-truth PNG id(s) in {len(undescribed)} image(s) are "
                     f"not in the JSON (first: {undescribed[0][0]}); they are skipped, as the official script "
                     "does")
    for line in notes:
        print(f"note: {line}", file=sys.stderr)
    return metric.result(), categories


def format_results(results: dict, categories: dict) -> str:
    """The official script's table; a split without classes prints '-'."""
    lines = ["{:14s}| {:>5s}  {:>5s}  {:>5s}".format("Category", "PQ", "SQ", "RQ")]
    for label in sorted(results["per_class"]):
        r = results["per_class"][label]
        name = str(categories[label].get("name", label))
        lines.append("{:14s}| {:5.1f}  {:5.1f}  {:5.1f}".format(name, 100 * r["pq"], 100 * r["sq"], 100 * r["rq"]))
    lines.append("-" * 41)
    lines.append("{:14s}| {:>5s}  {:>5s}  {:>5s} {:>5s}".format("", "PQ", "SQ", "RQ", "N"))
    for name in ("All", "Things", "Stuff"):
        r = results[name]
        if r["n"] == 0:
            lines.append("{:14s}| {:>5s}  {:>5s}  {:>5s} {:5d}".format(name, "-", "-", "-", 0))
        else:
            lines.append("{:14s}| {:5.1f}  {:5.1f}  {:5.1f} {:5d}".format(
                name, 100 * r["pq"], 100 * r["sq"], 100 * r["rq"], r["n"]))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = OneLineParser(
        prog="python -m evaluation.panoptic",
        description="Panoptic Quality of COCO-panoptic-format predictions, computed as the "
                    "official COCO / Cityscapes scripts do.")
    parser.add_argument("--gt_json_file", required=True, help="ground-truth COCO panoptic JSON")
    parser.add_argument("--gt_folder", required=True, help="folder of ground-truth panoptic PNGs")
    parser.add_argument("--pred_json_file", required=True, help="prediction COCO panoptic JSON")
    parser.add_argument("--pred_folder", required=True, help="folder of predicted panoptic PNGs")
    parser.add_argument("--json", help="also write the results (per split and per class) to this file")
    try:
        args = parser.parse_args(argv)
    except (InputError, UsageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    from runtime.files import WriteError, write_atomic

    try:
        if args.json and Path(args.json).is_dir():  # before the evaluation, not after it
            raise InputError(f"--json names a folder, not a file: {args.json}")
        results, categories = evaluate(args.gt_json_file, args.gt_folder, args.pred_json_file,
                                       args.pred_folder, progress=True)
        print(format_results(results, categories))
        if args.json:
            serialisable = dict(results, per_class={str(k): v for k, v in results["per_class"].items()})
            write_atomic(Path(args.json), json.dumps(serialisable, indent=2, sort_keys=True) + "\n")
    except (InputError, WriteError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0

if __name__ == "__main__":
    sys.exit(main())
