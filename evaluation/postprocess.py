"""Panoptic-DeepLab post-processing [18], which Axial-DeepLab keeps ("merged by a simple
majority voting [87] to form final panoptic segmentation", Sec. 3.2).

From the three heads of models/panoptic_deeplab.py (for one image, at any resolution):

1. semantic: argmax of the logits;
2. centers: the center heatmap thresholded (> threshold), non-maximum suppression by
   max-pooling (a pixel is kept where it equals its neighbourhood maximum), the top_k
   highest kept;
3. grouping: every thing pixel goes to the center nearest to the pixel plus its
   predicted offset (offsets point from a pixel to its instance center, (dy, dx));
4. each instance takes the majority semantic class of its thing pixels;
5. stuff classes whose area is below stuff_area become void;
6. panoptic id = class * label_divisor + instance id (instances 1..K; stuff 0);
   void = void_class * label_divisor.

Defaults are the Panoptic-DeepLab paper's Cityscapes settings (threshold 0.1, NMS
kernel 7, top-k 200, stuff area 2048, label divisor 1000); COCO uses stuff area 4096
and label divisor 256 (deeplab2's configs use NMS kernels 13 / 41).  Ties: NMS keeps
every pixel equal to its neighbourhood maximum; among equally scored centers top-k
keeps the earlier in raster order; a pixel equally near two centers joins the one
ranked first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class PostProcessConfig:
    thing_classes: tuple[int, ...]
    center_threshold: float = 0.1
    nms_kernel: int = 7
    top_k: int = 200
    stuff_area: int = 2048
    label_divisor: int = 1000
    void_class: int = 255


def find_centers(center_heatmap, threshold: float, nms_kernel: int, top_k: int):
    """(K, 2) int32 (y, x) of the kept centers, highest score first. heatmap: (H, W)."""
    heat = tf.convert_to_tensor(center_heatmap, tf.float32)
    pooled = tf.nn.max_pool2d(heat[None, :, :, None], nms_kernel, 1, "SAME")[0, :, :, 0]
    keep = tf.logical_and(tf.equal(heat, pooled), heat > threshold)
    coords = tf.cast(tf.where(keep), tf.int32)
    scores = tf.gather_nd(heat, coords)
    k = tf.minimum(top_k, tf.shape(scores)[0])
    order = tf.math.top_k(scores, k=k, sorted=True).indices
    return tf.gather(coords, order)


def group_pixels(centers, offsets):
    """(H, W) int32 instance ids 1..K: the nearest center to pixel + offset; 0 without centers."""
    offsets = tf.convert_to_tensor(offsets, tf.float32)
    height, width = tf.shape(offsets)[0], tf.shape(offsets)[1]
    ys, xs = tf.meshgrid(tf.range(height), tf.range(width), indexing="ij")
    pointed = tf.stack([tf.cast(ys, tf.float32), tf.cast(xs, tf.float32)], -1) + offsets
    if centers.shape[0] == 0:
        return tf.zeros((height, width), tf.int32)
    centers = tf.cast(centers, tf.float32)
    distances = tf.reduce_sum((pointed[:, :, None, :] - centers[None, None]) ** 2, axis=-1)
    return tf.cast(tf.argmin(distances, axis=-1), tf.int32) + 1


def merge_semantic_and_instances(semantic, instances, num_classes: int, config: PostProcessConfig):
    """Panoptic ids from semantic classes (H, W) and instance ids (H, W)."""
    semantic = tf.cast(semantic, tf.int32)
    instances = tf.cast(instances, tf.int32)
    is_thing = tf.reduce_any(tf.equal(semantic[..., None], tf.constant(config.thing_classes, tf.int32)), -1)
    void = config.void_class * config.label_divisor

    # Majority vote: class histogram per instance over its thing pixels.
    n_instances = tf.reduce_max(instances) + 1
    flat = tf.boolean_mask(instances * num_classes + semantic, is_thing)
    histogram = tf.reshape(tf.math.bincount(flat, minlength=n_instances * num_classes,
                                            maxlength=n_instances * num_classes),
                           (n_instances, num_classes))
    instance_class = tf.cast(tf.argmax(histogram, axis=-1), tf.int32)
    thing_ids = tf.gather(instance_class, instances) * config.label_divisor + instances
    thing_ids = tf.where(instances > 0, thing_ids, void)  # thing pixels with no center

    areas = tf.math.bincount(tf.boolean_mask(semantic, ~is_thing), minlength=num_classes,
                             maxlength=num_classes)
    large_enough = tf.gather(areas, semantic) >= config.stuff_area
    stuff_ids = tf.where(large_enough, semantic * config.label_divisor, void)
    return tf.where(is_thing, thing_ids, stuff_ids)


def panoptic_prediction(semantic_logits, center_heatmap, offsets, config: PostProcessConfig):
    """Panoptic ids (H, W) of one image from the heads' outputs (H, W, C), (H, W[, 1]), (H, W, 2)."""
    semantic_logits = tf.convert_to_tensor(semantic_logits)
    center_heatmap = tf.convert_to_tensor(center_heatmap)
    if center_heatmap.shape.rank == 3:
        center_heatmap = center_heatmap[..., 0]
    semantic = tf.argmax(semantic_logits, axis=-1, output_type=tf.int32)
    centers = find_centers(center_heatmap, config.center_threshold, config.nms_kernel, config.top_k)
    instances = group_pixels(centers, offsets)
    return merge_semantic_and_instances(semantic, instances, semantic_logits.shape[-1], config)


def instance_predictions(panoptic, semantic_logits, center_heatmap, config: PostProcessConfig):
    """Scored instances for AP from one image's panoptic ids and heads (Panoptic-DeepLab [18]).

    Each thing segment becomes (mask, class, score) with score = the center heatmap's
    maximum inside the instance (its center's value) times the mean softmax probability
    of the instance's class over the instance.
    """
    panoptic = np.asarray(panoptic)
    probabilities = tf.nn.softmax(tf.convert_to_tensor(semantic_logits, tf.float32), axis=-1).numpy()
    heat = np.asarray(center_heatmap, np.float32)
    heat = heat[..., 0] if heat.ndim == 3 else heat
    out = []
    for segment in np.unique(panoptic):
        category, instance = divmod(int(segment), config.label_divisor)
        if instance == 0 or category not in config.thing_classes:
            continue
        mask = panoptic == segment
        score = float(heat[mask].max()) * float(probabilities[..., category][mask].mean())
        out.append((mask, category, score))
    return out
