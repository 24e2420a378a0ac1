"""Panoptic-DeepLab training targets [18], which Axial-DeepLab trains with (paper Sec. 4).

From one image's panoptic segment-id map and its segments:

- semantic: the class of every pixel; void and crowd pixels get `ignore_label`;
- semantic_weights: 3 on pixels of thing instances smaller than 64 x 64 pixels, 1 on
  other labelled pixels, 0 on ignored ones;
- center: a Gaussian heatmap (sigma 8) peaking at 1 at every thing instance's center of
  mass (rounded to the nearest pixel); overlapping Gaussians take the maximum;
- center_weights: 1 on labelled pixels, 0 on void and crowd;
- offsets: at every pixel of a thing instance, (center_y - y, center_x - x) of its center;
- offset_weights: 1 on thing-instance pixels, 0 elsewhere (crowd and stuff included).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SegmentInfo:
    category_id: int
    is_thing: bool
    iscrowd: bool = False


def panoptic_targets(ids: np.ndarray, segments: dict[int, SegmentInfo], ignore_label: int = 255,
                     sigma: float = 8.0, small_instance_area: int = 64 * 64,
                     small_instance_weight: float = 3.0) -> dict[str, np.ndarray]:
    height, width = ids.shape
    semantic = np.full((height, width), ignore_label, np.int32)
    semantic_weights = np.zeros((height, width), np.float32)
    center = np.zeros((height, width), np.float32)
    offsets = np.zeros((height, width, 2), np.float32)
    offset_weights = np.zeros((height, width), np.float32)
    ys, xs = np.mgrid[:height, :width]
    for segment_id, info in segments.items():
        mask = ids == segment_id
        if not mask.any() or info.iscrowd:
            continue
        semantic[mask] = info.category_id
        semantic_weights[mask] = 1.0
        if not info.is_thing:
            continue
        if mask.sum() < small_instance_area:
            semantic_weights[mask] = small_instance_weight
        cy, cx = np.round(ys[mask].mean()), np.round(xs[mask].mean())
        gaussian = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * sigma**2))
        np.maximum(center, gaussian.astype(np.float32), out=center)
        offsets[mask, 0] = cy - ys[mask]
        offsets[mask, 1] = cx - xs[mask]
        offset_weights[mask] = 1.0
    return {
        "semantic": semantic, "semantic_weights": semantic_weights, "center": center,
        "center_weights": (semantic != ignore_label).astype(np.float32), "offsets": offsets,
        "offset_weights": offset_weights,
    }
