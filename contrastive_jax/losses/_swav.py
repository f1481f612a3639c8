"""SwAV's swapped-prediction loss and its Sinkhorn-Knopp codes (Caron et al. 2020), over the global batch."""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from contrastive_jax.losses._core import Array, AxisName, _check_float_array
from contrastive_jax.losses._crops import (
  Crops,
  _check_iterations,
  _check_positive,
  _check_same_shape,
  _check_scores,
  _crop_list,
  _psum,
  _result_dtype,
)

# ----------------------------------------------------------------------------
# Sinkhorn-Knopp.
# ----------------------------------------------------------------------------


def _sinkhorn(scores: Array, queue: Optional[Array], iterations: int, epsilon: Any, axis_name: AxisName,
              dtype: jnp.dtype) -> Array:
  """The codes of the local rows of ``scores`` [B, K], no gradient; checks are the caller's.

  lightly's multiplicative iteration, in the log domain. With l = scores / epsilon:

    Q = exp(l).T; Q /= sum(Q)
    repeat: Q /= row sums (over the global batch); Q /= column sums; Q /= Btot
    Q *= Btot; return Q.T

  The first row normalisation divides every prototype's row by its own sum, so
  any per-prototype factor before it cancels: the global ``Q /= sum(Q)`` and a
  shift of l by each prototype's max over the global batch (what keeps exp
  from overflowing). The ``/ Btot`` between the column step and the next row
  step cancels the same way, and the last one with the final ``* Btot``. So
  each iteration is l -= logsumexp over the global batch per prototype (shifted
  by that prototype's global max: no underflow to 0/0 either), then l -=
  logsumexp over the prototypes per sample, and the codes are exp(l): each row
  sums to 1, as lightly's.

  ``queue`` [Q, K] rows are the same on every device: they enter each sum over
  the batch once (added after the psum of the local rows), never once per
  device.
  """
  inv_eps = 1.0 / jnp.asarray(epsilon, dtype)
  parts = [jax.lax.stop_gradient(scores).astype(dtype) * inv_eps]  # [B, K] local rows.
  if queue is not None:
    parts.append(jax.lax.stop_gradient(queue).astype(dtype) * inv_eps)  # [Q, K] replicated rows.

  for _ in range(iterations):
    # Rows (prototypes): normalise over the global batch (+ the queue once).
    m = jnp.max(parts[0], axis=0)  # [K]
    if axis_name is not None:
      m = jax.lax.pmax(m, axis_name)
    if queue is not None:
      m = jnp.maximum(m, jnp.max(parts[1], axis=0))
    s = _psum(jnp.sum(jnp.exp(parts[0] - m), axis=0), axis_name)
    if queue is not None:
      s = s + jnp.sum(jnp.exp(parts[1] - m), axis=0)  # Replicated: added once, after the psum.
    lse = m + jnp.log(s)  # [K]
    # Columns (samples): each sample's codes sum to 1 (lightly's / Btot ... * Btot cancels).
    parts = [jax.nn.log_softmax(p - lse, axis=1) for p in parts]
  return jax.lax.stop_gradient(jnp.exp(parts[0]))


def sinkhorn(scores: Array, *, iterations: int = 3, epsilon: float = 0.05, queue: Optional[Array] = None,
             axis_name: AxisName = None) -> Array:
  """SwAV's soft codes by Sinkhorn-Knopp (Caron et al. 2020, Alg. 1; lightly's ``sinkhorn``).

  For prototype scores [B, K] (B samples of the global batch, K prototypes),
  with Btot the number of samples (global batch + queue rows)::

    Q = exp(scores / epsilon).T                        # [K, Btot]
    Q /= sum(Q)
    repeat `iterations` times:
      Q /= sum(Q, axis=1, keepdims=True)               # rows: prototypes, a sum over the samples
      Q /= sum(Q, axis=0, keepdims=True)               # columns: samples, a sum over the prototypes
      Q /= Btot
    return (Q * Btot).T                                # [Btot, K], rows sum to 1

  The codes spread the batch evenly over the prototypes: each prototype's
  column of the result sums to about Btot / K, more exactly with more
  iterations, and each sample's row sums to 1. Computed in the log domain
  (shifted by each prototype's max over the global batch: no overflow or
  0 / 0), which equals the formula above; no gradient flows to the codes.

  Global batch: under ``axis_name`` every sum over the samples runs over all
  devices' rows (``psum``), so each device gets its rows of the single-device
  codes of the global batch. Normalising each device's batch alone is another
  (and, for small local batches, a much worse) assignment.

  Args:
    scores: [B, K] float prototype scores (this device's rows under
      ``axis_name``); any float dtype, maths in float32 (float64 for float64
      input).
    iterations: number of Sinkhorn iterations >= 1 (static int). Default 3
      (the paper's).
    epsilon: entropic regularisation > 0: the scores' temperature. Default
      0.05 (the paper's).
    queue: optional [Q, K] scores of queued samples (SwAV's feature queue),
      the SAME rows on every device (replicated): they join every sum over the
      samples once, Btot = B x axis size + Q, and only the codes of
      ``scores``' rows are returned. Without ``axis_name`` this is
      ``sinkhorn(concatenate([scores, queue]))[:B]``.
    axis_name: mesh / pmap axis of the global batch (inside ``jax.shard_map``
      or ``jax.pmap``); the global batch is B x axis size rows.

  Returns:
    [B, K] float32 (float64 for float64 input) codes of ``scores``' rows,
    each row summing to 1, without gradient.

  Raises:
    ValueError: at trace time unless scores (and queue) are [B, K] ([Q, K])
      floating arrays with B >= 1 and the same K >= 2, or for epsilon <= 0 or
      iterations not an int >= 1.
  """
  fn = "sinkhorn"
  _check_scores(fn, "scores", scores)
  if queue is not None:
    _check_float_array(f"{fn}: queue", queue, "[Q, K]", hint="Pass the queued samples' [Q, K] scores.")
    if queue.shape[1] != scores.shape[1]:
      raise ValueError(
          f"{fn}: queue must have the scores' K = {scores.shape[1]} prototypes; got shapes "
          f"{tuple(queue.shape)} and {tuple(scores.shape)}. Score the queue against the same prototypes.")
  _check_positive(fn, epsilon=epsilon)
  _check_iterations(fn, iterations)
  dtype = _result_dtype(scores) if queue is None else _result_dtype(scores, queue)
  return _sinkhorn(scores, queue, iterations, epsilon, axis_name, dtype)


