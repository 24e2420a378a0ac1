"""What the paper's attention layers share (Sec. 3.1, Eq. 2-4).

Both the axial layer (Eq. 4) and the local m x m layer (Eq. 2, 3) project the
input to queries, keys and values with one 1x1 projection, compute up to three
similarity terms per head (q.k, q.r^q, k.r^k), retrieve up to two terms (a.v,
a.r^v), and, with the paper's BN (Sec. 4.1: "we use batch normalizations in all
attention layers"), normalise each term separately before summing: one scale
and offset per (similarity term, head) and per (retrieved term, channel).
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops


class PositionSensitiveAttention(keras.layers.Layer):
    """Base of AxialAttention and LocalSelfAttention2D: projection, term fusion, counting.

    Subclasses set `self.position_tables` (the RelativePositionTable layers they own)
    in `build` after calling `build_projection(channels)`.
    """

    def __init__(self, key_depth: int, value_depth: int, num_heads: int, strides: int,
                 query_position: bool, key_position: bool, value_position: bool,
                 use_batch_norm: bool, **kwargs):
        super().__init__(**kwargs)
        if key_depth % num_heads or value_depth % num_heads:
            raise ValueError(
                f"key_depth ({key_depth}) and value_depth ({value_depth}) must be "
                f"divisible by num_heads ({num_heads})"
            )
        self.key_depth = key_depth
        self.value_depth = value_depth
        self.num_heads = num_heads
        self.strides = strides
        self.query_position = query_position
        self.key_position = key_position
        self.value_position = value_position
        self.use_batch_norm = use_batch_norm
        self.position_tables = []

    @property
    def similarity_terms(self) -> int:
        return 1 + int(self.query_position) + int(self.key_position)

    @property
    def retrieved_terms(self) -> int:
        return 1 + int(self.value_position)

    @property
    def key_depth_per_head(self) -> int:
        return self.key_depth // self.num_heads

    @property
    def value_depth_per_head(self) -> int:
        return self.value_depth // self.num_heads

    def build_projection(self, channels: int) -> None:
        qkv_depth = 2 * self.key_depth + self.value_depth
        self.qkv_kernel = self.add_weight(
            name="qkv_kernel",
            shape=(channels, qkv_depth),
            # Standard transformer initialisation; BN makes it uncritical (Sec. 4.1).
            initializer=keras.initializers.TruncatedNormal(stddev=channels**-0.5),
        )
        if self.use_batch_norm:
            # Built for 2-D input: `_norm` applies each to a 2-D view of any-rank tensors.
            # synchronized only on TensorFlow: Keras refuses it on other backends (one device here).
            sync = keras.backend.backend() == "tensorflow"
            self.qkv_norm = keras.layers.BatchNormalization(synchronized=sync, name="qkv_norm",
                                                            dtype=self.dtype_policy)
            self.qkv_norm.build((None, qkv_depth))
            self.similarity_norm = keras.layers.BatchNormalization(synchronized=sync, name="similarity_norm",
                                                                   dtype=self.dtype_policy)
            self.similarity_norm.build((None, self.num_heads * self.similarity_terms))
            self.output_norm = keras.layers.BatchNormalization(synchronized=sync, name="output_norm",
                                                               dtype=self.dtype_policy)
            self.output_norm.build((None, self.value_depth * self.retrieved_terms))

    def project(self, x, training=None):
        """The 1x1 qkv projection (and its BN) of x (..., channels), as a 2-D (pixels, 2 d_k + d_v).

        One reshape and one matmul: the same product as an einsum over "...c,cd->...d",
        whose gradient is an order of magnitude slower on TensorFlow's CPU path.  The
        result is already the 2-D view the qkv BN was built for.
        """
        qkv = ops.matmul(ops.reshape(x, (-1, x.shape[-1])), self.qkv_kernel)
        if self.use_batch_norm:
            qkv = self.qkv_norm(qkv, training=training)
        return qkv

    def split_heads(self, qkv):
        """(queries, keys, values) of a (..., 2 d_k + d_v) tensor, each (..., heads, depth per head)."""
        lead = tuple(ops.shape(qkv)[:-1])
        k, h = self.key_depth, self.num_heads
        return (ops.reshape(qkv[..., :k], lead + (h, self.key_depth_per_head)),
                ops.reshape(qkv[..., k : 2 * k], lead + (h, self.key_depth_per_head)),
                ops.reshape(qkv[..., 2 * k :], lead + (h, self.value_depth_per_head)))

    def term_norm(self, norm, terms, axes, training=None):
        """Per-term BN of `terms` as broadcastable (scales, offset): BN_t(x_t) = x_t * scale_t + offset_t.

        The reference formulation stacks the terms on a last axis, merges (channel, term)
        into the channels `norm` was built for (channel-major, term-minor), and calls `norm`
        on a 2-D view.  Here each term keeps its own layout; `axes` are its reduction axes
        (all but the channel axes).  The statistics are those of `norm`'s own call: the same
        moments function (synchronized across replicas when `norm` is), the same moving-average
        update (momentum, biased batch variance), the moving statistics in inference mode or
        when `norm` is frozen, and the same arithmetic x * (gamma / sqrt(var + eps)) +
        (beta - mean * gamma / sqrt(var + eps)).  The caller sums x_t * scale_t and adds the
        summed offset once, instead of materialising every normalised term.
        """
        shape = terms[0].shape
        count = len(terms)
        # BatchNormalization computes in at least float32 (mixed precision) and casts back.
        dtype = keras.backend.result_type(terms[0].dtype, "float32")
        if training and norm.trainable:
            moments = [ops.moments(ops.cast(t, dtype), axes=axes, synchronized=norm.synchronized)
                       for t in terms]
            mean = ops.reshape(ops.stack([m for m, _ in moments], axis=-1), (-1,))
            variance = ops.reshape(ops.stack([v for _, v in moments], axis=-1), (-1,))
            norm.moving_mean.assign(
                ops.cast(norm.moving_mean, dtype) * norm.momentum + mean * (1.0 - norm.momentum))
            norm.moving_variance.assign(
                ops.cast(norm.moving_variance, dtype) * norm.momentum + variance * (1.0 - norm.momentum))
        else:
            mean = ops.cast(norm.moving_mean, dtype)
            variance = ops.cast(norm.moving_variance, dtype)
        scale = ops.rsqrt(variance + norm.epsilon)
        if norm.scale:
            scale = scale * ops.cast(norm.gamma, dtype)
        offset = -mean * scale
        if norm.center:
            offset = offset + ops.cast(norm.beta, dtype)
        # (channels..., terms) -> one broadcastable factor per term, one summed offset.
        channel_shape = tuple(d for i, d in enumerate(shape) if i not in axes)
        broadcast = tuple(1 if i in axes else d for i, d in enumerate(shape))
        scale = ops.cast(ops.reshape(scale, channel_shape + (count,)), terms[0].dtype)
        offset = ops.cast(ops.sum(ops.reshape(offset, channel_shape + (count,)), axis=-1), terms[0].dtype)
        scales = [ops.reshape(scale[..., t], broadcast) for t in range(count)]
        return scales, ops.reshape(offset, broadcast)

    def fuse(self, norm, terms, axes, training=None, select=None):
        """Sum of the terms, each batch-normalised per (channel, term) over `axes` when the
        layer has BN.  `select` (tensor -> tensor) picks the positions to keep after the
        statistics are taken over all of them (a strided layer's outputs)."""
        select = select or (lambda t: t)
        if not self.use_batch_norm:
            return _add(select(t) for t in terms)
        scales, offset = self.term_norm(norm, terms, axes, training)
        return _add(select(t) * s for t, s in zip(terms, scales)) + offset

    def attention_madds(self, queries: int, keys: int, channels: int) -> dict[str, int]:
        """Multiply-accumulates: projection, then per query and key each similarity term
        costs the key depth and each retrieved term the value depth."""
        return {
            "qkv_projection": queries * channels * (2 * self.key_depth + self.value_depth),
            "attention_logits": queries * keys * self.key_depth * self.similarity_terms,
            "attention_output": queries * keys * self.value_depth * self.retrieved_terms,
        }

    def parameter_breakdown(self) -> dict[str, int]:
        norms = [self.qkv_norm, self.similarity_norm, self.output_norm] if self.use_batch_norm else []
        return {
            "qkv_projection": int(np.prod(self.qkv_kernel.shape)),
            "position_table": sum(t.count_params() for t in self.position_tables),
            "attention_batch_norm": sum(int(np.prod(w.shape)) for n in norms for w in n.trainable_weights),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            key_depth=self.key_depth,
            value_depth=self.value_depth,
            num_heads=self.num_heads,
            strides=self.strides,
            query_position=self.query_position,
            key_position=self.key_position,
            value_position=self.value_position,
            use_batch_norm=self.use_batch_norm,
        )
        return config


def _add(tensors):
    tensors = iter(tensors)
    total = next(tensors)
    for t in tensors:
        total = total + t
    return total
