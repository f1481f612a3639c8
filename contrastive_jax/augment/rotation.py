"""Rotation about the image centre: `rotate` and `random_rotate`.

Bilinear, by inverse mapping, with the corners filled with a constant: the
same angle sign and the same numbers as
`scipy.ndimage.rotate(image, degrees, reshape=False, order=1, mode='constant',
cval=fill)` on an [H, W, C] image (default axes=(1, 0)). A positive angle turns
the picture counter-clockwise as displayed (row 0 at the top): output pixel
(r, c) reads the input at

  r_in = cos(a) (r - cy) + sin(a) (c - cx) + cy
  c_in = -sin(a) (r - cy) + cos(a) (c - cx) + cx,    (cy, cx) = ((H - 1) / 2, (W - 1) / 2),

and gets `fill` where (r_in, c_in) falls outside [0, H - 1] x [0, W - 1]
(scipy's 'constant' mode: no interpolation with the fill at the edges).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from contrastive_jax.augment._jit import jit_with_static
from contrastive_jax.augment.keys import _check_float, _uniforms, per_image_keys

Array = jax.Array

# Stream of the pipeline's rotation draw: fold_in(per-image key, _ROTATE_STREAM),
# apart from the split every other draw comes from, so turning rotation on changes
# no other draw.
_ROTATE_STREAM = 0x526F7461  # "Rota"


def _check_images(images: Any, name: str) -> Array:
  """Checks a float [B, H, W, C] batch (any channel count) and returns it as an array."""
  if not hasattr(images, "shape") or len(images.shape) != 4:
    shape = getattr(images, "shape", type(images))
    raise ValueError(f"{name}: expected a 4-D NHWC batch [B, H, W, C], got shape {shape}. "
                     "Add a batch axis with images[None] for a single image.")
  _check_float(images, name)
  return jnp.asarray(images)


def _check_number(value: Any, name: str, what: str, lo: float = -math.inf,
                  hi: float = math.inf) -> None:
  """Checks a scalar argument; traced values (under jit) pass unchecked."""
  if isinstance(value, jax.core.Tracer):
    if value.ndim != 0:
      raise ValueError(f"{name}: expected {what} as a scalar, got shape {value.shape}")
    return
  if np.ndim(value) != 0:
    raise ValueError(f"{name}: expected {what} as a scalar, got shape {np.shape(value)}")
  try:
    v = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"{name}: expected {what} as a number, got {value!r}") from None
  if not (math.isfinite(v) and lo <= v <= hi):
    raise ValueError(f"{name}: expected {what} in [{lo}, {hi}], got {v}")


def _cos_sin_degrees(degrees: Array) -> tuple[Array, Array]:
  """cos and sin of an angle in degrees, exact at multiples of 90 (as scipy's cosdg / sindg).

  A plain cos(pi / 2) is 4e-8 in float32: the coordinates of a quarter turn
  would then miss the border and scipy's exact permutation of the pixels.
  """
  quarter = jnp.round(degrees / 90.0)
  rad = (degrees - 90.0 * quarter) * (math.pi / 180.0)  # in [-pi / 4, pi / 4]
  c, s = jnp.cos(rad), jnp.sin(rad)
  q = jnp.mod(quarter, 4.0)
  cos = jnp.where(q == 0, c, jnp.where(q == 1, -s, jnp.where(q == 2, -c, s)))
  sin = jnp.where(q == 0, s, jnp.where(q == 1, c, jnp.where(q == 2, -s, -c)))
  return cos, sin


def _rotate_planar(x: Array, degrees: Array, fill: Any = 0.0) -> Array:
  """`rotate` on planar images [B, C, H, W] with one angle per image [B] (degrees)."""
  b, channels, height, width = x.shape
  cos, sin = _cos_sin_degrees(degrees.astype(x.dtype))
  cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
  dy = jnp.arange(height, dtype=x.dtype)[:, None] - cy
  dx = jnp.arange(width, dtype=x.dtype)[None, :] - cx
  cos, sin = cos[:, None, None], sin[:, None, None]
  r = cos * dy + sin * dx + cy  # [B, H, W] source coordinates
  c = cos * dx - sin * dy + cx
  inside = (r >= 0) & (r <= height - 1) & (c >= 0) & (c <= width - 1)
  # Clamped corners: inside the image the far neighbour is only read with weight 0
  # at the last row / column; outside, the select below discards the value.
  r0 = jnp.clip(jnp.floor(r), 0, height - 1)
  c0 = jnp.clip(jnp.floor(c), 0, width - 1)
  fr, fc = (r - r0)[:, None], (c - c0)[:, None]  # [B, 1, H, W]
  r0, c0 = r0.astype(jnp.int32), c0.astype(jnp.int32)
  r1, c1 = jnp.minimum(r0 + 1, height - 1), jnp.minimum(c0 + 1, width - 1)
  flat = x.reshape(b, channels, height * width)
  at = lambda rows, cols: jnp.take_along_axis(
      flat, (rows * width + cols).reshape(b, 1, height * width), axis=2).reshape(x.shape)
  top = (1 - fc) * at(r0, c0) + fc * at(r0, c1)
  bottom = (1 - fc) * at(r1, c0) + fc * at(r1, c1)
  out = (1 - fr) * top + fr * bottom
  return jnp.where(inside[:, None], out, jnp.asarray(fill, x.dtype))


def _angles(degrees: Any, b: int, name: str) -> Array:
  """degrees (scalar or [B]) as a float [B] array."""
  d = jnp.asarray(degrees)
  if d.ndim == 0:
    return jnp.broadcast_to(d, (b,))
  if d.shape != (b,):
    raise ValueError(f"{name}: expected degrees as a scalar or one angle per image ({b},), "
                     f"got shape {d.shape}")
  return d


@jit_with_static("fill")
def rotate(images: Array, degrees: Any, *, fill: float = 0.0) -> Array:
  """Rotates each image by `degrees` about its centre, bilinear, corners set to `fill`.

  Equal to `scipy.ndimage.rotate(image, degrees, reshape=False, order=1,
  mode='constant', cval=fill)` per image: positive angles turn the picture
  counter-clockwise as displayed.

  Args:
    images: float [B, H, W, C].
    degrees: scalar or per-image [B] angles in degrees.
    fill: value of the output pixels whose source falls outside the image.

  Returns:
    [B, H, W, C], the dtype of images.
  """
  images = _check_images(images, "rotate")
  _check_number(fill, "rotate", "fill")
  angles = _angles(degrees, images.shape[0], "rotate")
  if not jnp.issubdtype(angles.dtype, jnp.number) or jnp.issubdtype(angles.dtype, jnp.complexfloating):
    raise ValueError(f"rotate: expected real angles in degrees, got dtype {angles.dtype}")
  out = _rotate_planar(jnp.moveaxis(images, -1, 1), angles, fill)
  return jnp.moveaxis(out, 1, -1)


def _rotate_params(u: Array, p: Any, max_degrees: Any) -> tuple[Array, Array]:
  """(apply, degrees) per image from uniforms u [B, 2]: degrees ~ U[-max, max]."""
  return u[:, 0] < p, (2.0 * u[:, 1] - 1.0) * max_degrees


def _rotate_draws(keys: Array, p: Any, max_degrees: Any) -> tuple[Array, Array]:
  """The pipeline's rotation draw from per-image keys, on its own stream (`_ROTATE_STREAM`)."""
  keys = jax.vmap(lambda k: jax.random.fold_in(k, _ROTATE_STREAM))(keys)
  return _rotate_params(_uniforms(keys, 2), p, max_degrees)


@jit_with_static("max_degrees", "p", "fill")
def random_rotate(key: Array, images: Array, *, max_degrees: float, p: float = 1.0,
                  fill: float = 0.0) -> Array:
  """Rotates each image, with probability p, by an angle ~ U[-max_degrees, max_degrees].

  Each image gets its own draw (apply or not, and its angle); the others are
  returned unchanged (a select, not control flow). Rotation as `rotate`.

  Args:
    key: one key or B per-image keys.
    images: float [B, H, W, C].
    max_degrees: largest angle in degrees, >= 0.
    p: probability of rotating an image, in [0, 1].
    fill: value of the corners uncovered by the rotation.

  Returns:
    [B, H, W, C].
  """
  images = _check_images(images, "random_rotate")
  _check_number(max_degrees, "random_rotate", "max_degrees (degrees, >= 0)", lo=0.0)
  _check_number(p, "random_rotate", "the probability p", lo=0.0, hi=1.0)
  _check_number(fill, "random_rotate", "fill")
  keys = per_image_keys(key, images.shape[0])
  apply, degrees = _rotate_params(_uniforms(keys, 2), p, max_degrees)
  rotated = rotate(images, degrees.astype(jnp.promote_types(images.dtype, jnp.float32)), fill=fill)
  return jnp.where(apply[:, None, None, None], rotated, images)
