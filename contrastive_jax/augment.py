"""SimCLR-style data augmentation: on-device (JAX) and host-side (tf.data).

Where each step runs
--------------------
* Fixed-size datasets (CIFAR-10/100, STL-10 at a fixed size, ...): everything
  runs on device in one jitted call, `simclr_augment(key, images, config)`:
  random resized crop -> horizontal flip -> colour jitter -> grayscale ->
  Gaussian blur -> solarize (the order of google-research/simclr, blur last as
  in its `batch_random_blur`).
* Variable-size datasets (ImageNet-like): the crop must happen while each image
  still has its own size, so it runs on the host in tf.data
  (`tf_decode_and_random_crop` / `tf_two_crops`, fused with JPEG decoding via
  `decode_and_crop_jpeg`, uint8 output). The device then runs the rest with
  `SimCLRAugment(crop=False, ...)`. Eval uses `tf_decode_and_center_crop` on
  the host or `center_crop` on device.

Conventions
-----------
* Images are float32 in [0, 1], NHWC, 3 channels. One call handles one batch.
  float64 images (with `jax_enable_x64`) stay float64, with the same random
  draws (always float32 uniforms): a float64 reference for numerics checks.
* Every image gets its own independent random draw. Random ops take either one
  PRNG key (split into one key per image) or a batch of B keys (one per image,
  e.g. derived from (seed, step, global image index) so that results do not
  depend on the device count). Old-style uint32[2] keys and typed keys from
  `jax.random.key` are both accepted.
* All functions are pure, jit- and vmap-safe, and branchless across the batch
  (per-image choices are selects, not Python or `lax.cond` control flow; the
  one data-dependent `lax.cond`, extra crop attempts, decides for the whole
  batch and gives every image the same result either way).

Colour ops match `tf.image` on unclipped float images: brightness, contrast,
saturation and grayscale wrap dm-pix (verified equal to tf.image); `adjust_hue`
is our own because dm-pix's HSV round trip differs from TF's CPU kernel for
pixels outside [0, 1] (TF keeps (hue, min, max) instead of (h, s, v)).

Speed (CPU, measured one-core): crop + resize + flip is separable with
weights built from the crop box (bicubic, Keys a=-0.5 with weights of taps
outside the crop zeroed and renormalised, as tf.image.resize BICUBIC and
jax.image.resize 'cubic'). Up to 64 px it reads planar images (transposed
once per batch): rows are a fused gather of their 4 source rows, columns a
small per-image matmul (a flip reverses its rows, so it is free); larger
sizes gather columns too. The jitter's random op order is a fixed program
of 4 cheap RGB slots and 2 HSV slots (see `_JITTER_PROGRAM`), so each image
pays for two HSV round trips instead of evaluating every op at every step.
All random draws come from one uniform vector per image drawn before the
chunk loop (threefry's per-call overhead on CPU dominated otherwise), and
crop boxes draw 8 candidates, the other 92 only in the rare batch that
needs them. The batch is processed in cache-sized chunks written in place
into the output, with fusion barriers (`_fenced`) between jitter slots.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any, Callable, Sequence

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

from contrastive_jax import parallel

Array = jax.Array

# ----------------------------------------------------------------------------
# Input checks and keys.
# ----------------------------------------------------------------------------


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


def _hue_planes(r: Array, g: Array, b: Array) -> tuple[Array, Array, Array]:
  """RGB planes -> (hue in [0, 1), min, max), TF's CPU hue representation."""
  vmax = jnp.maximum(jnp.maximum(r, g), b)
  vmin = jnp.minimum(jnp.minimum(r, g), b)
  chroma = vmax - vmin
  norm = 1.0 / (6.0 * jnp.where(chroma > 0, chroma, 1.0))
  hue = jnp.where(vmax == g, norm * (b - r) + 2.0 / 6.0, norm * (r - g) + 4.0 / 6.0)
  hue = jnp.where(vmax == r, norm * (g - b), hue)
  hue = jnp.where(chroma > 0, hue, 0.0)
  return hue + (hue < 0), vmin, vmax


def _frac(x: Array) -> Array:
  """x mod 1 via floor: XLA:CPU lowers float `rem` to a scalar fmod call."""
  return x - jnp.floor(x)


def _hue_range_to_rgb(hue: Array, vmin: Array, vmax: Array) -> tuple[Array, Array, Array]:
  """(hue in [0, 1), min, max) -> RGB planes (inverse of `_hue_planes`)."""
  dh = hue * 6.0
  chroma = vmax - vmin
  dr = jnp.clip(jnp.abs(dh - 3.0) - 1.0, 0.0, 1.0)
  dg = jnp.clip(2.0 - jnp.abs(dh - 2.0), 0.0, 1.0)
  db = jnp.clip(2.0 - jnp.abs(dh - 4.0), 0.0, 1.0)
  return vmin + chroma * dr, vmin + chroma * dg, vmin + chroma * db


def adjust_hue(images: Array, delta: Any) -> Array:
  """Rotates hue by `delta` (fraction of a turn, in [-1, 1]), as tf.image.

  Our own implementation rather than dm-pix's: TF's CPU kernel rotates hue
  while keeping each pixel's min and max channel, which stays correct for
  pixels outside [0, 1]; dm-pix goes through HSV saturation and differs there.

  Args:
    images: float [..., H, W, 3].
    delta: scalar or per-image [...].

  Returns:
    [..., H, W, 3].
  """
  images = _check_rgb(images, "adjust_hue")
  delta = _per_image(delta, images, trailing=2)
  hue, vmin, vmax = _hue_planes(images[..., 0], images[..., 1], images[..., 2])
  out = _hue_range_to_rgb(_frac(hue + delta), vmin, vmax)
  return jnp.stack(out, axis=-1)


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
# Random resized crop.
# ----------------------------------------------------------------------------


