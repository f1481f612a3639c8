"""SimCLR's NT-Xent loss (and its logged metrics)."""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from contrastive_jax.losses._core import (
    Array, AxisName, _check_inputs, _contrastive_core, _device_offset, _gather, _l2_normalize, _scaled)
from contrastive_jax.losses._image_text import check_ring, tiles
from contrastive_jax.losses._ring import ring_lse


def _nt_xent_impl(z1, z2, temperature, axis_name, chunk_size, with_metrics):
  """[z1; z2] (2B local anchors) against [all z1; all z2] (2B_global columns), self excluded."""
  _check_inputs("z1", z1, "z2", z2, temperature, chunk_size)
  b = z1.shape[0]
  z1n, z2n = _l2_normalize(z1), _l2_normalize(z2)
  anchors = jnp.concatenate([z1n, z2n], axis=0)  # [2B, D] local.
  g1, g2 = _gather(z1n, axis_name), _gather(z2n, axis_name)
  bg = g1.shape[0]  # Global batch B * axis size.
  columns = jnp.concatenate([g1, g2], axis=0)  # [2Bg, D]: [view 1; view 2].
  rows = _device_offset(b, axis_name) + jnp.arange(b, dtype=jnp.int32)
  self_idx = jnp.concatenate([rows, rows + bg])
  pos_idx = jnp.concatenate([rows + bg, rows])
  return _contrastive_core(
      anchors, columns, pos_idx, self_idx, temperature=temperature,
      chunk_size=chunk_size, with_metrics=with_metrics, symmetric=axis_name is None)


def _nt_xent_ring(z1, z2, temperature, axis_name, chunk_size):
  """[z1; z2] local anchors against every device's [z1; z2] block, passed around the ring."""
  _check_inputs("z1", z1, "z2", z2, temperature, chunk_size)
  z1n, z2n = _l2_normalize(z1), _l2_normalize(z2)
  anchors = jnp.concatenate([z1n, z2n], axis=0)  # [2B, D]: also this device's block of columns
  q = _scaled(anchors, temperature)
  pos = jnp.sum(q * jnp.concatenate([z2n, z1n], axis=0), axis=-1)
  rows, cols = tiles(chunk_size, anchors.shape[0], anchors.shape[0])
  self_idx = jnp.arange(anchors.shape[0], dtype=jnp.int32)
  return jnp.mean(ring_lse(q, anchors, self_idx, axis_name, rows, cols) - pos)


def nt_xent(
    z1: Array, z2: Array, *, temperature: float = 0.1,
    axis_name: AxisName = None, chunk_size: Optional[int] = None, ring: bool = False,
) -> Array:
  """SimCLR's NT-Xent loss (Chen et al. 2020).

  Embeddings are L2-normalised; the batch is ``[z1; z2]`` (2B anchors). Each
  anchor is scored against the other 2B_global - 1 embeddings (itself
  excluded) with logits cos / temperature; its positive is the other view of
  the same example. The loss is the mean cross-entropy over the anchors, the
  scale of the paper and of lightly's ``NTXentLoss``. The official TF code
  (google-research/simclr) returns ``loss_a + loss_b``, twice this value.

  Args:
    z1: [B, D] embeddings of view 1 (any float dtype; maths in float32, or
      float64 for float64 embeddings).
    z2: [B, D] embeddings of view 2; row i pairs with ``z1[i]``.
    temperature: softmax temperature > 0. Default 0.1 (SimCLR's ImageNet
      flag default; the CIFAR-10 README command uses 0.5).
    axis_name: mesh / pmap axis to gather negatives over. Inside
      ``jax.shard_map`` or ``jax.pmap`` the global batch is B x axis size; each
      device scores its 2B local anchors against all global columns.
    chunk_size: if set, tile the similarity matrix in chunk_size x chunk_size
      blocks with an online log-sum-exp (memory linear in B); same values and
      gradients as the dense path.
    ring: with ``axis_name``, the other devices' embeddings arrive by
      ``ppermute``, one device's block at a time, instead of an all-gather
      (``losses/_ring.py``): per-device memory falls as devices are added.
      Same values and gradients.

  Returns:
    float32 (float64 for float64 embeddings) scalar: mean loss over this
    device's 2B anchors.
    ``jax.lax.pmean(loss, axis_name)`` is the global loss.

  Raises:
    ValueError: at trace time for inputs that are not [B, D] floating arrays
      of equal shape with B >= 1, for temperature <= 0 or chunk_size <= 0,
      or ring=True without axis_name.
  """
  check_ring(ring, axis_name)
  if ring:
    return _nt_xent_ring(z1, z2, temperature, axis_name, chunk_size)
  loss, _ = _nt_xent_impl(z1, z2, temperature, axis_name, chunk_size, False)
  return loss


def nt_xent_with_metrics(
    z1: Array, z2: Array, *, temperature: float = 0.1,
    axis_name: AxisName = None, chunk_size: Optional[int] = None,
) -> tuple[Array, dict[str, Array]]:
  """NT-Xent plus SimCLR's logged statistics.

  Args: as ``nt_xent``.

  Returns:
    (loss, metrics). ``loss`` is exactly ``nt_xent``'s (local mean under
    ``axis_name``). ``metrics`` are scalars in the loss's dtype, without gradient, global
    means (pmean over ``axis_name``) so every device returns the same values:

    * ``contrastive_acc``: fraction of anchors whose positive has a strictly
      larger logit than every negative (ties count as misses).
    * ``pos_sim``: mean cosine similarity of the positive pairs.
    * ``neg_sim``: mean cosine similarity of each anchor to its negatives.
    * ``logits_entropy``: mean entropy (nats) of each anchor's softmax over
      its 2B_global - 1 logits (SimCLR logs this over the cross-view block).

    The chunked path computes them from per-tile running statistics, without
    building the matrix.
  """
  loss, metrics = _nt_xent_impl(z1, z2, temperature, axis_name, chunk_size, True)
  if axis_name is not None:
    metrics = jax.lax.pmean(metrics, axis_name)
  return loss, metrics
