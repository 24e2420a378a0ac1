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

from models.layers.position import MAX_SPAN, RelativePositionTable, relative_offsets

HEIGHT, WIDTH = "height", "width"


@keras.saving.register_keras_serializable(package="axial_deeplab")
class AxialAttention(keras.layers.Layer):
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
        super().__init__(**kwargs)
        if axis not in (HEIGHT, WIDTH):
            raise ValueError(f"axis must be 'height' or 'width', got {axis!r}")
        if key_depth % num_heads or value_depth % num_heads:
            raise ValueError(
                f"key_depth ({key_depth}) and value_depth ({value_depth}) must be "
                f"divisible by num_heads ({num_heads})"
            )
        if span is not None and (span < 1 or span % 2 == 0):
            raise ValueError(f"span must be None (global) or an odd positive integer, got {span}")
        self.axis = axis
        self.key_depth = key_depth
        self.value_depth = value_depth
        self.num_heads = num_heads
        self.span = span
        self.strides = strides
        self.query_position = query_position
        self.key_position = key_position
        self.value_position = value_position
        self.use_batch_norm = use_batch_norm
        self.max_span = max_span

    # -- shapes ---------------------------------------------------------------
    @property
    def _similarity_terms(self) -> int:
        return 1 + int(self.query_position) + int(self.key_position)

    @property
    def _retrieved_terms(self) -> int:
        return 1 + int(self.value_position)

    def _axis_index(self) -> int:
        return 1 if self.axis == HEIGHT else 2

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        i = self._axis_index()
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

    # -- weights --------------------------------------------------------------
    def build(self, input_shape):
        channels = input_shape[-1]
        qkv_depth = 2 * self.key_depth + self.value_depth
        self.qkv_kernel = self.add_weight(
            name="qkv_kernel",
            shape=(channels, qkv_depth),
            # Standard transformer initialisation; BN makes it uncritical (Sec. 4.1).
            initializer=keras.initializers.TruncatedNormal(stddev=channels**-0.5),
        )
        d_q = self.key_depth // self.num_heads
        d_v = self.value_depth // self.num_heads
        self.query_table = self._table("query_position_table", d_q, self.query_position)
        self.key_table = self._table("key_position_table", d_q, self.key_position)
        self.value_table = self._table("value_position_table", d_v, self.value_position)
        if self.use_batch_norm:
            self.qkv_norm = keras.layers.BatchNormalization(name="qkv_norm")
            self.qkv_norm.build((None, None, qkv_depth))
            # One gamma/beta per (head, similarity term).
            self.similarity_norm = keras.layers.BatchNormalization(name="similarity_norm")
            self.similarity_norm.build((None, None, None, self.num_heads * self._similarity_terms))
            # One gamma/beta per (retrieved term, channel).
            self.output_norm = keras.layers.BatchNormalization(name="output_norm")
            self.output_norm.build((None, None, self.value_depth * self._retrieved_terms))
        super().build(input_shape)

    def _table(self, name, depth, enabled):
        if not enabled:
            return None
        table = RelativePositionTable(2 * self.max_span - 1, depth, name=name)
        table.build(None)
        return table

    # -- forward --------------------------------------------------------------
    def call(self, inputs, training=None):
        x = inputs
        if self.axis == HEIGHT:
            x = ops.transpose(x, (0, 2, 1, 3))
        batch, lines, length, channels = ops.shape(x)[0], x.shape[1], x.shape[2], x.shape[3]
        x = ops.reshape(x, (-1, length, channels))

        qkv = ops.einsum("nlc,cd->nld", x, self.qkv_kernel)
        if self.use_batch_norm:
            qkv = self.qkv_norm(qkv, training=training)
        d_q = self.key_depth // self.num_heads
        d_v = self.value_depth // self.num_heads
        query = ops.reshape(qkv[..., : self.key_depth], (-1, length, self.num_heads, d_q))
        key = ops.reshape(
            qkv[..., self.key_depth : 2 * self.key_depth], (-1, length, self.num_heads, d_q)
        )
        value = ops.reshape(qkv[..., 2 * self.key_depth :], (-1, length, self.num_heads, d_v))

        offsets = relative_offsets(length, self.max_span)  # [query, key] -> table row
        terms = [ops.einsum("nlhd,nmhd->nlmh", query, key)]
        if self.query_position:
            terms.append(ops.einsum("nlhd,lmd->nlmh", query, self.query_table(offsets)))
        if self.key_position:
            terms.append(ops.einsum("nmhd,lmd->nlmh", key, self.key_table(offsets)))
        similarity = ops.stack(terms, axis=-1)  # n, l, m, head, term
        if self.use_batch_norm:
            flat = ops.reshape(similarity, (-1, length, length, self.num_heads * len(terms)))
            flat = self.similarity_norm(flat, training=training)
            similarity = ops.reshape(flat, (-1, length, length, self.num_heads, len(terms)))
        similarity = ops.sum(similarity, axis=-1)

        if self.span is not None and self.span < 2 * length - 1:
            outside = np.abs(np.arange(length)[None, :] - np.arange(length)[:, None]) > self.span // 2
            similarity = ops.where(outside[None, :, :, None], -1e9, similarity)
        weights = ops.softmax(similarity, axis=2)

        retrieved = [ops.einsum("nlmh,nmhd->nlhd", weights, value)]
        if self.value_position:
            retrieved.append(ops.einsum("nlmh,lmd->nlhd", weights, self.value_table(offsets)))
        output = ops.stack(retrieved, axis=2)  # n, l, term, head, d
        output = ops.reshape(output, (-1, length, len(retrieved) * self.value_depth))
        if self.use_batch_norm:
            output = self.output_norm(output, training=training)
        output = ops.sum(ops.reshape(output, (-1, length, len(retrieved), self.value_depth)), axis=2)

        output = ops.reshape(output, (batch, lines, length, self.value_depth))
        if self.strides > 1:
            output = output[:, :, :: self.strides, :]
        if self.axis == HEIGHT:
            output = ops.transpose(output, (0, 2, 1, 3))
        return output

    # -- counting -------------------------------------------------------------
    def count_madds(self, input_shape, local_keys: str = "window") -> dict[str, int]:
        """Multiply-accumulates for one image, by operation (see models/counting.py)."""
        _, height, width, channels = input_shape
        length = height if self.axis == HEIGHT else width
        queries = height * width
        keys = self.keys_per_query(length, local_keys)
        return {
            "qkv_projection": queries * channels * (2 * self.key_depth + self.value_depth),
            "attention_logits": queries * keys * self.key_depth * self._similarity_terms,
            "attention_output": queries * keys * self.value_depth * self._retrieved_terms,
        }

    def parameter_breakdown(self) -> dict[str, int]:
        tables = [t for t in (self.query_table, self.key_table, self.value_table) if t is not None]
        norms = (
            [self.qkv_norm, self.similarity_norm, self.output_norm] if self.use_batch_norm else []
        )
        return {
            "qkv_projection": int(np.prod(self.qkv_kernel.shape)),
            "position_table": sum(t.count_params() for t in tables),
            "attention_batch_norm": sum(
                int(np.prod(w.shape)) for n in norms for w in n.trainable_weights
            ),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            axis=self.axis,
            key_depth=self.key_depth,
            value_depth=self.value_depth,
            num_heads=self.num_heads,
            span=self.span,
            strides=self.strides,
            query_position=self.query_position,
            key_position=self.key_position,
            value_position=self.value_position,
            use_batch_norm=self.use_batch_norm,
            max_span=self.max_span,
        )
        return config
