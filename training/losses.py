"""Panoptic-DeepLab losses [18], unchanged by Axial-DeepLab (paper Sec. 4).

- semantic: softmax cross-entropy, per-pixel weights (small instances 3), averaged over
  the hardest `top_k_fraction` (20 %) of each image's weighted pixel losses ("bootstrapped");
- center: mean squared error of the heatmap, weight 200;
- offset: L1 of the offsets on thing pixels, weight 0.01.
Weighted pixels with weight 0 (void, crowd) contribute nothing.  Every loss is computed per
image and then averaged over images, so the mean over equal per-replica shards of a batch
(tf.distribute) equals the single-device loss.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from data.image_ops import interpolation_matrix

SEMANTIC_WEIGHT, CENTER_WEIGHT, OFFSET_WEIGHT = 1.0, 200.0, 0.01
TOP_K_FRACTION = 0.2


def bootstrapped_cross_entropy(labels, logits, weights, top_k_fraction: float = TOP_K_FRACTION,
                               ignore_label: int = 255):
    """Per image, the mean of its hardest `top_k_fraction` weighted pixel cross-entropies; then
    the mean over images."""
    valid = ops.cast(ops.not_equal(labels, ignore_label), logits.dtype)
    safe = ops.where(ops.equal(labels, ignore_label), 0, labels)
    pixel = ops.sparse_categorical_crossentropy(safe, logits, from_logits=True) * weights * valid
    pixels_per_image = int(np.prod(pixel.shape[1:]))
    per_image = ops.reshape(pixel, (-1, pixels_per_image))
    k = max(1, int(round(top_k_fraction * per_image.shape[1])))
    hardest, _ = ops.top_k(per_image, k)
    return ops.mean(hardest)


def center_loss(target, prediction, weights):
    """Weighted mean squared error over pixels (mean over all pixels, like [18])."""
    squared = ops.square(ops.squeeze(prediction, -1) - target) * weights
    return ops.mean(squared)


def offset_loss(target, prediction, weights):
    """L1 over the offset channels, averaged over each image's thing pixels, then over images."""
    absolute = ops.sum(ops.abs(prediction - target), axis=-1) * weights
    pixel_axes = tuple(range(1, len(absolute.shape)))
    per_image = ops.sum(absolute, axis=pixel_axes) / ops.maximum(ops.sum(weights, axis=pixel_axes), 1.0)
    return ops.mean(per_image)


def resize_align_corners(x, size: tuple[int, int]):
    """Bilinear resize of (B, H, W, C) with aligned corners, in keras.ops on any backend: the
    interpolation matrices of data/image_ops.py applied as two matmuls (an einsum's gradient
    is slow on TensorFlow's CPU path)."""
    height, width = x.shape[1], x.shape[2]
    rows = interpolation_matrix(height, size[0], align_corners=True)
    cols = interpolation_matrix(width, size[1], align_corners=True)
    x = ops.transpose(x, (0, 3, 1, 2))                                  # (B, C, H, W)
    x = ops.matmul(ops.cast(rows, x.dtype), x)                          # (B, C, h, W)
    x = ops.matmul(x, ops.cast(np.ascontiguousarray(cols.T), x.dtype))  # (B, C, h, w)
    return ops.transpose(x, (0, 2, 3, 1))


def upsample_outputs(outputs: dict, size: tuple[int, int]) -> dict:
    """Heads at output stride 4, bilinearly upsampled with aligned corners to the targets' size,
    as in [18]: crops of output_stride * k + 1 pixels make the corners meet exactly.  Offsets are
    in input pixels, so they scale with the upsampling factor."""
    resized = {}
    for name, value in outputs.items():
        height = value.shape[1]
        up = resize_align_corners(value, size)
        if name == "offset" and height and height > 1:
            up = up * ((size[0] - 1) / (height - 1))
        resized[name] = up
    return resized


def panoptic_loss(targets: dict, outputs: dict) -> dict:
    """The three weighted losses and their sum (outputs are upsampled to the targets' size)."""
    size = tuple(targets["semantic"].shape[1:3])
    if tuple(outputs["semantic"].shape[1:3]) != size:
        outputs = upsample_outputs(outputs, size)
    semantic = bootstrapped_cross_entropy(targets["semantic"], outputs["semantic"], targets["semantic_weights"])
    center = center_loss(targets["center"], outputs["center"], targets["center_weights"])
    offset = offset_loss(targets["offsets"], outputs["offset"], targets["offset_weights"])
    total = SEMANTIC_WEIGHT * semantic + CENTER_WEIGHT * center + OFFSET_WEIGHT * offset
    return {"semantic": semantic, "center": center, "offset": offset, "total": total}


def classification_loss(labels, logits, label_smoothing: float = 0.0) -> dict:
    """Softmax cross-entropy of the ImageNet recipe (mean over images), with optional label
    smoothing."""
    num_classes = logits.shape[-1]
    one_hot = ops.one_hot(ops.cast(labels, "int32"), num_classes)
    if label_smoothing:
        one_hot = one_hot * (1 - label_smoothing) + label_smoothing / num_classes
    cross_entropy = ops.mean(ops.categorical_crossentropy(one_hot, logits, from_logits=True))
    return {"cross_entropy": cross_entropy, "total": cross_entropy}
