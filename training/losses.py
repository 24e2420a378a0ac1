"""Panoptic-DeepLab losses [18], unchanged by Axial-DeepLab (paper Sec. 4).

- semantic: softmax cross-entropy, per-pixel weights (small instances 3), averaged over
  the hardest `top_k_fraction` (20 %) of the weighted pixel losses ("bootstrapped");
- center: mean squared error of the heatmap, weight 200;
- offset: L1 of the offsets on thing pixels, weight 0.01.
Weighted pixels with weight 0 (void, crowd) contribute nothing.
"""

from __future__ import annotations

from keras import ops

SEMANTIC_WEIGHT, CENTER_WEIGHT, OFFSET_WEIGHT = 1.0, 200.0, 0.01
TOP_K_FRACTION = 0.2


def bootstrapped_cross_entropy(labels, logits, weights, top_k_fraction: float = TOP_K_FRACTION,
                               ignore_label: int = 255):
    """Mean of the hardest `top_k_fraction` of weighted pixel cross-entropies (batch-wide)."""
    valid = ops.cast(ops.not_equal(labels, ignore_label), logits.dtype)
    safe = ops.where(ops.equal(labels, ignore_label), 0, labels)
    pixel = ops.sparse_categorical_crossentropy(safe, logits, from_logits=True) * weights * valid
    flat = ops.reshape(pixel, (-1,))
    k = max(1, int(round(top_k_fraction * flat.shape[0])))
    hardest, _ = ops.top_k(flat, k)
    return ops.mean(hardest)


def center_loss(target, prediction, weights):
    """Weighted mean squared error over pixels (mean over all pixels, like [18])."""
    squared = ops.square(ops.squeeze(prediction, -1) - target) * weights
    return ops.mean(squared)


def offset_loss(target, prediction, weights):
    """L1 over the offset channels, averaged over thing pixels (weight > 0)."""
    absolute = ops.sum(ops.abs(prediction - target), axis=-1) * weights
    return ops.sum(absolute) / ops.maximum(ops.sum(weights), 1.0)


def upsample_outputs(outputs: dict, size: tuple[int, int]) -> dict:
    """Heads at output stride 4, bilinearly upsampled with aligned corners to the targets' size,
    as in [18]: crops of output_stride * k + 1 pixels make the corners meet exactly.  Offsets are
    in input pixels, so they scale with the upsampling factor."""
    import tensorflow as tf

    resized = {}
    for name, value in outputs.items():
        height = value.shape[1]
        up = tf.compat.v1.image.resize_bilinear(value, size, align_corners=True)
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
