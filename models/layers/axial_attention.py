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
Full models use m = 15, Axial-DeepLab m = 65); queries within (m - 1)/2 of an end
see the fewer keys the axis has.  The M-Adds counter charges min(m, L) keys per
query, see models/counting.py.

Striding (Sec. 3.2, "Optional striding is performed on each axis after the
corresponding axial-attention layer"): `strides=s` keeps every s-th output
position along this layer's axis.

Computation (the function of models/layers/reference_attention.py, arranged for speed),
two paths, one function:

- Masked (global span, or a span as long as the axis, or an axis too short for blocks to
  pay): lines-and-heads-major tensors [lines, heads, L, d], so q.k and a.v are plain
  batched matmuls; the qkv projection one 2-D matmul; each position term one batched
  matmul per position over the [L, L, d] table rows gathered once per call (q_j against
  the rows of j's offsets); keys outside a local span masked (-1e9).  Memory and time grow
  with L^2.
- Windowed (issue #24; span m shorter than the axis, chosen by `uses_window`): the axis is
  cut into query blocks of s = min(32, m) positions (WINDOW_BLOCK; the last block
  zero-padded), and each block meets its halo, the s + m - 1 keys around it (the zero-padded
  axis' blocks, as in local_attention.py's blocked local attention, whose `_Blocking` and
  `halos` it shares): q.k one [s, s + m - 1] matmul per block.  The position terms depend on
  the offset only, so they are computed "banded", [L, m], each a plain matmul with the m table
  rows of the window (the key term's rows shifted along the axis by a pad-and-reshape), and
  skewed into the blocks (query i meets halo key i + c at offset c - (m - 1)/2); the value
  term takes the softmax weights back to the banded layout.  Pairs outside a query's window
  or beyond the ends of the axis get the masked path's -1e9, so every softmax row is the
  masked path's without its exact zeros.  Memory and time grow with L (s + m - 1).

In both, the similarity BN is folded into q and k (its offset is dropped because the softmax
cancels it), and its batch statistics are those of the reference, which normalises the
logits before masking: over all L x L (query, key) pairs of the axis, masked ones included,
computed without the logits from q, k and the tables through d x d Gram matrices (the
windowed path: per position p, the sum and the Gram matrix of the table rows p meets, from
how often it meets each row: [L, rows] x [rows, d^2] products, linear in L).  The output BN's
statistics come from the retrieved terms over every position of the axis, strided-away ones
included.  The BN layers keep their variables, moving-average updates and cross-replica
synchronisation (PositionSensitiveAttention.norm_affine).  Weights and counts are the same
on both paths.
"""

from __future__ import annotations

import functools

import numpy as np
import keras
from keras import ops

from models.layers.attention_core import PositionSensitiveAttention, cast
from models.layers.local_attention import _Blocking, halos
from models.layers.position import MAX_SPAN, RelativePositionTable, relative_offsets, slice_axis

HEIGHT, WIDTH = "height", "width"
# The windowed path's query block length s (at most the span): logits of s + m - 1 keys per
# query instead of L; see benchmarks/attention_memory.py.
WINDOW_BLOCK = 32


def softmax_over_keys(similarity):
    """Softmax over the last (key) axis.  Over a single key (span 1, or an axis of length 1) it
    is 1, written as such (with softmax's zero gradient, so the logits' variables keep one):
    Keras warns on a softmax over an axis of size 1 at every trace."""
    if similarity.shape[-1] == 1:
        return similarity * 0.0 + 1.0
    return ops.softmax(similarity, axis=-1)


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


def _position_moments(x, row_sums, grams):
    """`_position_statistics` from W_p (L, d) and G_p (L, d, d) (the windowed path's `_row_moments`)."""
    length, depth = x.shape[2], x.shape[3]
    count = length * length
    mean = ops.sum(x * row_sums, axis=(2, 3)) / count
    by_position = ops.reshape(ops.transpose(x, (2, 0, 1, 3)), (length, -1, depth))  # (L, lines * heads, d)
    quadratic = ops.sum(ops.matmul(by_position, grams) * by_position, axis=(0, 2))
    return mean, ops.reshape(quadratic, (-1, x.shape[1])) / count


@functools.lru_cache(maxsize=None)
def _row_counts(length: int, max_span: int) -> tuple[int, np.ndarray]:
    """(first, counts): counts[j, u] = how many keys b of query j have table row first + u
    (relative_offsets(length, max_span)[j, b] = first + u), over the rows the axis uses.

    Without the [L, L] offsets: query j's unclamped rows are the L consecutive M - 1 - j ..
    L + M - 2 - j (M = max_span), and the clamp sends those below 0 to row 0 and those above
    2M - 2 to row 2M - 2; F[j, u] = how many rows are <= u, counts its differences."""
    last = 2 * max_span - 2
    low = max_span - 1 - np.arange(length)[:, None]  # the first unclamped row of each query
    rows = np.arange(last + 1)[None, :]
    at_most = np.clip(rows - low + 1, 0, length)
    at_most[:, -1] = length
    counts = np.diff(at_most, axis=1, prepend=0)
    used = np.flatnonzero(counts.any(axis=0))
    return int(used[0]), np.ascontiguousarray(counts[:, used[0]:used[-1] + 1])


def _to_query_blocks(x, blocking: _Blocking):
    """[lines, heads, L, n] -> [lines, heads, blocks, s, n], the axis zero-padded to blocks * s."""
    x = ops.pad(x, ((0, 0), (0, 0), (0, blocking.blocks * blocking.size - blocking.length), (0, 0)))
    return ops.reshape(x, (-1, x.shape[1], blocking.blocks, blocking.size, x.shape[-1]))


def _from_query_blocks(x, length: int):
    """The inverse of _to_query_blocks: [lines, heads, blocks, s, n] -> [lines, heads, L, n]."""
    x = ops.reshape(x, (-1, x.shape[1], x.shape[2] * x.shape[3], x.shape[4]))
    return slice_axis(x, 2, 0, length)


def _skew(x):
    """(..., R, w) -> (..., R, R + w - 1), row r shifted right by r: out[r, r + c] = x[r, c], 0 elsewhere.

    By a pad, reshape and slice (row r of the padded (R, w + R) read with rows of w + R - 1)."""
    rows, width, lead = x.shape[-2], x.shape[-1], tuple(x.shape[1:-2])
    x = ops.pad(x, [(0, 0)] * (len(x.shape) - 1) + [(0, rows)])
    x = slice_axis(ops.reshape(x, (-1,) + lead + (rows * (width + rows),)), -1, 0, rows * (width + rows - 1))
    return ops.reshape(x, (-1,) + lead + (rows, width + rows - 1))


def _unskew(x, width: int):
    """(..., R, C) -> (..., R, width), row r shifted left by r: out[r, c] = x[r, r + c] (width <= C - R + 1);
    the inverse of _skew."""
    rows, columns, lead = x.shape[-2], x.shape[-1], tuple(x.shape[1:-2])
    assert width <= columns - rows + 1, (width, columns, rows)
    x = ops.pad(ops.reshape(x, (-1,) + lead + (rows * columns,)), [(0, 0)] * (len(x.shape) - 2) + [(0, rows)])
    return slice_axis(ops.reshape(x, (-1,) + lead + (rows, columns + 1)), -1, 0, width)


@functools.lru_cache(maxsize=None)
def _window_mask(length: int, window: int, size: int) -> np.ndarray:
    """[block, i, r]: the halo keys block query i attends to: in its window and on the axis (a padding
    query, dropped at the end, keeps its whole window: no softmax row is all masked)."""
    blocking = _Blocking(length, window, size=size)
    return (blocking.in_window[None] * blocking.key_attended) > 0


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

    Two attributes choose how the function is computed, not what it is (they are not part of
    the config): `attention_path`, "auto" (the windowed path when `uses_window`), "masked" or
    "windowed" (the equality tests and benchmarks/attention_memory.py force one), and
    `block_length`, the windowed path's query block (None: min(WINDOW_BLOCK, m)).
    """

    attention_path = "auto"
    block_length = None

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
        attend = self._windowed_attention if self.uses_window(length) else self._masked_attention
        retrieved, unused = attend(query, key, value, training)  # [lines, heads, L, d_v] each

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

    # The attention proper: (query, key, value) [lines, heads, L, d] -> the retrieved terms
    # [lines, heads, L, d_v] (before the output BN) and `unused` (see _masked_attention).

    def blocking(self, length: int) -> _Blocking:
        """The windowed path's query blocks on an axis of `length` (span m): blocks of s queries
        (`block_length`, by default min(WINDOW_BLOCK, m); at most L), each with its halo of
        s + m - 1 keys."""
        size = self.block_length or min(WINDOW_BLOCK, self.span)
        return _Blocking(length, self.span, size=size)

    def uses_window(self, length: int) -> bool:
        """Whether a call on an axis of `length` takes the windowed path: when the span is shorter
        than the axis and the blocks with their halos hold fewer (query, key) pairs than the
        L x L of the masked path (`attention_path` "masked" or "windowed" forces one)."""
        if self.span is None or self.attention_path == "masked":
            return False
        if self.attention_path == "windowed":
            return True
        blocking = self.blocking(length)
        return self.span < length and blocking.blocks * blocking.size * blocking.halo < length * length

    def _masked_attention(self, query, key, value, training):
        """Every query against the whole axis, keys outside a local span masked: the path of a
        global span, and of every span before issue #24."""
        length, heads = query.shape[2], self.num_heads
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
        weights = softmax_over_keys(similarity)

        retrieved = [ops.matmul(weights, value)]  # [lines, heads, L, d_v]
        if self.value_position:
            # sum_b a_jb r^v_{b-j}: per query position j, (lines * heads, L) x (L, d_v).
            by_query = ops.reshape(ops.transpose(weights, (2, 0, 1, 3)), (length, -1, length))
            by_query = ops.matmul(by_query, self.value_table(offsets))  # [j, lines * heads, d_v]
            retrieved.append(ops.transpose(ops.reshape(by_query, (length, -1, heads, self.value_depth_per_head)),
                                           (1, 2, 0, 3)))
        return retrieved, unused

    def _windowed_attention(self, query, key, value, training):
        """Each block of queries against its halo of keys: memory and time linear in L at fixed m.

        The axis is cut into blocks of s queries (`blocking`, the last one zero-padded); block k
        meets the s + m - 1 keys around it (models/layers/local_attention.py's `halos`).  q.k is
        one [s, s + m - 1] matmul per block.  The position terms depend on the offset c - h
        (c = 0 .. m - 1, h = (m - 1)/2) only, so they are first computed "banded", [L, m], with
        the m table rows of the window as plain matmuls, then skewed into the block layout
        (query i of a block meets halo key r = i + c); the value term takes the weights back to
        the banded layout.  Pairs outside a query's window or the axis get the masked path's
        -1e9, so every softmax row is the masked path's row without its zeros.  The similarity
        BN's statistics are the masked path's, over all L x L pairs (`_row_moments`).
        """
        length, heads, half = query.shape[2], self.num_heads, self.span // 2
        blocking = self.blocking(length)
        # The table row of each window offset c - h, clamped beyond max_span - 1 as in deeplab2.
        band = np.clip(np.arange(self.span) - half + self.max_span - 1, 0, 2 * self.max_span - 2).astype("int32")

        scales, unused = [1.0] * 3, 0.0
        if self.use_batch_norm:  # folded into the operands, as in _masked_attention
            scale, shift = self.norm_affine(
                self.similarity_norm, (heads,),
                lambda: self._similarity_statistics(query, key, self._row_moments(length)), training)
            scales = [ops.reshape(scale[:, t], (1, heads, 1, 1)) for t in range(self.similarity_terms)]
            unused = 0.0 * ops.sum(shift)
        scales = iter(scales)
        keys = ops.swapaxes(halos(key, 2, blocking), 3, 4)  # [lines, heads, block, d, halo r]
        similarity = ops.matmul(_to_query_blocks(query * next(scales), blocking), keys)  # [.., block, i, r]
        banded = None  # [lines, heads, j, c]: the position terms of query j and its key j + c - h
        if self.query_position:
            # q_j . r^q_{c-h}: one (L, d) x (d, m) product per line and head.
            banded = ops.matmul(query * next(scales), ops.transpose(self.query_table(band)))
        if self.key_position:
            # k_b . r^k_{c-h} for every key b, as [c, b]; query j's key in column c is b = j + c - h,
            # so row c is shifted left by c (_unskew of the axis padded by h on both sides).
            by_key = ops.matmul(self.key_table(band), ops.swapaxes(key * next(scales), 2, 3))  # [.., c, b]
            by_key = ops.pad(by_key, ((0, 0), (0, 0), (0, 0), (half, half)))
            by_key = ops.swapaxes(_unskew(by_key, length), 2, 3)  # [.., j, c]
            banded = by_key if banded is None else banded + by_key
        if banded is not None:
            similarity = similarity + _skew(_to_query_blocks(banded, blocking))
        similarity = ops.where(_window_mask(length, self.span, blocking.size), similarity, -1e9)
        weights = softmax_over_keys(similarity)

        values = halos(value, 2, blocking)  # [lines, heads, block, halo r, d_v]
        retrieved = [_from_query_blocks(ops.matmul(weights, values), length)]
        if self.value_position:
            # sum_c a_{j, c} r^v_{c-h}: the weights banded, one (L, m) x (m, d_v) product.
            banded_weights = _from_query_blocks(_unskew(weights, self.span), length)  # [lines, heads, j, c]
            retrieved.append(ops.matmul(banded_weights, self.value_table(band)))
        return retrieved, unused

    def _row_moments(self, length: int):
        """For `_similarity_statistics` on the windowed path: per position p, the sum and the
        Gram matrix of the table rows that p meets over all L pairs (the masked path gathers
        those rows, [L, L, d]), from the counts of each row: [L, R] x [R, d] and [R, d * d]
        products over the R table rows an axis of L uses (at most 2 max_span - 1)."""
        first, counts = _row_counts(length, self.max_span)  # [query j, row] over the keys b
        moments = {}
        for name, table, enabled, count in (("query", self.query_table, self.query_position, counts),
                                            # A key b meets the rows a query L - 1 - b meets.
                                            ("key", self.key_table, self.key_position, counts[::-1])):
            if not enabled:
                moments[name] = None
                continue
            rows = cast(table(np.arange(first, first + counts.shape[1], dtype="int32")), self.statistics_dtype)
            count = ops.convert_to_tensor(np.ascontiguousarray(count), dtype=rows.dtype)
            outer = ops.reshape(rows[:, :, None] * rows[:, None, :], (rows.shape[0], -1))
            moments[name] = (ops.matmul(count, rows),
                             ops.reshape(ops.matmul(count, outer), (length, rows.shape[1], rows.shape[1])))
        return moments

    def _similarity_statistics(self, query, key, tables):
        """Per line and head, the mean over all L x L (query, key) pairs of each similarity term
        and of its square, from q, k and the tables: (lines, heads) each, for norm_affine.

        Masked pairs of a local span count too: the reference normalises before masking.
        q.k: sum_jb q_j.k_b = (sum_j q_j).(sum_b k_b); sum_jb (q_j.k_b)^2 = <Q'Q, K'K> with
        the d x d Gram matrices Q'Q, K'K.  The position terms: `_position_statistics` from the
        masked path's [L, L, d] rows, `_position_moments` from the windowed path's `_row_moments`.
        """
        query, key = (cast(t, self.statistics_dtype) for t in (query, key))
        count = query.shape[2] ** 2
        statistics = [(ops.sum(ops.sum(query, axis=2) * ops.sum(key, axis=2), axis=-1) / count,
                       ops.sum(_gram(query) * _gram(key), axis=(2, 3)) / count)]
        for x, name, enabled in ((query, "query", self.query_position), (key, "key", self.key_position)):
            if not enabled:
                continue
            if isinstance(tables[name], tuple):  # the windowed path's (row sums, Gram matrices)
                statistics.append(_position_moments(x, *tables[name]))
            else:
                statistics.append(_position_statistics(x, cast(tables[name], self.statistics_dtype)))
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
