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

Computation (blocked, "halo" attention): the image is cut into blocks of s x s queries
(s = min(m, side)); the queries of a block share one matmul with the (s + m - 1)^2 keys
around the block, every key any of them can see, instead of gathering m*m keys per pixel
([b, h, w, m*m, heads, d] copies, eight times the size of the logits).  A query's pairs
outside its window are computed too (s = m: 169 keys for 49) and are excluded from the BN
statistics and the softmax; the function is the reference's (models/layers/
reference_attention.py).  The position terms split into a row and a column part, so they
are small per-position matmuls broadcast over the other axis, and their BN statistics
come from those small tensors; the attention mask rides on the query-position term.
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from models.layers.attention_core import PositionSensitiveAttention, cast
from models.layers.position import RelativePositionTable, slice_axis

MASKED = -1e9  # the logit of a key outside the window or the image, as in the reference


class _Blocking:
    """How one image axis of length n is cut into query blocks with halos (constants only).

    Blocks of s = min(m, n) positions, or min(size, n) (the axial layer's windowed path uses
    blocks shorter than m), the axis padded to a multiple of s; block k's halo is the s + m - 1
    positions k*s - (m - 1)/2 .. k*s + s - 1 + (m - 1)/2 of the zero-padded axis, every key
    any of its queries can see.  Halo position r is r - (m - 1)/2 - i away
    from block position i: in i's window when 0 <= r - i < m, table row r - i.
    """

    def __init__(self, length: int, window: int, size: int | None = None):
        self.length, self.window = length, window
        self.size = min(window if size is None else size, length)
        self.blocks = -(-length // self.size)
        self.halo = self.size + window - 1
        offset = np.arange(self.halo)[None, :] - np.arange(self.size)[:, None]
        self.table_rows = np.clip(offset, 0, window - 1).astype("int32")  # [i, r]
        self.in_window = ((offset >= 0) & (offset < window)).astype("float32")  # [i, r]
        starts = np.arange(self.blocks)[:, None] * self.size
        # [block, i]: queries inside the image; [block, r]: keys inside the image.
        self.query_inside = (starts + np.arange(self.size)[None, :] < length).astype("float32")
        key_position = starts + np.arange(self.halo)[None, :] - window // 2
        self.key_inside = ((key_position >= 0) & (key_position < length)).astype("float32")
        # [block, i, r]: keys a query attends to, inside the image; a padding query (dropped
        # at the end) keeps its whole window, so that no softmax row is all masked (with
        # float16's -inf for MASKED that would be NaN, and NaN * 0 in the gradients).
        self.key_attended = np.maximum(self.key_inside[:, None, :], 1 - self.query_inside[:, :, None])
        # [block, r]: how many of the block's (inside) queries have halo position r in their window.
        self.window_count = self.query_inside @ self.in_window


def _to_blocks(x, rows: _Blocking, cols: _Blocking):
    """(batch, h, w, heads, d) -> (blocks, batch, heads, block queries i*s+j, d), zero-padded.

    Blocks lead, so that per-block constants broadcast and a product with them is a plain
    batched matmul over blocks."""
    heads, depth = x.shape[3], x.shape[4]
    x = ops.pad(x, ((0, 0), (0, rows.blocks * rows.size - rows.length), (0, cols.blocks * cols.size - cols.length),
                    (0, 0), (0, 0)))
    x = ops.reshape(x, (-1, rows.blocks, rows.size, cols.blocks, cols.size, heads, depth))
    x = ops.transpose(x, (1, 3, 0, 5, 2, 4, 6))
    return ops.reshape(x, (rows.blocks * cols.blocks, -1, heads, rows.size * cols.size, depth))


def _from_blocks(x, rows: _Blocking, cols: _Blocking):
    """The inverse of _to_blocks, padding removed: (batch, h, w, heads, d)."""
    heads, depth = x.shape[2], x.shape[4]
    x = ops.reshape(x, (rows.blocks, cols.blocks, -1, heads, rows.size, cols.size, depth))
    x = ops.transpose(x, (2, 0, 4, 1, 5, 3, 6))
    x = ops.reshape(x, (-1, rows.blocks * rows.size, cols.blocks * cols.size, heads, depth))
    return slice_axis(slice_axis(x, 1, 0, rows.length), 2, 0, cols.length)


def halos(x, axis: int, blocking: _Blocking):
    """x with `axis` (the blocked axis, of blocking.length) replaced by two, (blocks, halo): the
    zero-padded neighbourhood of every block, every key any of its queries can see.

    Halo k starts at k*s on the axis padded by (m - 1)/2 in front, so it is made of the padded
    axis' blocks k .. k + p - 1 (p = ceil(halo / s)) cut to its length: p slices of the axis
    reshaped into blocks, a number of operations independent of the number of blocks."""
    if axis == 0:
        raise ValueError("halos: the blocked axis cannot be the leading (batch) axis")
    size, rank = blocking.size, len(x.shape)
    pieces = -(-blocking.halo // size)
    padded = (blocking.blocks + pieces - 1) * size
    front = blocking.window // 2
    x = ops.pad(x, [(0, 0)] * axis + [(front, padded - front - blocking.length)] + [(0, 0)] * (rank - axis - 1))
    x = ops.reshape(x, (-1,) + tuple(x.shape[1:axis]) + (blocking.blocks + pieces - 1, size)
                    + tuple(x.shape[axis + 1:]))
    x = ops.concatenate([slice_axis(x, axis, k, blocking.blocks) for k in range(pieces)], axis=axis + 1)
    return slice_axis(x, axis + 1, 0, blocking.halo)


def _to_halos(x, rows: _Blocking, cols: _Blocking):
    """(batch, h, w, heads, d) -> (blocks, batch, heads, halo keys r*(s+m-1)+c, d): the zero-padded
    neighbourhood of every block (`halos` along the rows, then the columns)."""
    heads, depth = x.shape[3], x.shape[4]
    x = halos(halos(x, 1, rows), 3, cols)  # (batch, row block, r, col block, c, heads, d)
    x = ops.transpose(x, (1, 3, 0, 5, 2, 4, 6))  # (row block, col block, batch, heads, r, c, d)
    return ops.reshape(x, (rows.blocks * cols.blocks, -1, heads, rows.halo * cols.halo, depth))


def _per_position(x, table, axis: int):
    """x . table[p, n] for every position p along `axis` of x (..., depth) and every n: one
    batched matmul over p of (everything else, depth) x (depth, n); the last axis becomes n."""
    moved = ops.moveaxis(x, axis, 0)
    batched = ops.reshape(moved, (moved.shape[0], -1, moved.shape[-1]))
    products = ops.matmul(batched, ops.swapaxes(table, 1, 2))  # (p, everything else, n)
    products = ops.reshape(products, (moved.shape[0], -1) + tuple(moved.shape[2:-1]) + (table.shape[1],))
    return ops.moveaxis(products, 0, axis)


def _halves(x):
    """The row and column halves of the last axis (the depths of the two tables)."""
    half = x.shape[-1] // 2
    return slice_axis(x, -1, 0, half), slice_axis(x, -1, half, half)


class _Grid:
    """Constants of the (block queries Q = (i, j), halo keys (r, c)) grid of two blockings, per block."""

    def __init__(self, rows: _Blocking, cols: _Blocking):
        self.rows, self.cols = rows, cols
        self.blocks = rows.blocks * cols.blocks
        self.queries, self.keys = rows.size * cols.size, rows.halo * cols.halo
        block_row = np.repeat(np.arange(rows.blocks), cols.blocks)  # block index -> row block
        block_col = np.tile(np.arange(cols.blocks), rows.blocks)
        query_row = np.repeat(np.arange(rows.size), cols.size)  # query index -> i
        query_col = np.tile(np.arange(cols.size), rows.size)
        # [Q, r] and [Q, c]: the halo rows and columns of each query's window.
        self.row_window = rows.in_window[query_row]
        self.col_window = cols.in_window[query_col]
        self.window = np.einsum("qr,qc->qrc", self.row_window, self.col_window).reshape(self.queries, self.keys)
        # [block, Q]: queries inside the image.
        self.query_inside = rows.query_inside[block_row][:, query_row] * cols.query_inside[block_col][:, query_col]
        # [block, Q, r] and [block, Q, c]: MASKED on halo rows (columns) outside the query's
        # window or the image; row_mask[r] + col_mask[c] is 0 exactly on the keys the
        # reference attends to, MASKED or 2 MASKED elsewhere.
        row_attended = rows.key_attended[block_row][:, query_row, :]
        col_attended = cols.key_attended[block_col][:, query_col, :]
        self.row_mask = MASKED * (1 - self.row_window[None] * row_attended)
        self.col_mask = MASKED * (1 - self.col_window[None] * col_attended)
        # [block, r*c, i] = win(i, r) in(block, i), and [block, r*c, j] likewise: the weights of
        # the key-position halves; [block, r*c]: how many inside queries see halo row r (column c).
        row_weights = (rows.in_window.T[None] * rows.query_inside[:, None, :])[block_row]  # [block, r, i]
        col_weights = (cols.in_window.T[None] * cols.query_inside[:, None, :])[block_col]  # [block, c, j]
        self.key_row_weights = np.repeat(row_weights, cols.halo, axis=1)
        self.key_col_weights = np.tile(col_weights, (1, rows.halo, 1))
        self.row_counts = np.repeat(rows.window_count[block_row], cols.halo, axis=1)
        self.col_counts = np.tile(cols.window_count[block_col], (1, rows.halo))
        self.attended = np.einsum("bqr,bqc->bqrc", self.row_window[None] * row_attended,
                                  self.col_window[None] * col_attended).reshape(self.blocks, self.queries, -1) > 0


def _constant(x, like):
    return ops.convert_to_tensor(x, dtype=like.dtype)


class _LocalTerms:
    """The similarity terms of one call on the (block queries, halo keys) grid, their BN
    statistics over the pairs the reference normalises (every query inside the image, its
    m*m window, out-of-image keys included) and the normalised, masked logits.

    content (blocks, batch, heads, Q, r*c): q.k, one matmul per block.
    by_row (.., Q, r) + by_col (.., Q, c): q . r^q, its row and column halves.
    key_row (.., r*c, i) + key_col (.., r*c, j): k . r^k, likewise per halo key.
    """

    def __init__(self, layer, query, key, grid: _Grid):
        rows, cols = grid.rows, grid.cols
        self.grid, self.heads, self.dtype = grid, layer.num_heads, layer.statistics_dtype
        lead = (grid.blocks, -1, self.heads)
        self.content = ops.matmul(query, ops.swapaxes(key, 3, 4))
        self.by_row = self.by_col = self.key_row = self.key_col = None
        if layer.query_position:
            row_half, col_half = _halves(ops.reshape(query, (-1, rows.size, cols.size, query.shape[-1])))
            by_row = _per_position(row_half, layer.block_table("query", "row", rows), axis=1)  # (.., i, j, r)
            by_col = _per_position(col_half, layer.block_table("query", "column", cols), axis=2)  # (.., i, j, c)
            self.by_row = ops.reshape(by_row, lead + (grid.queries, rows.halo))
            self.by_col = ops.reshape(by_col, lead + (grid.queries, cols.halo))
        if layer.key_position:
            row_half, col_half = _halves(ops.reshape(key, (-1, rows.halo, cols.halo, key.shape[-1])))
            # Per halo row r, the table rows of r - i for every block row i: (.., r, c, i).
            key_row = _per_position(row_half, ops.swapaxes(layer.block_table("key", "row", rows), 0, 1), 1)
            key_col = _per_position(col_half, ops.swapaxes(layer.block_table("key", "column", cols), 0, 1), 2)
            self.key_row = ops.reshape(key_row, lead + (grid.keys, rows.size))
            self.key_col = ops.reshape(key_col, lead + (grid.keys, cols.size))

    def statistics(self):
        """Per image and head, the mean over the normalised pairs of each term and of its square."""
        grid = self.grid
        count = grid.rows.length * grid.cols.length * grid.rows.window * grid.cols.window
        content, by_row, by_col, key_row, key_col = (
            None if t is None else cast(t, self.dtype)
            for t in (self.content, self.by_row, self.by_col, self.key_row, self.key_col))

        def total(per_query):  # (blocks, batch, heads, Q) -> (batch, heads), inside queries only
            return ops.sum(per_query * _constant(grid.query_inside[:, None, None, :], per_query), axis=(0, 3)) / count

        # q.k: weighted sums over (Q, r*c) as one matmul per block with the 0/1 weights.
        pairs = _constant((grid.query_inside[:, :, None] * grid.window[None]).reshape(grid.blocks, -1, 1), content)
        flat = ops.reshape(content, (grid.blocks, -1, grid.queries * grid.keys))
        statistics = [tuple(ops.reshape(ops.sum(ops.matmul(t, pairs), axis=0), (-1, self.heads)) / count
                            for t in (flat, ops.square(flat)))]
        if by_row is not None:
            # x = a_r + c_c over the m x m window: sum x = m sum_r a + m sum_c c and
            # sum x^2 = m sum a^2 + m sum c^2 + 2 (sum a)(sum c).
            a, c = by_row, by_col
            row_window, col_window = _constant(grid.row_window, a), _constant(grid.col_window, c)
            sum_a, sum_c = ops.sum(a * row_window, axis=-1), ops.sum(c * col_window, axis=-1)
            square_a = ops.sum(ops.square(a) * row_window, axis=-1)
            square_c = ops.sum(ops.square(c) * col_window, axis=-1)
            m_r, m_c = grid.rows.window, grid.cols.window
            statistics.append((total(m_c * sum_a + m_r * sum_c),
                               total(m_c * square_a + m_r * square_c + 2.0 * sum_a * sum_c)))
        if key_row is not None:
            # x = R_rc[i] + C_rc[j] with weights win(i, r) in(i) win(j, c) in(j): with
            # R'_rc = sum_i weights R_rc[i], C' likewise, and u the window counts,
            # sum x = sum_rc R' u_c + C' u_r; sum x^2 = sum_rc (R^2)' u_c + (C^2)' u_r + 2 R' C'.
            r_weights = _constant(grid.key_row_weights[:, None, None], key_row)
            c_weights = _constant(grid.key_col_weights[:, None, None], key_col)
            row_sum, col_sum = ops.sum(key_row * r_weights, axis=-1), ops.sum(key_col * c_weights, axis=-1)
            row_square = ops.sum(ops.square(key_row) * r_weights, axis=-1)
            col_square = ops.sum(ops.square(key_col) * c_weights, axis=-1)
            u_c = _constant(grid.col_counts[:, None, None], row_sum)
            u_r = _constant(grid.row_counts[:, None, None], col_sum)
            mean = ops.sum(row_sum * u_c + col_sum * u_r, axis=(0, 3)) / count
            square = ops.sum(row_square * u_c + col_square * u_r + 2.0 * row_sum * col_sum, axis=(0, 3)) / count
            statistics.append((mean, square))
        return statistics

    def logits(self, scales):
        """The normalised similarity, each term times its per-head scale (the offsets, the same
        for every key of a query, are cancelled by the softmax), MASKED outside the window and
        the image: (blocks, batch, heads, Q, r*c)."""
        grid, rows, cols = self.grid, self.grid.rows, self.grid.cols
        scales = iter(scales)
        similarity = ops.reshape(self.content * next(scales), (-1, grid.queries, rows.halo, cols.halo))
        if self.by_row is not None:
            # The mask rides on the query-position halves (small tensors): MASKED plus a logit
            # has softmax weight exactly 0, as the reference's MASKED.
            scale = next(scales)
            by_row = self.by_row * scale + _constant(grid.row_mask[:, None, None], self.by_row)
            by_col = self.by_col * scale + _constant(grid.col_mask[:, None, None], self.by_col)
            similarity = (similarity + ops.reshape(by_row, (-1, grid.queries, rows.halo, 1))
                          + ops.reshape(by_col, (-1, grid.queries, 1, cols.halo)))
        if self.key_row is not None:
            scale = next(scales)
            key_row = ops.swapaxes(self.key_row * scale, 3, 4)  # (.., i, r*c)
            key_col = ops.swapaxes(self.key_col * scale, 3, 4)  # (.., j, r*c)
            similarity = ops.reshape(similarity, (-1, rows.size, cols.size, grid.keys))
            similarity = (similarity + ops.reshape(key_row, (-1, rows.size, 1, grid.keys))
                          + ops.reshape(key_col, (-1, 1, cols.size, grid.keys)))
        similarity = ops.reshape(similarity, (grid.blocks, -1, self.heads, grid.queries, grid.keys))
        if self.by_row is None:
            similarity = ops.where(grid.attended[:, None, None], similarity, MASKED)
        return similarity


def _value_position(weights, row_table, col_table, rows: _Blocking, cols: _Blocking):
    """sum_{r,c} a_{rc} r^v_{a,b} = concat(sum_r (sum_c a_rc) row[r - i], sum_c (sum_r a_rc) col[c - j])."""
    grid = ops.reshape(weights, (-1, rows.size, cols.size, rows.halo, cols.halo))  # (.., i, j, r, c)
    # Per block row i: (.., j, r) x (r, d_v / 2) with i's table rows; per block column j likewise.
    by_row = _per_position(ops.sum(grid, axis=4), ops.swapaxes(row_table, 1, 2), axis=1)  # (.., i, j, d_v / 2)
    by_col = _per_position(ops.sum(grid, axis=3), ops.swapaxes(col_table, 1, 2), axis=2)
    values = ops.concatenate([by_row, by_col], axis=-1)
    return ops.reshape(values, (weights.shape[0], -1) + tuple(weights.shape[2:4]) + (values.shape[-1],))


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

    def call(self, inputs, training=None):
        height, width = inputs.shape[1], inputs.shape[2]
        heads = self.num_heads
        rows, cols = _Blocking(height, self.window), _Blocking(width, self.window)
        qkv = self.project(inputs, training)
        query, key, value = self.split_heads(ops.reshape(qkv, (-1, height, width, qkv.shape[-1])))
        # (blocks, batch, heads, block queries, d) and (blocks, batch, heads, halo keys, d).
        query = _to_blocks(query, rows, cols)
        key, value = _to_halos(key, rows, cols), _to_halos(value, rows, cols)

        terms = _LocalTerms(self, query, key, _Grid(rows, cols))
        scales, unused = [1.0] * 3, 0.0
        if self.use_batch_norm:
            # One scale and offset per (head, term).  The summed offset is the same for every
            # key of a query: the softmax cancels it (see AxialAttention.call).
            scale, shift = self.norm_affine(self.similarity_norm, (heads,), terms.statistics, training)
            scales = [ops.reshape(scale[:, t], (heads, 1, 1)) for t in range(self.similarity_terms)]
            unused = 0.0 * ops.sum(shift)
        weights = ops.softmax(terms.logits(scales), axis=-1)

        retrieved = [ops.matmul(weights, value)]  # (blocks, batch, heads, block queries, d_v)
        if self.value_position:
            retrieved.append(_value_position(weights, self.block_table("value", "row", rows),
                                             self.block_table("value", "column", cols), rows, cols))
        retrieved = [_from_blocks(t, rows, cols) for t in retrieved]  # (batch, h, w, heads, d_v)
        if self.use_batch_norm:
            scale, shift = self.norm_affine(self.output_norm, (heads, self.value_depth_per_head),
                                            lambda: self.group_statistics(retrieved, axes=(2,)), training)
            retrieved = [t * scale[..., i] for i, t in enumerate(retrieved)] + [ops.sum(shift, axis=-1) + unused]
        output = retrieved[0]
        for term in retrieved[1:]:
            output = output + term
        output = ops.reshape(output, (-1, height, width, self.value_depth))
        if self.strides > 1:
            output = ops.average_pool(output, pool_size=self.strides, strides=self.strides, padding="same")
        return output

    def block_table(self, term: str, axis: str, blocking: _Blocking):
        """(block positions i, halo positions r, depth): the row of offset r - i, clamped outside i's
        window (those pairs are masked and weighted zero)."""
        return self.tables[term, axis](blocking.table_rows)

    def count_madds(self, input_shape, local_keys: str = "window") -> dict[str, int]:
        """Multiply-accumulates for one image: m*m keys per query, at input resolution."""
        _, height, width, channels = input_shape
        keys = min(self.window, height) * min(self.window, width)
        return self.attention_madds(height * width, keys, channels)

    def get_config(self):
        config = super().get_config()
        config.update(window=self.window)
        return config
