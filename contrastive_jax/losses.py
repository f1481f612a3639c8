"""Contrastive losses: SimCLR's NT-Xent and one-directional InfoNCE.

Both losses are one core computation: every anchor row is scored against a set
of columns by cosine similarity / temperature, one column is the positive, an
optional "self" column is excluded, and the loss is the cross-entropy of the
positive, i.e. ``logsumexp_j(logits_ij) - logits_i,pos``.

Two evaluation paths give the same values and gradients:

* dense (``chunk_size=None``): builds the [anchors, columns] logits matrix.
* chunked (``chunk_size=int``): tiles of ``chunk_size`` rows x ``chunk_size``
  columns with an online (running) log-sum-exp; the matrix is never built.
  A ``jax.custom_vjp`` recomputes the tiles in the backward pass (the gradient
  of logsumexp is the softmax, rebuilt tile by tile from the saved per-row
  lse), so memory is O(chunk_size^2 + (anchors + columns) * D). Single-device
  NT-Xent scores the batch against itself; its similarity matrix is symmetric,
  so each unordered tile pair is computed once (half the matmuls).

With ``axis_name`` (inside ``jax.shard_map`` or ``jax.pmap``) the columns are
all-gathered from every device on that axis, and each device scores only its
local anchors against the global columns. The returned loss is the mean over
the *local* anchors; ``jax.lax.pmean(loss, axis_name)`` is the global loss and
its gradient equals the single-device gradient (the all-gather's transpose, a
reduce-scatter, sums the cross-device contributions). Parameter gradients:
under ``jax.shard_map`` take the grad of ``pmean(loss)`` (JAX psums the
gradient of replicated parameters itself); under ``jax.pmap`` take the grad of
the local loss and pmean the gradients. Both give the exact global gradient
(tests/test_losses.py checks both); the grad of the local loss w.r.t. local
embeddings is axis_size x the global one, because every device's loss uses
every device's embeddings.

All similarity / softmax arithmetic is float32 for float32, bfloat16 and
float16 embeddings (the loss is then float32); float64 embeddings (with
`jax_enable_x64`) are kept in float64 throughout, as a reference for the
float32 numerics.
"""

from __future__ import annotations

import functools
from typing import Any, Hashable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from contrastive_jax import parallel

__all__ = ["nt_xent", "nt_xent_with_metrics", "info_nce"]

Array = jax.Array
AxisName = Optional[Hashable]

_NORM_EPS = 1e-12  # guards the L2 normalisation of an all-zero row.


# ----------------------------------------------------------------------------
# Input checks (trace time, so they raise before anything runs).
# ----------------------------------------------------------------------------


def _check_inputs(
    name_a: str, a: Any, name_b: str, b: Any, temperature: Any,
    chunk_size: Optional[int],
) -> None:
  """Raises ValueError for malformed embeddings / hyper-parameters."""
  for name, x in ((name_a, a), (name_b, b)):
    shape = getattr(x, "shape", None)
    if shape is None:
      raise ValueError(f"{name} must be an array of shape [B, D]; got {type(x).__name__}.")
    if len(shape) != 2:
      raise ValueError(
          f"{name} must have rank 2 (shape [B, D]); got rank {len(shape)} with shape {tuple(shape)}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
      raise ValueError(f"{name} must be a floating-point array; got dtype {x.dtype}.")
  if tuple(a.shape) != tuple(b.shape):
    raise ValueError(
        f"{name_a} and {name_b} must have the same shape [B, D]; "
        f"got {tuple(a.shape)} and {tuple(b.shape)}.")
  if a.shape[0] == 0 or b.shape[0] == 0:
    raise ValueError(
        f"empty batch: {name_a} and {name_b} need B >= 1 rows; "
        f"got shapes {tuple(a.shape)} and {tuple(b.shape)}.")
  if a.shape[1] == 0:
    raise ValueError(f"embedding size D must be >= 1; got shape {tuple(a.shape)}.")
  t = _concrete(temperature)
  if t is not None and not t > 0.0:  # also rejects NaN.
    raise ValueError(f"temperature must be > 0; got {temperature}.")
  if chunk_size is not None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
      raise ValueError(f"chunk_size must be None or a positive int; got {chunk_size!r}.")


def _concrete(temperature: Any) -> Optional[float]:
  """The temperature as a float, or None when traced (e.g. learnt): unknown at trace time."""
  try:
    return float(temperature)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return None


def _compute_dtype(x: Array) -> jnp.dtype:
  """The dtype the loss computes in: float32, or float64 for float64 input."""
  return jnp.promote_types(x.dtype, jnp.float32)


def _l2_normalize(x: Array) -> Array:
  """[B, D] -> [B, D] rows of unit norm in `_compute_dtype` (zero rows stay zero)."""
  x = x.astype(_compute_dtype(x))
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, _NORM_EPS * _NORM_EPS))