# ----------------------------------------------------------------------------
# The loss.
# ----------------------------------------------------------------------------


def swav_loss(
    high: Crops, low: Optional[Crops] = None, *, temperature: float = 0.1, iterations: int = 3,
    epsilon: float = 0.05, queue: Optional[Crops] = None, axis_name: AxisName = None,
) -> Array:
  """SwAV's swapped-prediction loss (Caron et al. 2020, eq. 1-3, multi-crop), as lightly's ``SwaVLoss``.

  Each large crop i gets codes q_i = sinkhorn(high[i]) (no gradient), which
  every other crop v predicts from its own scores z_v::

    n = len(high) + len(low)
    L = 1 / len(high) * sum_i 1 / (n - 1) * sum_{v != i}
          -mean_rows sum_k q_i * log_softmax(z_v / temperature)

  with z_v = high[v] for v < len(high), else low[v - len(high)]. With a
  queue, crop i's Sinkhorn runs over its batch rows and ``queue[i]``, and
  only the batch rows' codes enter the loss (lightly's ``[: len(high[i])]``).

  Global batch: under ``axis_name`` the Sinkhorn sums run over every device's
  rows (``psum``) plus the queue rows once (the queue is replicated, the same
  on every device), so each device's codes are its rows of the single-device
  codes. The cross-entropy is a mean over the local rows; the codes carry no
  gradient, so ``jax.lax.pmean(loss, axis_name)`` is the global loss and its
  gradient the single-device gradient of the global batch.

  Args:
    high: list of [B, K] prototype scores of the large (high-resolution)
      crops, or a stacked [V, B, K] array; at least one. Row n of every crop
      is image n. Any float dtype; maths in float32 (float64 for float64).
    low: list (possibly empty, or None) of [B, K] scores of the small crops,
      or a stacked array; they are predicted but get no codes.
    temperature: softmax temperature > 0 of the predictions. Default 0.1.
    iterations: Sinkhorn iterations >= 1 (static int). Default 3.
    epsilon: Sinkhorn's regularisation > 0. Default 0.05.
    queue: None, or one [Q, K] array of queued scores per large crop (a list
      of len(high), or a stacked [len(high), Q, K] array), the same on every
      device; no gradient flows to it.
    axis_name: mesh / pmap axis of the global batch (inside ``jax.shard_map``
      or ``jax.pmap``); the global batch is B x axis size rows.

  Returns:
    float32 (float64 for float64 input) scalar: the loss of this device's B
    rows; ``jax.lax.pmean(loss, axis_name)`` is the global loss. Under
    ``jax.pmap`` take the grad of the local loss and pmean the parameter
    gradients, as for the package's other losses.

  Raises:
    ValueError: at trace time for crops that are not [B, K] floating arrays
      with B >= 1, K >= 2 and one shape across crops, an empty ``high``,
      fewer than 2 crops in all (nothing to predict), a queue whose length is
      not len(high) or whose K differs, temperature or epsilon <= 0, or
      iterations not an int >= 1.
  """
  fn = "swav_loss"
  high = _crop_list(fn, "high", high)
  low = _crop_list(fn, "low", low, allow_empty=True)
  crops = high + low
  named = [(f"high[{i}]", c) for i, c in enumerate(high)] + [(f"low[{i}]", c) for i, c in enumerate(low)]
  _, k = _check_same_shape(fn, named)
  if len(crops) < 2:
    raise ValueError(
        f"{fn} needs at least 2 crops in all (each large crop's codes are predicted from the other crops); "
        f"got {len(high)} high and {len(low)} low. Pass a second view.")
  queues: list[Optional[Array]] = [None] * len(high)
  if queue is not None:
    queues = _crop_list(fn, "queue", queue)
    if len(queues) != len(high):
      raise ValueError(
          f"{fn}: queue must hold one [Q, K] array per large crop, {len(high)}; got {len(queues)}. "
          f"Keep a queue for each of the high crops.")
    for i, qi in enumerate(queues):
      if qi.shape[1] != k:
        raise ValueError(
            f"{fn}: queue[{i}] must have the crops' K = {k} prototypes; got shape {tuple(qi.shape)}. "
            f"Score the queue against the same prototypes.")
  _check_positive(fn, temperature=temperature, epsilon=epsilon)
  _check_iterations(fn, iterations)

  dtype = _result_dtype(*crops, *(q for q in queues if q is not None))
  inv_t = 1.0 / jnp.asarray(temperature, dtype)
  log_p = [jax.nn.log_softmax(c.astype(dtype) * inv_t, axis=1) for c in crops]  # [B, K] each.
  loss = jnp.zeros((), dtype)
  for i in range(len(high)):
    q = _sinkhorn(high[i], queues[i], iterations, epsilon, axis_name, dtype)  # [B, K], no gradient.
    sub = sum(-jnp.mean(jnp.sum(q * log_p[v], axis=1)) for v in range(len(crops)) if v != i)
    loss = loss + sub / (len(crops) - 1)
  return loss / len(high)
