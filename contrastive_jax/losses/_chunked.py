"""Chunked log-sum-exp kernels: the memory-linear path of every contrastive loss.

``_chunked_lse`` tiles [anchors, columns] in ``rows`` x ``cols_chunk`` blocks
with an online (running) log-sum-exp; the logits matrix is never built. A
``jax.custom_vjp`` recomputes the tiles in the backward pass (the gradient of
logsumexp is the softmax, rebuilt tile by tile from the saved per-row lse), so
memory is O(chunk_size^2 + (anchors + columns) * D).

``_sym_chunked_lse`` is the single-device special case where the anchors are
the columns (NT-Xent, SupCon): the similarity matrix is symmetric, so each
unordered tile pair is computed once (half the matmuls).
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from contrastive_jax import parallel

Array = jax.Array


def _num_blocks(n: int, size: int) -> int:
  return -(-n // size)


def _pad_rows(x: Array, rows: int, value: Any = 0) -> Array:
  pad = rows - x.shape[0]
  if pad == 0:
    return x
  widths = [(0, pad)] + [(0, 0)] * (x.ndim - 1)
  return jnp.pad(x, widths, constant_values=value)


def _tile_logits(q_blk: Array, c_chk: Array, self_blk: Array, j0: Array, n_cols: int):
  """Logits of one tile and its validity mask.

  Args:
    q_blk: [R, D] temperature-scaled anchors.
    c_chk: [C, D] columns.
    self_blk: [R] column index excluded for each row (-1: none), or [R, K]
      for K excluded columns per row (DCL: the anchor and its positive).
    j0: scalar, global index of the tile's first column.
    n_cols: number of real (unpadded) columns.

  Returns:
    s: [R, C] logits (q's dtype), -inf where masked; cols: [C] column indices;
    valid: [R, C] bool.
  """
  s = jnp.dot(q_blk, c_chk.T, preferred_element_type=q_blk.dtype)
  cols = j0 + jnp.arange(c_chk.shape[0], dtype=jnp.int32)
  if self_blk.ndim == 1:
    not_self = cols[None, :] != self_blk[:, None]
  else:
    not_self = jnp.all(cols[None, :, None] != self_blk[:, None, :], axis=-1)
  valid = not_self & (cols < n_cols)[None, :]
  return jnp.where(valid, s, -jnp.inf), cols, valid


def _online_update(m, l, s, axis, stats=None, valid=None, is_pos=None):
  """Folds a tile of logits into the running log-sum-exp state.

  Args:
    m, l: running max and sum of exp(logit - max), [R] (reduced over axis).
    s: [R, C] logits, -inf where masked; reduced over ``axis``.
    stats: optional running (sum exp(logit - max) * logit, max negative logit).
    valid, is_pos: [R, C] masks, needed with stats.

  Returns:
    Updated (m, l, stats).
  """
  # Rows whose logits so far are all masked keep m = -inf; shift by 0 there so
  # exp() gives 0 instead of NaN.
  m_new = jnp.maximum(m, jnp.max(s, axis=axis))
  m_safe = jnp.where(jnp.isneginf(m_new), 0.0, m_new)
  scale = jnp.exp(m - m_safe)
  p = jnp.exp(s - jnp.expand_dims(m_safe, axis))
  l_new = l * scale + jnp.sum(p, axis=axis)
  if stats is None:
    return m_new, l_new, None
  w, neg_max = stats
  w_new = w * scale + jnp.sum(p * jnp.where(valid, s, 0.0), axis=axis)
  neg_max = jnp.maximum(neg_max, jnp.max(jnp.where(is_pos, -jnp.inf, s), axis=axis))
  return m_new, l_new, (w_new, neg_max)


def _lse_fwd_impl(q, c, self_idx, pos_idx, rows, cols_chunk, with_stats):
  """Online log-sum-exp over column chunks, tiled over rows.

  Returns lse [N] and, if with_stats, (max logit over negatives [N],
  sum_j softmax_ij * logits_ij [N]) -- both needed only for metrics.
  """
  n, d = q.shape
  m_cols = c.shape[0]
  n_rb, n_cb = _num_blocks(n, rows), _num_blocks(m_cols, cols_chunk)
  q_t = _pad_rows(q, n_rb * rows).reshape(n_rb, rows, d)
  self_t = _pad_rows(self_idx, n_rb * rows, -1).reshape(n_rb, rows, *self_idx.shape[1:])
  pos_t = _pad_rows(pos_idx, n_rb * rows, -1).reshape(n_rb, rows)
  c_t = _pad_rows(c, n_cb * cols_chunk).reshape(n_cb, cols_chunk, d)
  j0s = jnp.arange(n_cb, dtype=jnp.int32) * cols_chunk

  def row_block(args):
    q_blk, self_blk, pos_blk = args

    def col_step(carry, xs):
      c_chk, j0 = xs
      s, cols, valid = _tile_logits(q_blk, c_chk, self_blk, j0, m_cols)
      is_pos = (cols[None, :] == pos_blk[:, None]) if with_stats else None
      m, l, st = _online_update(
          carry[0], carry[1], s, 1, carry[2] if with_stats else None, valid, is_pos)
      return ((m, l, st) if with_stats else (m, l)), None

    neg_inf = parallel.match_vma(jnp.full((rows,), -jnp.inf, q.dtype), q, c, self_idx, pos_idx)
    zeros = parallel.match_vma(jnp.zeros((rows,), q.dtype), q, c, self_idx, pos_idx)
    init = (neg_inf, zeros, (zeros, neg_inf)) if with_stats else (neg_inf, zeros)
    carry, _ = jax.lax.scan(col_step, init, (c_t, j0s))
    lse = carry[0] + jnp.log(carry[1])
    if not with_stats:
      return lse, ()
    w, neg_max = carry[2]
    return lse, (neg_max, w / carry[1])

  lse, stats = jax.lax.map(row_block, (q_t, self_t, pos_t))
  lse = lse.reshape(-1)[:n]
  stats = tuple(x.reshape(-1)[:n] for x in stats)
  return lse, stats


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _chunked_lse(q, c, self_idx, pos_idx, rows, cols_chunk, with_stats):
  """lse_i = logsumexp_{j valid} q_i . c_j without building the matrix.

  Args:
    q: [N, D] float32 (or float64) anchors, already divided by the temperature.
    c: [M, D] columns, q's dtype.
    self_idx: [N] int32 column excluded per row (-1: none), or [N, K] for K
      excluded columns per row.
    pos_idx: [N] int32 positive column per row (only used for stats).
    rows, cols_chunk: static tile sizes.
    with_stats: static; also return metric statistics (no gradient).

  Returns:
    (lse [N], stats) with stats a tuple of [N] arrays (empty if not with_stats).
  """
  return _lse_fwd_impl(q, c, self_idx, pos_idx, rows, cols_chunk, with_stats)


def _chunked_lse_fwd(q, c, self_idx, pos_idx, rows, cols_chunk, with_stats):
  out = _lse_fwd_impl(q, c, self_idx, pos_idx, rows, cols_chunk, with_stats)
  return out, (q, c, self_idx, out[0])


def _chunked_lse_bwd(rows, cols_chunk, with_stats, res, cts):
  del with_stats  # Stats are metrics; their cotangent is ignored.
  q, c, self_idx, lse = res
  g = cts[0]  # [N] cotangent of lse.
  n, d = q.shape
  m_cols = c.shape[0]
  n_rb, n_cb = _num_blocks(n, rows), _num_blocks(m_cols, cols_chunk)
  q_t = _pad_rows(q, n_rb * rows).reshape(n_rb, rows, d)
  self_t = _pad_rows(self_idx, n_rb * rows, -1).reshape(n_rb, rows, *self_idx.shape[1:])
  lse_t = _pad_rows(lse, n_rb * rows).reshape(n_rb, rows)
  g_t = _pad_rows(g, n_rb * rows).reshape(n_rb, rows)  # Padded rows: g = 0.
  c_t = _pad_rows(c, n_cb * cols_chunk).reshape(n_cb, cols_chunk, d)
  j0s = jnp.arange(n_cb, dtype=jnp.int32) * cols_chunk

  def row_block(dc, args):
    q_blk, self_blk, lse_blk, g_blk = args

    def col_step(dq, xs):
      c_chk, j0 = xs
      s, _, _ = _tile_logits(q_blk, c_chk, self_blk, j0, m_cols)
      # d lse_i / d s_ij = softmax_ij; masked entries are exp(-inf) = 0.
      p = jnp.exp(s - lse_blk[:, None]) * g_blk[:, None]  # [R, C]
      dq = dq + jnp.dot(p, c_chk, preferred_element_type=q.dtype)
      dc_chk = jnp.dot(p.T, q_blk, preferred_element_type=q.dtype)  # [C, D]
      return dq, dc_chk

    dq0 = parallel.match_vma(jnp.zeros((rows, d), q.dtype), q, c, self_idx, lse, g)
    dq, dc_blk = jax.lax.scan(col_step, dq0, (c_t, j0s))
    return dc + dc_blk, dq

  dc0 = parallel.match_vma(jnp.zeros((n_cb, cols_chunk, d), q.dtype), q, c, self_idx, lse, g)
  dc, dq = jax.lax.scan(row_block, dc0, (q_t, self_t, lse_t, g_t))
  dq = dq.reshape(-1, d)[:n].astype(q.dtype)
  dc = dc.reshape(-1, d)[:m_cols].astype(c.dtype)
  return dq, dc, None, None


_chunked_lse.defvjp(_chunked_lse_fwd, _chunked_lse_bwd)


# Single-device NT-Xent scores the batch against itself: S = U U^T is
# symmetric, so each unordered tile pair (I <= J) is computed once and serves
# both the rows of I and the rows of J. That halves the matmuls (4 instead of
# 8 [R, D] x [D, R]-sized products per tile pair over forward + backward).
#
# Rows are unit vectors scaled by sqrt(1 / T), so every logit lies in
# [-1/T, 1/T] and a fixed shift c = 1/T replaces the running max: each tile
# needs one exp, shared by the row and the column sums, instead of one per
# direction. exp(s - c) >= exp(-2c) must stay a normal float32, hence
# _MIN_FIXED_SHIFT_TEMPERATURE; colder (or traced) temperatures take the
# generic online path. Row and column sums are matrix-vector products because
# XLA:CPU's column reduction of a tile is several times slower than a GEMV.
_MIN_FIXED_SHIFT_TEMPERATURE = 2.0 / 80.0  # exp(-80) ~ 1.8e-35 > float32 tiny.


def _tile_pairs(n_blocks: int) -> tuple[Array, Array]:
  """Static [P] row / column block indices of the upper-triangular tiles."""
  ii, jj = np.triu_indices(n_blocks)
  return jnp.asarray(ii, jnp.int32), jnp.asarray(jj, jnp.int32)


def _sym_tile(u_t: Array, i: Array, j: Array, n: int, shift: float, pos_t: Optional[Array] = None):
  """Tile (i, j) of U U^T: s [R, R] logits and e = exp(s - shift), 0 off-support.

  With pos_t ([nb, R] positive columns) the positives are off-support too (DCL);
  pos is an involution, so the mask stays symmetric.
  """
  rows = u_t.shape[1]
  s = jnp.dot(u_t[i], u_t[j].T, preferred_element_type=u_t.dtype)
  ri = i * rows + jnp.arange(rows, dtype=jnp.int32)
  cj = j * rows + jnp.arange(rows, dtype=jnp.int32)
  valid = (ri[:, None] != cj[None, :]) & (ri < n)[:, None] & (cj < n)[None, :]
  if pos_t is not None:
    valid = valid & (pos_t[i][:, None] != cj[None, :])
  return s, valid, jnp.where(valid, jnp.exp(s - shift), 0.0)


def _row_col_sums(x: Array, i: Array, j: Array) -> tuple[Array, Array]:
  """Sums of tile x [R, R] for the rows of block i and (off-diagonal) of block j."""
  ones = jnp.ones((x.shape[0],), x.dtype)
  col = jnp.dot(ones, x, preferred_element_type=x.dtype)
  return jnp.dot(x, ones, preferred_element_type=x.dtype), jnp.where(i != j, col, 0.0)


def _sym_lse_fwd_impl(u, shift, pos_idx, rows, with_stats, exclude_pos):
  """lse_i = logsumexp_{j != i} u_i . u_j over upper-triangular tiles."""
  n, d = u.shape
  nb = _num_blocks(n, rows)
  u_t = _pad_rows(u, nb * rows).reshape(nb, rows, d)
  pos_t = _pad_rows(pos_idx, nb * rows, -1).reshape(nb, rows)
  ii, jj = _tile_pairs(nb)

  def add(x, i, j, tile_sums):
    r, c = tile_sums
    return x.at[i].add(r).at[j].add(c)

  def step(carry, ij):
    i, j = ij
    s, valid, e = _sym_tile(u_t, i, j, n, shift, pos_t if exclude_pos else None)
    l = add(carry[0], i, j, _row_col_sums(e, i, j))
    if not with_stats:
      return (l,), None
    # pos is an involution, so "c is r's positive" <=> "r is c's positive".
    is_pos = pos_t[i][:, None] == (j * rows + jnp.arange(rows, dtype=jnp.int32))[None, :]
    w = add(carry[1], i, j, _row_col_sums(e * jnp.where(valid, s, 0.0), i, j))
    neg = jnp.where(valid & ~is_pos, s, -jnp.inf)
    neg_max = carry[2].at[i].max(jnp.max(neg, axis=1)).at[j].max(jnp.max(neg, axis=0))
    return (l, w, neg_max), None

  zeros = parallel.match_vma(jnp.zeros((nb, rows), u.dtype), u, pos_idx)
  neg_inf = parallel.match_vma(jnp.full((nb, rows), -jnp.inf, u.dtype), u, pos_idx)
  init = (zeros, zeros, neg_inf) if with_stats else (zeros,)
  carry, _ = jax.lax.scan(step, init, (ii, jj))
  l = carry[0].reshape(-1)[:n]
  lse = shift + jnp.log(l)
  if not with_stats:
    return lse, ()
  w, neg_max = (x.reshape(-1)[:n] for x in carry[1:])
  return lse, (neg_max, w / l)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _sym_chunked_lse(u, pos_idx, shift, rows, with_stats, exclude_pos):
  """lse_i = logsumexp_{j != i} u_i . u_j without building U U^T.

  Args:
    u: [N, D] float32 (or float64) rows, unit embeddings times sqrt(1 / temperature).
    pos_idx: [N] int32 positive column per row, an involution (stats and exclude_pos only).
    shift: static float >= every |u_i . u_j| (1 / temperature), with
      exp(-2 * shift) a normal float32.
    rows: static tile size.
    with_stats: static; also return metric statistics (no gradient).
    exclude_pos: static; also leave each row's positive out of its lse (DCL).

  Returns:
    (lse [N], stats) as ``_chunked_lse``.
  """
  return _sym_lse_fwd_impl(u, shift, pos_idx, rows, with_stats, exclude_pos)


def _sym_chunked_lse_fwd(u, pos_idx, shift, rows, with_stats, exclude_pos):
  out = _sym_lse_fwd_impl(u, shift, pos_idx, rows, with_stats, exclude_pos)
  return out, (u, out[0], pos_idx)


def _sym_chunked_lse_bwd(shift, rows, with_stats, exclude_pos, res, cts):
  del with_stats
  u, lse, pos_idx = res
  g = cts[0]
  n, d = u.shape
  nb = _num_blocks(n, rows)
  u_t = _pad_rows(u, nb * rows).reshape(nb, rows, d)
  # softmax_rc = e_rc * exp(shift - lse_r); fold g_r into that row factor.
  a_t = _pad_rows(g * jnp.exp(shift - lse), nb * rows).reshape(nb, rows)
  pos_t = _pad_rows(pos_idx, nb * rows, -1).reshape(nb, rows) if exclude_pos else None
  ii, jj = _tile_pairs(nb)

  def step(du, ij):
    i, j = ij
    _, _, e = _sym_tile(u_t, i, j, n, shift, pos_t)
    # d(sum_r g_r lse_r)/dU = (A + A^T) U with A_rc = g_r softmax_rc; the
    # (i, j) tile of A + A^T is w below, the (j, i) tile is w^T.
    # A diagonal tile is visited once but holds both (r, c) and (c, r).
    w = e * (a_t[i][:, None] + a_t[j][None, :]) * jnp.where(i == j, 0.5, 1.0)
    du = du.at[i].add(jnp.dot(w, u_t[j], preferred_element_type=u.dtype))
    du = du.at[j].add(jnp.dot(w.T, u_t[i], preferred_element_type=u.dtype))
    return du, None

  du0 = parallel.match_vma(jnp.zeros((nb, rows, d), u.dtype), u, lse, g)
  du, _ = jax.lax.scan(step, du0, (ii, jj))
  return du.reshape(-1, d)[:n].astype(u.dtype), None


_sym_chunked_lse.defvjp(_sym_chunked_lse_fwd, _sym_chunked_lse_bwd)
