"""The attention layers' first, direct formulation, kept as the reference (paper Eq. 2-4).

`ReferenceAxialAttention` and `ReferenceLocalSelfAttention2D` are the fast layers of
axial_attention.py and local_attention.py with their `call` replaced by the direct
formulation the suite started with: Eq. 4 (and Eq. 2, 3) written as einsums over
gathered [L, L, d] (or [m*m, d]) position tensors, every term stacked and batch-normalised
through a 2-D view.  Same weights, same variables, same function; only the arithmetic is
arranged differently.  The equality tests (tests/test_attention_equality.py) and the
speed benchmark (benchmarks/attention_speed.py) run both side by side; `with_reference_layers`
turns any model of the suite into its reference twin with the same weights.
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from models.layers.axial_attention import HEIGHT, AxialAttention
from models.layers.local_attention import LocalSelfAttention2D
from models.layers.position import relative_offsets


class _ReferenceTerms:
    """Projection and term fusion of the direct formulation (mixed into both layers)."""

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


@keras.saving.register_keras_serializable(package="axial_deeplab")
class ReferenceAxialAttention(_ReferenceTerms, AxialAttention):
    """AxialAttention computed directly: every (query, key) pair's table rows gathered into
    [L, L, d] tensors, each term an einsum, the whole axis attended and masked to the span."""

    def call(self, inputs, training=None):
        x = inputs
        if self.axis == HEIGHT:
            x = ops.transpose(x, (0, 2, 1, 3))
        batch, lines, length = ops.shape(x)[0], x.shape[1], x.shape[2]
        query, key, value = self.project(ops.reshape(x, (-1, length, x.shape[3])), training)

        offsets = relative_offsets(length, self.max_span)  # [query, key] -> table row
        terms = [ops.einsum("nlhd,nmhd->nlmh", query, key)]
        if self.query_position:
            terms.append(ops.einsum("nlhd,lmd->nlmh", query, self.query_table(offsets)))
        if self.key_position:
            terms.append(ops.einsum("nmhd,lmd->nlmh", key, self.key_table(offsets)))
        similarity = self.fuse_similarity(terms, training)

        if self.span is not None and self.span < 2 * length - 1:
            outside = np.abs(np.arange(length)[None, :] - np.arange(length)[:, None]) > self.span // 2
            similarity = ops.where(outside[None, :, :, None], -1e9, similarity)
        weights = ops.softmax(similarity, axis=2)

        retrieved = [ops.einsum("nlmh,nmhd->nlhd", weights, value)]
        if self.value_position:
            retrieved.append(ops.einsum("nlmh,lmd->nlhd", weights, self.value_table(offsets)))
        output = ops.reshape(self.fuse_retrieved(retrieved, training),
                             (batch, lines, length, self.value_depth))
        if self.strides > 1:
            output = output[:, :, :: self.strides, :]
        if self.axis == HEIGHT:
            output = ops.transpose(output, (0, 2, 1, 3))
        return output


@keras.saving.register_keras_serializable(package="axial_deeplab")
class ReferenceLocalSelfAttention2D(_ReferenceTerms, LocalSelfAttention2D):
    """LocalSelfAttention2D computed directly: m*m shifted copies of the keys and values
    stacked into [b, h, w, m*m, heads, d], each term an einsum over them."""

    def _window_positions(self, term: str):
        """(m*m, depth) position vectors for every window offset, row-major."""
        m = self.window
        rows = ops.repeat(self.tables[term, "row"](np.arange(m)), m, axis=0)
        cols = ops.tile(self.tables[term, "column"](np.arange(m)), (m, 1))
        return ops.concatenate([rows, cols], axis=-1)

    def _neighbourhoods(self, x):
        """(batch, h, w, m*m, ...): the zero-padded m x m window around every pixel."""
        m, half = self.window, self.window // 2
        height, width = x.shape[1], x.shape[2]
        pad = ((0, 0), (half, half), (half, half)) + ((0, 0),) * (len(x.shape) - 3)
        padded = ops.pad(x, pad)
        shifted = [padded[:, a : a + height, b : b + width] for a in range(m) for b in range(m)]
        return ops.stack(shifted, axis=3)

    def call(self, inputs, training=None):
        height, width = inputs.shape[1], inputs.shape[2]
        query, key, value = self.project(inputs, training)
        key, value = self._neighbourhoods(key), self._neighbourhoods(value)

        terms = [ops.einsum("bxyhd,bxymhd->bxymh", query, key)]
        if self.query_position:
            terms.append(ops.einsum("bxyhd,md->bxymh", query, self._window_positions("query")))
        if self.key_position:
            terms.append(ops.einsum("bxymhd,md->bxymh", key, self._window_positions("key")))
        similarity = self.fuse_similarity(terms, training)

        inside = self._neighbourhoods(np.ones((1, height, width, 1), "float32"))
        similarity = ops.where(inside > 0, similarity, -1e9)
        weights = ops.softmax(similarity, axis=3)

        retrieved = [ops.einsum("bxymh,bxymhd->bxyhd", weights, value)]
        if self.value_position:
            retrieved.append(ops.einsum("bxymh,md->bxyhd", weights, self._window_positions("value")))
        output = self.fuse_retrieved(retrieved, training)
        if self.strides > 1:
            output = ops.average_pool(output, pool_size=self.strides, strides=self.strides, padding="same")
        return output


REFERENCE_CLASSES = {AxialAttention: ReferenceAxialAttention,
                     LocalSelfAttention2D: ReferenceLocalSelfAttention2D}


def with_reference_layers(model: keras.Model) -> keras.Model:
    """A clone of `model` whose attention layers use the reference formulation, same weights."""

    def clone(layer):
        cls = REFERENCE_CLASSES.get(type(layer), type(layer))
        return cls.from_config(layer.get_config())

    twin = keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    return twin
