"""What every contrastive loss shares: input checks, normalisation, gather, the core.

Every loss scores anchor rows against a set of columns by cosine similarity /
temperature and takes a log-sum-exp over the columns (``_row_lse``: the dense
[anchors, columns] matrix, or the chunked kernels of ``_chunked``, same values
and gradients). ``_contrastive_core`` is the one-positive cross-entropy on top
of it (NT-Xent, InfoNCE) with SimCLR's metrics; SupCon and MoCo's queue
compose ``_row_lse`` with their own positive term.
"""

from __future__ import annotations

from typing import Any, Hashable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from contrastive_jax.losses._chunked import _MIN_FIXED_SHIFT_TEMPERATURE, _chunked_lse, _sym_chunked_lse

Array = jax.Array
AxisName = Optional[Hashable]

_NORM_EPS = 1e-12  # guards the L2 normalisation of an all-zero row.


# ----------------------------------------------------------------------------
# Input checks (trace time, so they raise before anything runs).
# ----------------------------------------------------------------------------


def _check_float_array(name: str, x: Any, shape_desc: str, hint: str = "") -> None:
  """Raises ValueError unless x is a floating array of rank len(shape_desc's dims)."""
  rank = len(shape_desc.strip("[]").split(","))
  shape = getattr(x, "shape", None)
  hint = f" {hint}" if hint else ""
  if shape is None:
    raise ValueError(f"{name} must be an array of shape {shape_desc}; got {type(x).__name__}.{hint}")
  if len(shape) != rank:
    raise ValueError(
        f"{name} must have rank {rank} (shape {shape_desc}); got rank {len(shape)} "
        f"with shape {tuple(shape)}.{hint}")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(
        f"{name} must be a floating-point array; got dtype {x.dtype}. Cast it, e.g. "
        f"{name}.astype(jnp.float32).")


def _check_pair(name_a: str, a: Any, name_b: str, b: Any) -> None:
  """Raises ValueError unless a and b are [B, D] floating arrays of one shape, B, D >= 1."""
  _check_float_array(name_a, a, "[B, D]")
  _check_float_array(name_b, b, "[B, D]")
  if tuple(a.shape) != tuple(b.shape):
    raise ValueError(
        f"{name_a} and {name_b} must have the same shape [B, D]; "
        f"got {tuple(a.shape)} and {tuple(b.shape)}.")
  if a.shape[0] == 0:
    raise ValueError(
        f"empty batch: {name_a} and {name_b} need B >= 1 rows; "
        f"got shapes {tuple(a.shape)} and {tuple(b.shape)}.")
  if a.shape[1] == 0:
    raise ValueError(f"embedding size D must be >= 1; got shape {tuple(a.shape)}.")


def _check_hparams(temperature: Any, chunk_size: Optional[int]) -> None:
  """Raises ValueError for temperature <= 0 (when known at trace time) or a bad chunk_size."""
  t = _concrete(temperature)
  if t is not None and not t > 0.0:  # also rejects NaN.
    raise ValueError(f"temperature must be > 0; got {temperature}.")
  if chunk_size is not None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
      raise ValueError(f"chunk_size must be None or a positive int; got {chunk_size!r}.")


def _check_inputs(
    name_a: str, a: Any, name_b: str, b: Any, temperature: Any,
    chunk_size: Optional[int],
) -> None:
  """Raises ValueError for malformed [B, D] embedding pairs / hyper-parameters."""
  _check_pair(name_a, a, name_b, b)
  _check_hparams(temperature, chunk_size)


def _concrete(temperature: Any) -> Optional[float]:
  """The temperature as a float, or None when traced (e.g. learnt): unknown at trace time."""
  try:
    return float(temperature)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return None


# ----------------------------------------------------------------------------
# Normalisation and the cross-device gather.
# ----------------------------------------------------------------------------


def _compute_dtype(x: Array) -> jnp.dtype:
  """The dtype the loss computes in: float32, or float64 for float64 input."""
  return jnp.promote_types(x.dtype, jnp.float32)


def _l2_normalize(x: Array) -> Array:
  """[..., D] -> [..., D] rows of unit norm in `_compute_dtype` (zero rows stay zero)."""
  x = x.astype(_compute_dtype(x))
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, _NORM_EPS * _NORM_EPS))


def _gather(x: Array, axis_name: AxisName) -> Array:
  """[B, ...] local -> [B * axis_size, ...] global (device-major order)."""
  if axis_name is None:
    return x
  return jax.lax.all_gather(x, axis_name, axis=0, tiled=True)


def _device_offset(local_rows: int, axis_name: AxisName) -> Array:
  """Row offset of this device's block in a tiled all-gather."""
  if axis_name is None:
    return jnp.zeros((), jnp.int32)
  return jax.lax.axis_index(axis_name).astype(jnp.int32) * local_rows