def _center_box(height: int, width: int, aspect_ratio_range: Sequence[float]) -> tuple[int, int, int, int]:
  """The fallback: largest centred box with aspect clamped into the range."""
  lo, hi = aspect_ratio_range
  ratio = width / height
  if ratio < lo:
    w, h = width, int(round(width / lo))
  elif ratio > hi:
    h, w = height, int(round(height * hi))
  else:
    h, w = height, width
  return (height - h) // 2, (width - w) // 2, h, w


_FAST_CROP_ATTEMPTS = 8  # attempts drawn for every image; the rest only if needed


def _crop_uniforms(max_attempts: int) -> int:
  """How many per-image uniforms `_boxes_from_uniforms` takes."""
  return 2 * min(max_attempts, _FAST_CROP_ATTEMPTS) + 2


def _first_fit(u_area: Array, u_ratio: Array, height: int, width: int,
               area_range: Sequence[float], aspect_ratio_range: Sequence[float]
               ) -> tuple[Array, Array, Array]:
  """Box sides (h, w) of the first candidate that fits, and whether one did."""
  area = height * width * (area_range[0] + (area_range[1] - area_range[0]) * u_area)
  log_lo, log_hi = math.log(aspect_ratio_range[0]), math.log(aspect_ratio_range[1])
  ratio = jnp.exp(log_lo + (log_hi - log_lo) * u_ratio)
  w = jnp.round(jnp.sqrt(area * ratio)).astype(jnp.int32)
  h = jnp.round(jnp.sqrt(area / ratio)).astype(jnp.int32)
  ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
  first = jnp.argmax(ok, axis=1)[:, None]  # index of the first valid attempt
  return (jnp.take_along_axis(h, first, axis=1)[:, 0],
          jnp.take_along_axis(w, first, axis=1)[:, 0], jnp.any(ok, axis=1))


def _boxes_from_uniforms(u: Array, more_keys: Array, height: int, width: int,
                         area_range: Sequence[float], aspect_ratio_range: Sequence[float],
                         max_attempts: int) -> Array:
  """Crop boxes from per-image uniforms u [n, _crop_uniforms(max_attempts)].

  The first k = min(max_attempts, 8) candidates come from u. Only when some
  image of the batch has no fitting one among them (about 1e-7 per image at
  the SimCLR defaults, 32 to 224 px) are the other max_attempts - k drawn, from
  `more_keys`. Either way each image gets the first fitting candidate of
  max_attempts i.i.d. draws, at a fraction of the cost of drawing them all.
  """
  k = min(max_attempts, _FAST_CROP_ATTEMPTS)
  fit = functools.partial(_first_fit, height=height, width=width, area_range=area_range,
                          aspect_ratio_range=aspect_ratio_range)
  h, w, found = fit(u[:, :k], u[:, k:2 * k])
  if max_attempts > k:
    rest = max_attempts - k

    def more(hwf):
      h, w, found = hwf
      u_more = _uniforms(more_keys, 2 * rest)
      h2, w2, found2 = fit(u_more[:, :rest], u_more[:, rest:])
      return jnp.where(found, h, h2), jnp.where(found, w, w2), found | found2

    h, w, found = jax.lax.cond(jnp.all(found), lambda hwf: hwf, more, (h, w, found))
  top = jnp.floor(u[:, 2 * k] * (height - h + 1)).astype(jnp.int32)
  left = jnp.floor(u[:, 2 * k + 1] * (width - w + 1)).astype(jnp.int32)
  boxes = jnp.stack([top, left, h, w], axis=1)
  fallback = jnp.asarray(_center_box(height, width, aspect_ratio_range), jnp.int32)
  return jnp.where(found[:, None], boxes, fallback)


def sample_crop_boxes(
    key: Array,
    n: int,
    height: int,
    width: int,
    *,
    area_range: Sequence[float] = (0.08, 1.0),
    aspect_ratio_range: Sequence[float] = (3 / 4, 4 / 3),
    max_attempts: int = 100,
) -> Array:
  """Samples one Inception-style crop box per image, vectorised over attempts.

  Each image tries up to `max_attempts` candidates (area fraction uniform in
  `area_range`, log aspect ratio uniform in `aspect_ratio_range`, sides
  rounded to whole pixels), keeps the first that fits, else falls back to a
  centre crop (whole image when its aspect is in range), as SimCLR (100
  attempts) and torchvision's RandomResizedCrop. The same boxes as
  `simclr_augment` draws for the same per-image keys.

  Args:
    key: one key or n per-image keys.
    n: number of boxes (images).
    height: image height (static).
    width: image width (static).
    area_range: crop area as a fraction of the image area.
    aspect_ratio_range: crop width / height.
    max_attempts: candidates per image.

  Returns:
    int32 [n, 4] boxes (top, left, box_height, box_width).
  """
  keys = _split_each(per_image_keys(key, n), 2)
  u = _uniforms(keys[:, 0], _crop_uniforms(max_attempts))
  return _boxes_from_uniforms(u, keys[:, 1], height, width, area_range, aspect_ratio_range,
                              max_attempts)


def _keys_cubic(x: Array) -> Array:
  """Keys cubic kernel with a = -0.5 (tf.image / jax.image bicubic)."""
  x = jnp.abs(x)
  near = (1.5 * x - 2.5) * x * x + 1.0
  far = ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0
  return jnp.where(x <= 1.0, near, jnp.where(x < 2.0, far, 0.0))


