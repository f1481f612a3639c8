"""The per-op functions: deterministic colour ops and one random op at a time.

The colour ops match `tf.image` on unclipped float images: brightness,
contrast, saturation and grayscale wrap dm-pix (verified equal to tf.image);
`adjust_hue` is our own because dm-pix's HSV round trip differs from TF's CPU
kernel for pixels outside [0, 1] (TF keeps (hue, min, max) instead of
(h, s, v)). They are the reference the fused pipeline is tested against.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import dm_pix as pix
import jax
import jax.numpy as jnp

from contrastive_jax.augment._jit import jit_with_static
from contrastive_jax.augment.color import (_frac, _hue_planes, _hue_range_to_rgb, _jitter_params,
                                           _jitter_planar)
from contrastive_jax.augment.fusion import _cpu_token
from contrastive_jax.augment.keys import (_bernoulli, _check_batch, _check_rgb, _per_image,
                                          _uniforms, per_image_keys)

Array = jax.Array

# ----------------------------------------------------------------------------
# Colour ops (deterministic), [..., H, W, 3] with scalar or per-image factors.
# ----------------------------------------------------------------------------


def adjust_brightness(images: Array, delta: Any) -> Array:
  """Adds `delta` to every channel, as tf.image.adjust_brightness (SimCLR v1).

  Args:
    images: float [..., H, W, 3].
    delta: scalar or per-image [...].

  Returns:
    [..., H, W, 3], not clipped.
  """
  images = _check_rgb(images, "adjust_brightness")
  return pix.adjust_brightness(images, _per_image(delta, images))


def adjust_brightness_multiplicative(images: Array, factor: Any) -> Array:
  """Scales every channel by `factor` (SimCLR v2 `random_brightness`).

  Args:
    images: float [..., H, W, 3].
    factor: scalar or per-image [...].

  Returns:
    [..., H, W, 3], not clipped.
  """
  images = _check_rgb(images, "adjust_brightness_multiplicative")
  return images * _per_image(factor, images)


def adjust_contrast(images: Array, factor: Any) -> Array:
  """(x - mean) * factor + mean with per-channel spatial mean, as tf.image.

  Args:
    images: float [..., H, W, 3].
    factor: scalar or per-image [...].

  Returns:
    [..., H, W, 3], not clipped.
  """
  images = _check_rgb(images, "adjust_contrast")
  return pix.adjust_contrast(images, _per_image(factor, images))


def adjust_saturation(images: Array, factor: Any) -> Array:
  """Scales HSV saturation (clipped to [0, 1]) by `factor`, as tf.image.

  Args:
    images: float [..., H, W, 3].
    factor: scalar or per-image [...].

  Returns:
    [..., H, W, 3].
  """
  images = _check_rgb(images, "adjust_saturation")
  # dm-pix works on channel planes [..., H, W], so the factor gets 2 trailing axes.
  return pix.adjust_saturation(images, _per_image(factor, images, trailing=2))


def adjust_hue(images: Array, delta: Any) -> Array:
  """Rotates hue by `delta` (fraction of a turn, in [-1, 1]), as tf.image.

  Like TF's CPU kernel, it rotates hue while keeping each pixel's min and max
  channel, which stays correct for pixels outside [0, 1] (dm-pix goes through
  HSV saturation and differs there).

  Args:
    images: float [..., H, W, 3].
    delta: scalar or per-image [...].

  Returns:
    [..., H, W, 3].
  """
  images = _check_rgb(images, "adjust_hue")
  delta = _per_image(delta, images, trailing=2)
  hue, vmin, vmax = _hue_planes(images[..., 0], images[..., 1], images[..., 2])
  dh = _frac(hue + delta) * 6.0
  return _hue_range_to_rgb(dh[..., None], vmin[..., None], (vmax - vmin)[..., None], axis=-1)


def to_grayscale(images: Array) -> Array:
  """Rec.601 luma (tf.image.rgb_to_grayscale) repeated to 3 channels.

  Args:
    images: float [..., H, W, 3].

  Returns:
    [..., H, W, 3] with three equal channels.
  """
  images = _check_rgb(images, "to_grayscale")
  return pix.rgb_to_grayscale(images, keep_dims=True)


def solarize(images: Array, threshold: float = 0.5) -> Array:
  """Inverts values >= threshold (BYOL / MoCo v3), as dm-pix.

  Args:
    images: float [..., H, W, 3].
    threshold: inversion threshold.

  Returns:
    [..., H, W, 3].
  """
  images = _check_rgb(images, "solarize")
  return pix.solarize(images, threshold)


# ----------------------------------------------------------------------------
# Random ops, [B, H, W, 3], one independent draw per image.
# ----------------------------------------------------------------------------


def random_flip_left_right(key: Array, images: Array, p: float = 0.5) -> Array:
  """Flips each image horizontally with probability p.

  Args:
    key: one key or B per-image keys.
    images: float [B, H, W, 3].
    p: flip probability.

  Returns:
    [B, H, W, 3].
  """
  images = _check_batch(images, "random_flip_left_right")
  flip = _bernoulli(per_image_keys(key, images.shape[0]), p)
  return jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)


@functools.partial(jax.jit, static_argnames=("strength", "p", "multiplicative_brightness"))
def color_jitter(
    key: Array,
    images: Array,
    strength: float,
    p: float = 0.8,
    multiplicative_brightness: bool = False,
) -> Array:
  """SimCLR colour jitter: 4 ops in a random order per image, clip after each.

  brightness 0.8s (additive as v1, or multiplicative as v2), contrast 0.8s,
  saturation 0.8s, hue 0.2s; the whole jitter is applied with probability p.

  Args:
    key: one key or B per-image keys.
    images: float [B, H, W, 3] in [0, 1].
    strength: jitter strength s.
    p: probability of jittering an image.
    multiplicative_brightness: SimCLR v2 brightness.

  Returns:
    [B, H, W, 3] in [0, 1].
  """
  images = _check_batch(images, "color_jitter")
  keys = per_image_keys(key, images.shape[0])
  params = _jitter_params(_uniforms(keys, 6), strength, p, multiplicative_brightness)
  out = _jitter_planar(jnp.moveaxis(images, -1, 1), params, multiplicative_brightness,
                       _cpu_token(keys))
  return jnp.moveaxis(out, 1, -1)


def random_grayscale(key: Array, images: Array, p: float = 0.2) -> Array:
  """Converts each image to 3-channel grayscale with probability p.

  Args:
    key: one key or B per-image keys.
    images: float [B, H, W, 3].
    p: probability.

  Returns:
    [B, H, W, 3].
  """
  images = _check_batch(images, "random_grayscale")
  apply = _bernoulli(per_image_keys(key, images.shape[0]), p)
  return jnp.where(apply[:, None, None, None], to_grayscale(images), images)


def blur_kernel_size(side: int) -> int:
  """SimCLR's kernel size: side // 10 rounded to odd (radius = k // 2), e.g. 224 -> 23."""
  return 2 * ((side // 10) // 2) + 1


def _blur_planar(x: Array, sigma: Array, kernel_size: int, padding: str) -> Array:
  """Separable Gaussian blur with one sigma per image: [B, 3, H, W]."""
  radius = kernel_size // 2
  if radius == 0:
    return x
  taps = jnp.arange(-radius, radius + 1, dtype=x.dtype)
  k = jnp.exp(-(taps[None, :] ** 2) / (2.0 * sigma.astype(x.dtype)[:, None] ** 2))
  k = k / jnp.sum(k, axis=1, keepdims=True)  # [B, K]
  mode = {"reflect": "reflect", "zeros": "constant"}[padding]
  height, width = x.shape[2], x.shape[3]
  # Sum of shifted copies: XLA fuses the K taps into one loop per pass.
  xp = jnp.pad(x, ((0, 0), (0, 0), (radius, radius), (0, 0)), mode=mode)
  x = sum(k[:, t, None, None, None] * xp[:, :, t:t + height] for t in range(kernel_size))
  xp = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (radius, radius)), mode=mode)
  return sum(k[:, t, None, None, None] * xp[:, :, :, t:t + width] for t in range(kernel_size))


