"""Training batches that are a pure function of (seed, step): what exact resume needs.

Panoptic-DeepLab's augmentation [18]: random scale, random crop to output_stride * k + 1,
random horizontal flip; then targets (data/targets.py).  Each example of step s is drawn
from a seeded permutation of the split, and its augmentation uses TensorFlow's stateless
random ops seeded by (seed, step, slot), so the batch of any step can be rebuilt after a
restart without saving iterator state.  keras-cv's augmentation layers draw from internal
random state instead, which a restarted run cannot reproduce step for step, so they are
not used here.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from data import coco_panoptic
from data.targets import panoptic_targets


class PanopticBatches:
    """Augmented batches with Panoptic-DeepLab targets from a COCO-panoptic split held in memory."""

    def __init__(self, root, dataset: str, split: str, batch_size: int, crop_size: tuple[int, int],
                 seed: int = 0, scale_range: tuple[float, float] = (0.5, 2.0), ignore_label: int = 255):
        records, _ = coco_panoptic.records(root, dataset, split)
        self.examples = []
        for record in records:
            example = coco_panoptic.load_example(record, ignore_label)
            self.examples.append((example["image"], example["ids"], record.segments))
        self.batch_size = batch_size
        self.crop_size = crop_size
        self.seed = seed
        self.scale_range = scale_range
        self.ignore_label = ignore_label

    def _example_index(self, step: int, slot: int) -> int:
        epoch_size = len(self.examples)
        position = step * self.batch_size + slot
        order = np.random.default_rng((self.seed, position // epoch_size)).permutation(epoch_size)
        return int(order[position % epoch_size])

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
            seed = tf.constant([self.seed * 1_000_003 + step, slot], tf.int32)
            image, ids = self._augment(tf.cast(image, tf.float32), tf.constant(ids, tf.int32), seed)
            images.append(image / 127.5 - 1.0)
            targets.append(panoptic_targets(ids.astype(np.int64), segments, self.ignore_label))
        stacked = {k: np.stack([t[k] for t in targets]) for k in targets[0]}
        return np.stack(images).astype(np.float32), stacked
