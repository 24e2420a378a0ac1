"""ImageNet readers for the classification results, Tab. 1 and Tab. 9 (paper Sec. 4.1:
ILSVRC-2012, 1.28M training and 50k validation images, 1000 classes).  Nothing is ever
downloaded: the user names the dataset root, in one of two on-disk layouts.

1. "tfds": the official archives `<root>/ILSVRC2012_img_train.tar` (one `<wnid>.tar` per
   class inside, JPEGs inside those) and `<root>/ILSVRC2012_img_val.tar`
   (`ILSVRC2012_val_%08d.JPEG`; tensorflow-datasets ships their labels in its package).
   tensorflow-datasets' `imagenet2012` builder turns them into TFRecords once, under a
   data_dir (default `<root>/tfds`), with every GCS look-up switched off.
2. "folders": a class-per-folder tree `<root>/<split>/<class_name>/<image>` with split
   "train" or "val"; the classes are the sorted folder names and a label is the index
   in that sorted list.

Both yield (image uint8 [H, W, 3], label int64 scalar).  The layout is checked before
anything is read; a missing archive or folder, an empty class folder, or a truncated or
corrupt image stops with a one-line DatasetError naming the path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data.coco_panoptic import DatasetError

TRAIN_ARCHIVE = "ILSVRC2012_img_train.tar"
VAL_ARCHIVE = "ILSVRC2012_img_val.tar"
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}

LAYOUT_HELP = (f"either the official archives <root>/{TRAIN_ARCHIVE} and <root>/{VAL_ARCHIVE} "
               f"(download them from https://image-net.org and place them there; tensorflow-datasets "
               f"prepares them once) or a class-per-folder tree <root>/{{train,val}}/<class_name>/"
               f"<images .jpeg/.jpg/.png>")

# Our split names -> tensorflow-datasets' and the folder layout's.
_TFDS_SPLITS = {"train": "train", "val": "validation", "validation": "validation"}
_FOLDER_SPLITS = {"train": "train", "val": "val", "validation": "val"}


def detect_layout(root: str | Path) -> str:
    """"tfds" when an official archive is in root, "folders" when a train/ or val/ folder is."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"ImageNet folder not found: {root}; expected {LAYOUT_HELP}")
    # The archives win: a root holding both would otherwise be read two different ways.
    if (root / TRAIN_ARCHIVE).is_file() or (root / VAL_ARCHIVE).is_file():
        return "tfds"
    if (root / "train").is_dir() or (root / "val").is_dir():
        return "folders"
    raise DatasetError(f"no ImageNet layout found in {root}; expected {LAYOUT_HELP}")


def _split(split: str, names: dict[str, str]) -> str:
    if split not in names:
        raise DatasetError(f"unknown ImageNet split {split!r}; expected one of {sorted(names)}")
    return names[split]


def class_folder_records(root: str | Path, split: str) -> tuple[list[tuple[Path, int]], list[str]]:
    """(image path, label) for every image of the split, class by class and file by file
    in sorted order, and the sorted class names (label i is class_names[i])."""
    split_dir = Path(root) / _split(split, _FOLDER_SPLITS)
    expected = f"expected {split_dir}/<class_name>/<images .jpeg/.jpg/.png>"
    if not split_dir.is_dir():
        raise DatasetError(f"ImageNet split folder not found: {split_dir}; {expected}")
    # Hidden folders (".ipynb_checkpoints", ...) are not classes.
    class_names = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_names:
        raise DatasetError(f"no class folders in {split_dir}; {expected}")
    records = []
    for label, name in enumerate(class_names):
        images = sorted(p for p in (split_dir / name).iterdir()
                        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        if not images:
            raise DatasetError(f"class folder {split_dir / name} has no images; {expected}")
        records.extend((path, label) for path in images)
    return records, class_names


def read_image(path: str | Path) -> np.ndarray:
    """The image as uint8 [H, W, 3] RGB (grayscale, CMYK, palette and RGBA converted)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            # Image.open only reads the header; load() decodes the pixels, and fails on a
            # truncated file as long as ImageFile.LOAD_TRUNCATED_IMAGES is False (PIL's default,
            # never changed here), instead of padding the missing rows with grey.
            image.load()
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"cannot read image {path} (corrupt, truncated or not an image: {error})") from None


def _folder_dataset(root: Path, split: str):
    import tensorflow as tf

    records, class_names = class_folder_records(root, split)

    def generate():
        for path, label in records:
            # Decoded here, not with tf.io, so that a bad file's error names it.
            yield read_image(path), np.int64(label)

    signature = (tf.TensorSpec((None, None, 3), tf.uint8), tf.TensorSpec((), tf.int64))
    return tf.data.Dataset.from_generator(generate, output_signature=signature), class_names


def _tfds_dataset(root: Path, split: str, data_dir: str | Path | None):
    tfds_split = _split(split, _TFDS_SPLITS)
    # Both archives are required: the builder prepares every split it finds in one go and
    # later reuses that, so a split missing now would stay missing.
    missing = [name for name in (TRAIN_ARCHIVE, VAL_ARCHIVE) if not (root / name).is_file()]
    if missing:
        raise DatasetError(f"ImageNet archive(s) {', '.join(missing)} not found in {root}; download "
                           f"{TRAIN_ARCHIVE} and {VAL_ARCHIVE} from https://image-net.org (manual step, "
                           f"needs an account) and place them in {root}")
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.utils import gcs_utils

    # tfds can look up prepared data and dataset info on gs://tfds-data: when the builder
    # is made (DatasetInfo.initialize_from_bucket) and in download_and_prepare
    # (try_download_gcs).  This flag gates every such look-up; it is already True in
    # tfds 4.9.x, set again so that a version defaulting to False stays offline too.
    gcs_utils._is_gcs_disabled = True
    data_dir = Path(data_dir) if data_dir is not None else root / "tfds"
    builder = tfds.builder("imagenet2012", data_dir=str(data_dir))
    if not builder.is_prepared():
        # Reads the archives straight from manual_dir (no download, no extraction); on the
        # real archives this writes ~150 GB of TFRecords and takes hours, once.
        config = tfds.download.DownloadConfig(manual_dir=str(root), try_download_gcs=False)
        builder.download_and_prepare(download_dir=str(data_dir / "downloads"), download_config=config)
    dataset = builder.as_dataset(split=tfds_split, as_supervised=True, shuffle_files=False)
    return dataset, list(builder.info.features["label"].names)


def imagenet_dataset(root: str | Path, split: str, data_dir: str | Path | None = None):
    """(tf.data.Dataset of (image uint8 [H, W, 3], label int64), class names) for split
    "train" or "val" ("validation" accepted) of the ImageNet under root, in either layout.
    data_dir: where the tfds layout's TFRecords go (default <root>/tfds); unused for folders."""
    root = Path(root)
    if detect_layout(root) == "tfds":
        return _tfds_dataset(root, split, data_dir)
    return _folder_dataset(root, split)
