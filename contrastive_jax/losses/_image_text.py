"""Image-text losses: CLIP's symmetric InfoNCE and SigLIP's pairwise sigmoid.

Both score this device's rows against every device's columns. Three paths give the same
values and gradients (tests/test_losses_image_text.py):
  * gathered, dense (`chunk_size=None`): all-gather the columns, build [B_local, N] logits;
  * gathered, tiled (`chunk_size=k`): all-gather the columns, k x k tiles, never the matrix;
  * ring (`ring=True`, needs `axis_name`): the columns travel device to device by
    `ppermute` (`_ring.py`); per device one visiting block and one tile (k x k, or
    B_local x B_local without `chunk_size`), so memory falls as devices are added.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from contrastive_jax import parallel
from contrastive_jax.losses._core import (
    Array, AxisName, _check_hparams, _check_pair, _device_offset, _gather, _l2_normalize,
    _row_lse)
from contrastive_jax.losses._ring import ring_lse, ring_sigmoid_rowsum


def _check_scalar(name: str, value: Any, hint: str) -> None:
  if jnp.ndim(value) != 0:
    raise ValueError(f"{name} must be a scalar; got shape {tuple(jnp.shape(value))}. {hint}")
  if not jnp.issubdtype(jnp.result_type(value), jnp.floating) and not isinstance(value, (int, float)):
    raise ValueError(f"{name} must be a float; got dtype {jnp.result_type(value)}.")


def check_ring(ring: bool, axis_name: AxisName) -> None:
  """Raises ValueError for ring=True without an axis to pass blocks along."""
  if ring and axis_name is None:
    raise ValueError("ring=True passes column blocks between the devices of axis_name; give axis_name (inside "
                     "jax.shard_map or jax.pmap), or use chunk_size alone for a memory-linear single-device loss.")


def tiles(chunk_size: Optional[int], rows: int, cols: int) -> tuple[int, int]:
  """The ring's tile: chunk_size x chunk_size, at most the block (the whole block without chunk_size)."""
  if chunk_size is None:
    return rows, cols
  return min(chunk_size, rows), min(chunk_size, cols)


def _inputs(x, y, logit_scale, chunk_size, ring, axis_name):
  _check_pair("x", x, "y", y)
  _check_scalar("logit_scale", logit_scale, "It is the log of the logit scale (CLIP: log(1 / 0.07); SigLIP: "
                "log 10), one learned number.")
  _check_hparams(1.0, chunk_size)
  check_ring(ring, axis_name)
  xn = _l2_normalize(x)
  yn = _l2_normalize(y).astype(xn.dtype)
  return xn, yn, jnp.exp(jnp.asarray(logit_scale, xn.dtype))


def _lse_against_all(a: Array, b: Array, *, axis_name: AxisName, chunk_size: Optional[int], ring: bool) -> Array:
  """lse_i over every device's b_j of a_i . b_j ([R]); a already scaled."""
  if ring:
    rows, cols = tiles(chunk_size, a.shape[0], b.shape[0])
    return ring_lse(a, b, jnp.full((a.shape[0],), -1, jnp.int32), axis_name, rows, cols)
  lse, _ = _row_lse(a, _gather(b, axis_name), None, temperature=1.0, chunk_size=chunk_size)
  return lse


