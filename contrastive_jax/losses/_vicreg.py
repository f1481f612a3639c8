"""VICReg's variance-invariance-covariance loss (Bardes et al. 2022), with global batch statistics."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from contrastive_jax.losses._barlow_twins import (
    _centre, _check_nonnegative, _global_rows, _gram, _off_diagonal, _psum)
from contrastive_jax.losses._core import Array, AxisName, _check_pair, _compute_dtype


def vicreg_loss(
    z1: Array, z2: Array, *, lambda_: float = 25.0, mu: float = 25.0, nu: float = 1.0,
    eps: float = 1e-4, axis_name: AxisName = None,
) -> Array:
  """VICReg's loss (Bardes et al. 2022, eq. 6), as the authors' code and lightly's ``VICRegLoss``.

  For [N, D] embeddings (N rows of the global batch)::

    inv = mean_{n, d} (z1_nd - z2_nd)^2
    C(z) = (z - mean(z))^T (z - mean(z)) / (N - 1)          # [D, D], unbiased
    v(z) = mean_d relu(1 - sqrt(C(z)_dd + eps))
    c(z) = sum_{i != j} C(z)_ij^2 / D
    L = lambda_ * inv + mu * (v(z1) + v(z2)) / 2 + nu * (c(z1) + c(z2))

  The variance terms of the two branches are averaged and the covariance
  terms summed, as in the authors' ``main_vicreg.py`` and lightly.

  Global statistics: under ``axis_name`` the means and C are sums over every
  device's rows (``psum``), so the loss is exactly the single-device loss of
  the global batch, not an average of per-device variance / covariance
  penalties (lightly gathers the embeddings for the same reason; PR #979
  settled on an all-gather, not an all-reduce of the embeddings). Every
  device returns the same global loss; ``psum``'s transpose sums the
  cotangents of the statistics, so the gradient is the global one (see
  Returns).

  Args:
    z1: [N, D] float, the first views' embeddings (this device's rows under
      ``axis_name``). Maths in float32 (float64 for float64 input).
    z2: [N, D] float, the second views; row n pairs with ``z1[n]``.
    lambda_: weight >= 0 of the invariance term. Default 25.
    mu: weight >= 0 of the variance term. Default 25.
    nu: weight >= 0 of the covariance term. Default 1.
    eps: >= 0, added to the variance under the square root (keeps its
      gradient finite for a constant feature). Default 1e-4.
    axis_name: mesh / pmap axis of the global batch (inside ``jax.shard_map``
      or ``jax.pmap``); the global batch is N x axis size rows.

  Returns:
    float32 (float64 for float64 input) scalar, the loss of the global batch,
    the same on every device; its gradients under ``jax.shard_map`` and
    ``jax.pmap`` as ``barlow_twins_loss``'s.

  Raises:
    ValueError: at trace time unless z1 and z2 are [N, D] floating arrays of
      one shape with D >= 1 and a global batch of N >= 2 rows (the unbiased
      variance needs two), or if lambda_, mu, nu or eps < 0.
  """
  _check_pair("z1", z1, "z2", z2)
  _check_nonnegative("vicreg_loss", lambda_=lambda_, mu=mu, nu=nu, eps=eps)
  n = _global_rows("vicreg_loss", z1, axis_name)
  d = z1.shape[1]
  dtype = _compute_dtype(z1)

  diff = z1.astype(dtype) - z2.astype(dtype)
  inv = _psum(jnp.sum(diff * diff), axis_name) / (n * d)

  def var_and_cov(z: Array) -> tuple[Array, Array]:
    zc = _centre(z, n, axis_name)
    cov = _gram(zc, zc, axis_name) / (n - 1)  # [D, D]
    std = jnp.sqrt(jnp.diagonal(cov) + jnp.asarray(eps, dtype))
    return jnp.mean(jax.nn.relu(1.0 - std)), jnp.sum(jnp.square(_off_diagonal(cov))) / d

  v1, c1 = var_and_cov(z1)
  v2, c2 = var_and_cov(z2)
  w_inv, w_var, w_cov = (jnp.asarray(x, dtype) for x in (lambda_, mu, nu))  # Keep the compute dtype.
  return w_inv * inv + w_var * (0.5 * (v1 + v2)) + w_cov * (c1 + c2)
