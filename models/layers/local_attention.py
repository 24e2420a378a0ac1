"""Local m x m stand-alone self-attention (paper Sec. 3.1, Eq. 2 and Eq. 3).

Ramachandran et al. 2019 ([63], "SASA") attend from every pixel to the m x m
square centred on it, with a learned relative position term on the queries
(Eq. 2, the paper's "Attention").  The paper's position-sensitive variant adds a
key term and a value term (Eq. 3, "PS-Attention").  BN inside the layer is the
paper's "BN" column of Tab. 1.

Relative positions follow [63]: a row offset table and a column offset table,
each m rows and half the per-head depth wide, concatenated, so a window offset
(a, b) has the vector concat(row[a], col[b]).  Keys outside the image are
masked.  Downsampling follows [63]: 2 x 2 average pooling after the attention.
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from models.layers.attention_core import PositionSensitiveAttention
from models.layers.position import RelativePositionTable


@keras.saving.register_keras_serializable(package="axial_deeplab")
class LocalSelfAttention2D(PositionSensitiveAttention):
    """Multi-head self-attention over the m x m window around every pixel.

    Args:
        key_depth: total query/key depth over all heads.
        value_depth: total value depth (the output channels).
        num_heads: number of heads (8 in [63] and the paper).
        window: m, the odd side of the square window (7 in [63]).
        strides: average-pooling stride applied after the attention.
        query_position: the q.r term of Eq. 2.
        key_position, value_position: the extra terms of Eq. 3 (position-sensitive).
        use_batch_norm: BN of qkv, of each similarity term and of each retrieved term.

    Example:
        >>> layer = LocalSelfAttention2D(16, 16, window=3)
        >>> layer(keras.ops.zeros((1, 6, 6, 8))).shape
        (1, 6, 6, 16)
    """

    def __init__(
        self,
        key_depth: int,
        value_depth: int,
        num_heads: int = 8,
        window: int = 7,
        strides: int = 1,
        query_position: bool = True,
        key_position: bool = False,
        value_position: bool = False,
        use_batch_norm: bool = False,
        **kwargs,
    ):
        super().__init__(key_depth, value_depth, num_heads, strides, query_position, key_position,
                         value_position, use_batch_norm, **kwargs)
        if window % 2 == 0:
            raise ValueError(f"window must be odd, got {window}")
        for name, depth in (("key_depth", key_depth), ("value_depth", value_depth)):
            if depth % (2 * num_heads):
                raise ValueError(
                    f"{name} ({depth}) must be divisible by 2 * num_heads ({2 * num_heads}): "
                    "each head's position vector is split into row and column halves"
                )
        self.window = window

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        if self.strides > 1:
            height = None if height is None else -(-height // self.strides)
            width = None if width is None else -(-width // self.strides)
        return (batch, height, width, self.value_depth)

    def build(self, input_shape):
        self.build_projection(input_shape[-1])
        self.tables = {}
        for term, depth, enabled in (
            ("query", self.key_depth_per_head, self.query_position),
            ("key", self.key_depth_per_head, self.key_position),
            ("value", self.value_depth_per_head, self.value_position),
        ):
            if enabled:
                for axis in ("row", "column"):
                    table = RelativePositionTable(self.window, depth // 2, name=f"{term}_{axis}_table",
                                                  dtype=self.dtype_policy)
                    table.build(None)
                    self.tables[term, axis] = table
        self.position_tables = list(self.tables.values())
        super().build(input_shape)

    def _table(self, term: str, axis: str):
        return self.tables[term, axis](np.arange(self.window))  # (m, depth / 2), offset -half .. half

    def _window_logits(self, x, term: str):
        """x . r_{a,b} for every window offset (a, b), row-major: (..., heads, m*m).

        r_{a,b} = concat(row[a], col[b]), so x . r_{a,b} = x_row . row[a] + x_col . col[b]:
        two (..., m) matmuls and a broadcast sum instead of m*m products of full depth.
        """
        half_depth = x.shape[-1] // 2
        by_row = ops.matmul(x[..., :half_depth], ops.transpose(self._table(term, "row")))
        by_col = ops.matmul(x[..., half_depth:], ops.transpose(self._table(term, "column")))
        grid = by_row[..., :, None] + by_col[..., None, :]
        return ops.reshape(grid, tuple(ops.shape(grid)[:-2]) + (self.window**2,))

    def _window_values(self, weights):
        """sum_{a,b} w_{a,b} r^v_{a,b} = concat(sum_a (sum_b w_ab) row[a], sum_b (sum_a w_ab) col[b])."""
        m = self.window
        grid = ops.reshape(weights, tuple(ops.shape(weights)[:-1]) + (m, m))
        by_row = ops.matmul(ops.sum(grid, axis=-1), self._table("value", "row"))
        by_col = ops.matmul(ops.sum(grid, axis=-2), self._table("value", "column"))
        return ops.concatenate([by_row, by_col], axis=-1)

    def _shifted(self, x):
        """The m*m shifts of x (batch, h, w, ...) by the window offsets, zero-padded, row-major."""
        m, half = self.window, self.window // 2
        height, width = x.shape[1], x.shape[2]
        padded = ops.pad(x, ((0, 0), (half, half), (half, half)) + ((0, 0),) * (len(x.shape) - 3))
        return [padded[:, a : a + height, b : b + width] for a in range(m) for b in range(m)]

    def call(self, inputs, training=None):
        height, width = inputs.shape[1], inputs.shape[2]
        qkv = self.project(inputs, training)
        query, key, value = self.split_heads(ops.reshape(qkv, (-1, height, width, qkv.shape[-1])))
        # (batch, h, w, heads, m*m, depth): every pixel's window of keys (zero outside the image).
        keys = ops.stack(self._shifted(key), axis=4)

        logits = [ops.sum(query[..., None, :] * keys, axis=-1)]  # (batch, h, w, heads, m*m)
        if self.query_position:
            logits.append(self._window_logits(query, "query"))
        if self.key_position:
            # k_{(i,j)+(a,b)} . r^k_{a,b}: every key pixel against all m*m offsets, then for each
            # offset the pixel at that offset (a zero-padded key gives zero, like k = 0).
            by_key = self._window_logits(key, "key")
            shifted = self._shifted(by_key)
            logits.append(ops.stack([s[..., w] for w, s in enumerate(shifted)], axis=-1))
        heads = self.num_heads
        if self.use_batch_norm:
            # One scale and offset per (head, term), statistics over every (pixel, window
            # offset), out-of-image keys included (the reference normalises before masking).
            scale, shift = self.norm_affine(self.similarity_norm, (heads,),
                                            lambda: self.group_statistics(logits, axes=(2, 4)), training)
            logits = [t * ops.reshape(scale[:, i], (heads, 1)) for i, t in enumerate(logits)]
            logits.append(ops.reshape(ops.sum(shift, axis=1), (heads, 1)))
        similarity = logits[0]
        for term in logits[1:]:
            similarity = similarity + term

        inside = ops.stack(self._shifted(np.ones((1, height, width, 1), "float32")), axis=-1)
        similarity = ops.where(inside > 0, similarity, -1e9)
        weights = ops.softmax(similarity, axis=-1)

        values = ops.stack(self._shifted(value), axis=4)
        retrieved = [ops.sum(weights[..., None] * values, axis=4)]  # (batch, h, w, heads, d_v)
        if self.value_position:
            retrieved.append(self._window_values(weights))
        if self.use_batch_norm:
            scale, shift = self.norm_affine(self.output_norm, (heads, self.value_depth_per_head),
                                            lambda: self.group_statistics(retrieved, axes=(2,)), training)
            retrieved = [t * scale[..., i] for i, t in enumerate(retrieved)] + [ops.sum(shift, axis=-1)]
        output = retrieved[0]
        for term in retrieved[1:]:
            output = output + term
        output = ops.reshape(output, (-1, height, width, self.value_depth))
        if self.strides > 1:
            output = ops.average_pool(output, pool_size=self.strides, strides=self.strides, padding="same")
        return output

    def count_madds(self, input_shape, local_keys: str = "window") -> dict[str, int]:
        """Multiply-accumulates for one image: m*m keys per query, at input resolution."""
        _, height, width, channels = input_shape
        keys = min(self.window, height) * min(self.window, width)
        return self.attention_madds(height * width, keys, channels)

    def get_config(self):
        config = super().get_config()
        config.update(window=self.window)
        return config
