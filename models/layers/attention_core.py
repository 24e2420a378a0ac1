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
            sync = batch_norm.synchronized()
            self.qkv_norm = keras.layers.BatchNormalization(synchronized=sync, name="qkv_norm")
            self.qkv_norm.build((None, qkv_depth))
            self.similarity_norm = keras.layers.BatchNormalization(synchronized=sync, name="similarity_norm")
            self.similarity_norm.build((None, self.num_heads * self.similarity_terms))
            self.output_norm = keras.layers.BatchNormalization(synchronized=sync, name="output_norm")
            self.output_norm.build((None, self.value_depth * self.retrieved_terms))

    @staticmethod
    def _norm(norm, x, training):
        """BN of the last axis over all other axes, for a tensor of any rank."""
        shape = ops.shape(x)
        return ops.reshape(norm(ops.reshape(x, (-1, x.shape[-1])), training=training), shape)

    def project(self, x, training=None):
        """(queries, keys, values), each (..., heads, depth per head)."""
        qkv = ops.einsum("...c,cd->...d", x, self.qkv_kernel)
        if self.use_batch_norm:
            qkv = self._norm(self.qkv_norm, qkv, training)
        lead = tuple(ops.shape(qkv)[:-1])
        query = ops.reshape(qkv[..., : self.key_depth], lead + (self.num_heads, self.key_depth_per_head))
        key = ops.reshape(qkv[..., self.key_depth : 2 * self.key_depth],
                          lead + (self.num_heads, self.key_depth_per_head))
        value = ops.reshape(qkv[..., 2 * self.key_depth :], lead + (self.num_heads, self.value_depth_per_head))
        return query, key, value

    def _normalise_and_sum(self, terms, norm, training):
        """Stack terms on a new last axis, BN each (term, last-axis entry) separately, sum."""
        stacked = ops.stack(terms, axis=-1)
        if self.use_batch_norm:
            # One scale and offset per (entry, term): merge the last two axes for BN.
            shape = ops.shape(stacked)
            merged = ops.reshape(stacked, tuple(shape[:-2]) + (stacked.shape[-2] * stacked.shape[-1],))
            stacked = ops.reshape(self._norm(norm, merged, training), shape)
        return ops.sum(stacked, axis=-1)

    def fuse_similarity(self, terms, training=None):
        """Sum of the similarity terms, each (..., heads), normalised per (head, term)."""
        return self._normalise_and_sum(terms, getattr(self, "similarity_norm", None), training)

    def fuse_retrieved(self, terms, training=None):
        """Sum of the retrieved terms, each (..., heads, d_v), normalised per (channel, term)."""
        lead = tuple(ops.shape(terms[0])[:-2])
        flat = [ops.reshape(t, lead + (self.value_depth,)) for t in terms]
        return self._normalise_and_sum(flat, getattr(self, "output_norm", None), training)

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
