"""Input checks, per-image keys and per-image random draws."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array


def _check_float(images: Array, name: str) -> None:
  dtype = jnp.asarray(images).dtype if not hasattr(images, "dtype") else images.dtype
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(
        f"{name}: expected float images in [0, 1], got dtype {dtype}. Convert "
        "first, e.g. images = images.astype(jnp.float32) / 255.")


def _check_batch(images: Array, name: str) -> Array:
  """Checks a [B, H, W, 3] float batch and returns it as a jax array."""
  if not hasattr(images, "shape") or len(images.shape) != 4 or images.shape[-1] != 3:
    shape = getattr(images, "shape", type(images))
    raise ValueError(
        f"{name}: expected a 4-D NHWC batch [B, H, W, 3], got shape {shape}. "
        "Add a batch axis with images[None] for a single image.")
  _check_float(images, name)
  return jnp.asarray(images)


def _check_rgb(images: Array, name: str) -> Array:
  """Checks a [..., H, W, 3] float array (colour ops accept any leading dims)."""
  if not hasattr(images, "shape") or len(images.shape) < 3 or images.shape[-1] != 3:
    shape = getattr(images, "shape", type(images))
    raise ValueError(f"{name}: expected images [..., H, W, 3], got shape {shape}.")
  _check_float(images, name)
  return jnp.asarray(images)


def _is_typed_key(key: Array) -> bool:
  return jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)


def per_image_keys(key: Array, n: int) -> Array:
  """Returns n per-image keys from one key or checks a given batch of n keys.

  Args:
    key: one key (uint32[2] or a typed scalar key) or a batch of keys
      (uint32[n, 2] or typed [n]).
    n: the batch size.

  Returns:
    keys with leading dimension n, in the same key style as `key`.
  """
  if not hasattr(key, "dtype"):
    key = jnp.asarray(key)
  if _is_typed_key(key):
    batched = key.ndim == 1
    if key.ndim > 1:
      raise ValueError(f"expected a typed key of shape () or ({n},), got {key.shape}")
  else:
    if key.dtype != jnp.uint32 or key.ndim not in (1, 2) or key.shape[-1] != 2:
      raise ValueError(
          "expected a PRNG key (uint32[2] or jax.random.key) or a batch of keys "
          f"(uint32[{n}, 2] or typed [{n}]), got shape {key.shape} dtype {key.dtype}")
    batched = key.ndim == 2
  if batched:
    if key.shape[0] != n:
      raise ValueError(f"got {key.shape[0]} per-image keys for a batch of {n} images")
    return key
  return jax.random.split(key, n)


def _uniforms(keys: Array, count: int) -> Array:
  """One vector of `count` float32 U[0, 1) draws per image: [B, count].

  float32 whatever `jax_enable_x64` says, so a float64 run draws the same views.
  """
  return jax.vmap(lambda k: jax.random.uniform(k, (count,), jnp.float32))(keys)


def _split_each(keys: Array, num: int) -> Array:
  """Splits every per-image key into `num` sub-keys: [B, num(, 2)]."""
  return jax.vmap(lambda k: jax.random.split(k, num))(keys)


def _bernoulli(keys: Array, p: float) -> Array:
  """One bool [B] draw per image, True with probability p."""
  return _uniforms(keys, 1)[:, 0] < p


def _per_image(value: Any, images: Array, trailing: int = 3) -> Array:
  """Broadcasts a scalar or per-image [...batch] value against images."""
  v = jnp.asarray(value, images.dtype)
  if v.ndim == 0:
    return v
  batch_shape = images.shape[:-3]
  if v.shape != batch_shape:
    raise ValueError(f"per-image factor must have shape {batch_shape} (or be a "
                     f"scalar), got {v.shape}")
  return v.reshape(v.shape + (1,) * trailing)
