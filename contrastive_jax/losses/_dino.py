"""DINO's self-distillation loss and its teacher centre (Caron et al. 2021)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from contrastive_jax.losses._core import Array, AxisName, _check_float_array, _concrete
from contrastive_jax.losses._crops import Crops, _check_positive, _check_same_shape, _crop_list, _psum, _result_dtype


def _check_center(fn: str, center: Any, k: int) -> None:
  """Raises ValueError unless center is a floating [K] array with the teacher's K."""
  _check_float_array(f"{fn}: center", center, "[K]", hint="Pass the running centre of the teacher outputs, [K].")
  if tuple(center.shape) != (k,):
    raise ValueError(
        f"{fn}: center must have shape [K] = ({k},), the outputs' K; got {tuple(center.shape)}. "
        f"Initialise it as jnp.zeros(({k},)) and update it with dino_center.")


def _teacher_crops(fn: str, teacher: Crops) -> list[Array]:
  crops = _crop_list(fn, "teacher", teacher)
  _check_same_shape(fn, [(f"teacher[{i}]", c) for i, c in enumerate(crops)])
  return crops


def dino_loss(teacher: Crops, student: Crops, center: Array, *, teacher_temp: float,
              student_temp: float = 0.1) -> Array:
  """DINO's loss (Caron et al. 2021, Alg. 1, multi-crop), as lightly's ``DINOLoss`` with the given centre.

  For T teacher crops (the large views) and S student crops (every view; the
  first T are the teacher's views in the same order), all [B, K]::

    t = softmax((teacher - center) / teacher_temp)     # [T, B, K], no gradient
    s = log_softmax(student / student_temp)            # [S, B, K]
    L_ts = -sum_{b, k} t_tbk s_sbk                     # [T, S]
    loss = sum_{t != s} L_ts / ((T * S - min(T, S)) * B)

  the cross-entropy of every student view against every teacher view except
  its own, averaged over those pairs and the rows. The centre is an input
  (update it with ``dino_center`` after the step, as lightly's
  ``update_center``); no gradient flows to the teacher or the centre.

  Row-wise, so no ``axis_name``: inside ``jax.shard_map`` / ``jax.pmap`` with
  equal per-device batches, ``jax.lax.pmean(loss, axis)`` of the local loss is
  the loss of the global batch, and its gradient the global one.

  Args:
    teacher: list of T >= 1 [B, K] teacher outputs, or a stacked [T, B, K]
      array. Any float dtype; maths in float32 (float64 for float64).
    student: list of S >= 1 [B, K] student outputs, or a stacked [S, B, K]
      array; row n of every crop is image n.
    center: [K] the running centre of the teacher outputs.
    teacher_temp: teacher softmax temperature > 0 (the paper: 0.04, warmed
      up from 0.04 to 0.07; lightly's schedule is the caller's).
    student_temp: student softmax temperature > 0. Default 0.1.

  Returns:
    float32 (float64 for float64 input) scalar: the loss of this device's B
    rows.

  Raises:
    ValueError: at trace time for crops that are not [B, K] floating arrays
      with B >= 1, K >= 2 and one shape across teacher and student, an empty
      teacher or student, T = S = 1 (the only pair is a view with itself), a
      centre not of shape [K], or a temperature <= 0.
  """
  fn = "dino_loss"
  t_crops = _crop_list(fn, "teacher", teacher)
  s_crops = _crop_list(fn, "student", student)
  b, k = _check_same_shape(
      fn, [(f"teacher[{i}]", c) for i, c in enumerate(t_crops)] + [(f"student[{i}]", c) for i, c in enumerate(s_crops)])
  _check_center(fn, center, k)
  _check_positive(fn, teacher_temp=teacher_temp, student_temp=student_temp)
  n_t, n_s = len(t_crops), len(s_crops)
  n_terms = n_t * n_s - min(n_t, n_s)
  if n_terms == 0:
    raise ValueError(
        f"{fn} needs two views: with 1 teacher and 1 student crop the only pair is a view with itself, "
        f"which DINO leaves out; got {n_t} teacher and {n_s} student crops.")

  dtype = _result_dtype(*t_crops, *s_crops, center)
  t = jnp.stack([c.astype(dtype) for c in t_crops])  # [T, B, K]
  t = jax.lax.stop_gradient((t - center.astype(dtype)) / jnp.asarray(teacher_temp, dtype))
  t = jax.nn.softmax(t, axis=-1)
  s = jnp.stack([c.astype(dtype) for c in s_crops]) / jnp.asarray(student_temp, dtype)  # [S, B, K]
  s = jax.nn.log_softmax(s, axis=-1)
  ce = -jnp.einsum("tbk,sbk->ts", t, s, precision=jax.lax.Precision.HIGHEST)  # [T, S], summed over rows.
  same_view = jnp.eye(n_t, n_s, dtype=bool)  # Teacher crop i and student crop i are one view.
  return jnp.sum(jnp.where(same_view, jnp.zeros((), dtype), ce)) / (n_terms * b)


def dino_center(center: Array, teacher: Crops, *, momentum: float = 0.9, axis_name: AxisName = None) -> Array:
  """DINO's centre after one step: an EMA of the teacher outputs' global batch mean (lightly's ``update_center``).

  ::

    center' = momentum * center + (1 - momentum) * mean_{t, b} teacher[t][b]

  with the mean over every teacher crop and every row of the global batch:
  under ``axis_name`` the row sums are ``psum``-ed over the devices, so each
  device gets the single-device centre of the global batch (the same on every
  device). No gradient.

  Args:
    center: [K] the current centre.
    teacher: the teacher outputs ``dino_loss`` takes: a list of T [B, K]
      arrays or a stacked [T, B, K] array.
    momentum: the EMA's weight of the old centre, in [0, 1]. Default 0.9 (the
      paper's and lightly's).
    axis_name: mesh / pmap axis of the global batch (inside ``jax.shard_map``
      or ``jax.pmap``); the global batch is B x axis size rows.

  Returns:
    [K] float32 (float64 for float64 input) new centre, without gradient.

  Raises:
    ValueError: at trace time for teacher crops that are not [B, K] floating
      arrays with B >= 1, K >= 2 and one shape, an empty teacher, a centre
      not of shape [K], or momentum outside [0, 1].
  """
  fn = "dino_center"
  crops = _teacher_crops(fn, teacher)
  b, k = crops[0].shape
  _check_center(fn, center, k)
  m = _concrete(momentum)
  if m is not None and not 0.0 <= m <= 1.0:  # also rejects NaN.
    raise ValueError(f"{fn}: momentum must be in [0, 1] (the weight of the old centre); got {momentum}.")
  dtype = _result_dtype(*crops, center)
  crops = [jax.lax.stop_gradient(c).astype(dtype) for c in crops]
  total = _psum(sum(jnp.sum(c, axis=0) for c in crops), axis_name)  # [K] over the global batch.
  devices = 1 if axis_name is None else jax.lax.axis_size(axis_name)
  batch_center = total / (len(crops) * b * devices)
  mom = jnp.asarray(momentum, dtype)
  return mom * jax.lax.stop_gradient(center).astype(dtype) + (1.0 - mom) * batch_center
