"""Training batches that are a pure function of (seed, step): what exact resume needs.

Panoptic-DeepLab's augmentation [18]: random scale, random crop to output_stride * k + 1,
random horizontal flip; then targets (data/targets.py).  The ImageNet recipe's: a random
crop of random area and aspect ratio resized to the input size ("Inception" crop), random
flip.  Each example of step s is drawn from a seeded permutation of the split, and its
augmentation draws from a numpy generator seeded by (seed, step, slot), so the batch of any
step can be rebuilt after a restart without saving iterator state, and the same batches come
out on every backend (numpy only: no TensorFlow on the JAX path).  For the same reason a
process of a multi-process run builds only its own slots of a batch (`batch(step, slots)`),
the same examples as in the whole batch.  keras-cv's augmentation
layers draw from internal random state instead, which a restarted run cannot reproduce step
for step, so they are not used here.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from data import coco_panoptic
from data.image_ops import resize_bilinear, resize_bilinear_window, resize_nearest_window
from data.targets import panoptic_targets


def example_index(seed: int, step: int, slot: int, batch_size: int, epoch_size: int) -> int:
    """The example at `slot` of batch `step`: epochs are seeded permutations of the split."""
    position = step * batch_size + slot
    order = np.random.default_rng((seed, position // epoch_size)).permutation(epoch_size)
    return int(order[position % epoch_size])


def augmentation_rng(seed: int, step: int, slot: int) -> np.random.Generator:
    """The random draws of one example's augmentation: a function of (seed, step, slot) alone.
    (The 1 marks augmentation, apart from example_index's (seed, epoch) streams.)"""
    return np.random.default_rng((seed, step, slot, 1))


class PanopticBatches:
    """Augmented batches with Panoptic-DeepLab targets from a COCO-panoptic split: held in
    memory (`in_memory`, the proxy's few hundred small scenes), or read from disk one example
    at a time (a full data set: Cityscapes' training split alone is about 69 GB decoded)."""

    task = "panoptic"

    def __init__(self, root, dataset: str, split: str, batch_size: int, crop_size: tuple[int, int],
                 seed: int = 0, scale_range: tuple[float, float] = (0.5, 2.0), ignore_label: int = 255,
                 class_of: dict[int, int] | None = None, center_sigma: float = 8.0,
                 small_instance_area: int = 64 * 64, in_memory: bool = True, resize_window_only: bool = False):
        """`class_of` maps category ids to the model's contiguous class indices (COCO's ids
        run to 200 for 133 classes); None keeps the category ids.  `center_sigma` and
        `small_instance_area`: the targets' (data/targets.py), in pixels of the crop.
        `resize_window_only` (the full path) interpolates only the crop's window of the scaled
        image, several times faster at full size; the proxy resizes whole images, as its
        committed runs did (the two agree to float32 rounding, not bit for bit)."""
        self.records, _ = coco_panoptic.records(root, dataset, split)
        if not self.records:
            raise ValueError(f"{dataset} {split}: no training examples")
        self.class_of, self.ignore_label = class_of, ignore_label
        self.examples = [self._load(index) for index in range(len(self.records))] if in_memory else None
        self.batch_size = batch_size
        self.crop_size = crop_size
        self.seed = seed
        self.scale_range = scale_range
        self.center_sigma, self.small_instance_area = center_sigma, small_instance_area
        self.resize_window_only = resize_window_only

    def _load(self, index: int) -> tuple:
        """(image, segment-id map, segments with the model's class indices) of example `index`."""
        record = self.records[index]
        image, ids = coco_panoptic.load_image_and_ids(record)
        segments = record.segments if self.class_of is None else {
            k: replace(v, category_id=self.class_of[v.category_id]) for k, v in record.segments.items()}
        return image, ids, segments

    def _augment(self, image: np.ndarray, ids: np.ndarray, rng: np.random.Generator):
        """Random scale (nearest for ids), pad with void, random crop, random flip."""
        low, high = self.scale_range
        scale = rng.uniform(low, high)
        size = tuple(max(1, round(n * scale)) for n in image.shape[:2])
        ch, cw = self.crop_size
        top = int(rng.integers(0, max(size[0], ch) - ch + 1))
        left = int(rng.integers(0, max(size[1], cw) - cw + 1))
        ids = resize_nearest_window(ids, size, top, left, self.crop_size)  # id 0 beyond the image: void
        if self.resize_window_only:
            image = resize_bilinear_window(image, size, top, left, self.crop_size)
        else:
            image = resize_bilinear(image, size)
            image = np.pad(image, ((0, max(ch - size[0], 0)), (0, max(cw - size[1], 0)), (0, 0)))
            image = image[top:top + ch, left:left + cw]
        if rng.random() < 0.5:
            image, ids = image[:, ::-1], ids[:, ::-1]
        return image, ids

    def batch(self, step: int, slots: range | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Batch `step`, or only its examples at `slots` (a process's share of it)."""
        images, targets = [], []
        for slot in range(self.batch_size) if slots is None else slots:
            index = example_index(self.seed, step, slot, self.batch_size, len(self.records))
            image, ids, segments = self.examples[index] if self.examples is not None else self._load(index)
            image, ids = self._augment(image, ids, augmentation_rng(self.seed, step, slot))
            images.append(normalize(image))
            targets.append(panoptic_targets(ids.astype(np.int64), segments, self.ignore_label, sigma=self.center_sigma,
                                            small_instance_area=self.small_instance_area))
        stacked = {k: np.stack([t[k] for t in targets]) for k in targets[0]}
        return np.stack(images).astype(np.float32), stacked


def normalize(image) -> np.ndarray:
    """uint8 pixels to [-1, 1], the input range of every model here."""
    return np.asarray(image, np.float32) / 127.5 - 1.0


def as_rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image


def center_crop_resize(image: np.ndarray, size: tuple[int, int], crop_fraction: float = 1.0) -> np.ndarray:
    """Evaluation preprocessing: the central `crop_fraction` of the image (0.875 on ImageNet:
    224 of 256), resized bilinearly to `size`."""
    image = as_rgb(image)
    h, w = image.shape[:2]
    ch, cw = max(1, round(h * crop_fraction)), max(1, round(w * crop_fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return resize_bilinear(image[top:top + ch, left:left + cw], size)


def inception_crop(shape: tuple[int, int], rng: np.random.Generator, area_range: tuple[float, float],
                   aspect_range: tuple[float, float] = (3 / 4, 4 / 3), attempts: int = 10):
    """(top, left, height, width) of a random crop covering `area_range` of the image with an
    aspect ratio drawn log-uniformly from `aspect_range` ([65]'s "Inception" crop); the whole
    image when no attempt fits."""
    height, width = shape
    for _ in range(attempts):
        area = rng.uniform(*area_range) * height * width
        aspect = math.exp(rng.uniform(math.log(aspect_range[0]), math.log(aspect_range[1])))
        h, w = round(math.sqrt(area / aspect)), round(math.sqrt(area * aspect))
        if 0 < h <= height and 0 < w <= width:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    return 0, 0, height, width


class ClassificationBatches:
    """Augmented classification batches: random-area crop resized to `crop_size`, random flip.

    `records` are (source, label) pairs and `load(source)` returns a uint8 image, so a
    split is read from disk one batch at a time (ImageNet does not fit in memory)."""

    task = "classification"

    def __init__(self, records, load, batch_size: int, crop_size: tuple[int, int], seed: int = 0,
                 area_range: tuple[float, float] = (0.08, 1.0)):
        if not records:
            raise ValueError("no training examples")
        self.records = list(records)
        self.load = load
        self.batch_size = batch_size
        self.crop_size = crop_size
        self.seed = seed
        self.area_range = area_range

    def _augment(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        image = as_rgb(image)
        top, left, h, w = inception_crop(image.shape[:2], rng, self.area_range)
        crop = resize_bilinear(image[top:top + h, left:left + w], self.crop_size)
        return crop[:, ::-1] if rng.random() < 0.5 else crop

    def batch(self, step: int, slots: range | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Batch `step`, or only its examples at `slots` (a process's share of it)."""
        images, labels = [], []
        for slot in range(self.batch_size) if slots is None else slots:
            source, label = self.records[example_index(self.seed, step, slot, self.batch_size, len(self.records))]
            images.append(normalize(self._augment(self.load(source), augmentation_rng(self.seed, step, slot))))
            labels.append(label)
        return np.stack(images), {"label": np.asarray(labels, np.int32)}
