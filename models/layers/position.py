"""Learned relative position tables (paper Sec. 3.1, Eq. 2-4).

A table holds one learned vector per relative offset and is shared across the
heads of a layer ("positional encodings are often shared across heads, so that
they introduce marginal extra parameters", Sec. 3.1).

Table length is part of the counting convention (README, "Counting convention"):
axial layers carry 2 * MAX_SPAN - 1 = 509 rows, like deeplab2, the authors'
TF2 library, so one set of weights serves any axis length or span up to 255;
local m x m attention carries m rows per axis, the offsets its window can use.

"Relative logits": the axial layer never gathers a table into an [L, L, d] tensor.
It multiplies queries (or keys) by the 2L - 1 table rows of the offsets -(L-1) .. L-1,
giving [..., L, 2L - 1], and re-indexes that to [..., L, L] by reshapes (`relative_to_absolute`);
the r^v term goes the other way (`absolute_to_relative`).  Reshapes and slices only, so
their gradients are pads and slices, not the scatter of a gather's gradient.
"""

from __future__ import annotations

import functools

import numpy as np
import keras
from keras import ops

# deeplab2's MAX_SPAN: larger than every span the paper uses (15, 65, global at 56 or 129).
MAX_SPAN = 255


@functools.lru_cache(maxsize=None)
def relative_offsets(length: int, max_span: int) -> np.ndarray:
    """Table row for every (query, key) pair on an axis of `length` positions.

    Offsets beyond max_span - 1 share the last row, as in deeplab2.
    """
    positions = np.arange(length)
    offsets = positions[None, :] - positions[:, None] + max_span - 1
    return np.clip(offsets, 0, 2 * max_span - 2).astype("int32")


@functools.lru_cache(maxsize=None)
def relative_rows(length: int, max_span: int) -> np.ndarray:
    """Table rows of the offsets -(length - 1) .. length - 1, in that order (2 * length - 1 rows).

    The same clamping as `relative_offsets`: an offset beyond max_span - 1 uses the edge row,
    so `relative_to_absolute(x @ table[relative_rows(L)].T)` equals x . table[relative_offsets(L)].
    """
    offsets = np.arange(-(length - 1), length)
    return np.clip(offsets + max_span - 1, 0, 2 * max_span - 2).astype("int32")


def slice_axis(x, axis: int, start: int, size: int):
    """x[..., start : start + size, ...] along `axis`, as one Slice op.

    Python indexing gives a strided slice, whose gradient on TensorFlow's CPU path is several
    times slower than that of a Slice (a Pad); the attention layers slice large tensors.
    """
    rank = len(x.shape)
    begin, shape = [0] * rank, [-1] * rank
    begin[axis % rank], shape[axis % rank] = start, size
    return ops.slice(x, begin, shape)


def relative_to_absolute(x):
    """[..., L, 2L - 1] indexed by (query j, offset o + L - 1) -> [..., L, L] indexed by (j, key b).

    out[j, b] = x[j, b - j + L - 1].  Flattened, that element sits at
    j (2L - 1) + b - j + L - 1 = (L - 1) + j (2L - 2) + b: drop the first L - 1 elements and
    read rows of stride 2L - 2, keeping the first L columns of each.  (The L (2L - 2) elements
    kept fit: L (2L - 1) - (L - 1) = L (2L - 2) + 1.)
    """
    length = x.shape[-2]
    if length == 1:
        return x
    lead = (-1,) + tuple(x.shape[1:-2])
    flat = ops.reshape(x, lead + (length * (2 * length - 1),))
    flat = slice_axis(flat, -1, length - 1, length * (2 * length - 2))
    return slice_axis(ops.reshape(flat, lead + (length, 2 * length - 2)), -1, 0, length)


def absolute_to_relative(a):
    """The inverse re-indexing: [..., L, L] (j, b) -> [..., L, 2L - 1] (j, b - j + L - 1), zeros elsewhere.

    Pad every row to the stride 2L - 2, flatten, and shift by L - 1 (and 1 at the end) so that
    rows of stride 2L - 1 put a[j, b] at column b - j + L - 1, the index algebra of
    `relative_to_absolute` read backwards; padding lands on offsets no key has.
    """
    length = a.shape[-1]
    if length == 1:
        return a
    lead = (-1,) + tuple(a.shape[1:-2])
    rank = len(a.shape)
    padded = ops.pad(a, ((0, 0),) * (rank - 1) + ((0, length - 2),))
    flat = ops.reshape(padded, lead + (length * (2 * length - 2),))
    flat = ops.pad(flat, ((0, 0),) * (rank - 2) + ((length - 1, 1),))
    return ops.reshape(flat, lead + (length, 2 * length - 1))


@keras.saving.register_keras_serializable(package="axial_deeplab")
class RelativePositionTable(keras.layers.Layer):
    """A (rows, depth) table of learned relative position vectors, looked up by row index."""

    def __init__(self, rows: int, depth: int, **kwargs):
        super().__init__(**kwargs)
        self.rows = rows
        self.depth = depth

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.rows, self.depth),
            initializer=keras.initializers.TruncatedNormal(stddev=1.0),
        )
        super().build(input_shape)

    def call(self, indices):
        return ops.take(self.embeddings, indices, axis=0)

    def get_config(self):
        config = super().get_config()
        config.update(rows=self.rows, depth=self.depth)
        return config