def _resize_matrix(start: Array, length: Array, out_size: int, in_size: int,
                   method: str, dtype: Any = jnp.float32) -> Array:
  """Interpolation weights mapping a per-image 1-D window to `out_size` pixels.

  Half-pixel centres; taps outside [start, start + length) get weight 0 and
  each row is renormalised (tf.image.resize / jax.image.scale_and_translate,
  antialias=False).

  Args:
    start: [B] window start (pixels).
    length: [B] window length (pixels).
    out_size: output length.
    in_size: input length.
    method: 'bicubic' or 'bilinear'.
    dtype: float dtype of the weights (the images').

  Returns:
    [B, out_size, in_size] in `dtype`.
  """
  start = start.astype(dtype)[:, None, None]
  length = length.astype(dtype)[:, None, None]
  out = jnp.arange(out_size, dtype=dtype)[None, :, None]
  src = jnp.arange(in_size, dtype=dtype)[None, None, :]
  centre = start + (out + 0.5) * (length / out_size) - 0.5
  d = centre - src
  if method == "bicubic":
    w = _keys_cubic(d)
  elif method == "bilinear":
    w = jnp.maximum(0.0, 1.0 - jnp.abs(d))
  else:
    raise ValueError(f"resize method must be 'bicubic' or 'bilinear', got {method!r}")
  w = jnp.where((src >= start) & (src < start + length), w, 0.0)
  total = jnp.sum(w, axis=-1, keepdims=True)
  return w / jnp.where(jnp.abs(total) > 1e-6, total, 1.0)


def _resize_taps(start: Array, length: Array, out_size: int, in_size: int,
                 method: str, dtype: Any = jnp.float32) -> tuple[Array, Array]:
  """The 4 (bicubic) or 2 (bilinear) nonzero taps of `_resize_matrix` rows.

  Returns:
    (index int32 [B, out_size, T], weight [B, out_size, T] in `dtype`).
  """
  start = start.astype(dtype)[:, None, None]
  length = length.astype(dtype)[:, None, None]
  out = jnp.arange(out_size, dtype=dtype)[None, :, None]
  centre = start + (out + 0.5) * (length / out_size) - 0.5
  offsets = jnp.arange(-1, 3) if method == "bicubic" else jnp.arange(0, 2)
  src = jnp.floor(centre) + offsets.astype(dtype)
  w = _keys_cubic(centre - src) if method == "bicubic" else jnp.maximum(0.0, 1.0 - jnp.abs(centre - src))
  w = jnp.where((src >= start) & (src < start + length), w, 0.0)
  total = jnp.sum(w, axis=-1, keepdims=True)
  w = w / jnp.where(jnp.abs(total) > 1e-6, total, 1.0)
  return jnp.clip(src, 0, in_size - 1).astype(jnp.int32), w


_DENSE_COLUMN_RESIZE_MAX = 64  # output sides up to this resize columns with a matmul


def _planar_crop(size: int) -> bool:
  """Whether crops to `size` px take planar input (see `_crop_resize`)."""
  return size <= _DENSE_COLUMN_RESIZE_MAX


def _crop_resize_small(planar: Array, boxes: Array, size: int, flip: Array | None,
                       method: str) -> Array:
  """`_crop_resize` for size <= 64 from planar input [B, 3, H, W], unclipped.

  Rows: each output row is the weighted sum of its 4 (bicubic) or 2
  (bilinear) source rows, one gather per tap, all fused into one pass.
  Columns: a per-image matmul with the [S, W] weight matrix; a flip just
  reverses its rows, so it is free.
  """
  idx, w = _resize_taps(boxes[:, 0], boxes[:, 2], size, planar.shape[2], method, planar.dtype)
  t = 0.0
  for k in range(idx.shape[-1]):
    t = t + jnp.take_along_axis(planar, idx[:, None, :, k, None], axis=2) * w[:, None, :, k, None]
  a_w = _resize_matrix(boxes[:, 1], boxes[:, 3], size, planar.shape[3], method, planar.dtype)
  if flip is not None:
    a_w = jnp.where(flip[:, None, None], a_w[:, ::-1], a_w)
  return jnp.einsum("bcow,bpw->bcop", t, a_w, precision=jax.lax.Precision.HIGHEST)


def _crop_resize_large(images: Array, boxes: Array, size: int, flip: Array | None,
                       method: str) -> Array:
  """`_crop_resize` for size > 64 from NHWC input, unclipped.

  Rows: gather the taps' source rows (a whole W x 3 row is contiguous in
  NHWC). Columns: a dense [S, W] matmul would do W/4 times the needed work,
  so transpose columns into rows and gather their taps the same way.
  """
  b, height, width, channels = images.shape
  idx, w = _resize_taps(boxes[:, 0], boxes[:, 2], size, height, method, images.dtype)
  taps = idx.shape[-1]
  rows = jnp.take_along_axis(images.reshape(b, height, width * channels),
                             idx.reshape(b, size * taps, 1), axis=1)
  t = jnp.einsum("bstk,bst->bsk", rows.reshape(b, size, taps, width * channels), w)
  idx, w = _resize_taps(boxes[:, 1], boxes[:, 3], size, width, method, images.dtype)
  if flip is not None:
    idx = jnp.where(flip[:, None, None], idx[:, ::-1], idx)
    w = jnp.where(flip[:, None, None], w[:, ::-1], w)
  cols = jnp.swapaxes(t.reshape(b, size, width, channels), 1, 2).reshape(b, width, size * channels)
  cols = jnp.take_along_axis(cols, idx.reshape(b, size * taps, 1), axis=1)
  out = jnp.einsum("bptk,bpt->bpk", cols.reshape(b, size, taps, size * channels), w)
  return jnp.transpose(out.reshape(b, size, size, channels), (0, 3, 2, 1))  # [B, 3, S, P]


