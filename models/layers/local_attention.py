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

from models.layers.position import RelativePositionTable


@keras.saving.register_keras_serializable(package="axial_deeplab")
class LocalSelfAttention2D(keras.layers.Layer):
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
        super().__init__(**kwargs)
        if window % 2 == 0:
            raise ValueError(f"window must be odd, got {window}")
        for name, depth in (("key_depth", key_depth), ("value_depth", value_depth)):
            if depth % (2 * num_heads):
                raise ValueError(
                    f"{name} ({depth}) must be divisible by 2 * num_heads ({2 * num_heads}): "
                    "each head's position vector is split into row and column halves"
                )
        self.key_depth = key_depth
        self.value_depth = value_depth
        self.num_heads = num_heads
        self.window = window
        self.strides = strides
        self.query_position = query_position
        self.key_position = key_position
        self.value_position = value_position
        self.use_batch_norm = use_batch_norm

    @property
    def _similarity_terms(self) -> int:
        return 1 + int(self.query_position) + int(self.key_position)

    @property
    def _retrieved_terms(self) -> int:
        return 1 + int(self.value_position)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        if self.strides > 1:
            height = None if height is None else -(-height // self.strides)
            width = None if width is None else -(-width // self.strides)
        return (batch, height, width, self.value_depth)

    def build(self, input_shape):
        channels = input_shape[-1]
        qkv_depth = 2 * self.key_depth + self.value_depth
        self.qkv_kernel = self.add_weight(
            name="qkv_kernel",
            shape=(channels, qkv_depth),
            initializer=keras.initializers.TruncatedNormal(stddev=channels**-0.5),
        )
        d_q = self.key_depth // self.num_heads
        d_v = self.value_depth // self.num_heads
        self.tables = {}
        for term, depth, enabled in (
            ("query", d_q, self.query_position),
            ("key", d_q, self.key_position),
            ("value", d_v, self.value_position),
        ):
            if enabled:
                for axis in ("row", "column"):
                    table = RelativePositionTable(self.window, depth // 2, name=f"{term}_{axis}_table")
                    table.build(None)
                    self.tables[term, axis] = table
        if self.use_batch_norm:
            self.qkv_norm = keras.layers.BatchNormalization(name="qkv_norm")
            self.qkv_norm.build((None, None, None, qkv_depth))
            self.similarity_norm = keras.layers.BatchNormalization(name="similarity_norm")
            self.similarity_norm.build((None, None, None, None, self.num_heads * self._similarity_terms))
            self.output_norm = keras.layers.BatchNormalization(name="output_norm")
            self.output_norm.build((None, None, None, self.value_depth * self._retrieved_terms))
        super().build(input_shape)

    def _window_positions(self, term: str):
        """(m*m, depth) position vectors for every window offset, row-major."""
        m = self.window
        rows = ops.repeat(self.tables[term, "row"](np.arange(m)), m, axis=0)
        cols = ops.tile(self.tables[term, "column"](np.arange(m)), (m, 1))
        return ops.concatenate([rows, cols], axis=-1)

    def _neighbourhoods(self, x):
        """(batch, h, w, m*m, c): the zero-padded m x m window around every pixel."""
        m, half = self.window, self.window // 2
        height, width = x.shape[1], x.shape[2]
        padded = ops.pad(x, ((0, 0), (half, half), (half, half), (0, 0)))
        shifted = [padded[:, a : a + height, b : b + width, :] for a in range(m) for b in range(m)]
        return ops.stack(shifted, axis=3)

    def call(self, inputs, training=None):
        height, width = inputs.shape[1], inputs.shape[2]
        qkv = ops.einsum("bxyc,cd->bxyd", inputs, self.qkv_kernel)
        if self.use_batch_norm:
            qkv = self.qkv_norm(qkv, training=training)
        d_q = self.key_depth // self.num_heads
        d_v = self.value_depth // self.num_heads
        window_area = self.window**2
        query = ops.reshape(qkv[..., : self.key_depth], (-1, height, width, self.num_heads, d_q))
        key = ops.reshape(
            self._neighbourhoods(qkv[..., self.key_depth : 2 * self.key_depth]),
            (-1, height, width, window_area, self.num_heads, d_q),
        )
        value = ops.reshape(
            self._neighbourhoods(qkv[..., 2 * self.key_depth :]),
            (-1, height, width, window_area, self.num_heads, d_v),
        )

        terms = [ops.einsum("bxyhd,bxymhd->bxymh", query, key)]
        if self.query_position:
            terms.append(ops.einsum("bxyhd,md->bxymh", query, self._window_positions("query")))
        if self.key_position:
            terms.append(ops.einsum("bxymhd,md->bxymh", key, self._window_positions("key")))
        similarity = ops.stack(terms, axis=-1)
        if self.use_batch_norm:
            flat = ops.reshape(similarity, (-1, height, width, window_area, self.num_heads * len(terms)))
            flat = self.similarity_norm(flat, training=training)
            similarity = ops.reshape(flat, (-1, height, width, window_area, self.num_heads, len(terms)))
        similarity = ops.sum(similarity, axis=-1)

        inside = ops.reshape(
            self._neighbourhoods(np.ones((1, height, width, 1), "float32")),
            (1, height, width, window_area, 1),
        )
        similarity = ops.where(inside > 0, similarity, -1e9)
        weights = ops.softmax(similarity, axis=3)

        retrieved = [ops.einsum("bxymh,bxymhd->bxyhd", weights, value)]
        if self.value_position:
            retrieved.append(ops.einsum("bxymh,md->bxyhd", weights, self._window_positions("value")))
        output = ops.reshape(
            ops.stack(retrieved, axis=3), (-1, height, width, len(retrieved) * self.value_depth)
        )
        if self.use_batch_norm:
            output = self.output_norm(output, training=training)
        output = ops.sum(
            ops.reshape(output, (-1, height, width, len(retrieved), self.value_depth)), axis=3
        )
        if self.strides > 1:
            output = ops.average_pool(
                output, pool_size=self.strides, strides=self.strides, padding="same"
            )
        return output

    def count_madds(self, input_shape, local_keys: str = "window") -> dict[str, int]:
        """Multiply-accumulates for one image: m*m keys per query, at input resolution."""
        _, height, width, channels = input_shape
        queries = height * width
        keys = min(self.window, height) * min(self.window, width)
        return {
            "qkv_projection": queries * channels * (2 * self.key_depth + self.value_depth),
            "attention_logits": queries * keys * self.key_depth * self._similarity_terms,
            "attention_output": queries * keys * self.value_depth * self._retrieved_terms,
        }

    def parameter_breakdown(self) -> dict[str, int]:
        norms = (
            [self.qkv_norm, self.similarity_norm, self.output_norm] if self.use_batch_norm else []
        )
        return {
            "qkv_projection": int(np.prod(self.qkv_kernel.shape)),
            "position_table": sum(t.count_params() for t in self.tables.values()),
            "attention_batch_norm": sum(
                int(np.prod(w.shape)) for n in norms for w in n.trainable_weights
            ),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            key_depth=self.key_depth,
            value_depth=self.value_depth,
            num_heads=self.num_heads,
            window=self.window,
            strides=self.strides,
            query_position=self.query_position,
            key_position=self.key_position,
            value_position=self.value_position,
            use_batch_norm=self.use_batch_norm,
        )
        return config
