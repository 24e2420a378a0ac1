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

Computation (the function of models/layers/reference_attention.py, arranged for speed):
lines-and-heads-major tensors [lines, heads, L, d], so q.k and a.v are plain batched
matmuls; the qkv projection one 2-D matmul; each position term one batched matmul per
position over the [L, L, d] table rows gathered once per call (q_j against the rows of
j's offsets); the similarity BN folded into q and k (its statistics come from q, k and the
tables through d x d Gram matrices, not from the [L, L] logits, and its offset is dropped
because the softmax cancels it), so each [lines, heads, L, L] pass is one that the
attention itself needs.  The BN layers keep their variables, moving-average updates and
cross-replica synchronisation (PositionSensitiveAttention.norm_affine).
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from models.layers.attention_core import PositionSensitiveAttention, cast
from models.layers.position import MAX_SPAN, RelativePositionTable, relative_offsets, slice_axis

HEIGHT, WIDTH = "height", "width"


def every(x, axis: int, step: int):
    """Every step-th entry of x along `axis` (from the first), by pad, reshape and slice.

    The same as x[..., ::step, ...], with a Pad/Slice gradient instead of a strided slice's.
    """
    if step == 1:
        return x
    length = x.shape[axis]
    kept = -(-length // step)
    x = ops.pad(x, [(0, 0)] * axis + [(0, kept * step - length)] + [(0, 0)] * (len(x.shape) - axis - 1))
    x = ops.reshape(x, (-1,) + tuple(x.shape[1:axis]) + (kept, step) + tuple(x.shape[axis + 1:]))
    return ops.squeeze(slice_axis(x, axis + 1, 0, 1), axis + 1)


def _gram(x):
    """x' x over the positions of every line and head: (lines, heads, d, d)."""
    return ops.matmul(ops.swapaxes(x, 2, 3), x)


def _by_position(x, rows, order):
    """x_p . rows[p, o] for every position p of x (lines, heads, L, d) and every o of rows (L, L, d):
    one batched matmul over p of (lines * heads, d) x (d, L), transposed by `order` from
    (p, lines, heads, o)."""
    length, depth = x.shape[2], x.shape[3]
    by_position = ops.reshape(ops.transpose(x, (2, 0, 1, 3)), (length, -1, depth))
    products = ops.matmul(by_position, ops.swapaxes(rows, 1, 2))  # (p, lines * heads, o)
    return ops.transpose(ops.reshape(products, (length, -1, x.shape[1], length)), order)


def _position_statistics(x, rows):
    """Per line and head, the mean over all L x L pairs of x_p . rows[p, o] and of its square.

    x: (lines, heads, L, d), the query (p = j) or key (p = b) of every pair; rows: (L, L, d),
    the table rows position p meets.  With W_p = sum_o rows[p, o] and the Gram matrix
    G_p = sum_o rows[p, o] rows[p, o]', sum_pairs x.r = sum_p x_p.W_p and sum_pairs (x.r)^2 =
    sum_p x_p' G_p x_p: products of size L x d x d per line and head, not L x L x d.
    """
    length, depth = x.shape[2], x.shape[3]
    count = length * length
    mean = ops.sum(x * ops.sum(rows, axis=1), axis=(2, 3)) / count
    by_position = ops.reshape(ops.transpose(x, (2, 0, 1, 3)), (length, -1, depth))  # (L, lines * heads, d)
    grams = ops.matmul(ops.swapaxes(rows, 1, 2), rows)  # (L, d, d)
    quadratic = ops.sum(ops.matmul(by_position, grams) * by_position, axis=(0, 2))
    return mean, ops.reshape(quadratic, (-1, x.shape[1])) / count


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
        heads = self.num_heads
        qkv = self.project(inputs, training)
        qkv = ops.reshape(qkv, (-1, height, width, qkv.shape[-1]))
        # Heads-major lines: (batch, other axis, heads, L, depth), so every attention
        # product below is a plain batched matmul over (line, head).
        to_lines = (0, 1, 3, 2, 4) if self.axis == WIDTH else (0, 2, 3, 1, 4)
        query, key, value = (ops.reshape(ops.transpose(t, to_lines), (-1, heads, length, t.shape[-1]))
                             for t in self.split_heads(qkv))
        # Table rows of every (query, key) pair, clamped beyond max_span - 1 as in deeplab2:
        # [L, L, d] per table, shared by every line and head (the gather's gradient is small).
        offsets = relative_offsets(length, self.max_span)  # [query j, key b] -> row
        tables = {"query": self.query_table(offsets) if self.query_position else None,  # [j, b, d]
                  "key": self.key_table(offsets.T) if self.key_position else None}  # [b, j, d]

        # The similarity BN (one scale and offset per head and term) is folded into the
        # operands: BN(q.k) = (s q).k + c, and likewise for the position terms, so no
        # [lines, heads, L, L] tensor is normalised term by term.  Its batch statistics come
        # from q, k and the tables (`_similarity_statistics`) without the logits.  The summed
        # offset c is one number per head, the same for every key of a query, which the
        # softmax cancels: it is left out of the logits (its gradient, and that of the BN's
        # beta, is zero; the reference computes that zero as rounding noise).  `unused` keeps
        # beta in the graph with that exact zero gradient, so that every weight has one.
        scales, unused = [1.0] * 3, 0.0
        if self.use_batch_norm:
            scale, shift = self.norm_affine(self.similarity_norm, (heads,),
                                            lambda: self._similarity_statistics(query, key, tables), training)
            scales = [ops.reshape(scale[:, t], (1, heads, 1, 1)) for t in range(self.similarity_terms)]
            unused = 0.0 * ops.sum(shift)
        scales = iter(scales)
        similarity = ops.matmul(query * next(scales), ops.swapaxes(key, 2, 3))  # [lines, heads, j, b]
        if self.query_position:
            # q_j . r^q_{b-j}: for each query position j one (lines * heads, d) x (d, L) product
            # with that position's table rows.
            similarity = similarity + _by_position(query * next(scales), tables["query"], (1, 2, 0, 3))
        if self.key_position:
            # k_b . r^k_{b-j}: the same per key position b, giving [b, ..., j]; transposed to [j, b].
            similarity = similarity + _by_position(key * next(scales), tables["key"], (1, 2, 3, 0))

        if self.span is not None and self.span < 2 * length - 1:
            outside = np.abs(np.arange(length)[None, :] - np.arange(length)[:, None]) > self.span // 2
            similarity = ops.where(outside, -1e9, similarity)
        weights = ops.softmax(similarity, axis=-1)

        retrieved = [ops.matmul(weights, value)]  # [lines, heads, L, d_v]
        if self.value_position:
            # sum_b a_jb r^v_{b-j}: per query position j, (lines * heads, L) x (L, d_v).
            by_query = ops.reshape(ops.transpose(weights, (2, 0, 1, 3)), (length, -1, length))
            by_query = ops.matmul(by_query, self.value_table(offsets))  # [j, lines * heads, d_v]
            retrieved.append(ops.transpose(ops.reshape(by_query, (length, -1, heads, self.value_depth_per_head)),
                                           (1, 2, 0, 3)))
        if self.use_batch_norm:
            # One scale and offset per (value channel, term); statistics over every position,
            # the strided-away ones included, as in the reference.
            scale, shift = self.norm_affine(self.output_norm, (heads, 1, self.value_depth_per_head),
                                            lambda: self.group_statistics(retrieved, axes=(2,)), training)
            retrieved = [every(t, 2, self.strides) * scale[..., i] for i, t in enumerate(retrieved)]
            retrieved.append(ops.sum(shift, axis=-1) + unused)
        else:
            retrieved = [every(t, 2, self.strides) for t in retrieved]
        output = retrieved[0]
        for term in retrieved[1:]:
            output = output + term

        kept = output.shape[2]
        other = width if self.axis == HEIGHT else height
        output = ops.reshape(output, (-1, other, heads, kept, self.value_depth_per_head))
        back = (0, 1, 3, 2, 4) if self.axis == WIDTH else (0, 3, 1, 2, 4)
        output = ops.transpose(output, back)
        return ops.reshape(output, (-1,) + tuple(output.shape[1:3]) + (self.value_depth,))

    def _similarity_statistics(self, query, key, tables):
        """Per line and head, the mean over all L x L (query, key) pairs of each similarity term
        and of its square, from q, k and the tables: (lines, heads) each, for norm_affine.

        Masked pairs of a local span count too: the reference normalises before masking.
        q.k: sum_jb q_j.k_b = (sum_j q_j).(sum_b k_b); sum_jb (q_j.k_b)^2 = <Q'Q, K'K> with
        the d x d Gram matrices Q'Q, K'K.  The position terms: `_position_statistics`.
        """
        query, key = (cast(t, self.statistics_dtype) for t in (query, key))
        tables = {name: None if t is None else cast(t, self.statistics_dtype) for name, t in tables.items()}
        count = query.shape[2] ** 2
        statistics = [(ops.sum(ops.sum(query, axis=2) * ops.sum(key, axis=2), axis=-1) / count,
                       ops.sum(_gram(query) * _gram(key), axis=(2, 3)) / count)]
        if self.query_position:
            statistics.append(_position_statistics(query, tables["query"]))
        if self.key_position:
            statistics.append(_position_statistics(key, tables["key"]))
        return statistics

    def count_madds(self, input_shape, local_keys: str = "window") -> dict[str, int]:
        """Multiply-accumulates for one image, by operation (see models/counting.py)."""
        _, height, width, channels = input_shape
        length = height if self.axis == HEIGHT else width
        return self.attention_madds(height * width, self.keys_per_query(length, local_keys), channels)

    def get_config(self):
        config = super().get_config()
        config.update(axis=self.axis, span=self.span, max_span=self.max_span)
        return config