def _crop_resize(images: Array, boxes: Array, size: int, flip: Array | None, method: str,
                 clip: bool = True) -> Array:
  """Crops boxes, resizes to size x size and optionally flips: -> planar [B, 3, S, S].

  Exactly the separable resize of each crop (tf.image.resize semantics, no
  antialiasing). `images` is planar [B, 3, H, W] when `_planar_crop(size)`,
  else NHWC (each path reads the layout it is fastest from).

  Args:
    images: float [B, 3, H, W] or [B, H, W, 3], see above.
    boxes: int32 [B, 4] (top, left, height, width).
    size: output side S.
    flip: bool [B] (mirror the output) or None.
    method: 'bicubic' or 'bilinear'.
    clip: clip to [0, 1] (bicubic overshoots at edges); False leaves it to
      the caller, who can fuse it into its next pass.

  Returns:
    [B, 3, S, S].
  """
  if method not in ("bicubic", "bilinear"):
    raise ValueError(f"resize method must be 'bicubic' or 'bilinear', got {method!r}")
  crop = _crop_resize_small if _planar_crop(size) else _crop_resize_large
  out = crop(images, boxes, size, flip, method)
  return jnp.clip(out, 0.0, 1.0) if clip else out


def _crop_resize_nhwc(images: Array, boxes: Array, size: int, method: str) -> Array:
  """`_crop_resize` of NHWC images to NHWC, no flip."""
  if _planar_crop(size):
    images = jnp.moveaxis(images, -1, 1)
  return jnp.moveaxis(_crop_resize(images, boxes, size, None, method), 1, -1)


def random_resized_crop(
    key: Array,
    images: Array,
    *,
    size: int,
    area_range: Sequence[float] = (0.08, 1.0),
    aspect_ratio_range: Sequence[float] = (3 / 4, 4 / 3),
    max_attempts: int = 100,
    method: str = "bicubic",
) -> Array:
  """SimCLR's random resized crop (Inception crop) of a fixed-size batch.

  Boxes come from `sample_crop_boxes`; each crop is resized to size x size
  with bicubic interpolation (SimCLR's choice; Keys a=-0.5, no antialiasing,
  as tf.image.resize) and clipped to [0, 1].

  Args:
    key: one key or B per-image keys.
    images: float [B, H, W, 3] in [0, 1].
    size: output side.
    area_range: crop area fraction range.
    aspect_ratio_range: crop aspect (w / h) range.
    max_attempts: candidate boxes per image before the centre-crop fallback.
    method: 'bicubic' or 'bilinear'.

  Returns:
    [B, size, size, 3].
  """
  images = _check_batch(images, "random_resized_crop")
  b, height, width, _ = images.shape
  boxes = sample_crop_boxes(key, b, height, width, area_range=area_range,
                            aspect_ratio_range=aspect_ratio_range, max_attempts=max_attempts)
  return _crop_resize_nhwc(images, boxes, size, method)


def _bernoulli(keys: Array, p: float) -> Array:
  return _uniforms(keys, 1)[:, 0] < p


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


# ----------------------------------------------------------------------------
# Colour jitter with per-image random op order.
# ----------------------------------------------------------------------------

# Ops: 0 brightness, 1 contrast (RGB, cheap) and 2 saturation, 3 hue (HSV).
# Any order of the four fits the slot program R H R R H R: the two HSV ops
# commute when adjacent (one changes only s, the other only h, and the clip
# between them is a no-op), so adjacent ones share one HSV slot. Unused slots
# are identities. This costs 2 HSV round trips per image instead of 8 for
# "evaluate every op at every step and select".
_JITTER_PROGRAM = ("R", "H", "R", "R", "H", "R")
_PERMUTATIONS = tuple(itertools.permutations(range(4)))


def _build_slot_tables() -> tuple[np.ndarray, np.ndarray]:
  """For each of the 24 orders: the RGB op per slot and the HSV op mask per slot."""
  rgb = np.full((24, len(_JITTER_PROGRAM)), -1, np.int32)  # op id or -1
  hsv = np.zeros((24, len(_JITTER_PROGRAM)), np.int32)  # bit 0 sat, bit 1 hue
  for i, perm in enumerate(_PERMUTATIONS):
    slot, prev_hsv_slot = 0, -1
    for op in perm:
      if op >= 2 and prev_hsv_slot >= 0:  # follows an HSV op: share its slot
        hsv[i, prev_hsv_slot] |= 1 << (op - 2)
        continue
      kind = "R" if op < 2 else "H"
      while _JITTER_PROGRAM[slot] != kind:
        slot += 1
      if kind == "R":
        rgb[i, slot], prev_hsv_slot = op, -1
      else:
        hsv[i, slot], prev_hsv_slot = 1 << (op - 2), slot
      slot += 1
  return rgb, hsv


_RGB_SLOTS, _HSV_SLOTS = _build_slot_tables()


def _jitter_params(u: Array, strength: float, p: float, multiplicative_brightness: bool,
                   jitter: tuple[float, float, float, float] | None = None) -> dict[str, Array]:
  """Per-image jitter draws from uniforms u [B, 6] (SimCLR's `color_jitter_rand` ranges).

  `jitter` (brightness, contrast, saturation, hue) replaces SimCLR's (0.8, 0.8, 0.8, 0.2) * strength.
  """
  b, c, s, h = jitter if jitter is not None else (0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength)
  if multiplicative_brightness:  # v2: factor U[max(1 - b, 0), 1 + b]
    lo = max(1.0 - b, 0.0)
    brightness = lo + (1.0 + b - lo) * u[:, 0]
  else:  # v1: tf.image.random_brightness, delta U[-b, b]
    brightness = (2.0 * u[:, 0] - 1.0) * b
  lo_c, lo_s = max(1.0 - c, 0.0), max(1.0 - s, 0.0)
  return dict(
      brightness=brightness,
      contrast=lo_c + (1.0 + c - lo_c) * u[:, 1],
      saturation=lo_s + (1.0 + s - lo_s) * u[:, 2],
      hue=(2.0 * u[:, 3] - 1.0) * h,
      order=jnp.minimum((u[:, 4] * 24).astype(jnp.int32), 23),  # index into _PERMUTATIONS
      apply=u[:, 5] < p,
  )


