"""Supervised contrastive loss (Khosla et al. 2020), the L_out form of their eq. 2."""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from contrastive_jax.losses._core import (
    Array, AxisName, _check_float_array, _check_hparams, _device_offset, _gather, _l2_normalize,
    _row_lse, _scaled)


def _check_supcon_inputs(z: Any, labels: Any, temperature: Any, chunk_size: Optional[int]) -> None:
  """Raises ValueError unless z is [B, V, D] float with V >= 2 and labels int [B]."""
  _check_float_array(
      "z", z, "[B, V, D]",
      hint="Stack the views of each image on axis 1, e.g. jnp.stack([z1, z2], axis=1).")
  b, v, d = z.shape
  if b == 0 or d == 0:
    raise ValueError(f"z needs B >= 1 images and D >= 1 features; got shape {tuple(z.shape)}.")
  if v < 2:
    raise ValueError(
        f"supcon needs V >= 2 views of each image (z of shape [B, V, D]); got V = {v} "
        f"(shape {tuple(z.shape)}). Stack at least two augmented views on axis 1.")
  shape = getattr(labels, "shape", None)
  if shape is None or tuple(shape) != (b,):
    got = f"shape {tuple(shape)}" if shape is not None else type(labels).__name__
    raise ValueError(
        f"labels must have shape [B] = ({b},), one class id per image of z {tuple(z.shape)}; "
        f"got {got}. Use -1 for unlabelled images.")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(
        f"labels must be an integer array of class ids (< 0: unlabelled); got dtype {labels.dtype}. "
        "Cast with labels.astype(jnp.int32).")
  _check_hparams(temperature, chunk_size)


def _group_ids(labels_g: Array) -> Array:
  """[Bg] global labels -> [Bg] int32 group ids in [0, Bg).

  Images with the same label >= 0 share a group; every unlabelled image
  (label < 0) is a group of its own.
  """
  bg = labels_g.shape[0]
  labels_g = labels_g.astype(jnp.int32)
  # Unlabelled images get distinct negative keys, which never meet a label >= 0.
  keys = jnp.where(labels_g >= 0, labels_g, -1 - jnp.arange(bg, dtype=jnp.int32))
  _, inverse = jnp.unique(keys, size=bg, fill_value=0, return_inverse=True)
  return inverse.reshape(bg).astype(jnp.int32)


def supcon(
    z: Array, labels: Array, *, temperature: float = 0.1,
    axis_name: AxisName = None, chunk_size: Optional[int] = None,
) -> Array:
  """Supervised contrastive loss (Khosla et al. 2020), L_out (their eq. 2).

  Embeddings are L2-normalised. Each of the B x V local views is an anchor,
  scored against the other B_global x V - 1 views (all devices' views on
  ``axis_name``, itself excluded) with logits cos / temperature. Its
  positives are every other view of every image with the same label; an
  image with a label < 0 is unlabelled and its positives are only its own
  other views (so all labels -1 is SimCLR). The anchor's loss is the mean over
  its positives p of ``-log softmax_p``; the result is the mean over anchors.
  There is no ``temperature / base_temperature`` rescaling (the reference
  code's defaults, both 0.07, make that factor 1). With V = 2 and distinct labels (or
  all < 0), ``supcon(jnp.stack([z1, z2], 1), labels)`` equals
  ``nt_xent(z1, z2)``.

  Computed as ``lse_i - q_i . S_i / |P_i|``: lse over the columns (the dense
  matrix, or the chunked kernel with ``chunk_size``), q_i the anchor /
  temperature and S_i the sum of its positive columns, from per-group column
  sums (a segment sum over a group id per image) minus the anchor itself. No
  [anchors, columns] positive mask is built on either path.

  Args:
    z: [B, V, D] embeddings, V >= 2 views of each of B images (any float
      dtype; maths in float32, or float64 for float64 embeddings).
    labels: [B] integer class ids (below 2**31); < 0 marks an unlabelled image.
      Under ``axis_name`` each device passes its own images' labels; equal
      labels on different devices are positives of each other.
    temperature: softmax temperature > 0. Default 0.1 (the paper's).
    axis_name: mesh / pmap axis to gather views and labels over (inside
      ``jax.shard_map`` or ``jax.pmap``); the global batch is B x axis size.
    chunk_size: if set, tile the similarity matrix in chunk_size x chunk_size
      blocks with an online log-sum-exp (memory linear in B x V); same values
      and gradients as the dense path.

  Returns:
    float32 (float64 for float64 embeddings) scalar: mean loss over this
    device's B x V anchors. ``jax.lax.pmean(loss, axis_name)`` is the global
    loss (every device has the same B).

  Raises:
    ValueError: at trace time if z is not a [B, V, D] float array with
      B, D >= 1 and V >= 2, if labels is not an integer [B] array, for
      temperature <= 0 or chunk_size <= 0.
  """
  _check_supcon_inputs(z, labels, temperature, chunk_size)
  b, v, d = z.shape
  zn = _l2_normalize(z)  # [B, V, D]
  anchors = jnp.swapaxes(zn, 0, 1).reshape(v * b, d)  # View-major: [view 0; view 1; ...].
  zg = _gather(zn, axis_name)  # [Bg, V, D]
  bg = zg.shape[0]
  columns = jnp.swapaxes(zg, 0, 1).reshape(v * bg, d)  # Column (image g, view w) = w * Bg + g.
  images = _device_offset(b, axis_name) + jnp.arange(b, dtype=jnp.int32)  # [B] global index.
  self_idx = (jnp.arange(v, dtype=jnp.int32)[:, None] * bg + images[None, :]).reshape(v * b)

  # Positives: S_i = (sum of the views of the anchor's group) - anchor.
  group = _group_ids(_gather(labels, axis_name))  # [Bg] in [0, Bg).
  group_sum = jax.ops.segment_sum(jnp.sum(zg, axis=1), group, num_segments=bg)  # [Bg, D]
  group_size = jax.ops.segment_sum(jnp.ones((bg,), zn.dtype), group, num_segments=bg)  # [Bg]
  anchor_group = jnp.tile(jnp.take(group, images), v)  # [V * B]
  pos_sum = jnp.take(group_sum, anchor_group, axis=0) - anchors  # [V * B, D]
  num_pos = jnp.take(group_size, anchor_group) * v - 1  # >= V - 1 >= 1.
  pos_logit = jnp.sum(_scaled(anchors, temperature) * pos_sum, axis=-1) / num_pos  # [V * B]

  lse, _ = _row_lse(
      anchors, columns, self_idx, temperature=temperature, chunk_size=chunk_size,
      symmetric=axis_name is None)
  return jnp.mean(lse - pos_logit)
