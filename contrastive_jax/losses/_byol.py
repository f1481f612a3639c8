"""BYOL's regression loss: the normalised mean squared error 2 - 2 cos."""

from __future__ import annotations

import jax.numpy as jnp

from contrastive_jax.losses._core import Array, _check_pair, _l2_normalize


def byol_loss(predictions: Array, targets: Array) -> Array:
  """BYOL's loss (Grill et al. 2020, eq. 2): mean_i ||p_i/|p_i| - t_i/|t_i| ||^2 = 2 - 2 cos(p_i, t_i).

  Row-wise: no negatives, so no ``axis_name`` and no ``chunk_size``. Rows are
  L2-normalised in float32 (float64 for float64 input). The paper's
  symmetrised loss is ``byol_loss(p1, stop_gradient(t2)) +
  byol_loss(p2, stop_gradient(t1))``.

  The gradient is NOT stopped for ``targets`` here: BYOL's targets come from
  the momentum (target) network and must be wrapped in
  ``jax.lax.stop_gradient`` by the caller (or lie outside the differentiated
  parameters), as the paper prescribes.

  Args:
    predictions: [B, D] float, the online network's predictor outputs.
    targets: [B, D] float, the target network's projections; row i pairs
      with ``predictions[i]``.

  Returns:
    float32 (float64 for float64 input) scalar in [0, 4]: the mean over the B
    local rows. Inside ``jax.shard_map`` / ``jax.pmap`` with equal per-device
    batches, ``jax.lax.pmean(loss, axis)`` is the global loss.

  Raises:
    ValueError: at trace time unless both are [B, D] floating arrays of the
      same shape with B, D >= 1.
  """
  _check_pair("predictions", predictions, "targets", targets)
  pn = _l2_normalize(predictions)
  tn = _l2_normalize(targets)
  return jnp.mean(2.0 - 2.0 * jnp.sum(pn * tn, axis=-1))