def _fenced(fn: Any, token: Array | None, *args: Any) -> Any:
  """fn(*args) behind a fusion barrier (XLA:CPU), without an extra copy.

  Runs fn inside the taken branch of a conditional whose predicate (`token`,
  always True) is known only at run time: XLA:CPU cannot fuse across it, so
  fn's result is written to memory once (XLA:CPU strips
  `lax.optimization_barrier` before fusion). Computing fn inside the branch
  writes straight into the conditional's output; an identity branch would
  copy. token=None (accelerators): plain fn(*args).
  """
  if token is None:
    return fn(*args)
  # Inside shard_map both branches must vary over the same mesh axes as fn's output.
  zeros_like_out = lambda s: parallel.match_vma(jnp.zeros(s.shape, s.dtype), s)
  zeros = lambda *a: jax.tree.map(zeros_like_out, jax.eval_shape(fn, *a))
  return jax.lax.cond(token, fn, zeros, *args)


# Channel weights of `_hue_range_to_rgb` (dh = hue * 6 in [0, 6)):
# clip(sign * |dh - centre| + offset, 0, 1), i.e. |dh - 3| - 1, 2 - |dh - 2|, 2 - |dh - 4|.
_HUE_TO_RGB = ((3.0, 2.0, 4.0), (1.0, -1.0, -1.0), (-1.0, 2.0, 2.0))  # centre, sign, offset


def _rgb_slot(x: Array, a: Array, m: Array, d: Array) -> Array:
  """clip(a * x + m * mean(x) + d): brightness (+ or *), contrast or identity."""
  mean = jnp.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True)
  return jnp.clip(a * x + m * mean + d, 0.0, 1.0)


def _hsv_slot_planes(x: Array, sat: Array, dhue: Array) -> tuple[Array, Array, Array]:
  """Saturation and hue step 1: (hue * 6, max, new chroma), each [B, 1, ...]."""
  hue, vmin, vmax = _hue_planes(x[:, 0:1], x[:, 1:2], x[:, 2:3])
  # tf.image.adjust_saturation sets s' = clip(s * f, 0, 1) with
  # s = chroma / max; for max >= 0 (inputs in [0, 1]) the new chroma
  # s' * max is clip(chroma * f, 0, max), which needs no division.
  chroma = jnp.clip((vmax - vmin) * sat, 0.0, vmax)
  return _frac(hue + dhue) * 6.0, vmax, chroma


def _hsv_slot_rgb(dh: Array, vmax: Array, chroma: Array) -> Array:
  """Saturation and hue step 2: back to RGB [B, 3, ...], clipped.

  `_hue_range_to_rgb` (min + chroma * weight) as one [B, 3, ...] expression;
  min = max - chroma is recomputed here rather than stored by step 1.
  """
  centre, sign, offset = (jnp.asarray(v, dh.dtype).reshape((1, 3) + (1,) * (dh.ndim - 2))
                          for v in _HUE_TO_RGB)
  weight = jnp.clip(sign * jnp.abs(dh - centre) + offset, 0.0, 1.0)
  return jnp.clip(vmax - chroma + chroma * weight, 0.0, 1.0)


def _jitter_planar(x: Array, params: dict[str, Array], multiplicative_brightness: bool,
                   token: Array | None = None, clip_input: bool = False) -> Array:
  """Applies the jitter program to planar images [B, 3, ...] in [0, 1].

  Each slot runs behind a fusion barrier (`_fenced`); an HSV slot is two
  steps, so that its hue math runs once per pixel rather than per channel.

  Args:
    x: planar images [B, 3, ...].
    params: `_jitter_params`.
    multiplicative_brightness: SimCLR v2 brightness.
    token: `_cpu_token` (fusion barriers on CPU) or None.
    clip_input: clip x to [0, 1] first (a bicubic crop overshoots), fused
      into the first slot and the final select instead of a pass of its own.

  Returns:
    [B, 3, ...] in [0, 1].
  """
  rgb_ops = jnp.asarray(_RGB_SLOTS)[params["order"]]  # [B, slots]
  hsv_ops = jnp.asarray(_HSV_SLOTS)[params["order"]]
  col = lambda v: v.reshape(v.shape + (1,) * (x.ndim - 1))  # per-image scalar -> [B, 1, ...]
  clip = lambda v: jnp.clip(v, 0.0, 1.0) if clip_input else v
  out = x
  for slot, kind in enumerate(_JITTER_PROGRAM):
    first = clip if slot == 0 else lambda v: v
    if kind == "R":
      # y = a * x + m * mean + d covers brightness (+ or *), contrast, identity.
      op = rgb_ops[:, slot]
      is_b, is_c = op == 0, op == 1
      if multiplicative_brightness:
        a = jnp.where(is_b, params["brightness"], jnp.where(is_c, params["contrast"], 1.0))
        d = jnp.zeros_like(a)
      else:
        a = jnp.where(is_c, params["contrast"], 1.0)
        d = jnp.where(is_b, params["brightness"], 0.0)
      m = jnp.where(is_c, 1.0 - params["contrast"], 0.0)
      out = _fenced(lambda v, *coeffs, first=first: _rgb_slot(first(v), *coeffs), token,
                    out, col(a), col(m), col(d))
    else:
      mask = hsv_ops[:, slot]
      sat = col(jnp.where(mask & 1, params["saturation"], 1.0))
      dhue = col(jnp.where(mask & 2, params["hue"], 0.0))
      planes = _fenced(lambda v, *coeffs, first=first: _hsv_slot_planes(first(v), *coeffs),
                       token, out, sat, dhue)
      out = _fenced(_hsv_slot_rgb, token, *planes)
  return jnp.where(col(params["apply"]), out, clip(x))


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


_GRAY = (0.2989, 0.5870, 0.1140)  # tf.image.rgb_to_grayscale weights


