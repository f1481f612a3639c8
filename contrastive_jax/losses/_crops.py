"""Lists of per-crop [B, K] outputs (SwAV's and DINO's losses) and their trace-time checks."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import jax
import jax.numpy as jnp

from contrastive_jax.losses._core import Array, AxisName, _check_float_array, _concrete

# A list of [B, K] arrays (one per crop), or the same stacked as one [V, B, K] array.
Crops = Union[Sequence[Array], Array]


# ----------------------------------------------------------------------------
# Input checks (trace time).
# ----------------------------------------------------------------------------


def _check_positive(fn: str, **hparams: Any) -> None:
  """Raises ValueError for a hyper-parameter <= 0 (or NaN) when it is known at trace time."""
  for name, value in hparams.items():
    v = _concrete(value)
    if v is not None and not v > 0.0:  # also rejects NaN.
      raise ValueError(f"{fn}: {name} must be > 0; got {value}.")


def _check_scores(fn: str, name: str, x: Any, k: Optional[int] = None) -> None:
  """Raises ValueError unless x is a [B, K] floating array with B >= 1, K >= 2 (and K == k if given)."""
  _check_float_array(f"{fn}: {name}", x, "[B, K]", hint="Pass one crop's [B, K] scores.")
  b, kx = x.shape
  if b == 0:
    raise ValueError(f"{fn}: {name} is an empty batch; got shape {tuple(x.shape)}. Pass B >= 1 rows.")
  if kx < 2:
    raise ValueError(
        f"{fn}: {name} needs K >= 2 prototypes / classes (with one every code and probability is 1); "
        f"got shape {tuple(x.shape)}.")
  if k is not None and kx != k:
    raise ValueError(
        f"{fn}: {name} has K = {kx} prototypes / classes, the other inputs K = {k}; got shape "
        f"{tuple(x.shape)}. Score every crop against the same prototypes / head.")


def _crop_list(fn: str, name: str, x: Optional[Crops], *, allow_empty: bool = False) -> list[Array]:
  """A list of [B, K] crops (or a stacked [V, B, K] array) -> a list of [B, K] arrays, checked."""
  if x is None:
    x = []
  if hasattr(x, "shape"):  # One array: [V, B, K] stacked crops.
    if len(x.shape) != 3:
      raise ValueError(
          f"{fn}: {name} must be a list of [B, K] arrays (one per crop) or a stacked [V, B, K] array; "
          f"got one array of shape {tuple(x.shape)}. Wrap a single crop in a list: [{name}].")
    x = [x[v] for v in range(x.shape[0])]
  x = list(x)
  if not x and not allow_empty:
    raise ValueError(f"{fn}: {name} must hold at least one crop; got an empty list.")
  for v, c in enumerate(x):
    _check_scores(fn, f"{name}[{v}]", c)
  return x


def _check_same_shape(fn: str, crops: Sequence[tuple[str, Array]]) -> tuple[int, int]:
  """Raises ValueError unless every named crop has the first one's [B, K]; returns (B, K)."""
  name0, c0 = crops[0]
  b, k = c0.shape
  for name, c in crops[1:]:
    if c.shape[1] != k:
      raise ValueError(
          f"{fn}: {name} has K = {c.shape[1]} classes / prototypes but {name0} has K = {k}; got shapes "
          f"{tuple(c.shape)} and {tuple(c0.shape)}. Score every crop with the same head.")
    if c.shape[0] != b:
      raise ValueError(
          f"{fn}: every crop must have the same batch size B (row n of each is image n); {name} has "
          f"{c.shape[0]} rows, {name0} {b}: shapes {tuple(c.shape)} and {tuple(c0.shape)}.")
  return b, k


def _check_iterations(fn: str, iterations: Any) -> None:
  if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
    raise ValueError(f"{fn}: iterations must be an int >= 1 (a static Python int); got {iterations!r}.")


def _result_dtype(*xs: Array) -> jnp.dtype:
  """float32 for float32 / bfloat16 / float16 inputs, float64 if any is float64."""
  return jnp.promote_types(jnp.result_type(*xs), jnp.float32)


def _psum(x: Array, axis_name: AxisName) -> Array:
  return x if axis_name is None else jax.lax.psum(x, axis_name)
