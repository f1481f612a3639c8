"""Ring kernels: the other devices' columns arrive by `ppermute`, one block at a time.

The gathered path all-gathers every device's columns ([N_global, D] per device). Here each
device holds its own block of columns and passes it to the next device on the axis; after
`axis_size` steps every block has visited every device. The forward folds each visiting
block into a per-row reduction (an online log-sum-exp, or a sum of log-sigmoids); the
backward (a `jax.custom_vjp`) runs the ring again, recomputing the tiles, and the gradient
of a block's columns travels with the block and arrives home after the last step. Per device
it holds its anchors, one visiting block (plus its gradient in the backward) and one
rows x cols tile: memory falls as devices are added for a fixed global batch.

The tile work per block is `_chunked`'s (`_lse_fwd_impl` / `_chunked_lse_bwd`) or the
sigmoid tiles below, so the ring and the tiled gathered path compute the same tiles. With
`axis_name=None` the ring has one step: the tiled kernel over the given columns.

`own_idx` (one int32 per anchor row) names a column of the device's *own* block: the
anchor itself (log-sum-exp: excluded) or its positive (sigmoid: label +1); -1 for none.
"""

from __future__ import annotations

import functools
from typing import Any, Hashable, Optional

import jax
import jax.numpy as jnp

from contrastive_jax import parallel
from contrastive_jax.losses._chunked import _chunked_lse_bwd, _lse_fwd_impl, _num_blocks, _pad_rows

Array = jax.Array


def _axis_size(axis_name: Optional[Hashable]) -> int:
  return 1 if axis_name is None else jax.lax.axis_size(axis_name)


def _to_next(x: Any, axis_name: Hashable, n: int) -> Any:
  """Each device's x goes to the next device on the axis (the last one's to the first)."""
  return jax.lax.ppermute(x, axis_name, [(j, (j + 1) % n) for j in range(n)])


def _ring_fold(axis_name, c, init, visit):
  """Folds visit(acc, block, own) over the axis_size blocks, own=True for this device's block."""
  n = _axis_size(axis_name)
  acc = visit(init, c, True)
  if n == 1:
    return acc

  def step(carry, _):
    acc, blk = carry
    blk = _to_next(blk, axis_name, n)
    return (visit(acc, blk, False), blk), None

  (acc, _), _ = jax.lax.scan(step, (acc, c), None, length=n - 1)
  return acc


def _ring_fold_grad(axis_name, c, dq0, visit):
  """Backward ring: visit(dq, block, own) -> (dq, d block); returns (dq, d own columns).

  A block's gradient travels with it and is sent on once more after the last visit, which
  brings it home: axis_size sends of the gradient in all.
  """
  n = _axis_size(axis_name)
  dq, dc = visit(dq0, c, True)
  if n == 1:
    return dq, dc

  def step(carry, _):
    dq, blk, dblk = carry
    blk, dblk = _to_next((blk, dblk), axis_name, n)
    dq, d = visit(dq, blk, False)
    return (dq, blk, dblk + d), None

  (dq, _, dc), _ = jax.lax.scan(step, (dq, c, dc), None, length=n - 1)
  return dq, _to_next(dc, axis_name, n)


def _no_idx(own_idx: Array) -> Array:
  return jnp.full_like(own_idx, -1)


# ----------------------------------------------------------------------------
# lse_i = logsumexp_j q_i . c_j over every device's columns, the own column excluded.
# ----------------------------------------------------------------------------


def _ring_lse_fwd_impl(q, c, own_idx, axis_name, rows, cols):
  def visit(lse, blk, own):
    blk_lse, _ = _lse_fwd_impl(q, blk, own_idx if own else _no_idx(own_idx), _no_idx(own_idx), rows, cols, False)
    return jnp.logaddexp(lse, blk_lse)

  init = parallel.match_vma(jnp.full((q.shape[0],), -jnp.inf, q.dtype), q, c, own_idx)
  return _ring_fold(axis_name, c, init, visit)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def ring_lse(q: Array, c: Array, own_idx: Array, axis_name: Optional[Hashable], rows: int, cols: int) -> Array:
  """lse_i = logsumexp over every device's columns c_j of q_i . c_j, column own_idx_i of the own block excluded.

  Args:
    q: [R, D] anchors, already divided by the temperature (float32 or float64).
    c: [C, D] this device's columns, q's dtype.
    own_idx: [R] int32, the column of the own block each row excludes (-1: none).
    axis_name: the ring's axis (inside `jax.shard_map`), or None: c are all the columns.
    rows, cols: static tile sizes (<= R and <= C).

  Returns:
    lse [R].
  """
  return _ring_lse_fwd_impl(q, c, own_idx, axis_name, rows, cols)


