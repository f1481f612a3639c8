"""One-directional InfoNCE: in-batch negatives (CLIP) or a queue of negatives (MoCo)."""

from __future__ import annotations

from typing import Any, Optional

import jax.numpy as jnp

from contrastive_jax import parallel
from contrastive_jax.losses._core import (
    Array, AxisName, _check_float_array, _check_inputs, _contrastive_core, _device_offset, _gather,
    _l2_normalize, _row_lse, _scaled)


def _check_negatives(negatives: Any, queries: Array) -> None:
  """Raises ValueError unless negatives is a [K, D] float array, K >= 1, D the queries' D."""
  d = queries.shape[1]
  _check_float_array(
      "negatives", negatives, "[K, D]",
      hint=f"Pass the queue of K negative keys as one [K, {d}] array.")
  if negatives.shape[1] != d:
    raise ValueError(
        f"negatives must have the queries' embedding size D = {d} (shape [K, {d}]); got shape "
        f"{tuple(negatives.shape)}. Embed the queue with the same key encoder / projection.")
  if negatives.shape[0] == 0:
    raise ValueError(
        f"negatives must hold K >= 1 keys; got shape {tuple(negatives.shape)}. "
        "For in-batch negatives only, pass negatives=None.")


def info_nce(
    queries: Array, keys: Array, *, temperature: float,
    negatives: Optional[Array] = None,
    axis_name: AxisName = None, chunk_size: Optional[int] = None,
) -> Array:
  """One-directional InfoNCE (Oord et al. 2018) with cosine similarity.

  Queries, keys and negatives are L2-normalised (logits are cosine /
  temperature, as in NT-Xent, CLIP and MoCo). Query i's positive is key i.

  * ``negatives=None`` (in-batch, CLIP): every other key -- gathered from all
    devices on ``axis_name`` when given -- is a negative. No column is
    excluded. For CLIP's symmetric loss average
    ``info_nce(a, b) + info_nce(b, a)``.
  * ``negatives`` [K, D] (MoCo v2's queue; lightly's
    ``NTXentLoss(memory_bank_size=K)``): query i is scored only against its
    own key and the K negatives, ``-log softmax`` over ``[q.k_i, q.n_1..K]``.
    The other keys of the batch are not negatives, on this device or any
    other. The queue is the same on every device and is not gathered; with
    ``axis_name`` the result is still this device's local mean, so
    ``pmean`` over the axis is the global loss. The gradient reaches
    ``negatives`` (and ``keys``): callers stop it (MoCo's queue and momentum
    keys are constants), e.g. ``negatives=jax.lax.stop_gradient(queue)``.

  Args:
    queries: [B, D] float embeddings.
    keys: [B, D] float embeddings; row i is query i's positive.
    temperature: softmax temperature > 0.
    negatives: optional [K, D] float embeddings, K >= 1, D the queries' D
      (any float dtype; they are cast to the loss's dtype).
    axis_name: mesh / pmap axis. Without ``negatives``: gather keys over it
      (global negatives). With ``negatives``: nothing is gathered.
    chunk_size: tile size for the memory-linear path (see ``nt_xent``); with
      ``negatives`` the tiles run over the queries and the K negatives. Same
      values and gradients as the dense path.

  Returns:
    float32 (float64 for float64 input) scalar: mean cross-entropy over the B local queries;
    ``jax.lax.pmean(loss, axis_name)`` is the global loss.

  Raises:
    ValueError: as ``nt_xent``; and for ``negatives`` that are not a [K, D]
      float array with K >= 1 and the queries' D.
  """
  _check_inputs("queries", queries, "keys", keys, temperature, chunk_size)
  if negatives is not None:
    _check_negatives(negatives, queries)
    return _info_nce_queue(queries, keys, negatives, temperature, chunk_size)
  b = queries.shape[0]
  qn = _l2_normalize(queries)
  kn = _gather(_l2_normalize(keys), axis_name)  # [B * axis size, D]
  pos_idx = _device_offset(b, axis_name) + jnp.arange(b, dtype=jnp.int32)
  loss, _ = _contrastive_core(
      qn, kn, pos_idx, None, temperature=temperature, chunk_size=chunk_size,
      with_metrics=False)
  return loss


def _info_nce_queue(
    queries: Array, keys: Array, negatives: Array, temperature: Any, chunk_size: Optional[int],
) -> Array:
  """MoCo's InfoNCE: mean_i [logaddexp(pos_i, lse_k q_i . n_k / T) - pos_i], pos_i = q_i . k_i / T."""
  qn = _l2_normalize(queries)  # [B, D]
  kn = _l2_normalize(keys).astype(qn.dtype)
  nn = _l2_normalize(negatives).astype(qn.dtype)  # [K, D]
  # Inside shard_map the queue is replicated (invariant) while the queries
  # vary over the axis: mark it varying so the chunked kernel's custom_vjp
  # sees matching types; the transpose of that cast psums the queue's
  # gradient over the devices.
  nn = parallel.match_vma(nn, qn)
  pos_logit = jnp.sum(_scaled(qn, temperature) * kn, axis=-1)  # [B]
  lse_neg, _ = _row_lse(qn, nn, None, temperature=temperature, chunk_size=chunk_size)  # [B]
  return jnp.mean(jnp.logaddexp(pos_logit, lse_neg) - pos_logit)