def clip_loss(
    x: Array, y: Array, *, logit_scale: Any,
    axis_name: AxisName = None, chunk_size: Optional[int] = None, ring: bool = False,
) -> Array:
  """CLIP's symmetric InfoNCE (Radford et al. 2021).

  With x̂, ŷ the L2-normalised rows and logits = exp(logit_scale) x̂ ŷᵀ, the loss is the mean
  of the image->text and text->image cross-entropies, row i's positive being column i.
  Under `axis_name` this device's images are scored against every device's texts and its
  texts against every device's images; the result averages both over the local rows, so
  `jax.lax.pmean(loss, axis_name)` is the global loss. It equals
  `(info_nce(x, y, temperature=t) + info_nce(y, x, temperature=t)) / 2` with
  t = exp(-logit_scale).

  `logit_scale` may be a traced, learned scalar (CLIP initialises it to log(1 / 0.07)); its
  gradient is exact on every path. The loss does not clip it: CLIP clamps exp(logit_scale)
  at 100, which is the caller's to do (e.g. `jnp.minimum(logit_scale, jnp.log(100.0))`).

  Args:
    x: [B, D] image embeddings (any float dtype; maths in float32, float64 for float64).
    y: [B, D] text embeddings; row i pairs with x[i].
    logit_scale: scalar, the log of the inverse temperature.
    axis_name: mesh / pmap axis of the global batch (B x axis size pairs).
    chunk_size: tile size: the [B, N] logits are never built; same values and gradients.
    ring: the other devices' embeddings arrive by `ppermute`, one block at a time, instead of
      an all-gather (needs `axis_name`); same values and gradients.

  Returns:
    float32 (float64 for float64 input) scalar: the mean over this device's 2B rows.

  Raises:
    ValueError: at trace time for x, y not [B, D] float arrays of one shape, a non-scalar
      logit_scale, chunk_size <= 0, or ring=True without axis_name.
  """
  xn, yn, scale = _inputs(x, y, logit_scale, chunk_size, ring, axis_name)
  xs, ys = xn * scale, yn * scale
  pos = jnp.sum(xs * yn, axis=-1)  # [B]: the positive logit, the same in both directions
  kw = {"axis_name": axis_name, "chunk_size": chunk_size, "ring": ring}
  i2t = _lse_against_all(xs, yn, **kw)
  t2i = _lse_against_all(ys, xn, **kw)
  return 0.5 * (jnp.mean(i2t - pos) + jnp.mean(t2i - pos))


def siglip_loss(
    x: Array, y: Array, *, logit_scale: Any, logit_bias: Any,
    axis_name: AxisName = None, chunk_size: Optional[int] = None, ring: bool = False,
) -> Array:
  """SigLIP's pairwise sigmoid loss (Zhai et al. 2023).

  logits = exp(logit_scale) x̂ ŷᵀ + logit_bias over this device's images (rows i) and every
  device's texts (columns j); labels are +1 for the pair (i, i) and -1 elsewhere:

      loss = -(1 / B) sum_i sum_j log sigmoid(label_ij logit_ij),   B = the local rows,

  so `jax.lax.pmean(loss, axis_name)` is the global loss, the sum over all N x N pairs over N.
  This is big_vision's normalisation (`trainers/proj/image_text/siglip.py`: the sum over a
  row's columns, then the mean over rows); the paper's pseudo-code divides the same sum by N.

  `logit_scale` and `logit_bias` may be traced, learned scalars (SigLIP initialises them to
  log 10 and -10); their gradients are exact on every path.

  Args:
    x: [B, D] image embeddings; y: [B, D] text embeddings, row i pairs with x[i].
    logit_scale: scalar, the log of the logit scale.
    logit_bias: scalar bias added to every logit.
    axis_name, chunk_size, ring: as `clip_loss`.

  Returns:
    float32 (float64 for float64 input) scalar.

  Raises:
    ValueError: as `clip_loss`, and for a non-scalar logit_bias.
  """
  xn, yn, scale = _inputs(x, y, logit_scale, chunk_size, ring, axis_name)
  _check_scalar("logit_bias", logit_bias, "SigLIP learns one bias, initialised to -10.")
  b = x.shape[0]
  xs = xn * scale
  bias = parallel.match_vma(jnp.asarray(logit_bias, xn.dtype), xs)
  if ring:
    rows, cols = tiles(chunk_size, b, b)
    per_row = ring_sigmoid_rowsum(xs, yn, jnp.arange(b, dtype=jnp.int32), bias, axis_name, rows, cols)
    return jnp.mean(per_row)
  columns = _gather(yn, axis_name)
  pos = _device_offset(b, axis_name) + jnp.arange(b, dtype=jnp.int32)
  if chunk_size is not None:
    rows, cols = tiles(chunk_size, b, columns.shape[0])
    return jnp.mean(ring_sigmoid_rowsum(xs, columns, pos, bias, None, rows, cols))
  logits = jnp.dot(xs, columns.T, preferred_element_type=xs.dtype) + bias  # [B, N]
  labels = jnp.where(jnp.arange(columns.shape[0])[None, :] == pos[:, None], 1.0, -1.0).astype(xs.dtype)
  return -jnp.sum(jax.nn.log_sigmoid(labels * logits)) / b
