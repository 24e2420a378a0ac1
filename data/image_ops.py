"""Image resizing in numpy, the same on every backend (no TensorFlow needed).

Bilinear resizing is linear along each axis, so it is a pair of small interpolation matrices:
out = R_h @ image @ R_w^T (per channel).  Two sample-position conventions are used in the
Panoptic-DeepLab recipe [18]:

- half-pixel centers (`align_corners=False`): output pixel o samples input position
  (o + 0.5) * n_in / n_out - 0.5, clamped to the image; the usual resize of images (data
  augmentation's random scale, evaluation's resize to the model's input size);
- aligned corners (`align_corners=True`): o samples o * (n_in - 1) / (n_out - 1), so the first
  and last pixels coincide; the heads' upsampling to the crop, whose sizes are
  output_stride * k + 1 so that the corners meet exactly (training/losses.py uses the same
  matrices with keras.ops).

Nearest-neighbour resizing (segment-id maps) samples floor((o + 0.5) * n_in / n_out).
"""

from __future__ import annotations

import functools

import numpy as np


def interpolation_taps(n_in: int, n_out: int, align_corners: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear interpolation along one axis as two taps per output: output o is
    (1 - fraction[o]) * input[low[o]] + fraction[o] * input[high[o]]."""
    if align_corners:
        scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        position = np.arange(n_out) * scale
    else:
        position = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    position = np.clip(position, 0, n_in - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, position - low


@functools.lru_cache(maxsize=256)
def interpolation_matrix(n_in: int, n_out: int, align_corners: bool) -> np.ndarray:
    """(n_out, n_in) float32 weights of bilinear interpolation along one axis."""
    low, high, fraction = interpolation_taps(n_in, n_out, align_corners)
    matrix = np.zeros((n_out, n_in), np.float64)
    rows = np.arange(n_out)
    np.add.at(matrix, (rows, low), 1 - fraction)
    np.add.at(matrix, (rows, high), fraction)
    matrix = matrix.astype(np.float32)
    matrix.setflags(write=False)  # cached, and shared by the input threads
    return matrix


def resize_bilinear(image: np.ndarray, size: tuple[int, int], align_corners: bool = False) -> np.ndarray:
    """Bilinear resize of an (H, W) or (H, W, C) array to `size`; float32."""
    image = np.asarray(image, np.float32)
    height, width = image.shape[:2]
    if (height, width) == tuple(size):
        return image
    rows = interpolation_matrix(height, size[0], align_corners)
    cols = interpolation_matrix(width, size[1], align_corners)
    out = np.tensordot(rows, image, axes=(1, 0))                  # (h_out, W, ...)
    out = np.tensordot(cols, out, axes=(1, 1))                    # (w_out, h_out, ...)
    return np.swapaxes(out, 0, 1).astype(np.float32)


def resize_bilinear_window(image: np.ndarray, size: tuple[int, int], top: int, left: int,
                           crop: tuple[int, int]) -> np.ndarray:
    """The `crop`-sized window at (top, left) of `resize_bilinear(image, size)` padded with
    zeros below and to the right to at least `crop`: the training augmentation's scale, pad
    and crop, computing only the window's outputs, two taps each (a 2x-scaled Cityscapes image
    is 2048 x 4096, its crop 1025 x 2049; the matrices of resize_bilinear would multiply
    mostly zeros).  The same interpolation as resizing the whole image, summed in float32 in
    another order: values can differ in the last bits."""
    image = np.asarray(image, np.float32)
    out = np.zeros((*crop, *image.shape[2:]), np.float32)  # 0 past the resized image: the padding
    row_low, row_high, row_weight = _window_taps(image.shape[0], size[0], top, crop[0])
    col_low, col_high, col_weight = _window_taps(image.shape[1], size[1], left, crop[1])
    trailing = (1,) * (image.ndim - 2)  # channels, if any
    row_weight = row_weight.reshape(-1, 1, *trailing)
    col_weight = col_weight.reshape(1, -1, *trailing)
    along_rows = row_weight * image[row_low] + (1 - row_weight) * image[row_high]
    out[:len(row_low), :len(col_low)] = col_weight * along_rows[:, col_low] + (1 - col_weight) * along_rows[:, col_high]
    return out


def _window_taps(n_in: int, n_out: int, start: int, length: int):
    """Outputs start..start+length-1 (those inside n_out) of interpolation_taps, as (low,
    high, float32 weight of low)."""
    low, high, fraction = (a[start:start + length] for a in interpolation_taps(n_in, n_out, False))
    return low, high, (1 - fraction).astype(np.float32)


def resize_nearest_window(array: np.ndarray, size: tuple[int, int], top: int, left: int,
                          crop: tuple[int, int], fill=0) -> np.ndarray:
    """The `crop`-sized window at (top, left) of `resize_nearest(array, size)`, `fill` beyond
    its edges: exactly the whole resize padded and cropped (nearest neighbour only gathers)."""
    height, width = array.shape[:2]
    out = np.full((*crop, *array.shape[2:]), fill, array.dtype)
    rows = _nearest_sources(height, size[0], np.arange(top, min(top + crop[0], size[0])))
    cols = _nearest_sources(width, size[1], np.arange(left, min(left + crop[1], size[1])))
    out[:len(rows), :len(cols)] = array[rows][:, cols]
    return out


def _nearest_sources(n_in: int, n_out: int, outputs: np.ndarray) -> np.ndarray:
    """The input index each output index samples: floor((o + 0.5) * n_in / n_out)."""
    return np.minimum(((outputs + 0.5) * n_in / n_out).astype(int), n_in - 1)


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of the first two axes (labels, segment ids): same dtype."""
    height, width = array.shape[:2]
    return array[_nearest_sources(height, size[0], np.arange(size[0]))][:, _nearest_sources(width, size[1], np.arange(size[1]))]