def _ring_lse_fwd(q, c, own_idx, axis_name, rows, cols):
  lse = _ring_lse_fwd_impl(q, c, own_idx, axis_name, rows, cols)
  return lse, (q, c, own_idx, lse)


def _ring_lse_bwd(axis_name, rows, cols, res, g):
  q, c, own_idx, lse = res

  def visit(dq, blk, own):
    # d lse_i / d s_ij = exp(s_ij - lse_i) with the global lse: this block's share.
    idx = own_idx if own else _no_idx(own_idx)
    dq_blk, dc_blk, _, _ = _chunked_lse_bwd(rows, cols, False, (q, blk, idx, lse), (g, ()))
    return dq + dq_blk, dc_blk

  dq0 = parallel.match_vma(jnp.zeros_like(q), q, c, own_idx, lse, g)
  dq, dc = _ring_fold_grad(axis_name, c, dq0, visit)
  return dq, dc, None


ring_lse.defvjp(_ring_lse_fwd, _ring_lse_bwd)


# ----------------------------------------------------------------------------
# r_i = sum_j -log sigmoid(label_ij * (q_i . c_j + bias)) over every device's columns,
# label_ij = +1 for column own_idx_i of the own block, -1 otherwise (SigLIP).
# ----------------------------------------------------------------------------


def _sigmoid_tiles(q, c, pos_idx, rows, cols):
  """q, pos_idx and c padded and split into blocks of rows / cols; first-column indices; C."""
  n, d = q.shape
  m = c.shape[0]
  n_rb, n_cb = _num_blocks(n, rows), _num_blocks(m, cols)
  q_t = _pad_rows(q, n_rb * rows).reshape(n_rb, rows, d)
  pos_t = _pad_rows(pos_idx, n_rb * rows, -1).reshape(n_rb, rows)
  c_t = _pad_rows(c, n_cb * cols).reshape(n_cb, cols, d)
  j0s = jnp.arange(n_cb, dtype=jnp.int32) * cols
  return q_t, pos_t, c_t, j0s, m


def _sigmoid_tile(q_blk, c_chk, pos_blk, j0, m, bias):
  """Logits t = q . c + bias of one tile, labels (+1 on the positive, else -1) and validity."""
  t = jnp.dot(q_blk, c_chk.T, preferred_element_type=q_blk.dtype) + bias
  col = j0 + jnp.arange(c_chk.shape[0], dtype=jnp.int32)
  label = jnp.where(col[None, :] == pos_blk[:, None], 1.0, -1.0).astype(q_blk.dtype)
  valid = jnp.broadcast_to((col < m)[None, :], t.shape)
  return t, label, valid


def _sigmoid_rowsum_impl(q, c, pos_idx, bias, rows, cols):
  q_t, pos_t, c_t, j0s, m = _sigmoid_tiles(q, c, pos_idx, rows, cols)

  def row_block(args):
    q_blk, pos_blk = args

    def col_step(acc, xs):
      c_chk, j0 = xs
      t, label, valid = _sigmoid_tile(q_blk, c_chk, pos_blk, j0, m, bias)
      return acc + jnp.sum(jnp.where(valid, -jax.nn.log_sigmoid(label * t), 0.0), axis=1), None

    acc0 = parallel.match_vma(jnp.zeros((rows,), q.dtype), q, c, pos_idx, bias)
    acc, _ = jax.lax.scan(col_step, acc0, (c_t, j0s))
    return acc

  return jax.lax.map(row_block, (q_t, pos_t)).reshape(-1)[:q.shape[0]]


