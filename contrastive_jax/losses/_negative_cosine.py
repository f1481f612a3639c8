"""SimSiam's loss: the negative cosine similarity."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from contrastive_jax.losses._core import Array, _check_pair, _compute_dtype

# torch.nn.functional.cosine_similarity's default eps (lightly's
# NegativeCosineSimilarity keeps it): each norm is clamped to >= 1e-8.
_COS_EPS = 1e-8


def _unit_rows(x: Array) -> Array:
  """x / max(|x|, 1e-8) row-wise in float32 (float64 for float64 input), as torch's cosine_similarity."""
  x = x.astype(_compute_dtype(x))
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, _COS_EPS * _COS_EPS))


def negative_cosine_similarity(p: Array, z: Array) -> Array:
  """SimSiam's loss (Chen & He 2021, eq. 1): -mean_i cos(p_i, z_i).

  cos(p_i, z_i) = p_i . z_i / (max(|p_i|, eps) * max(|z_i|, eps)) with
  eps = 1e-8, torch's ``cosine_similarity`` as used by lightly's
  ``NegativeCosineSimilarity``. Row-wise: no negatives, so no ``axis_name``
  and no ``chunk_size``.

  The gradient is NOT stopped for ``z`` here: SimSiam's symmetrised loss is
  ``0.5 * (negative_cosine_similarity(p1, jax.lax.stop_gradient(z2)) +
  negative_cosine_similarity(p2, jax.lax.stop_gradient(z1)))``, the caller
  applying the stop-gradient the paper relies on.

  Args:
    p: [B, D] float, the predictor's outputs.
    z: [B, D] float, the projections; row i pairs with ``p[i]``.

  Returns:
    float32 (float64 for float64 input) scalar in [-1, 1]: the mean over the
    B local rows. Inside ``jax.shard_map`` / ``jax.pmap`` with the same B on
    every device, ``jax.lax.pmean(loss, axis)`` is the global batch's loss
    (and its gradient the global gradient).

  Raises:
    ValueError: at trace time unless both are [B, D] floating arrays of the
      same shape with B, D >= 1.
  """
  _check_pair("p", p, "z", z)
  return -jnp.mean(jnp.sum(_unit_rows(p) * _unit_rows(z), axis=-1))
