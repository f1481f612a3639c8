"""Decoupled Contrastive Learning (DCL / DCLW): NT-Xent without the positive in the denominator."""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from contrastive_jax.losses._core import (
    Array, AxisName, _check_inputs, _concrete, _device_offset, _gather, _l2_normalize, _row_lse,
    _scaled)


def _check_sigma(sigma: Any) -> None:
  s = _concrete(sigma)
  if s is not None and not s > 0.0:  # also rejects NaN.
    raise ValueError(f"sigma must be > 0; got {sigma}.")


def _vmf_weights(z1n: Array, z2n: Array, sigma: Any, axis_name: AxisName) -> Array:
  """[B] local rows of w = 2 - N * softmax_N(cos(z1_i, z2_i) / sigma) over the global batch, no gradient.

  The softmax is over all N = B x axis size positive pairs: the [B] cosines are
  all-gathered (N scalars) so every device normalises as one device would.
  """
  cos = jax.lax.stop_gradient(jnp.sum(z1n * z2n, axis=-1))  # [B], lightly detaches.
  cos_all = _gather(cos, axis_name)  # [N]
  n = cos_all.shape[0]
  w_all = 2.0 - n * jax.nn.softmax(cos_all / jnp.asarray(sigma, cos.dtype))
  if axis_name is None:
    return w_all
  return jax.lax.dynamic_slice_in_dim(w_all, _device_offset(cos.shape[0], axis_name), cos.shape[0])


def dcl_loss(
    z1: Array, z2: Array, *, temperature: float = 0.1, weighted: bool = False, sigma: float = 0.5,
    axis_name: AxisName = None, chunk_size: Optional[int] = None,
) -> Array:
  """Decoupled contrastive loss, DCL and DCLW (Yeh et al. 2022, "Decoupled Contrastive Learning", eq. 6).

  NT-Xent with the positive removed from the softmax denominator. Embeddings
  are L2-normalised and the anchors are ``[z1; z2]`` (2B). With
  s_ij = cos(a_i, a_j) / temperature, anchor i with positive p(i) (the other
  view of its example) and negatives the 2N - 2 embeddings of the other
  examples in both views (N the global batch):

    l_i = -w_i * s_{i p(i)} + log sum_{j not in {i, p(i)}} exp(s_ij),
    loss = mean_i l_i over the 2B anchors
         = (loss(z1 -> z2) + loss(z2 -> z1)) / 2,

  lightly's ``DCLLoss(temperature)`` (w = 1) and ``DCLWLoss(temperature,
  sigma)`` (``weighted=True``). DCLW's von Mises-Fisher weight is, for
  example k of the batch (both its anchors),

    w_k = 2 - N * softmax_k(cos(z1_k, z2_k) / sigma),

  with no gradient (lightly detaches it); its mean over the batch is 1, and
  pairs already close get less weight. The softmax runs over the *global*
  batch: under ``axis_name`` the N positive cosines are all-gathered, so the
  weights equal the single-device ones. (lightly's ``gather_distributed``
  normalises the weights over each GPU's own batch instead; here the
  multi-device loss is always the one-device loss of the global batch.)

  Args:
    z1: [B, D] embeddings of view 1 (any float dtype; maths in float32, or
      float64 for float64 embeddings).
    z2: [B, D] embeddings of view 2; row i pairs with ``z1[i]``.
    temperature: softmax temperature > 0 (lightly's default 0.1).
    weighted: DCLW: weight the positive term by w_k above.
    sigma: the weight's concentration scale > 0 (lightly's default 0.5); only
      read when ``weighted``.
    axis_name: mesh / pmap axis to gather negatives (and the weights'
      normalisation) over, as ``nt_xent``: each device scores its 2B local
      anchors against all 2N global columns.
    chunk_size: if set, tile the similarity matrix in chunk_size x chunk_size
      blocks with an online log-sum-exp (memory linear in B); same values and
      gradients as the dense path.

  Returns:
    float32 (float64 for float64 embeddings) scalar: mean loss over this
    device's 2B anchors. ``jax.lax.pmean(loss, axis_name)`` is the global loss
    and its gradient the single-device gradient of the global batch.

  Raises:
    ValueError: at trace time for inputs that are not [B, D] floating arrays
      of equal shape, for a global batch N < 2 (no negatives), temperature
      <= 0, sigma <= 0 or chunk_size <= 0.
  """
  _check_inputs("z1", z1, "z2", z2, temperature, chunk_size)
  _check_sigma(sigma)
  b = z1.shape[0]
  z1n, z2n = _l2_normalize(z1), _l2_normalize(z2)
  g1, g2 = _gather(z1n, axis_name), _gather(z2n, axis_name)
  n = g1.shape[0]  # Global batch.
  if n < 2:
    raise ValueError(
        f"dcl_loss needs a global batch of >= 2 examples (with 1 there are no negatives); "
        f"got shapes {tuple(z1.shape)} and {tuple(z2.shape)}.")
  anchors = jnp.concatenate([z1n, z2n], axis=0)  # [2B, D] local.
  columns = jnp.concatenate([g1, g2], axis=0)  # [2N, D]: [view 1; view 2].
  rows = _device_offset(b, axis_name) + jnp.arange(b, dtype=jnp.int32)
  self_idx = jnp.concatenate([rows, rows + n])
  pos_idx = jnp.concatenate([rows + n, rows])
  # The core's log-sum-exp with both the anchor and its positive masked out.
  lse, _ = _row_lse(
      anchors, columns, self_idx, temperature=temperature, chunk_size=chunk_size,
      symmetric=axis_name is None, pos_idx=pos_idx, exclude_pos=True)
  pos_logit = jnp.sum(_scaled(anchors, temperature) * jnp.concatenate([z2n, z1n], axis=0), axis=-1)
  if weighted:
    w = _vmf_weights(z1n, z2n, sigma, axis_name)
    pos_logit = jnp.concatenate([w, w]) * pos_logit
  return jnp.mean(lse - pos_logit)