def _gather(x: Array, axis_name: AxisName) -> Array:
  """[B, D] local -> [B * axis_size, D] global (device-major order)."""
  if axis_name is None:
    return x
  return jax.lax.all_gather(x, axis_name, axis=0, tiled=True)


def _device_offset(local_rows: int, axis_name: AxisName) -> Array:
  """Row offset of this device's block in a tiled all-gather."""
  if axis_name is None:
    return jnp.zeros((), jnp.int32)
  return jax.lax.axis_index(axis_name).astype(jnp.int32) * local_rows


# ----------------------------------------------------------------------------
# Chunked log-sum-exp with a recomputing backward pass.
# ----------------------------------------------------------------------------


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
    self_blk: [R] column index excluded for each row (-1: none).
    j0: scalar, global index of the tile's first column.
    n_cols: number of real (unpadded) columns.

  Returns:
    s: [R, C] logits (q's dtype), -inf where masked; cols: [C] column indices;
    valid: [R, C] bool.
  """
  s = jnp.dot(q_blk, c_chk.T, preferred_element_type=q_blk.dtype)
  cols = j0 + jnp.arange(c_chk.shape[0], dtype=jnp.int32)
  valid = (cols[None, :] != self_blk[:, None]) & (cols < n_cols)[None, :]
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
  self_t = _pad_rows(self_idx, n_rb * rows, -1).reshape(n_rb, rows)
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
    self_idx: [N] int32 column excluded per row (-1: none).
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
  self_t = _pad_rows(self_idx, n_rb * rows, -1).reshape(n_rb, rows)
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


def _sym_tile(u_t: Array, i: Array, j: Array, n: int, shift: float):
  """Tile (i, j) of U U^T: s [R, R] logits and e = exp(s - shift), 0 off-support."""
  rows = u_t.shape[1]
  s = jnp.dot(u_t[i], u_t[j].T, preferred_element_type=u_t.dtype)
  ri = i * rows + jnp.arange(rows, dtype=jnp.int32)
  cj = j * rows + jnp.arange(rows, dtype=jnp.int32)
  valid = (ri[:, None] != cj[None, :]) & (ri < n)[:, None] & (cj < n)[None, :]
  return s, valid, jnp.where(valid, jnp.exp(s - shift), 0.0)


def _row_col_sums(x: Array, i: Array, j: Array) -> tuple[Array, Array]:
  """Sums of tile x [R, R] for the rows of block i and (off-diagonal) of block j."""
  ones = jnp.ones((x.shape[0],), x.dtype)
  col = jnp.dot(ones, x, preferred_element_type=x.dtype)
  return jnp.dot(x, ones, preferred_element_type=x.dtype), jnp.where(i != j, col, 0.0)


def _sym_lse_fwd_impl(u, shift, pos_idx, rows, with_stats):
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
    s, valid, e = _sym_tile(u_t, i, j, n, shift)
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


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _sym_chunked_lse(u, pos_idx, shift, rows, with_stats):
  """lse_i = logsumexp_{j != i} u_i . u_j without building U U^T.

  Args:
    u: [N, D] float32 (or float64) rows, unit embeddings times sqrt(1 / temperature).
    pos_idx: [N] int32 positive column per row, an involution (stats only).
    shift: static float >= every |u_i . u_j| (1 / temperature), with
      exp(-2 * shift) a normal float32.
    rows: static tile size.
    with_stats: static; also return metric statistics (no gradient).

  Returns:
    (lse [N], stats) as ``_chunked_lse``.
  """
  return _sym_lse_fwd_impl(u, shift, pos_idx, rows, with_stats)


def _sym_chunked_lse_fwd(u, pos_idx, shift, rows, with_stats):
  out = _sym_lse_fwd_impl(u, shift, pos_idx, rows, with_stats)
  return out, (u, out[0])


def _sym_chunked_lse_bwd(shift, rows, with_stats, res, cts):
  del with_stats
  u, lse = res
  g = cts[0]
  n, d = u.shape
  nb = _num_blocks(n, rows)
  u_t = _pad_rows(u, nb * rows).reshape(nb, rows, d)
  # softmax_rc = e_rc * exp(shift - lse_r); fold g_r into that row factor.
  a_t = _pad_rows(g * jnp.exp(shift - lse), nb * rows).reshape(nb, rows)
  ii, jj = _tile_pairs(nb)

  def step(du, ij):
    i, j = ij
    _, _, e = _sym_tile(u_t, i, j, n, shift)
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


# ----------------------------------------------------------------------------
# The shared core.
# ----------------------------------------------------------------------------


def _contrastive_core(
    anchors: Array, columns: Array, pos_idx: Array, self_idx: Optional[Array], *,
    temperature: Any, chunk_size: Optional[int], with_metrics: bool,
    symmetric: bool = False,
) -> tuple[Array, Optional[dict[str, Array]]]:
  """Mean cross-entropy of each anchor's positive column.

  Args:
    anchors: [N, D] float32 (or float64), unit-norm rows.
    columns: [M, D] unit-norm rows in the anchors' dtype (may include the anchors).
    pos_idx: [N] int32, the positive column of each anchor.
    self_idx: [N] int32 column to exclude per anchor (the anchor itself), or
      None when no column is excluded.
    temperature: softmax temperature (> 0).
    chunk_size: None for the dense path, else the tile size.
    with_metrics: also return local (per-device) metric means.
    symmetric: columns is anchors and self_idx is arange(N) (single-device
      NT-Xent); the chunked path then visits each symmetric tile pair once
      (when the temperature is a number >= _MIN_FIXED_SHIFT_TEMPERATURE).

  Returns:
    (loss, metrics): loss is the scalar mean over the N anchors, in the
    anchors' dtype; metrics is None unless with_metrics.
  """
  dtype = anchors.dtype
  n = anchors.shape[0]
  m_cols = columns.shape[0]
  has_self = self_idx is not None
  if self_idx is None:
    self_idx = jnp.full((n,), -1, jnp.int32)
  q = anchors * (1.0 / jnp.asarray(temperature, dtype))  # [N, D]
  pos_logit = jnp.sum(q * jnp.take(columns, pos_idx, axis=0), axis=-1)  # [N]

  if chunk_size is None:
    logits = jnp.dot(q, columns.T, preferred_element_type=dtype)  # [N, M]
    col_ids = jnp.arange(m_cols, dtype=jnp.int32)
    valid = col_ids[None, :] != self_idx[:, None]
    logits = jnp.where(valid, logits, -jnp.inf)
    lse = jax.nn.logsumexp(logits, axis=-1)  # [N]
    if with_metrics:
      sl = jax.lax.stop_gradient(logits)
      neg_max = jnp.max(jnp.where(col_ids[None, :] == pos_idx[:, None], -jnp.inf, sl), axis=-1)
      probs = jax.nn.softmax(sl, axis=-1)
      expected_logit = jnp.sum(probs * jnp.where(valid, sl, 0.0), axis=-1)
  elif symmetric and (t_static := _concrete(temperature)) is not None and t_static >= _MIN_FIXED_SHIFT_TEMPERATURE:
    inv_t = 1.0 / t_static
    u = anchors * np.asarray(np.sqrt(inv_t), dtype)
    lse, stats = _sym_chunked_lse(u, pos_idx, inv_t, min(chunk_size, n), with_metrics)
  else:
    rows = min(chunk_size, n)
    cols_chunk = min(chunk_size, m_cols)
    lse, stats = _chunked_lse(q, columns, self_idx, pos_idx, rows, cols_chunk, with_metrics)
  if chunk_size is not None and with_metrics:
    neg_max, expected_logit = jax.lax.stop_gradient(stats)

  loss = jnp.mean(lse - pos_logit)
  if not with_metrics:
    return loss, None

  # Metrics: no gradient, and no matrix -- similarity sums come from
  # anchor . sum(columns), the rest from the per-row statistics above.
  a = jax.lax.stop_gradient(anchors)
  cs = jax.lax.stop_gradient(columns)
  pos_l = jax.lax.stop_gradient(pos_logit)
  lse_ng = jax.lax.stop_gradient(lse)
  t = jnp.asarray(jax.lax.stop_gradient(temperature), dtype)
  pos_sim = pos_l * t  # Cosine similarity of the positive pair.
  row_sim_sum = a @ jnp.sum(cs, axis=0)  # [N] sum_j cos(a_i, c_j), all j.
  self_sim = jnp.sum(a * a, axis=-1) if has_self else jnp.zeros_like(pos_sim)
  num_neg = m_cols - 1 - int(has_self)
  neg_sim = (row_sim_sum - self_sim - pos_sim) / max(num_neg, 1)
  metrics = {
      # Strict: the positive must beat every negative (ties count as wrong).
      "contrastive_acc": jnp.mean((pos_l > neg_max).astype(dtype)),
      "pos_sim": jnp.mean(pos_sim),
      "neg_sim": jnp.mean(neg_sim) if num_neg > 0 else jnp.zeros((), dtype),
      # Entropy of the softmax over each anchor's logits: lse - E_p[logit].
      "logits_entropy": jnp.mean(lse_ng - expected_logit),
  }
  return loss, metrics


def _nt_xent_impl(z1, z2, temperature, axis_name, chunk_size, with_metrics):
  _check_inputs("z1", z1, "z2", z2, temperature, chunk_size)
  b = z1.shape[0]
  z1n, z2n = _l2_normalize(z1), _l2_normalize(z2)
  anchors = jnp.concatenate([z1n, z2n], axis=0)  # [2B, D] local.
  g1, g2 = _gather(z1n, axis_name), _gather(z2n, axis_name)
  bg = g1.shape[0]  # Global batch B * axis size.
  columns = jnp.concatenate([g1, g2], axis=0)  # [2Bg, D]: [view 1; view 2].
  rows = _device_offset(b, axis_name) + jnp.arange(b, dtype=jnp.int32)
  self_idx = jnp.concatenate([rows, rows + bg])
  pos_idx = jnp.concatenate([rows + bg, rows])
  return _contrastive_core(
      anchors, columns, pos_idx, self_idx, temperature=temperature,
      chunk_size=chunk_size, with_metrics=with_metrics, symmetric=axis_name is None)


# ----------------------------------------------------------------------------
# Public API.
# ----------------------------------------------------------------------------


def nt_xent(
    z1: Array, z2: Array, *, temperature: float = 0.1,
    axis_name: AxisName = None, chunk_size: Optional[int] = None,
) -> Array:
  """SimCLR's NT-Xent loss (Chen et al. 2020).

  Embeddings are L2-normalised; the batch is ``[z1; z2]`` (2B anchors). Each
  anchor is scored against the other 2B_global - 1 embeddings (itself
  excluded) with logits cos / temperature; its positive is the other view of
  the same example. The loss is the mean cross-entropy over the anchors, the
  scale of the paper and of lightly's ``NTXentLoss``. The official TF code
  (google-research/simclr) returns ``loss_a + loss_b``, twice this value.

  Args:
    z1: [B, D] embeddings of view 1 (any float dtype; maths in float32, or
      float64 for float64 embeddings).
    z2: [B, D] embeddings of view 2; row i pairs with ``z1[i]``.
    temperature: softmax temperature > 0. Default 0.1 (SimCLR's ImageNet
      flag default; the CIFAR-10 README command uses 0.5).
    axis_name: mesh / pmap axis to gather negatives over. Inside
      ``jax.shard_map`` or ``jax.pmap`` the global batch is B x axis size; each
      device scores its 2B local anchors against all global columns.
    chunk_size: if set, tile the similarity matrix in chunk_size x chunk_size
      blocks with an online log-sum-exp (memory linear in B); same values and
      gradients as the dense path.

  Returns:
    float32 (float64 for float64 embeddings) scalar: mean loss over this
    device's 2B anchors.
    ``jax.lax.pmean(loss, axis_name)`` is the global loss.

  Raises:
    ValueError: at trace time for inputs that are not [B, D] floating arrays
      of equal shape with B >= 1, for temperature <= 0 or chunk_size <= 0.
  """
  loss, _ = _nt_xent_impl(z1, z2, temperature, axis_name, chunk_size, False)
  return loss


def nt_xent_with_metrics(
    z1: Array, z2: Array, *, temperature: float = 0.1,
    axis_name: AxisName = None, chunk_size: Optional[int] = None,
) -> tuple[Array, dict[str, Array]]:
  """NT-Xent plus SimCLR's logged statistics.

  Args: as ``nt_xent``.

  Returns:
    (loss, metrics). ``loss`` is exactly ``nt_xent``'s (local mean under
    ``axis_name``). ``metrics`` are scalars in the loss's dtype, without gradient, global
    means (pmean over ``axis_name``) so every device returns the same values:

    * ``contrastive_acc``: fraction of anchors whose positive has a strictly
      larger logit than every negative (ties count as misses).
    * ``pos_sim``: mean cosine similarity of the positive pairs.
    * ``neg_sim``: mean cosine similarity of each anchor to its negatives.
    * ``logits_entropy``: mean entropy (nats) of each anchor's softmax over
      its 2B_global - 1 logits (SimCLR logs this over the cross-view block).

    The chunked path computes them from per-tile running statistics, without
    building the matrix.
  """
  loss, metrics = _nt_xent_impl(z1, z2, temperature, axis_name, chunk_size, True)
  if axis_name is not None:
    metrics = jax.lax.pmean(metrics, axis_name)
  return loss, metrics


def info_nce(
    queries: Array, keys: Array, *, temperature: float,
    axis_name: AxisName = None, chunk_size: Optional[int] = None,
) -> Array:
  """One-directional InfoNCE (Oord et al. 2018) with cosine similarity.

  Queries and keys are L2-normalised (logits are cosine / temperature, as in
  NT-Xent, CLIP and MoCo). Query i's positive is key i; every other key --
  gathered from all devices on ``axis_name`` when given -- is a negative. No
  column is excluded. For CLIP's symmetric loss average
  ``info_nce(a, b) + info_nce(b, a)``.

  Args:
    queries: [B, D] float embeddings.
    keys: [B, D] float embeddings; row i is query i's positive.
    temperature: softmax temperature > 0.
    axis_name: mesh / pmap axis to gather keys over (global negatives).
    chunk_size: tile size for the memory-linear path (see ``nt_xent``).

  Returns:
    float32 (float64 for float64 input) scalar: mean cross-entropy over the B local queries;
    ``jax.lax.pmean(loss, axis_name)`` is the global loss.

  Raises:
    ValueError: as ``nt_xent``.
  """
  _check_inputs("queries", queries, "keys", keys, temperature, chunk_size)
  b = queries.shape[0]
  qn = _l2_normalize(queries)
  kn = _gather(_l2_normalize(keys), axis_name)  # [B * axis size, D]
  pos_idx = _device_offset(b, axis_name) + jnp.arange(b, dtype=jnp.int32)
  loss, _ = _contrastive_core(
      qn, kn, pos_idx, None, temperature=temperature, chunk_size=chunk_size,
      with_metrics=False)
  return loss
