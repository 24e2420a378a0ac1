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

from models.layers import batch_norm
from models.layers.position import slice_axis


def cast(x, dtype):
    """ops.cast, without an op when x has that dtype already (ops cost tracing time)."""
    if keras.backend.standardize_dtype(x.dtype) == keras.backend.standardize_dtype(dtype):
        return x
    return ops.cast(x, dtype)


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
            # Built for the 2-D (pixels, channels) views the subclasses normalise.
            sync = batch_norm.synchronized()
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
        lead = (-1,) + tuple(qkv.shape[1:-1])
        k, h = self.key_depth, self.num_heads
        return (ops.reshape(slice_axis(qkv, -1, 0, k), lead + (h, self.key_depth_per_head)),
                ops.reshape(slice_axis(qkv, -1, k, k), lead + (h, self.key_depth_per_head)),
                ops.reshape(slice_axis(qkv, -1, 2 * k, self.value_depth), lead + (h, self.value_depth_per_head)))

    def norm_affine(self, norm, channel_shape, statistics, training=None):
        """Per-term BN as (scale, offset), each channel_shape + (terms,): BN(x_t) = x_t * scale_t + offset_t.

        The reference formulation stacks the terms on a last axis, merges (channel, term) into
        the channels `norm` was built for (channel-major, term-minor) and calls `norm` on a 2-D
        view: copies of every term.  Here the caller supplies the batch statistics instead:
        `statistics()` returns, per term, the mean of x_t and of x_t^2 over each of some equal
        groups of the normalised positions, (groups, *channel_shape) each (it is called in
        training mode only).  From them come `norm`'s own batch moments: the mean over groups
        by `ops.moments`, synchronized across replicas when `norm` is (as in its own call), and
        the variance E[x^2] - E[x]^2 (biased, as in its synchronized call), then its
        moving-average update (momentum), its moving statistics in inference mode or when
        frozen, and its arithmetic: scale = gamma / sqrt(var + eps), offset = beta - mean * scale.
        Knowing scale and offset, the caller can fold them into smaller tensors than x_t.
        """
        dtype = self.statistics_dtype
        if training and norm.trainable:
            means, squares = zip(*statistics())
            per_group = [ops.reshape(cast(ops.stack(t, axis=-1), dtype), (-1, norm.moving_mean.shape[0]))
                         for t in (means, squares)]
            moments, _ = ops.moments(ops.concatenate(per_group, axis=-1), axes=(0,),
                                     synchronized=norm.synchronized)
            mean, square = ops.split(moments, 2)
            variance = ops.maximum(square - ops.square(mean), 0.0)
            norm.moving_mean.assign(
                cast(norm.moving_mean, dtype) * norm.momentum + mean * (1.0 - norm.momentum))
            norm.moving_variance.assign(
                cast(norm.moving_variance, dtype) * norm.momentum + variance * (1.0 - norm.momentum))
        else:
            mean = cast(norm.moving_mean, dtype)
            variance = cast(norm.moving_variance, dtype)
        scale = ops.rsqrt(variance + norm.epsilon)
        if norm.scale:
            scale = scale * cast(norm.gamma, dtype)
        offset = -mean * scale
        if norm.center:
            offset = offset + cast(norm.beta, dtype)
        shape = tuple(channel_shape) + (-1,)
        return (cast(ops.reshape(scale, shape), self.compute_dtype),
                cast(ops.reshape(offset, shape), self.compute_dtype))

    @property
    def statistics_dtype(self) -> str:
        """BatchNormalization computes in at least float32 (under mixed precision too): so do
        the BN statistics here (a float16 sum of squares overflows)."""
        return keras.backend.result_type(self.compute_dtype, "float32")

    def group_statistics(self, terms, axes):
        """For norm_affine: the mean of each term and of its square over `axes`, with `axes` the
        trailing reduction axes of every group (the leading ones, kept, number the groups)."""
        terms = [cast(t, self.statistics_dtype) for t in terms]
        return [(ops.mean(t, axis=axes), ops.mean(ops.square(t), axis=axes)) for t in terms]

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
