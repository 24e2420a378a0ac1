"""Learned relative position tables (paper Sec. 3.1, Eq. 2-4).

A table holds one learned vector per relative offset and is shared across the
heads of a layer ("positional encodings are often shared across heads, so that
they introduce marginal extra parameters", Sec. 3.1).

Table length is part of the counting convention (README, "Counting convention"):
axial layers carry 2 * MAX_SPAN - 1 = 509 rows, like deeplab2, the authors'
TF2 library, so one set of weights serves any axis length or span up to 255;
local m x m attention carries m rows per axis, the offsets its window can use.
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


def slice_axis(x, axis: int, start: int, size: int):
    """x[..., start : start + size, ...] along `axis`, as one Slice op.

    Python indexing gives a strided slice, whose gradient on TensorFlow's CPU path is several
    times slower than that of a Slice (a Pad); the attention layers slice large tensors.
    """
    rank = len(x.shape)
    begin, shape = [0] * rank, [-1] * rank
    begin[axis % rank], shape[axis % rank] = start, size
    return ops.slice(x, begin, shape)


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
