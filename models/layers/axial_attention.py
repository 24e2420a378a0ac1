"""Position-sensitive axial-attention along one axis (paper Sec. 3.2, Eq. 4).

For every query position j on the chosen axis the layer computes

    y_j = sum_{b in N_m(j)} softmax_b(q_j.k_b + q_j.r^q_{b-j} + k_b.r^k_{b-j}) (v_b + r^v_{b-j})

with N heads (Sec. 3.1, "multi-head attention"), relative position tables shared
across heads, and optional batch normalisation of the projections, of each
similarity term and of each retrieved term (Sec. 4.1: "we use batch
normalizations in all attention layers").  Each positional term can be switched
off, so the same layer also gives the plain (non position-sensitive) variant.

Span m: `span=None` attends to the whole axis (the conv-stem ImageNet models);
an odd integer m restricts each query to the m positions centred on it (the
Full models use m = 15, Axial-DeepLab m = 65).  The layer computes the full
axis x axis similarity and masks keys outside the window: exact for Eq. 4, and
cheap at the sizes this suite trains on.  The M-Adds counter charges m keys per
query (the cost of a sliding-window implementation), see models/counting.py.

Striding (Sec. 3.2, "Optional striding is performed on each axis after the
corresponding axial-attention layer"): `strides=s` keeps every s-th output
position along this layer's axis.
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from models.layers.attention_core import PositionSensitiveAttention
from models.layers.position import (MAX_SPAN, RelativePositionTable, absolute_to_relative,
                                    relative_rows, relative_to_absolute)

HEIGHT, WIDTH = "height", "width"


@keras.saving.register_keras_serializable(package="axial_deeplab")
class AxialAttention(PositionSensitiveAttention):
    """Multi-head position-sensitive self-attention along the height or width axis.

    Args:
        axis: "height" or "width".
        key_depth: total query/key depth over all heads (paper: N * d_q).
        value_depth: total value depth over all heads (paper: N * d_out); the
            layer's output channels.
        num_heads: N (the paper always uses 8).
        span: None for global attention, or an odd window length m.
        strides: subsampling applied along `axis` after the attention.
        query_position, key_position, value_position: include the
            q.r^q, k.r^k and r^v terms of Eq. 4.
        use_batch_norm: batch-normalise qkv, each similarity term and each
            retrieved term, as in the paper.
        max_span: the position tables cover relative offsets up to
            max_span - 1, i.e. 2 * max_span - 1 rows, so one set of weights
            serves any axis length or span up to max_span.

    Example:
        >>> layer = AxialAttention("width", key_depth=16, value_depth=32, span=None)
        >>> layer(keras.ops.zeros((1, 5, 7, 32))).shape
        (1, 5, 7, 32)
    """

    def __init__(
        self,
        axis: str,
        key_depth: int,
        value_depth: int,
        num_heads: int = 8,
        span: int | None = None,
        strides: int = 1,
        query_position: bool = True,
        key_position: bool = True,
        value_position: bool = True,
        use_batch_norm: bool = True,
        max_span: int = MAX_SPAN,
        **kwargs,
    ):
        super().__init__(key_depth, value_depth, num_heads, strides, query_position, key_position,
                         value_position, use_batch_norm, **kwargs)
        if axis not in (HEIGHT, WIDTH):
            raise ValueError(f"axis must be 'height' or 'width', got {axis!r}")
        if span is not None and (span < 1 or span % 2 == 0):
            raise ValueError(f"span must be None (global) or an odd positive integer, got {span}")
        self.axis = axis
        self.span = span
        self.max_span = max_span

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        i = 1 if self.axis == HEIGHT else 2
        if shape[i] is not None:
            shape[i] = -(-shape[i] // self.strides)
        shape[-1] = self.value_depth
        return tuple(shape)

    def keys_per_query(self, axis_length: int, local_keys: str = "window") -> int:
        """Keys each query attends to: the whole axis, or the window of m.

        `local_keys="blocked"` is the alternative reading kept for comparison
        (models/counting.py): a blocked local implementation (query blocks of m,
        (m - 1) / 2 memory on each side) computes 2m - 1 keys per query.
        """
        if self.span is None:
            return axis_length
        if local_keys == "blocked":
            return min(2 * self.span - 1, axis_length)
        return min(self.span, axis_length)

    def build(self, input_shape):
        self.build_projection(input_shape[-1])
        rows = 2 * self.max_span - 1
        self.query_table, self.key_table, self.value_table = (
            RelativePositionTable(rows, depth, name=name, dtype=self.dtype_policy) if enabled else None
            for name, depth, enabled in (
                ("query_position_table", self.key_depth_per_head, self.query_position),
                ("key_position_table", self.key_depth_per_head, self.key_position),
                ("value_position_table", self.value_depth_per_head, self.value_position),
            )
        )
        self.position_tables = [t for t in (self.query_table, self.key_table, self.value_table) if t]
        for table in self.position_tables:
            table.build(None)
        super().build(input_shape)

    def call(self, inputs, training=None):
        height, width = inputs.shape[1], inputs.shape[2]
        length = height if self.axis == HEIGHT else width
        qkv = self.project(inputs, training)
        qkv = ops.reshape(qkv, (-1, height, width, qkv.shape[-1]))
        # Heads-major lines: (batch, other axis, heads, L, depth), so every attention
        # product below is a plain batched matmul over (line, head).
        to_lines = (0, 1, 3, 2, 4) if self.axis == WIDTH else (0, 2, 3, 1, 4)
        query, key, value = (ops.reshape(ops.transpose(t, to_lines), (-1, self.num_heads, length, t.shape[-1]))
                             for t in self.split_heads(qkv))

        rows = relative_rows(length, self.max_span)
        logits = [ops.matmul(query, ops.swapaxes(key, 2, 3))]  # [lines, heads, query j, key b]
        if self.query_position:
            # q_j . r^q_{b-j}: q_j against the 2L - 1 rows of every offset, then re-indexed.
            logits.append(relative_to_absolute(ops.matmul(query, ops.transpose(self.query_table(rows)))))
        if self.key_position:
            # k_b . r^k_{b-j}: the same with key and query swapped.  With the rows in reverse
            # order, offset j - b of the reversed table is offset b - j of the table, so the
            # re-indexing gives [key b, query j]; a transpose brings it to [j, b].
            by_key = relative_to_absolute(ops.matmul(key, ops.transpose(self.key_table(rows[::-1]))))
            logits.append(ops.swapaxes(by_key, 2, 3))
        similarity = self.fuse(getattr(self, "similarity_norm", None), logits, axes=(0, 2, 3),
                               training=training)

        if self.span is not None and self.span < 2 * length - 1:
            outside = np.abs(np.arange(length)[None, :] - np.arange(length)[:, None]) > self.span // 2
            similarity = ops.where(outside, -1e9, similarity)
        weights = ops.softmax(similarity, axis=-1)

        retrieved = [ops.matmul(weights, value)]  # [lines, heads, L, d_v]
        if self.value_position:
            # sum_b a_jb r^v_{b-j}: the weights re-indexed by offset, times the 2L - 1 rows.
            retrieved.append(ops.matmul(absolute_to_relative(weights), self.value_table(rows)))

        def strided(t):
            # The output BN's statistics cover every position; only the kept ones are normalised.
            return t[:, :, :: self.strides] if self.strides > 1 else t

        output = self.fuse(getattr(self, "output_norm", None), retrieved, axes=(0, 2), training=training,
                           select=strided)
        kept = output.shape[2]
        other = width if self.axis == HEIGHT else height
        output = ops.reshape(output, (-1, other, self.num_heads, kept, self.value_depth_per_head))
        back = (0, 1, 3, 2, 4) if self.axis == WIDTH else (0, 3, 1, 2, 4)
        output = ops.transpose(output, back)
        return ops.reshape(output, (-1,) + tuple(output.shape[1:3]) + (self.value_depth,))

    def count_madds(self, input_shape, local_keys: str = "window") -> dict[str, int]:
        """Multiply-accumulates for one image, by operation (see models/counting.py)."""
        _, height, width, channels = input_shape
        length = height if self.axis == HEIGHT else width
        return self.attention_madds(height * width, self.keys_per_query(length, local_keys), channels)

    def get_config(self):
        config = super().get_config()
        config.update(axis=self.axis, span=self.span, max_span=self.max_span)
        return config
