"""The offline classification proxy for the ImageNet tables (Tab. 1, Tab. 9, paper Sec. 4.1).

What is real and what is synthetic (say so wherever proxy numbers appear):
- real pixels: Fashion-MNIST [Xiao et al. 2017] (28 x 28 grey photographs of garments,
  10 classes, MIT licence), as Debian's `dataset-fashion-mnist` package installs it;
- nothing synthetic but the size: a class-balanced subset (`per_class` training and
  validation images per class, taken in file order from Fashion-MNIST's own train and
  test splits), resized to the model's input size when read.

`write_dataset` writes the subset once as a class-per-folder PNG tree, the layout the
ImageNet reader (data/imagenet.py) takes, so the proxy runs the real reading path.
Nothing is downloaded: a missing package stops with the command that installs it.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from data.coco_panoptic import DatasetError

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
           "ankle-boot")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def source_dir() -> Path:
    return Path(os.environ.get("FASHION_MNIST_DIR", DEFAULT_DIR))


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format): magic, dims as big-endian int32, then uint8 data."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
        ndim = data[3]
        shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
        array = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
        return array.reshape(shape)
    except (OSError, ValueError, EOFError, IndexError) as error:
        raise DatasetError(f"{path}: not a readable gzipped IDX file ({error})") from None


def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,)) of Fashion-MNIST's train or test ("val") split."""
    root = source_dir()
    paths = [root / name for name in FILES[split]]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise DatasetError(
            f"Fashion-MNIST not found ({missing[0]} is missing): install it with "
            "`apt install dataset-fashion-mnist` (Debian) or set FASHION_MNIST_DIR to a folder "
            f"holding {', '.join(FILES[split])}")
    images, labels = (read_idx(p) for p in paths)
    if len(images) != len(labels):
        raise DatasetError(f"{root}: {len(images)} images but {len(labels)} labels in the {split} split")
    return images, labels


def balanced_subset(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first `per_class` examples of every class, in file order."""
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(len(CLASSES))]))


def write_dataset(root: str | Path, per_class: dict[str, int]) -> Path:
    """Writes `root/<split>/<class>/<index>.png` for each split; returns root.  Skips a split
    already complete, and writes each split under a temporary name first, so an interrupted
    run never leaves half a split behind."""
    from PIL import Image

    root = Path(root)
    for split, count in per_class.items():
        final = root / split
        marker = final / ".complete"
        if marker.exists() and marker.read_text() == str(count):
            continue
        images, labels = load_split(split)
        staging = root / f".{split}.partial"
        if staging.exists():
            import shutil

            shutil.rmtree(staging)
        for name in CLASSES:
            (staging / name).mkdir(parents=True)
        for index in balanced_subset(labels, count):
            Image.fromarray(images[index]).save(staging / CLASSES[labels[index]] / f"{index:05d}.png")
        (staging / ".complete").write_text(str(count))
        if final.exists():
            import shutil

            shutil.rmtree(final)
        staging.rename(final)
    return root