# ----------------------------------------------------------------------------
# The log-sum-exp over columns, and the one-positive cross-entropy.
# ----------------------------------------------------------------------------


def _scaled(anchors: Array, temperature: Any) -> Array:
  """[N, D] anchors / temperature: rows whose dot product with a column is its logit."""
  return anchors * (1.0 / jnp.asarray(temperature, anchors.dtype))


def _row_lse(
    anchors: Array, columns: Array, self_idx: Optional[Array], *,
    temperature: Any, chunk_size: Optional[int], symmetric: bool = False,
    pos_idx: Optional[Array] = None, with_stats: bool = False, exclude_pos: bool = False,
) -> tuple[Array, Optional[tuple[Array, Array]]]:
  """lse_i = logsumexp_{j != self_idx_i} anchors_i . columns_j / temperature.

  Args:
    anchors: [N, D] float32 (or float64), unit-norm rows.
    columns: [M, D] unit-norm rows in the anchors' dtype (may include the anchors).
    self_idx: [N] int32 column to exclude per anchor (the anchor itself), or
      None when no column is excluded.
    temperature: softmax temperature (> 0).
    chunk_size: None for the dense path, else the tile size.
    symmetric: columns is anchors and self_idx is arange(N) (single device,
      the batch against itself); the chunked path then visits each symmetric
      tile pair once (when the temperature is a number >=
      _MIN_FIXED_SHIFT_TEMPERATURE).
    pos_idx: [N] int32 positive column per anchor; only read with_stats or
      exclude_pos.
    with_stats: also return (max logit over the negatives, E_softmax[logit]),
      both [N] and without gradient (metrics).
    exclude_pos: also leave column pos_idx_i out of row i's lse, so the sum
      runs over the negatives only (DCL).

  Returns:
    (lse [N] in the anchors' dtype, stats or None).
  """
  dtype = anchors.dtype
  n, m_cols = anchors.shape[0], columns.shape[0]
  if self_idx is None:
    self_idx = jnp.full((n,), -1, jnp.int32)
  if pos_idx is None:
    pos_idx = jnp.full((n,), -1, jnp.int32)
  q = _scaled(anchors, temperature)  # [N, D]

  if chunk_size is None:
    logits = jnp.dot(q, columns.T, preferred_element_type=dtype)  # [N, M]
    col_ids = jnp.arange(m_cols, dtype=jnp.int32)
    valid = col_ids[None, :] != self_idx[:, None]
    if exclude_pos:
      valid = valid & (col_ids[None, :] != pos_idx[:, None])
    logits = jnp.where(valid, logits, -jnp.inf)
    lse = jax.nn.logsumexp(logits, axis=-1)  # [N]
    if not with_stats:
      return lse, None
    sl = jax.lax.stop_gradient(logits)
    neg_max = jnp.max(jnp.where(col_ids[None, :] == pos_idx[:, None], -jnp.inf, sl), axis=-1)
    probs = jax.nn.softmax(sl, axis=-1)
    expected_logit = jnp.sum(probs * jnp.where(valid, sl, 0.0), axis=-1)
    return lse, (neg_max, expected_logit)

  t_static = _concrete(temperature)
  if symmetric and t_static is not None and t_static >= _MIN_FIXED_SHIFT_TEMPERATURE:
    inv_t = 1.0 / t_static
    u = anchors * np.asarray(np.sqrt(inv_t), dtype)
    lse, stats = _sym_chunked_lse(u, pos_idx, inv_t, min(chunk_size, n), with_stats, exclude_pos)
  else:
    rows = min(chunk_size, n)
    cols_chunk = min(chunk_size, m_cols)
    # [N, 2] excluded columns per row when the positive is left out too.
    excluded = jnp.stack([self_idx, pos_idx], axis=1) if exclude_pos else self_idx
    lse, stats = _chunked_lse(q, columns, excluded, pos_idx, rows, cols_chunk, with_stats)
  return lse, (jax.lax.stop_gradient(stats) if with_stats else None)


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
    symmetric: as ``_row_lse`` (single-device NT-Xent).

  Returns:
    (loss, metrics): loss is the scalar mean over the N anchors, in the
    anchors' dtype; metrics is None unless with_metrics.
  """
  dtype = anchors.dtype
  m_cols = columns.shape[0]
  has_self = self_idx is not None
  q = _scaled(anchors, temperature)  # [N, D]
  pos_logit = jnp.sum(q * jnp.take(columns, pos_idx, axis=0), axis=-1)  # [N]
  lse, stats = _row_lse(
      anchors, columns, self_idx, temperature=temperature, chunk_size=chunk_size,
      symmetric=symmetric, pos_idx=pos_idx, with_stats=with_metrics)

  loss = jnp.mean(lse - pos_logit)
  if not with_metrics:
    return loss, None

  # Metrics: no gradient, and no matrix -- similarity sums come from
  # anchor . sum(columns), the rest from the per-row statistics above.
  neg_max, expected_logit = stats
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