def _blur_params(u: Array, p: float, sigma_range: Sequence[float]) -> tuple[Array, Array]:
  """(apply, sigma) from uniforms u [B, 2]."""
  return u[:, 0] < p, sigma_range[0] + (sigma_range[1] - sigma_range[0]) * u[:, 1]


@jit_with_static("p", "sigma_range", "kernel_size", "padding")
def random_gaussian_blur(
    key: Array,
    images: Array,
    p: float = 0.5,
    sigma_range: Sequence[float] = (0.1, 2.0),
    kernel_size: int | None = None,
    padding: str = "reflect",
) -> Array:
  """SimCLR Gaussian blur: with probability p, sigma ~ U(sigma_range) per image.

  Kernel size defaults to `blur_kernel_size(H)` (SimCLR: height // 10, odd).
  Padding: SimCLR convolves with 'SAME' zero padding, which darkens a
  (radius)-pixel border; we default to 'reflect' (torchvision's GaussianBlur),
  which keeps constant images constant. Pass padding='zeros' for SimCLR's.

  Args:
    key: one key or B per-image keys.
    images: float [B, H, W, 3].
    p: probability of blurring an image.
    sigma_range: sigma range in pixels.
    kernel_size: odd kernel size; None for SimCLR's rule.
    padding: 'reflect' or 'zeros'.

  Returns:
    [B, H, W, 3].
  """
  images = _check_batch(images, "random_gaussian_blur")
  if kernel_size is None:
    kernel_size = blur_kernel_size(images.shape[1])
  apply, sigma = _blur_params(_uniforms(per_image_keys(key, images.shape[0]), 2), p, sigma_range)
  x = jnp.moveaxis(images, -1, 1)
  out = jnp.where(apply[:, None, None, None], _blur_planar(x, sigma, kernel_size, padding), x)
  return jnp.moveaxis(out, 1, -1)


def random_solarize(key: Array, images: Array, p: float = 0.2, threshold: float = 0.5) -> Array:
  """Solarizes each image with probability p (BYOL / MoCo v3).

  Args:
    key: one key or B per-image keys.
    images: float [B, H, W, 3].
    p: probability.
    threshold: values >= threshold are inverted.

  Returns:
    [B, H, W, 3].
  """
  images = _check_batch(images, "random_solarize")
  apply = _bernoulli(per_image_keys(key, images.shape[0]), p)
  return jnp.where(apply[:, None, None, None], pix.solarize(images, threshold), images)