def _grayscale_planar(x: Array, apply: Array) -> Array:
  gray = _GRAY[0] * x[:, 0:1] + _GRAY[1] * x[:, 1:2] + _GRAY[2] * x[:, 2:3]
  return jnp.where(apply.reshape((-1,) + (1,) * (x.ndim - 1)), gray, x)


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


# ----------------------------------------------------------------------------
# Gaussian blur and solarize.
# ----------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------
# Composite pipelines.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SimCLRAugment:
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

  @classmethod
  def cifar10(cls, **overrides: Any) -> "SimCLRAugment":
    """SimCLR CIFAR-10: 32 px, jitter strength 0.5, no blur."""
    return cls(**{**dict(image_size=32, jitter_strength=0.5, blur_p=0.0), **overrides})

  @classmethod
  def imagenet(cls, **overrides: Any) -> "SimCLRAugment":
    """SimCLR ImageNet: 224 px, jitter strength 1.0, blur p=0.5."""
    return cls(**{**dict(image_size=224, jitter_strength=1.0, blur_p=0.5), **overrides})


def _check_crop_input(images: Array, config: SimCLRAugment, name: str) -> None:
  height, width = images.shape[1:3]
  size = config.image_size
  if not config.crop and (height, width) != (size, size):
    raise ValueError(f"{name}: config.crop=False expects images already at "
                     f"{size}x{size} (cropped on the host), got {height}x{width}")


def _crop_input(images: Array, config: SimCLRAugment) -> Array:
  """NHWC images in the layout `_crop_or_flip` takes for this config."""
  if config.crop and _planar_crop(config.image_size):
    # Transposed once per batch, before the chunk loop: XLA shares it between
    # the two views, and the crop's row gather reads planar rows fastest.
    return jnp.moveaxis(images, -1, 1)
  return images


def _crop_or_flip(images: Array, boxes: Array | None, config: SimCLRAugment,
                  flip: Array, clip: bool = True) -> Array:
  """Crop + resize + flip into planar [B, 3, S, S] (only the flip when boxes is None).

  images come from `_crop_input` (planar for small crops, else NHWC).
  """
  if boxes is not None:
    return _crop_resize(images, boxes, config.image_size, flip, config.resize_method, clip)
  x = jnp.moveaxis(images, -1, 1)
  return jnp.where(flip[:, None, None, None], x[..., ::-1], x)


def _cpu_token(keys: Array) -> Array | None:
  """A run-time True for `_fenced` on CPU; None elsewhere (no barriers)."""
  if jax.default_backend() != "cpu":
    return None
  data = jax.random.key_data(keys) if _is_typed_key(keys) else keys
  return (data.reshape(-1)[0] | 1) != 0


def _map_chunks(fn: Any, per_image: Any, inputs: Array, chunk: int, token: Array | None,
                out_like: Array) -> Array:
  """fn(per_image, inputs) over batch chunks of `chunk` images.

  per_image is a pytree of arrays with a leading batch axis (the draws).
  On CPU a chunk's intermediates stay in cache; one whole-batch pass per op
  was memory bound (about 2x slower at B=1024, 32 px). When the output has
  the shape of `out_like`, the loop writes the chunks into a copy of it
  instead of a zero-initialised output (lax.map), which saves a pass over a
  fresh batch-sized buffer.
  """
  b = inputs.shape[0]
  if chunk >= b:
    return fn(per_image, inputs)
  n = b // chunk
  rows = lambda lo, hi: jax.tree.map(lambda a: a[lo:hi], per_image)
  tail = lambda: fn(rows(n * chunk, b), inputs[n * chunk:])
  out = jax.eval_shape(fn, rows(0, chunk), inputs[:chunk])
  if out.shape[1:] != out_like.shape[1:] or out.dtype != out_like.dtype:
    split = lambda a: a[:n * chunk].reshape((n, chunk) + a.shape[1:])
    out = jax.lax.map(lambda px: fn(*px), jax.tree.map(split, (per_image, inputs)))
    out = out.reshape((n * chunk,) + out.shape[2:])
    if n * chunk < b:
      out = jnp.concatenate([out, tail()], axis=0)
    return out

  def body(i, out):
    start = i * chunk
    chunk_of = lambda a: jax.lax.dynamic_slice_in_dim(a, start, chunk)
    # Materialise the chunk's draws: a dynamic slice fused into every
    # consumer made XLA:CPU's elementwise loops several times slower.
    draws = _fenced(lambda p: jax.tree.map(chunk_of, p), token, per_image)
    return jax.lax.dynamic_update_slice_in_dim(out, fn(draws, chunk_of(inputs)), start, 0)

  out = jax.lax.fori_loop(0, n, body, out_like)
  if n * chunk < b:
    out = out.at[n * chunk:].set(tail())
  return out


_FLAT_POINTWISE_MAX = 64  # image sides up to this run the pointwise ops on [B, 3, S * S]


