"""Barlow Twins' redundancy-reduction loss (Zbontar et al. 2021), with global batch statistics.

Also the helpers VICReg shares (``_vicreg.py``): input checks, the global row
count and the cross-device sum of batch statistics.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from contrastive_jax.losses._core import Array, AxisName, _check_pair, _compute_dtype, _concrete

# F.batch_norm's default eps, which lightly's BarlowTwinsLoss normalises with.
_BN_EPS = 1e-5
# The [D, D] statistics sum N products of values near 1: TF32 / bf16 passes (the GPU / TPU
# default for float32 matmuls) would leave ~1e-3 errors in c_ii, the size of 1 - c_ii late in training.
_STATS_PRECISION = jax.lax.Precision.HIGHEST


def _check_nonnegative(fn: str, **hparams: Any) -> None:
  """Raises ValueError for a hyper-parameter < 0 (or NaN) when it is known at trace time."""
  for name, value in hparams.items():
    v = _concrete(value)
    if v is not None and not v >= 0.0:  # also rejects NaN.
      raise ValueError(f"{fn}: {name} must be >= 0; got {value}.")


def _global_rows(fn: str, z: Array, axis_name: AxisName) -> int:
  """The (static) global batch size N = local rows x axis size; ValueError unless N >= 2."""
  local = z.shape[0]
  devices = 1 if axis_name is None else jax.lax.axis_size(axis_name)
  n = local * devices
  if n < 2:
    where = "" if axis_name is None else f" ({local} local rows x {devices} devices on axis {axis_name!r})"
    raise ValueError(
        f"{fn} needs a global batch of N >= 2 rows: the batch variance of one row is undefined; "
        f"got N = {n}{where}.")
  return n


def _psum(x: Array, axis_name: AxisName) -> Array:
  """Sum over the devices of ``axis_name``: partial batch sums -> global batch sums."""
  return x if axis_name is None else jax.lax.psum(x, axis_name)


def _centre(z: Array, n: int, axis_name: AxisName) -> Array:
  """[N_local, D] -> the rows minus the global batch mean, in `_compute_dtype`."""
  z = z.astype(_compute_dtype(z))
  return z - _psum(jnp.sum(z, axis=0), axis_name) / n


def _gram(a: Array, b: Array, axis_name: AxisName) -> Array:
  """sum over the global batch of a_n b_n^T: [N_local, D] x [N_local, D] -> [D, D]."""
  return _psum(jnp.matmul(a.T, b, precision=_STATS_PRECISION), axis_name)


def _off_diagonal(c: Array) -> Array:
  """[D, D] -> c with its diagonal zeroed (masked, not sum(c^2) - sum(diag^2): no cancellation)."""
  return jnp.where(jnp.eye(c.shape[0], dtype=bool), jnp.zeros((), c.dtype), c)


def barlow_twins_loss(z1: Array, z2: Array, *, lambda_: float = 5e-3, axis_name: AxisName = None) -> Array:
  """Barlow Twins' loss (Zbontar et al. 2021, eq. 1 and Algorithm 1).

  Each feature of z1 and z2 is batch-normalised over the global batch of N
  rows, ``zn = (z - mean) / sqrt(var + 1e-5)`` with the biased variance (what
  ``F.batch_norm`` does in training mode without affine, as in lightly's
  ``BarlowTwinsLoss``); then with the [D, D] cross-correlation
  ``c = zn1^T zn2 / N``::

    L = sum_i (1 - c_ii)^2 + lambda_ * sum_{i != j} c_ij^2.

  Global statistics: under ``axis_name`` the means, variances and c are sums
  over every device's rows (``psum``), so the loss is exactly the
  single-device loss of the global batch. Normalising each device's rows and
  averaging the per-device c (lightly's ``gather_distributed``) is a
  different loss; all-reducing c without differentiating through the reduce
  also scaled the gradient by 1 / world size (lightly #1977, fixed in PR
  #1980). Here every device returns the same global loss; ``psum``'s
  transpose sums the cotangents of the statistics, so the gradient is the
  global one (see Returns).

  Args:
    z1: [N, D] float, the projections of the first views (this device's rows
      under ``axis_name``). Maths in float32 (float64 for float64 input).
    z2: [N, D] float, the second views; row n pairs with ``z1[n]``.
    lambda_: weight >= 0 of the redundancy-reduction (off-diagonal) term.
      Default 5e-3 (the paper's).
    axis_name: mesh / pmap axis of the global batch (inside ``jax.shard_map``
      or ``jax.pmap``); the global batch is N x axis size rows.

  Returns:
    float32 (float64 for float64 input) scalar, the loss of the global batch,
    the same on every device, so ``jax.lax.pmean(loss, axis_name)`` is the
    global loss. Under ``jax.shard_map`` the grad of that pmean (w.r.t.
    embeddings or replicated parameters) is the single-device gradient; under
    ``jax.pmap`` take the grad of the local loss and pmean the parameter
    gradients (the local grad w.r.t. local embeddings is axis size x the
    global one), as for the package's other losses.

  Raises:
    ValueError: at trace time unless z1 and z2 are [N, D] floating arrays of
      one shape with D >= 1 and a global batch of N >= 2 rows, or if
      lambda_ < 0.
  """
  _check_pair("z1", z1, "z2", z2)
  _check_nonnegative("barlow_twins_loss", lambda_=lambda_)
  n = _global_rows("barlow_twins_loss", z1, axis_name)

  def normalise(z: Array) -> Array:
    zc = _centre(z, n, axis_name)  # Two passes (mean, then centred squares): no cancellation.
    var = _psum(jnp.sum(zc * zc, axis=0), axis_name) / n
    return zc * jax.lax.rsqrt(var + _BN_EPS)

  c = _gram(normalise(z1), normalise(z2), axis_name) / n  # [D, D]
  on_diag = jnp.sum(jnp.square(1.0 - jnp.diagonal(c)))
  off_diag = jnp.sum(jnp.square(_off_diagonal(c)))
  return on_diag + jnp.asarray(lambda_, c.dtype) * off_diag
