"""Reader of the COCO panoptic on-disk format, which serves all three of the paper's
panoptic datasets (Sec. 4): COCO, Cityscapes after the official `csCreatePanopticImgs`,
and Mapillary Vistas.  Nothing is downloaded: the user names the dataset root.

Every example carries the image, the semantic class per pixel (`ignore_label` on void),
the instance id per pixel (0 on stuff and void; 1..n per thing instance), a crowd mask,
and the segment-id map with its segments (for data/targets.py).  Thing and stuff come
from the category list's `isthing`.

The layout is checked before anything is read (a missing folder or JSON stops with one
message naming the expected layout); a missing, unreadable or truncated PNG, or a
segment id in a PNG but not in the JSON, stops with a message naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.targets import SegmentInfo, segment_index

# dataset -> (panoptic JSON, panoptic PNG folder, image folder), relative to the root.
LAYOUTS = {
    "coco": ("annotations/panoptic_{split}2017.json", "annotations/panoptic_{split}2017", "{split}2017"),
    "cityscapes": ("gtFine/cityscapes_panoptic_{split}.json", "gtFine/cityscapes_panoptic_{split}",
                   "leftImg8bit/{split}"),
    # Mapillary Vistas v1.2 as distributed: training/ and validation/, each with images/ and
    # v1.2/panoptic/ (the JSON beside its PNGs).
    "mapillary": ("{split}/v1.2/panoptic/panoptic_2018.json", "{split}/v1.2/panoptic", "{split}/images"),
}
# The split's folder name where a dataset does not call it train / val.
SPLIT_FOLDERS = {"mapillary": {"train": "training", "val": "validation"}}


class DatasetError(Exception):
    """A dataset on disk that cannot be read; the message names the file or the layout."""


@dataclass(frozen=True)
class Record:
    image_path: Path
    panoptic_path: Path
    segments: dict[int, SegmentInfo]
    image_id: str


def _folder(dataset: str, split: str) -> str:
    return SPLIT_FOLDERS.get(dataset, {}).get(split, split)


def _expected(dataset: str, split: str) -> str:
    return ", ".join(p.format(split=_folder(dataset, split)) for p in LAYOUTS[dataset])


def records(root: str | Path, dataset: str, split: str) -> tuple[list[Record], dict[int, dict]]:
    """The split's examples and categories, after checking the layout."""
    if dataset not in LAYOUTS:
        raise DatasetError(f"unknown dataset {dataset!r}; expected one of {sorted(LAYOUTS)}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root} (expected {_expected(dataset, split)} inside it)")
    json_path, png_dir, image_dir = (root / p.format(split=_folder(dataset, split)) for p in LAYOUTS[dataset])
    for path, kind in ((json_path, "file"), (png_dir, "folder"), (image_dir, "folder")):
        if not path.exists():
            raise DatasetError(f"{dataset} {split}: {kind} {path} not found; expected the layout "
                               f"{_expected(dataset, split)} under {root}")
    try:
        data = json.loads(json_path.read_text())
        categories = {int(c["id"]): c for c in data["categories"]}
        annotations = data["annotations"]
        images = {i["id"]: i for i in data.get("images", [])}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise DatasetError(f"{json_path} is not a COCO panoptic JSON ({error})") from None
    if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
        raise DatasetError(f"{json_path} is not a COCO panoptic JSON ('annotations' must be a list of "
                           "objects, one per image)")
    if not annotations:
        raise DatasetError(f"{json_path} lists no annotations: the {split} split has no images to read")
    out = []
    for ann in annotations:
        try:
            image_name = images[ann["image_id"]]["file_name"] if ann["image_id"] in images \
                else Path(ann["file_name"]).with_suffix(".jpg").name
            segments = {int(s["id"]): SegmentInfo(int(s["category_id"]),
                                                   bool(categories[int(s["category_id"])].get("isthing", 0)),
                                                   bool(s.get("iscrowd", 0)))
                        for s in ann["segments_info"]}
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise DatasetError(f"{json_path}: annotation of image {ann.get('image_id')!r} is malformed "
                               f"({error!r})") from None
        if dataset == "cityscapes":
            # Images sit in one folder per city, named <image id>_leftImg8bit.png
            # ("frankfurt_000000_000294_leftImg8bit.png").  csCreatePanopticImgs writes the JSON's
            # file_name as "<image id>_gtFine_leftImg8bit.png", a file that does not exist, so
            # the path is built from the image id, as deeplab2 and detectron2 build it.
            image_name = f"{ann['image_id']}_leftImg8bit.png"
            image_path = image_dir / image_name.split("_")[0] / image_name
        else:
            image_path = image_dir / image_name
        out.append(Record(image_path, png_dir / ann["file_name"], segments, str(ann["image_id"])))
    return out, categories


def _read_image(path: Path, mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return np.array(image.convert(mode))
    except FileNotFoundError:
        raise DatasetError(f"file not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DatasetError(f"cannot read {path} (corrupt or truncated: {error})") from None


def load_image_and_ids(record: Record) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, segment-id map) of an example, checked: every id is 0 (void) or in the JSON,
    and the two files are the same size.  What training needs (data/targets.py builds the rest)."""
    image = _read_image(record.image_path, "RGB")
    rgb = _read_image(record.panoptic_path, "RGB").astype(np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
    known = np.array(sorted(set(record.segments) | {0}), np.int64)
    unlisted = segment_index(ids, known) == len(known)
    if unlisted.any():
        unknown = np.unique(ids[unlisted]).tolist()
        raise DatasetError(f"{record.panoptic_path}: segment ids {unknown} are not in the JSON")
    if ids.shape != image.shape[:2]:
        raise DatasetError(f"{record.panoptic_path} is {ids.shape} but its image {record.image_path} is "
                           f"{image.shape[:2]}")
    return image, ids


def load_example(record: Record, ignore_label: int = 255) -> dict[str, np.ndarray]:
    """The image and segment ids, and the evaluation's per-pixel semantic class, thing instance
    (numbered from 1) and crowd mask."""
    image, ids = load_image_and_ids(record)
    semantic = np.full(ids.shape, ignore_label, np.int32)
    instance = np.zeros(ids.shape, np.int32)
    crowd = np.zeros(ids.shape, bool)
    next_instance = 1
    for segment_id, info in record.segments.items():
        mask = ids == segment_id
        semantic[mask] = info.category_id
        if info.iscrowd:
            crowd |= mask
        elif info.is_thing:
            instance[mask] = next_instance
            next_instance += 1
    return {"image": image, "semantic": semantic, "instance": instance, "crowd": crowd, "ids": ids}


def panoptic_dataset(root: str | Path, dataset: str, split: str, ignore_label: int = 255):
    """A tf.data.Dataset of (image, semantic, instance, crowd) for the split, read lazily."""
    import tensorflow as tf

    examples, _ = records(root, dataset, split)

    def generate():
        for record in examples:
            ex = load_example(record, ignore_label)
            yield ex["image"], ex["semantic"], ex["instance"], ex["crowd"]

    signature = (tf.TensorSpec((None, None, 3), tf.uint8), tf.TensorSpec((None, None), tf.int32),
                 tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None, None), tf.bool))
    return tf.data.Dataset.from_generator(generate, output_signature=signature)