def _chunk_size(config: SimCLRAugment, b: int) -> int:
  if config.chunk_images is not None:
    return max(1, config.chunk_images)
  if jax.default_backend() != "cpu":
    return b  # accelerators: one pass over the whole batch
  # 128 at 32 px: smaller chunks were at most a few % faster on one core but
  # about 25% slower with XLA's threads on all cores (less work per kernel).
  return max(1, 131072 // (config.image_size * config.image_size))


def _draws(keys: Array, images: Array, config: SimCLRAugment) -> dict[str, Any]:
  """Every per-image random draw of `simclr_augment`, for the whole batch.

  One vector of uniforms per image, laid out [crop | flip | jitter (6) |
  grayscale | blur (2) | solarize] whatever the config, so that
  `random_crop_and_flip` draws the same crops and flips for the same keys.
  Drawn before the chunk loop and in one go: on CPU threefry runs as a small
  rolled loop whose fixed cost per call (many tiny kernels) dominated when
  repeated per op and per chunk.
  """
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
  return draws


def _augment_chunk(draws: dict[str, Any], images: Array, config: SimCLRAugment,
                   token: Array | None) -> Array:
  """simclr_augment on one chunk: its draws and images from `_crop_input`."""
  jitter = "jitter" in draws
  # With jitter, the crop's clip to [0, 1] is folded into the jitter's first
  # pass instead of costing a pass of its own.
  x = _crop_or_flip(images, draws.get("boxes"), config, draws["flip"], clip=not jitter)
  if config.image_size <= _FLAT_POINTWISE_MAX:
    # Pointwise ops on [c, 3, S * S]: XLA:CPU vectorised some of them over
    # [c, 3, 32, 32] poorly (2.5x slower for a clip).
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
def simclr_augment(key: Array, images: Array, config: SimCLRAugment) -> Array:
  """One SimCLR view of every image; call again with another key for view 2.

  crop -> flip -> colour jitter -> grayscale -> blur -> solarize, each with its
  own independent per-image draw. An image's view depends only on its key
  (not on the batch size or chunking).

  Args:
    key: one key (split into one per image) or B per-image keys.
    images: float [B, H, W, 3] in [0, 1]; any H, W when config.crop, else
      exactly image_size.
    config: the augmentation settings (static).

  Returns:
    float32 [B, S, S, 3] in [0, 1] with S = config.image_size (float64 for
    float64 images).
  """
  images = _check_batch(images, "simclr_augment")
  images = images.astype(jnp.promote_types(images.dtype, jnp.float32))
  b = images.shape[0]
  keys = per_image_keys(key, b)
  _check_crop_input(images, config, "simclr_augment")
  token = _cpu_token(keys)
  fn = lambda d, x: _augment_chunk(d, x, config, token)
  return _map_chunks(fn, _draws(keys, images, config), _crop_input(images, config),
                     _chunk_size(config, b), token, images)


def simclr_augment_one(key: Array, image: Array, config: SimCLRAugment) -> Array:
  """`simclr_augment` for one image [H, W, 3] (e.g. under a user's vmap).

  Args:
    key: one key.
    image: float [H, W, 3].
    config: the augmentation settings.

  Returns:
    [S, S, 3].
  """
  if getattr(image, "ndim", None) != 3:
    raise ValueError(f"simclr_augment_one: expected one image [H, W, 3], got shape "
                     f"{getattr(image, 'shape', type(image))}")
  key = key if hasattr(key, "dtype") else jnp.asarray(key)
  return simclr_augment(key[None], image[None], config)[0]


@functools.partial(jax.jit, static_argnames=("config_or_size",))
def random_crop_and_flip(key: Array, images: Array, config_or_size: SimCLRAugment | int) -> Array:
  """Linear-eval / fine-tune training preprocessing: random resized crop + flip.

  Args:
    key: one key or B per-image keys.
    images: float [B, H, W, 3] in [0, 1].
    config_or_size: a SimCLRAugment (its crop and flip settings) or an output
      size (SimCLR defaults).

  Returns:
    [B, S, S, 3].
  """
  config = config_or_size
  if not isinstance(config, SimCLRAugment):
    config = SimCLRAugment(image_size=int(config_or_size))
  images = _check_batch(images, "random_crop_and_flip")
  images = images.astype(jnp.promote_types(images.dtype, jnp.float32))
  _check_crop_input(images, config, "random_crop_and_flip")
  # The same draws as simclr_augment: the same crops and flips for the same keys.
  draws = _draws(per_image_keys(key, images.shape[0]), images,
                 dataclasses.replace(config, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0,
                                     solarize_p=0.0))
  x = _crop_or_flip(_crop_input(images, config), draws.get("boxes"), config, draws["flip"])
  return jnp.moveaxis(x, 1, -1)


def center_crop(images: Array, size: int, crop_fraction: float = 0.875,
                method: str = "bicubic") -> Array:
  """Eval preprocessing: central crop of crop_fraction * min side, resized to size.

  As SimCLR's `get_preprocess_fn`, no crop for size <= 32 (CIFAR): a 32 px
  batch at size 32 is returned unchanged.

  Args:
    images: float [B, H, W, 3] in [0, 1].
    size: output side.
    crop_fraction: side of the central square relative to the shorter side.
    method: 'bicubic' or 'bilinear'.

  Returns:
    [B, size, size, 3].
  """
  images = _check_batch(images, "center_crop")
  b, height, width, _ = images.shape
  if size <= 32:
    crop_fraction = 1.0
  if crop_fraction >= 1.0 and height == width == size:
    return images
  side = int(round(crop_fraction * min(height, width)))
  box = jnp.asarray([(height - side) // 2, (width - side) // 2, side, side], jnp.int32)
  boxes = jnp.broadcast_to(box, (b, 4))
  if crop_fraction >= 1.0 and height != width:  # whole image, no crop
    boxes = jnp.broadcast_to(jnp.asarray([0, 0, height, width], jnp.int32), (b, 4))
  return _crop_resize_nhwc(images, boxes, size, method)


# ----------------------------------------------------------------------------
# Host side (tf.data) for variable-size datasets. TensorFlow is imported lazily.
# ----------------------------------------------------------------------------


def _tf_resize_uint8(image: Any, size: int) -> Any:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  image = tf.image.resize(image, [size, size], method="bicubic")
  return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def _tf_center_window(shape: Any, crop_fraction: float, aspect_ratio_range: Sequence[float] | None) -> Any:
  """[top, left, h, w] of a centred window (square crop_fraction, or aspect-clamped)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  h = tf.cast(shape[0], tf.float32)
  w = tf.cast(shape[1], tf.float32)
  if aspect_ratio_range is None:
    side = tf.cast(crop_fraction * tf.minimum(h, w), tf.int32)
    ch, cw = side, side
  else:
    lo, hi = aspect_ratio_range
    ratio = w / h
    ch = tf.where(ratio > hi, h, tf.where(ratio < lo, tf.round(w / lo), h))
    cw = tf.where(ratio > hi, tf.round(h * hi), w)
    ch, cw = tf.cast(ch, tf.int32), tf.cast(cw, tf.int32)
  return tf.stack([(shape[0] - ch) // 2, (shape[1] - cw) // 2, ch, cw])


def _tf_shape_and_cropper(image_bytes: Any) -> tuple[Any, Callable[[Any], Any]]:
  """(int32 [3] shape, crop(window [y, x, h, w]) -> uint8 [h, w, 3]) of an encoded image.

  JPEGs decode only the window (`decode_and_crop_jpeg`); other formats that
  `tf.io.decode_image` reads (PNG, BMP, GIF) are decoded whole, once.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  is_jpeg = tf.io.is_jpeg(image_bytes)
  decoded = tf.cond(is_jpeg, lambda: tf.zeros([0, 0, 3], tf.uint8),
                    lambda: tf.io.decode_image(image_bytes, channels=3, expand_animations=False))
  shape = tf.cond(is_jpeg, lambda: tf.image.extract_jpeg_shape(image_bytes), lambda: tf.shape(decoded))

  def crop(window: Any) -> Any:
    return tf.cond(is_jpeg, lambda: tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3),
                   lambda: decoded[window[0]:window[0] + window[2], window[1]:window[1] + window[3]])
  return shape, crop


def tf_decode_and_random_crop(
    image_bytes: Any,
    seed: Any,
    *,
    size: int,
    area_range: Sequence[float] = (0.08, 1.0),
    aspect_ratio_range: Sequence[float] = (3 / 4, 4 / 3),
    max_attempts: int = 100,
) -> Any:
  """Host-side random resized crop fused with JPEG decoding (tf.data map fn).

  Samples the box with `tf.image.stateless_sample_distorted_bounding_box`
  (min_object_covered=0.1, as SimCLR), decodes only that window, and resizes
  it (bicubic) to size x size. When no attempt succeeds (the op then returns
  the whole image) we fall back to a centre crop with aspect clamped into
  range, as the on-device `sample_crop_boxes`. With min_object_covered=0.1 a box must hold
  10% of the image, so an area_range entirely below 0.1 always falls back to that centre crop.

  Args:
    image_bytes: scalar tf.string JPEG (or PNG / another tf.io.decode_image format:
      decoded whole, then cropped).
    seed: int32/int64 [2] stateless seed.
    size: output side.
    area_range: crop area fraction range.
    aspect_ratio_range: crop aspect (w / h) range.
    max_attempts: sampling attempts.

  Returns:
    uint8 [size, size, 3].
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  shape, crop = _tf_shape_and_cropper(image_bytes)
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
      seed=seed, min_object_covered=0.1, aspect_ratio_range=aspect_ratio_range,
      area_range=area_range, max_attempts=max_attempts, use_image_if_no_bounding_boxes=True)
  window = tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])
  whole = tf.reduce_all(tf.equal(crop_size[:2], shape[:2]))
  window = tf.where(whole, _tf_center_window(shape, 1.0, aspect_ratio_range), window)
  return _tf_resize_uint8(crop(window), size)


def tf_random_crops(image_bytes: Any, seed: Any, size: int, views: Sequence[dict[str, Any]]) -> tuple[Any, ...]:
  """One host-side random resized crop per view of one encoded image.

  Args:
    image_bytes: scalar tf.string JPEG.
    seed: int [2] stateless seed; view v's crop uses seed v of `stateless_split(seed, len(views))`.
    size: output side.
    views: one dict of `tf_decode_and_random_crop` keyword arguments per view (e.g. area_range).

  Returns:
    len(views) uint8 [size, size, 3] crops.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=len(views))
  return tuple(tf_decode_and_random_crop(image_bytes, seeds[v], size=size, **kwargs) for v, kwargs in enumerate(views))


def tf_two_crops(image_bytes: Any, seed: Any, size: int, **kwargs: Any) -> tuple[Any, Any]:
  """Two independent host-side random resized crops of one encoded image (`tf_random_crops`).

  Args:
    image_bytes: scalar tf.string JPEG.
    seed: int [2] stateless seed; the two crops use seeds split from it.
    size: output side.
    **kwargs: passed to `tf_decode_and_random_crop`, for both crops.

  Returns:
    (view1, view2), each uint8 [size, size, 3].
  """
  return tf_random_crops(image_bytes, seed, size, (kwargs, kwargs))  # type: ignore[return-value]


def tf_decode_and_center_crop(image_bytes: Any, size: int, crop_fraction: float = 0.875) -> Any:
  """Host-side eval preprocessing: central crop_fraction square, bicubic resize.

  As `center_crop`, no crop for size <= 32 (SimCLR's CIFAR rule).

  Args:
    image_bytes: scalar tf.string JPEG (or PNG, ...).
    size: output side.
    crop_fraction: side of the central square relative to the shorter side.

  Returns:
    uint8 [size, size, 3].
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  shape, crop = _tf_shape_and_cropper(image_bytes)
  if size <= 32:
    image = crop(tf.stack([0, 0, shape[0], shape[1]]))
  else:
    image = crop(_tf_center_window(shape, crop_fraction, None))
  return _tf_resize_uint8(image, size)


__all__ = [
    "SimCLRAugment", "adjust_brightness", "adjust_brightness_multiplicative",
    "adjust_contrast", "adjust_hue", "adjust_saturation", "blur_kernel_size",
    "center_crop", "color_jitter", "per_image_keys", "random_crop_and_flip",
    "random_flip_left_right", "random_gaussian_blur", "random_grayscale",
    "random_resized_crop", "random_solarize", "sample_crop_boxes",
    "simclr_augment", "simclr_augment_one", "solarize", "tf_decode_and_center_crop",
    "tf_decode_and_random_crop", "tf_random_crops", "tf_two_crops", "to_grayscale",
]