def _sigmoid_rowsum_grad(q, c, pos_idx, bias, g, rows, cols):
  """(dq, dc, dbias) of sum_i g_i r_i for one block of columns."""
  n, d = q.shape
  q_t, pos_t, c_t, j0s, m = _sigmoid_tiles(q, c, pos_idx, rows, cols)
  g_t = _pad_rows(g, q_t.shape[0] * rows).reshape(-1, rows)  # padded rows: g = 0

  def row_block(carry, args):
    dc, db = carry
    q_blk, pos_blk, g_blk = args

    def col_step(inner, xs):
      dq, db = inner
      c_chk, j0 = xs
      t, label, valid = _sigmoid_tile(q_blk, c_chk, pos_blk, j0, m, bias)
      # d/dt -log sigmoid(label t) = -label sigmoid(-label t).
      w = jnp.where(valid, -label * jax.nn.sigmoid(-label * t), 0.0) * g_blk[:, None]
      dq = dq + jnp.dot(w, c_chk, preferred_element_type=q.dtype)
      return (dq, db + jnp.sum(w)), jnp.dot(w.T, q_blk, preferred_element_type=q.dtype)

    dq0 = parallel.match_vma(jnp.zeros((rows, d), q.dtype), q, c, pos_idx, bias, g)
    (dq, db), dc_blk = jax.lax.scan(col_step, (dq0, db), (c_t, j0s))
    return (dc + dc_blk, db), dq

  dc0 = parallel.match_vma(jnp.zeros(c_t.shape, q.dtype), q, c, pos_idx, bias, g)
  db0 = parallel.match_vma(jnp.zeros((), q.dtype), q, c, pos_idx, bias, g)
  (dc, db), dq = jax.lax.scan(row_block, (dc0, db0), (q_t, pos_t, g_t))
  return dq.reshape(-1, d)[:n], dc.reshape(-1, d)[:c.shape[0]], db


def _ring_sigmoid_fwd_impl(q, c, own_idx, bias, axis_name, rows, cols):
  def visit(acc, blk, own):
    return acc + _sigmoid_rowsum_impl(q, blk, own_idx if own else _no_idx(own_idx), bias, rows, cols)

  init = parallel.match_vma(jnp.zeros((q.shape[0],), q.dtype), q, c, own_idx, bias)
  return _ring_fold(axis_name, c, init, visit)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def ring_sigmoid_rowsum(q: Array, c: Array, own_idx: Array, bias: Array, axis_name: Optional[Hashable],
                        rows: int, cols: int) -> Array:
  """r_i = sum over every device's columns c_j of -log sigmoid(label_ij (q_i . c_j + bias)).

  Args:
    q: [R, D] anchors, already multiplied by the logit scale (float32 or float64).
    c: [C, D] this device's columns, q's dtype.
    own_idx: [R] int32, each row's positive column in the own block (label +1; -1: none).
    bias: scalar logit bias in q's dtype, varying like q under `shard_map` (`match_vma`).
    axis_name, rows, cols: as `ring_lse`.

  Returns:
    r [R].
  """
  return _ring_sigmoid_fwd_impl(q, c, own_idx, bias, axis_name, rows, cols)


def _ring_sigmoid_fwd(q, c, own_idx, bias, axis_name, rows, cols):
  return _ring_sigmoid_fwd_impl(q, c, own_idx, bias, axis_name, rows, cols), (q, c, own_idx, bias)


def _ring_sigmoid_bwd(axis_name, rows, cols, res, g):
  q, c, own_idx, bias = res

  def visit(carry, blk, own):
    dq, db = carry
    dq_blk, dc_blk, db_blk = _sigmoid_rowsum_grad(q, blk, own_idx if own else _no_idx(own_idx), bias, g,
                                                  rows, cols)
    return (dq + dq_blk, db + db_blk), dc_blk

  zeros = parallel.match_vma(jnp.zeros_like(q), q, c, own_idx, bias, g)
  zero = parallel.match_vma(jnp.zeros((), q.dtype), q, c, own_idx, bias, g)
  (dq, db), dc = _ring_fold_grad(axis_name, c, (zeros, zero), visit)
  return dq, dc, None, db


ring_sigmoid_rowsum.defvjp(_ring_sigmoid_fwd, _ring_sigmoid_bwd)
