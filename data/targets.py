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

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SegmentInfo:
    category_id: int
    is_thing: bool
    iscrowd: bool = False


def segment_index(ids: np.ndarray, listed: np.ndarray) -> np.ndarray:
    """Each pixel's index in the sorted array `listed` of segment ids, or len(listed) where
    its id is not listed: a binary search per pixel, no sort of the pixels."""
    if not len(listed):
        return np.zeros(ids.shape, int)
    position = np.minimum(np.searchsorted(listed, ids), len(listed) - 1)
    return np.where(listed[position] == ids, position, len(listed))


def panoptic_targets(ids: np.ndarray, segments: dict[int, SegmentInfo], ignore_label: int = 255,
                     sigma: float = 8.0, small_instance_area: int = 64 * 64,
                     small_instance_weight: float = 3.0) -> dict[str, np.ndarray]:
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"center sigma must be a positive number of pixels, not {sigma}")
    # A fixed number of vectorised passes over the pixels, however many segments (a full-size
    # Cityscapes crop has dozens), and one window per thing: per-segment values are looked up
    # through each pixel's index among the listed ids.  Sums of pixel coordinates are
    # integers, exact in float64, so the centres of mass equal those of a per-segment mean.
    height, width = ids.shape
    listed = np.array(sorted(segments), np.int64)
    inverse = segment_index(ids, listed)
    area = np.bincount(inverse.ravel(), minlength=len(listed) + 1)
    category = np.full(len(listed) + 1, ignore_label, np.int32)
    weight = np.zeros(len(listed) + 1, np.float32)
    thing = np.zeros(len(listed) + 1, bool)
    for k, segment_id in enumerate(listed.tolist()):
        info = segments[segment_id]
        if area[k] == 0 or info.iscrowd:  # crowd is ignored, like void
            continue
        category[k] = info.category_id
        thing[k] = info.is_thing
        weight[k] = small_instance_weight if info.is_thing and area[k] < small_instance_area else 1.0
    ys, xs = np.indices((height, width))
    count = np.maximum(area, 1)  # a listed segment with no pixel has no centre, and no use for one
    cy = np.round(np.bincount(inverse.ravel(), ys.ravel(), len(area)) / count)
    cx = np.round(np.bincount(inverse.ravel(), xs.ravel(), len(area)) / count)
    semantic = category[inverse]
    on_thing = thing[inverse]
    offsets = np.zeros((height, width, 2), np.float32)
    offsets[..., 0] = np.where(on_thing, cy[inverse] - ys, 0.0)
    offsets[..., 1] = np.where(on_thing, cx[inverse] - xs, 0.0)
    center = np.zeros((height, width), np.float32)
    # Beyond `reach` pixels from its centre a Gaussian is below half float32's smallest
    # subnormal (exp(-104) < 2**-150), so it rounds to 0 there: computing it in that window
    # alone gives the same heatmap as over the whole image, at a fraction of the cost.
    reach = math.ceil(sigma * math.sqrt(2 * 104)) + 1
    for k in np.flatnonzero(thing):
        top, left = max(int(cy[k]) - reach, 0), max(int(cx[k]) - reach, 0)
        bottom, right = min(int(cy[k]) + reach + 1, height), min(int(cx[k]) + reach + 1, width)
        wy, wx = ys[top:bottom, left:right], xs[top:bottom, left:right]
        gaussian = np.exp(-((wy - cy[k]) ** 2 + (wx - cx[k]) ** 2) / (2 * sigma**2))
        np.maximum(center[top:bottom, left:right], gaussian.astype(np.float32), out=center[top:bottom, left:right])
    return {
        "semantic": semantic, "semantic_weights": weight[inverse], "center": center,
        "center_weights": (semantic != ignore_label).astype(np.float32), "offsets": offsets,
        "offset_weights": on_thing.astype(np.float32),
    }
