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

# Pixels per block when grouping: a 1025 x 2049 image with 400 centers would otherwise need
# a (H, W, K) distance array of several GB.
GROUPING_BLOCK = 65536


@dataclass(frozen=True)
class PostProcessConfig:
    thing_classes: tuple[int, ...]
    center_threshold: float = 0.1
    nms_kernel: int = 7
    top_k: int = 200
    stuff_area: int = 2048
    label_divisor: int = 1000
    void_class: int = 255


def find_centers(center_heatmap, threshold: float, nms_kernel: int, top_k: int) -> np.ndarray:
    """(K, 2) int32 (y, x) of the kept centers, highest score first. heatmap: (H, W)."""
    from scipy.ndimage import maximum_filter

    heat = np.asarray(center_heatmap, np.float32)
    # Max-pooling with "same" padding: the border is padded with -inf, never with zeros.
    pooled = maximum_filter(heat, size=nms_kernel, mode="constant", cval=-np.inf)
    keep = (heat == pooled) & (heat > threshold)
    coords = np.argwhere(keep).astype(np.int32)              # raster order
    order = np.argsort(-heat[keep], kind="stable")[:top_k]   # ties: the earlier in raster order
    return coords[order]


def group_pixels(centers, offsets) -> np.ndarray:
    """(H, W) int32 instance ids 1..K: the nearest center to pixel + offset; 0 without centers."""
    offsets = np.asarray(offsets, np.float32)
    height, width = offsets.shape[:2]
    if len(centers) == 0:
        return np.zeros((height, width), np.int32)
    ys, xs = np.meshgrid(np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32), indexing="ij")
    pointed = (np.stack([ys, xs], -1) + offsets).reshape(-1, 2)
    centers = np.asarray(centers, np.float32)
    nearest = np.empty(len(pointed), np.int32)
    for start in range(0, len(pointed), GROUPING_BLOCK):
        block = pointed[start:start + GROUPING_BLOCK]
        distances = ((block[:, None, :] - centers[None]) ** 2).sum(-1)
        nearest[start:start + GROUPING_BLOCK] = distances.argmin(-1)  # ties: the center ranked first
    return nearest.reshape(height, width) + 1


def merge_semantic_and_instances(semantic, instances, num_classes: int, config: PostProcessConfig) -> np.ndarray:
    """Panoptic ids from semantic classes (H, W) and instance ids (H, W)."""
    semantic = np.asarray(semantic, np.int64)
    instances = np.asarray(instances, np.int64)
    is_thing = np.isin(semantic, config.thing_classes)
    void = config.void_class * config.label_divisor

    # Majority vote: class histogram per instance over its thing pixels (ties: the lower class).
    n_instances = int(instances.max()) + 1
    histogram = np.bincount((instances * num_classes + semantic)[is_thing],
                            minlength=n_instances * num_classes).reshape(n_instances, num_classes)
    instance_class = histogram.argmax(-1)
    # Instances are numbered within their class (1, 2, ... in centre rank order), so that a
    # label divisor below top_k (COCO's 256 against 400 centres) never spills an instance into
    # the next class's ids; a class's instances beyond label_divisor - 1 become void.
    number = np.zeros(n_instances, np.int64)
    counts: dict[int, int] = {}
    for k in np.flatnonzero(histogram.sum(-1)):
        if k:
            counts[instance_class[k]] = counts.get(instance_class[k], 0) + 1
            number[k] = counts[instance_class[k]]
    fits = (instances > 0) & (number[instances] > 0) & (number[instances] < config.label_divisor)
    thing_ids = np.where(fits, instance_class[instances] * config.label_divisor + number[instances], void)

    areas = np.bincount(semantic[~is_thing], minlength=num_classes)
    stuff_ids = np.where(areas[semantic] >= config.stuff_area, semantic * config.label_divisor, void)
    return np.where(is_thing, thing_ids, stuff_ids).astype(np.int32)


def panoptic_prediction(semantic_logits, center_heatmap, offsets, config: PostProcessConfig) -> np.ndarray:
    """Panoptic ids (H, W) of one image from the heads' outputs (H, W, C), (H, W[, 1]), (H, W, 2)."""
    semantic_logits = np.asarray(semantic_logits)
    heat = np.asarray(center_heatmap)
    heat = heat[..., 0] if heat.ndim == 3 else heat
    semantic = semantic_logits.argmax(-1)
    centers = find_centers(heat, config.center_threshold, config.nms_kernel, config.top_k)
    instances = group_pixels(centers, offsets)
    return merge_semantic_and_instances(semantic, instances, semantic_logits.shape[-1], config)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def instance_predictions(panoptic, semantic_logits, center_heatmap, config: PostProcessConfig):
    """Scored instances for AP from one image's panoptic ids and heads (Panoptic-DeepLab [18]).

    Each thing segment becomes (mask, class, score) with score = the center heatmap's
    maximum inside the instance (its center's value) times the mean softmax probability
    of the instance's class over the instance.
    """
    panoptic = np.asarray(panoptic)
    probabilities = softmax(np.asarray(semantic_logits, np.float32))
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


def upsample_heads(outputs: dict, size: tuple[int, int]) -> dict:
    """One image's heads (numpy, (h, w, C)) upsampled with aligned corners to `size`, as in
    training (training/losses.py): offsets are in input pixels, so they scale too."""
    from data.image_ops import resize_bilinear

    out = {}
    for name, value in outputs.items():
        value = np.asarray(value, np.float32)
        height = value.shape[0]
        up = resize_bilinear(value, size, align_corners=True)
        if name == "offset":  # (dy, dx), each scaled by its own axis' ratio
            width = value.shape[1]
            up = up * np.array([(size[0] - 1) / (height - 1) if height > 1 else 1.0,
                                (size[1] - 1) / (width - 1) if width > 1 else 1.0], np.float32)
        out[name] = up
    return out
