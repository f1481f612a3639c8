"""The view pipeline: `ViewAugment` and `augment_batch`, one jitted call per view.

crop -> flip -> colour jitter -> grayscale -> Gaussian blur -> solarize (the
order of google-research/simclr, blur last as in its `batch_random_blur`),
with an optional rotation after the flip (off in the presets). Every
per-image draw comes from one vector of uniforms per image (`_draws`; the
rotation's from a stream of its own), so an image's view depends only on its
key, not on the batch size, the chunking or the device count.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import dm_pix as pix
import jax
import jax.numpy as jnp

from contrastive_jax.augment.color import _grayscale_planar, _jitter_params, _jitter_planar
from contrastive_jax.augment.crop import (_boxes_from_uniforms, _crop_resize, _crop_uniforms,
                                          _planar_crop)
from contrastive_jax.augment.fusion import _chunk_size, _cpu_token, _map_chunks
from contrastive_jax.augment.keys import _check_batch, _split_each, _uniforms, per_image_keys
from contrastive_jax.augment.ops import _blur_params, _blur_planar, blur_kernel_size
from contrastive_jax.augment.rotation import _rotate_draws, _rotate_planar

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class ViewAugment:
  """Configuration of one SimCLR view (defaults: google-research/simclr).

  Attributes:
    image_size: output side in pixels.
    crop: run the random resized crop on device; False when the host already
      cropped (variable-size datasets, see `tf_two_crops`).
    crop_area_range: crop area fraction (SimCLR: 0.08-1).
    aspect_ratio_range: crop aspect w / h (SimCLR: 3/4-4/3).
    crop_max_attempts: candidate boxes before the centre-crop fallback.
    resize_method: 'bicubic' (SimCLR) or 'bilinear'.
    flip_p: horizontal flip probability.
    rotate_p: probability of a rotation after the crop and flip (0, the default,
      leaves it out of the program: the SimCLR presets have none).
    rotate_max_degrees: rotation angle ~ U[-rotate_max_degrees, rotate_max_degrees]
      degrees, bilinear about the centre, corners filled with 0 (see `rotate`).
    jitter_strength: colour jitter strength s: brightness, contrast and saturation 0.8 s,
      hue 0.2 s (SimCLR).
    jitter: (brightness, contrast, saturation, hue) ranges that replace SimCLR's ones from
      `jitter_strength` (torchvision's ColorJitter arguments; BYOL: (0.4, 0.4, 0.2, 0.1)).
    jitter_p: probability of colour jitter.
    multiplicative_brightness: False = SimCLR v1 (additive), True = v2.
    grayscale_p: colour drop probability.
    blur_p: Gaussian blur probability (0 disables it).
    blur_sigma_range: blur sigma range in pixels.
    blur_padding: 'reflect' (default) or 'zeros' (SimCLR's 'SAME' conv).
    solarize_p: solarize probability (0 for SimCLR; BYOL / MoCo v3 use 0.2 on
      the second view).
    solarize_threshold: solarize threshold.
    chunk_images: images per lax.map chunk (speed only, results are the
      same); None = auto (cache-sized chunks on CPU, whole batch elsewhere).
  """
  image_size: int = 224
  crop: bool = True
  crop_area_range: tuple[float, float] = (0.08, 1.0)
  aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3)
  crop_max_attempts: int = 100
  resize_method: str = "bicubic"
  flip_p: float = 0.5
  rotate_p: float = 0.0
  rotate_max_degrees: float = 0.0
  jitter_strength: float = 1.0
  jitter: tuple[float, float, float, float] | None = None
  jitter_p: float = 0.8
  multiplicative_brightness: bool = False
  grayscale_p: float = 0.2
  blur_p: float = 0.5
  blur_sigma_range: tuple[float, float] = (0.1, 2.0)
  blur_padding: str = "reflect"
  solarize_p: float = 0.0
  solarize_threshold: float = 0.5
  chunk_images: int | None = None

  def __post_init__(self):
    def bad(field, want):
      raise ValueError(f"ViewAugment.{field} must be {want}; got {getattr(self, field)!r}.")

    if not isinstance(self.image_size, int) or self.image_size < 1:
      bad("image_size", "a positive int (pixels)")
    lo, hi = self.crop_area_range
    if not 0 < lo <= hi <= 1:
      bad("crop_area_range", "(lo, hi) with 0 < lo <= hi <= 1 (fractions of the image area; SimCLR: (0.08, 1))")
    lo, hi = self.aspect_ratio_range
    if not 0 < lo <= hi:
      bad("aspect_ratio_range", "(lo, hi) with 0 < lo <= hi (SimCLR: (3/4, 4/3))")
    for field in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p", "rotate_p"):
      if not 0 <= getattr(self, field) <= 1:
        bad(field, "a probability in [0, 1]")
    if self.rotate_max_degrees < 0:
      bad("rotate_max_degrees", ">= 0 (angles are drawn in [-max, max])")
    if self.jitter_strength < 0:
      bad("jitter_strength", ">= 0")
    lo, hi = self.blur_sigma_range
    if not 0 < lo <= hi:
      bad("blur_sigma_range", "(lo, hi) with 0 < lo <= hi (pixels)")

  @classmethod
  def cifar10(cls, **overrides: Any) -> "ViewAugment":
    """SimCLR CIFAR-10: 32 px, jitter strength 0.5, no blur."""
    return cls(**{**dict(image_size=32, jitter_strength=0.5, blur_p=0.0), **overrides})

  @classmethod
  def imagenet(cls, **overrides: Any) -> "ViewAugment":
    """SimCLR ImageNet: 224 px, jitter strength 1.0, blur p=0.5."""
    return cls(**{**dict(image_size=224, jitter_strength=1.0, blur_p=0.5), **overrides})


def _check_crop_input(images: Array, config: ViewAugment, name: str) -> None:
  height, width = images.shape[1:3]
  size = config.image_size
  if not config.crop and (height, width) != (size, size):
    raise ValueError(f"{name}: config.crop=False expects images already at "
                     f"{size}x{size} (cropped on the host), got {height}x{width}")


def _crop_input(images: Array, config: ViewAugment) -> Array:
  """NHWC images in the layout `_crop_or_flip` takes for this config."""
  if config.crop and _planar_crop(config.image_size):
    # Transposed once per batch, before the chunk loop: XLA shares it between
    # the two views, and the crop's row gather reads planar rows fastest.
    return jnp.moveaxis(images, -1, 1)
  return images


def _crop_or_flip(images: Array, boxes: Array | None, config: ViewAugment,
                  flip: Array, clip: bool = True) -> Array:
  """Crop + resize + flip into planar [B, 3, S, S] (only the flip when boxes is None).

  images come from `_crop_input` (planar for small crops, else NHWC).
  """
  if boxes is not None:
    return _crop_resize(images, boxes, config.image_size, flip, config.resize_method, clip)
  x = jnp.moveaxis(images, -1, 1)
  return jnp.where(flip[:, None, None, None], x[..., ::-1], x)


_FLAT_POINTWISE_MAX = 64  # image sides up to this run the pointwise ops on [B, 3, S * S]


def _draws(keys: Array, images: Array, config: ViewAugment) -> dict[str, Any]:
  """Every per-image random draw of `augment_batch`, for the whole batch.

  One vector of uniforms per image, laid out [crop | flip | jitter (6) |
  grayscale | blur (2) | solarize] whatever the config, so that
  `random_crop_and_flip` draws the same crops and flips for the same keys.
  Drawn before the chunk loop, in one go (threefry's cost per call on CPU).
  The rotation draws from fold_in(key, _ROTATE_STREAM), so switching it on
  changes none of the others.
  """
  rotate = None
  if config.rotate_p > 0:  # from the unsplit per-image keys
    rotate = _rotate_draws(keys, config.rotate_p, config.rotate_max_degrees)
  keys = _split_each(keys, 2)  # [:, 0] the uniforms, [:, 1] the rare extra crop attempts
  n_crop = _crop_uniforms(config.crop_max_attempts)
  u = _uniforms(keys[:, 0], n_crop + 11)
  crop, u = u[:, :n_crop], u[:, n_crop:]
  draws = dict(flip=u[:, 0] < config.flip_p)
  if config.crop:
    height, width = images.shape[1:3]
    draws["boxes"] = _boxes_from_uniforms(crop, keys[:, 1], height, width,
                                          config.crop_area_range, config.aspect_ratio_range,
                                          config.crop_max_attempts)
  if config.jitter_p > 0 and (config.jitter_strength > 0 if config.jitter is None else any(config.jitter)):
    draws["jitter"] = _jitter_params(u[:, 1:7], config.jitter_strength, config.jitter_p,
                                     config.multiplicative_brightness, config.jitter)
  if config.grayscale_p > 0:
    draws["gray"] = u[:, 7] < config.grayscale_p
  if config.blur_p > 0:
    draws["blur"] = _blur_params(u[:, 8:10], config.blur_p, config.blur_sigma_range)
  if config.solarize_p > 0:
    draws["solarize"] = u[:, 10] < config.solarize_p
  if rotate is not None:
    draws["rotate"] = rotate
  return draws


def _augment_chunk(draws: dict[str, Any], images: Array, config: ViewAugment,
                   token: Array | None) -> Array:
  """augment_batch on one chunk: its draws and images from `_crop_input`."""
  jitter = "jitter" in draws
  # With jitter, the crop's clip to [0, 1] is folded into the jitter's first
  # pass instead of costing a pass of its own.
  x = _crop_or_flip(images, draws.get("boxes"), config, draws["flip"], clip=not jitter)
  if "rotate" in draws:  # geometric ops together, before the colour ops
    apply, degrees = draws["rotate"]
    x = jnp.where(apply[:, None, None, None], _rotate_planar(x, degrees), x)
  if config.image_size <= _FLAT_POINTWISE_MAX:
    # Pointwise ops on [c, 3, S * S]: XLA:CPU vectorises [c, 3, 32, 32] poorly.
    x = x.reshape(x.shape[:2] + (-1,))
  if jitter:
    x = _jitter_planar(x, draws["jitter"], config.multiplicative_brightness, token,
                       clip_input="boxes" in draws)
  if "gray" in draws:
    x = _grayscale_planar(x, draws["gray"])
  x = x.reshape(x.shape[:2] + (config.image_size, config.image_size))
  if "blur" in draws:
    apply, sigma = draws["blur"]
    blurred = _blur_planar(x, sigma, blur_kernel_size(config.image_size), config.blur_padding)
    x = jnp.where(apply[:, None, None, None], blurred, x)
  if "solarize" in draws:
    x = jnp.where(draws["solarize"][:, None, None, None],
                  pix.solarize(x, config.solarize_threshold), x)
  return jnp.moveaxis(x, 1, -1)


# Jitted so that eager calls compile once instead of dispatching op by op.
@functools.partial(jax.jit, static_argnames=("config",))
def augment_batch(key: Array, images: Array, config: ViewAugment) -> Array:
  """One SimCLR view of every image; call again with another key for view 2.

  crop -> flip (-> rotate when config.rotate_p > 0) -> colour jitter ->
  grayscale -> blur -> solarize, each with its own independent per-image draw.
  An image's view depends only on its key (not on the batch size or chunking).

  Args:
    key: one key (split into one per image) or B per-image keys.
    images: float [B, H, W, 3] in [0, 1]; any H, W when config.crop, else
      exactly image_size.
    config: the augmentation settings (static).

  Returns:
    float32 [B, S, S, 3] in [0, 1] with S = config.image_size (float64 for
    float64 images).
  """
  images = _check_batch(images, "augment_batch")
  images = images.astype(jnp.promote_types(images.dtype, jnp.float32))
  b = images.shape[0]
  keys = per_image_keys(key, b)
  _check_crop_input(images, config, "augment_batch")
  token = _cpu_token(keys)
  fn = lambda d, x: _augment_chunk(d, x, config, token)
  return _map_chunks(fn, _draws(keys, images, config), _crop_input(images, config),
                     _chunk_size(config.chunk_images, config.image_size, b), token, images)


def augment_image(key: Array, image: Array, config: ViewAugment) -> Array:
  """`augment_batch` for one image [H, W, 3] (e.g. under a user's vmap).

  Args:
    key: one key.
    image: float [H, W, 3].
    config: the augmentation settings.

  Returns:
    [S, S, 3].
  """
  if getattr(image, "ndim", None) != 3:
    raise ValueError(f"augment_image: expected one image [H, W, 3], got shape "
                     f"{getattr(image, 'shape', type(image))}")
  key = key if hasattr(key, "dtype") else jnp.asarray(key)
  return augment_batch(key[None], image[None], config)[0]


@functools.partial(jax.jit, static_argnames=("config_or_size",))
def random_crop_and_flip(key: Array, images: Array, config_or_size: ViewAugment | int) -> Array:
  """Linear-eval / fine-tune training preprocessing: random resized crop + flip.

  Args:
    key: one key or B per-image keys.
    images: float [B, H, W, 3] in [0, 1].
    config_or_size: a ViewAugment (its crop and flip settings) or an output
      size (SimCLR defaults).

  Returns:
    [B, S, S, 3].
  """
  config = config_or_size
  if not isinstance(config, ViewAugment):
    config = ViewAugment(image_size=int(config_or_size))
  images = _check_batch(images, "random_crop_and_flip")
  images = images.astype(jnp.promote_types(images.dtype, jnp.float32))
  _check_crop_input(images, config, "random_crop_and_flip")
  # The same draws as augment_batch: the same crops and flips for the same keys.
  draws = _draws(per_image_keys(key, images.shape[0]), images,
                 dataclasses.replace(config, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0,
                                     solarize_p=0.0, rotate_p=0.0))
  x = _crop_or_flip(_crop_input(images, config), draws.get("boxes"), config, draws["flip"])
  return jnp.moveaxis(x, 1, -1)


