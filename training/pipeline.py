"""Training batches that are a pure function of (seed, step): what exact resume needs.

Panoptic-DeepLab's augmentation [18]: random scale, random crop to output_stride * k + 1,
random horizontal flip; then targets (data/targets.py).  The ImageNet recipe's: a random
crop of random area and aspect ratio resized to the input size ("Inception" crop), random
flip.  Each example of step s is drawn from a seeded permutation of the split, and its
augmentation uses TensorFlow's stateless random ops seeded by (seed, step, slot), so the
batch of any step can be rebuilt after a restart without saving iterator state.  keras-cv's augmentation layers draw from internal
random state instead, which a restarted run cannot reproduce step for step, so they are
not used here.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import tensorflow as tf

from data import coco_panoptic
from data.targets import panoptic_targets


def example_index(seed: int, step: int, slot: int, batch_size: int, epoch_size: int) -> int:
    """The example at `slot` of batch `step`: epochs are seeded permutations of the split."""
    position = step * batch_size + slot
    order = np.random.default_rng((seed, position // epoch_size)).permutation(epoch_size)
    return int(order[position % epoch_size])


def step_seed(seed: int, step: int, slot: int):
    return tf.constant([seed * 1_000_003 + step, slot], tf.int32)


class PanopticBatches:
    """Augmented batches with Panoptic-DeepLab targets from a COCO-panoptic split held in memory."""

    task = "panoptic"

    def __init__(self, root, dataset: str, split: str, batch_size: int, crop_size: tuple[int, int],
                 seed: int = 0, scale_range: tuple[float, float] = (0.5, 2.0), ignore_label: int = 255,
                 class_of: dict[int, int] | None = None):
        """`class_of` maps category ids to the model's contiguous class indices (COCO's ids
        run to 200 for 133 classes); None keeps the category ids."""
        records, _ = coco_panoptic.records(root, dataset, split)
        self.examples = []
        for record in records:
            example = coco_panoptic.load_example(record, ignore_label)
            segments = record.segments if class_of is None else {
                k: replace(v, category_id=class_of[v.category_id]) for k, v in record.segments.items()}
            self.examples.append((example["image"], example["ids"], segments))
        self.batch_size = batch_size
        self.crop_size = crop_size
        self.seed = seed
        self.scale_range = scale_range
        self.ignore_label = ignore_label

    def _example_index(self, step: int, slot: int) -> int:
        return example_index(self.seed, step, slot, self.batch_size, len(self.examples))

    def _augment(self, image, ids, seed):
        """Random scale (nearest for ids), pad with void, random crop, random flip: all stateless."""
        low, high = self.scale_range
        scale = tf.random.stateless_uniform((), seed=seed, minval=low, maxval=high)
        size = tf.cast(tf.round(tf.cast(tf.shape(image)[:2], tf.float32) * scale), tf.int32)
        image = tf.image.resize(image, size, method="bilinear")
        ids = tf.image.resize(ids[..., None], size, method="nearest")[..., 0]
        ch, cw = self.crop_size
        pad_h, pad_w = tf.maximum(ch - size[0], 0), tf.maximum(cw - size[1], 0)
        image = tf.pad(image, [[0, pad_h], [0, pad_w], [0, 0]])
        ids = tf.pad(ids, [[0, pad_h], [0, pad_w]])  # id 0: void
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        offset_y = tf.random.stateless_uniform((), seed=seed + [0, 1], maxval=h - ch + 1, dtype=tf.int32)
        offset_x = tf.random.stateless_uniform((), seed=seed + [0, 2], maxval=w - cw + 1, dtype=tf.int32)
        image = image[offset_y:offset_y + ch, offset_x:offset_x + cw]
        ids = ids[offset_y:offset_y + ch, offset_x:offset_x + cw]
        flip = tf.random.stateless_uniform((), seed=seed + [0, 3]) < 0.5
        image = tf.where(flip, image[:, ::-1], image)
        ids = tf.where(flip, ids[:, ::-1], ids)
        return image.numpy(), ids.numpy()

    def batch(self, step: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        images, targets = [], []
        for slot in range(self.batch_size):
            image, ids, segments = self.examples[self._example_index(step, slot)]
            image, ids = self._augment(tf.cast(image, tf.float32), tf.constant(ids, tf.int32),
                                       step_seed(self.seed, step, slot))
            images.append(normalize(image))
            targets.append(panoptic_targets(ids.astype(np.int64), segments, self.ignore_label))
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
    crop = tf.cast(image[top:top + ch, left:left + cw], tf.float32)
    return tf.image.resize(crop, size, method="bilinear").numpy()


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

    def _augment(self, image: np.ndarray, seed) -> np.ndarray:
        image = tf.constant(as_rgb(image))
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image), tf.zeros((1, 0, 4)), seed=seed, min_object_covered=0.0,
            aspect_ratio_range=(3 / 4, 4 / 3), area_range=self.area_range, max_attempts=10,
            use_image_if_no_bounding_boxes=True)
        crop = tf.slice(image, begin, size)
        crop = tf.image.resize(tf.cast(crop, tf.float32), self.crop_size, method="bilinear")
        flip = tf.random.stateless_uniform((), seed=seed + [0, 3]) < 0.5
        return tf.where(flip, crop[:, ::-1], crop).numpy()

    def batch(self, step: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        images, labels = [], []
        for slot in range(self.batch_size):
            source, label = self.records[example_index(self.seed, step, slot, self.batch_size, len(self.records))]
            images.append(normalize(self._augment(self.load(source), step_seed(self.seed, step, slot))))
            labels.append(label)
        return np.stack(images), {"label": np.asarray(labels, np.int32)}
