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
* Every image gets its own independent random draw. Random ops take either one
  PRNG key (split into one key per image) or a batch of B keys (one per image,
  e.g. derived from (seed, step, global image index) so that results do not
  depend on the device count). Old-style uint32[2] keys and typed keys from
  `jax.random.key` are both accepted.
* All functions are pure, jit- and vmap-safe, and branchless across the batch
  (per-image choices are selects, not Python or `lax.cond` control flow).

Colour ops match `tf.image` on unclipped float images: brightness, contrast,
saturation and grayscale wrap dm-pix (verified equal to tf.image); `adjust_hue`
is our own because dm-pix's HSV round trip differs from TF's CPU kernel for
pixels outside [0, 1] (TF keeps (hue, min, max) instead of (h, s, v)).

Speed (CPU): crop + resize + flip is separable with weights built from the
crop box (bicubic, Keys a=-0.5 with weights of taps outside the crop zeroed
and renormalised, as tf.image.resize BICUBIC and jax.image.resize 'cubic'):
rows gather their 4 source rows, columns use a small per-image matmul (a
flip reverses its rows, so it is free) or, above 64 px, a gather. The
jitter's random op order is a fixed program of 4 cheap RGB slots and 2 HSV
slots (see `_JITTER_PROGRAM`), so each image pays for two HSV round trips
instead of evaluating every op at every step. The batch is processed in
cache-sized chunks (`lax.map`), with fusion barriers (`_materialize`) between
jitter slots.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any, Sequence

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

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
  """One vector of `count` U[0, 1) draws per image: [B, count]."""
  return jax.vmap(lambda k: jax.random.uniform(k, (count,)))(keys)


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

  Each image draws `max_attempts` candidates at once (area fraction uniform in
  `area_range`, log aspect ratio uniform in `aspect_ratio_range`, sides
  rounded to whole pixels), keeps the first that fits, else falls back to a
  centre crop (whole image when its aspect is in range), as SimCLR (100
  attempts) and torchvision's RandomResizedCrop.

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
  keys = per_image_keys(key, n)
  u = _uniforms(keys, 2 * max_attempts + 2)
  area = height * width * (area_range[0] + (area_range[1] - area_range[0]) * u[:, :max_attempts])
  log_lo, log_hi = math.log(aspect_ratio_range[0]), math.log(aspect_ratio_range[1])
  ratio = jnp.exp(log_lo + (log_hi - log_lo) * u[:, max_attempts:2 * max_attempts])
  w = jnp.round(jnp.sqrt(area * ratio)).astype(jnp.int32)
  h = jnp.round(jnp.sqrt(area / ratio)).astype(jnp.int32)
  ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
  first = jnp.argmax(ok, axis=1)  # index of the first valid attempt
  found = jnp.any(ok, axis=1)
  h = jnp.take_along_axis(h, first[:, None], axis=1)[:, 0]
  w = jnp.take_along_axis(w, first[:, None], axis=1)[:, 0]
  top = jnp.floor(u[:, -2] * (height - h + 1)).astype(jnp.int32)
  left = jnp.floor(u[:, -1] * (width - w + 1)).astype(jnp.int32)
  boxes = jnp.stack([top, left, h, w], axis=1)
  fallback = jnp.asarray(_center_box(height, width, aspect_ratio_range), jnp.int32)
  return jnp.where(found[:, None], boxes, fallback)


def _keys_cubic(x: Array) -> Array:
  """Keys cubic kernel with a = -0.5 (tf.image / jax.image bicubic)."""
  x = jnp.abs(x)
  near = (1.5 * x - 2.5) * x * x + 1.0
  far = ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0
  return jnp.where(x <= 1.0, near, jnp.where(x < 2.0, far, 0.0))


def _resize_matrix(start: Array, length: Array, out_size: int, in_size: int,
                   method: str) -> Array:
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

  Returns:
    float32 [B, out_size, in_size].
  """
  start = start.astype(jnp.float32)[:, None, None]
  length = length.astype(jnp.float32)[:, None, None]
  out = jnp.arange(out_size, dtype=jnp.float32)[None, :, None]
  src = jnp.arange(in_size, dtype=jnp.float32)[None, None, :]
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
                 method: str) -> tuple[Array, Array]:
  """The 4 (bicubic) or 2 (bilinear) nonzero taps of `_resize_matrix` rows.

  Returns:
    (index int32 [B, out_size, T], weight float32 [B, out_size, T]).
  """
  start = start.astype(jnp.float32)[:, None, None]
  length = length.astype(jnp.float32)[:, None, None]
  out = jnp.arange(out_size, dtype=jnp.float32)[None, :, None]
  centre = start + (out + 0.5) * (length / out_size) - 0.5
  offsets = jnp.arange(-1, 3) if method == "bicubic" else jnp.arange(0, 2)
  src = jnp.floor(centre) + offsets.astype(jnp.float32)
  w = _keys_cubic(centre - src) if method == "bicubic" else jnp.maximum(0.0, 1.0 - jnp.abs(centre - src))
  w = jnp.where((src >= start) & (src < start + length), w, 0.0)
  total = jnp.sum(w, axis=-1, keepdims=True)
  w = w / jnp.where(jnp.abs(total) > 1e-6, total, 1.0)
  return jnp.clip(src, 0, in_size - 1).astype(jnp.int32), w


_DENSE_COLUMN_RESIZE_MAX = 64  # output sides up to this resize columns with a matmul


def _crop_resize_planar(images: Array, boxes: Array, size: int, flip: Array | None,
                        method: str) -> Array:
  """Crops boxes, resizes to size x size and optionally flips: NHWC -> [B, 3, S, S].

  Rows: gather the 4 source rows of every output row (the whole W x 3 row is
  contiguous in NHWC). Columns: a per-image matmul with the [S, W] weight
  matrix; a flip just reverses its rows, so it is free. Both are exactly the
  separable resize of the crop (tf.image.resize semantics, no antialiasing).
  """
  b, height, width, channels = images.shape
  if method not in ("bicubic", "bilinear"):
    raise ValueError(f"resize method must be 'bicubic' or 'bilinear', got {method!r}")
  idx, w = _resize_taps(boxes[:, 0], boxes[:, 2], size, height, method)
  taps = idx.shape[-1]
  rows = jnp.take_along_axis(images.reshape(b, height, width * channels),
                             idx.reshape(b, size * taps, 1), axis=1)
  t = jnp.einsum("bstk,bst->bsk", rows.reshape(b, size, taps, width * channels), w)
  if size <= _DENSE_COLUMN_RESIZE_MAX:
    t = jnp.moveaxis(t.reshape(b, size, width, channels), -1, 1)  # [B, 3, S, W]
    a_w = _resize_matrix(boxes[:, 1], boxes[:, 3], size, width, method)
    if flip is not None:
      a_w = jnp.where(flip[:, None, None], a_w[:, ::-1], a_w)
    out = jnp.einsum("bcow,bpw->bcop", t, a_w, precision=jax.lax.Precision.HIGHEST)
  else:
    # Large images: a dense [S, W] matmul does W/4 times the needed work, so
    # transpose columns into rows and gather their taps as for the rows.
    idx, w = _resize_taps(boxes[:, 1], boxes[:, 3], size, width, method)
    if flip is not None:
      idx = jnp.where(flip[:, None, None], idx[:, ::-1], idx)
      w = jnp.where(flip[:, None, None], w[:, ::-1], w)
    cols = jnp.swapaxes(t.reshape(b, size, width, channels), 1, 2).reshape(b, width, size * channels)
    cols = jnp.take_along_axis(cols, idx.reshape(b, size * taps, 1), axis=1)
    out = jnp.einsum("bptk,bpt->bpk", cols.reshape(b, size, taps, size * channels), w)
    out = jnp.transpose(out.reshape(b, size, size, channels), (0, 3, 2, 1))  # [B, 3, S, P]
  # Bicubic overshoots at edges; keep the [0, 1] contract.
  return jnp.clip(out, 0.0, 1.0)


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
  return jnp.moveaxis(_crop_resize_planar(images, boxes, size, None, method), 1, -1)


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


def _jitter_params(keys: Array, strength: float, p: float, multiplicative_brightness: bool) -> dict[str, Array]:
  """Per-image jitter draws (ranges of SimCLR's `color_jitter_rand`)."""
  b, c, s, h = 0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength
  u = _uniforms(keys, 6)
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


def _materialize(tree: Any, token: Array | None) -> Any:
  """Fusion barrier: makes XLA:CPU write `tree` to memory once.

  Without it XLA fuses the whole jitter chain and recomputes earlier slots
  per output channel (every channel reads all three input channels), which
  was 3-4x slower. XLA:CPU strips `lax.optimization_barrier` before fusion,
  but cannot fuse across a conditional whose predicate (`token`, always
  True) is only known at run time. token=None (accelerators) is a no-op.
  """
  if token is None:
    return tree
  return jax.lax.cond(token, lambda t: t, lambda t: jax.tree.map(jnp.zeros_like, t), tree)


_HUE_CENTRES = (0.0, 2.0, 4.0)  # where r, g, b peak on the hue circle [0, 6)


def _jitter_planar(x: Array, params: dict[str, Array], multiplicative_brightness: bool,
                   token: Array | None = None) -> Array:
  """Applies the jitter program to planar images [B, 3, H, W] in [0, 1]."""
  rgb_ops = jnp.asarray(_RGB_SLOTS)[params["order"]]  # [B, slots]
  hsv_ops = jnp.asarray(_HSV_SLOTS)[params["order"]]
  col = lambda v: v[:, None, None, None]  # per-image scalar -> [B, 1, 1, 1]
  centres = jnp.asarray(_HUE_CENTRES, x.dtype).reshape(1, 3, 1, 1)
  out = x
  for slot, kind in enumerate(_JITTER_PROGRAM):
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
      mean = jnp.mean(out, axis=(2, 3), keepdims=True)
      out = jnp.clip(col(a) * out + col(m) * mean + col(d), 0.0, 1.0)
    else:
      mask = hsv_ops[:, slot]
      sat = col(jnp.where(mask & 1, params["saturation"], 1.0))
      dhue = col(jnp.where(mask & 2, params["hue"], 0.0))
      hue, vmin, vmax = _hue_planes(out[:, 0:1], out[:, 1:2], out[:, 2:3])
      # tf.image.adjust_saturation sets s' = clip(s * f, 0, 1) with
      # s = chroma / max; for max >= 0 (inputs in [0, 1]) the new chroma
      # s' * max is clip(chroma * f, 0, max), which needs no division.
      chroma = jnp.clip((vmax - vmin) * sat, 0.0, vmax)
      dh, low, chroma = _materialize((_frac(hue + dhue) * 6.0, vmax - chroma, chroma), token)
      # Channel c = min + chroma * clip(2 - circular distance(dh, centre_c)),
      # the same as `_hue_range_to_rgb` but as one [B, 3, H, W] expression.
      dist = jnp.abs(dh - centres)
      dist = jnp.minimum(dist, 6.0 - dist)
      out = jnp.clip(low + chroma * jnp.clip(2.0 - dist, 0.0, 1.0), 0.0, 1.0)
    out = _materialize(out, token)
  return jnp.where(col(params["apply"]), out, x)


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
  params = _jitter_params(keys, strength, p, multiplicative_brightness)
  out = _jitter_planar(jnp.moveaxis(images, -1, 1), params, multiplicative_brightness,
                       _cpu_token(keys))
  return jnp.moveaxis(out, 1, -1)


_GRAY = (0.2989, 0.5870, 0.1140)  # tf.image.rgb_to_grayscale weights


def _grayscale_planar(x: Array, apply: Array) -> Array:
  gray = _GRAY[0] * x[:, 0] + _GRAY[1] * x[:, 1] + _GRAY[2] * x[:, 2]
  return jnp.where(apply[:, None, None, None], gray[:, None], x)


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
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  k = jnp.exp(-(taps[None, :] ** 2) / (2.0 * sigma[:, None] ** 2))
  k = k / jnp.sum(k, axis=1, keepdims=True)  # [B, K]
  mode = {"reflect": "reflect", "zeros": "constant"}[padding]
  height, width = x.shape[2], x.shape[3]
  # Sum of shifted copies: XLA fuses the K taps into one loop per pass.
  xp = jnp.pad(x, ((0, 0), (0, 0), (radius, radius), (0, 0)), mode=mode)
  x = sum(k[:, t, None, None, None] * xp[:, :, t:t + height] for t in range(kernel_size))
  xp = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (radius, radius)), mode=mode)
  return sum(k[:, t, None, None, None] * xp[:, :, :, t:t + width] for t in range(kernel_size))


def _blur_params(keys: Array, p: float, sigma_range: Sequence[float]) -> tuple[Array, Array]:
  u = _uniforms(keys, 2)
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
  apply, sigma = _blur_params(per_image_keys(key, images.shape[0]), p, sigma_range)
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
    jitter_strength: colour jitter strength s.
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


def _crop_or_check(images: Array, keys: Array, config: SimCLRAugment, flip: Array,
                   name: str) -> Array:
  """Crop + resize + flip into planar [B, 3, S, S] (or only flip when crop=False)."""
  b, height, width, _ = images.shape
  size = config.image_size
  if config.crop:
    boxes = sample_crop_boxes(keys, b, height, width, area_range=config.crop_area_range,
                              aspect_ratio_range=config.aspect_ratio_range,
                              max_attempts=config.crop_max_attempts)
    return _crop_resize_planar(images, boxes, size, flip, config.resize_method)
  if (height, width) != (size, size):
    raise ValueError(f"{name}: config.crop=False expects images already at "
                     f"{size}x{size} (cropped on the host), got {height}x{width}")
  x = jnp.moveaxis(images, -1, 1)
  return jnp.where(flip[:, None, None, None], x[..., ::-1], x)


def _cpu_token(keys: Array) -> Array | None:
  """A run-time True for `_materialize` on CPU; None elsewhere (no barriers)."""
  if jax.default_backend() != "cpu":
    return None
  data = jax.random.key_data(keys) if _is_typed_key(keys) else keys
  return (data.reshape(-1)[0] | 1) != 0


def _map_chunks(fn: Any, keys: Array, images: Array, chunk: int) -> Array:
  """fn(keys, images) over batch chunks of `chunk` images (lax.map + tail).

  On CPU a chunk's intermediates stay in cache; one whole-batch pass per op
  was memory bound (about 2x slower at B=1024, 32 px).
  """
  b = images.shape[0]
  if chunk >= b:
    return fn(keys, images)
  n = b // chunk
  split = lambda a: a[:n * chunk].reshape((n, chunk) + a.shape[1:])
  out = jax.lax.map(lambda kx: fn(*kx), (split(keys), split(images)))
  out = out.reshape((n * chunk,) + out.shape[2:])
  if n * chunk < b:
    out = jnp.concatenate([out, fn(keys[n * chunk:], images[n * chunk:])], axis=0)
  return out


def _chunk_size(config: SimCLRAugment, b: int) -> int:
  if config.chunk_images is not None:
    return max(1, config.chunk_images)
  if jax.default_backend() != "cpu":
    return b  # accelerators: one pass over the whole batch
  return max(1, 131072 // (config.image_size * config.image_size))  # 128 at 32 px


def _augment_chunk(keys: Array, images: Array, config: SimCLRAugment,
                   token: Array | None) -> Array:
  """simclr_augment on one chunk: per-image keys [c], images [c, H, W, 3]."""
  keys = _split_each(keys, 6)
  flip = _bernoulli(keys[:, 1], config.flip_p)
  x = _crop_or_check(images, keys[:, 0], config, flip, "simclr_augment")
  if config.jitter_p > 0 and config.jitter_strength > 0:
    params = _jitter_params(keys[:, 2], config.jitter_strength, config.jitter_p,
                            config.multiplicative_brightness)
    x = _jitter_planar(x, params, config.multiplicative_brightness, token)
  if config.grayscale_p > 0:
    x = _grayscale_planar(x, _bernoulli(keys[:, 3], config.grayscale_p))
  if config.blur_p > 0:
    apply, sigma = _blur_params(keys[:, 4], config.blur_p, config.blur_sigma_range)
    blurred = _blur_planar(x, sigma, blur_kernel_size(config.image_size), config.blur_padding)
    x = jnp.where(apply[:, None, None, None], blurred, x)
  if config.solarize_p > 0:
    apply = _bernoulli(keys[:, 5], config.solarize_p)
    x = jnp.where(apply[:, None, None, None], pix.solarize(x, config.solarize_threshold), x)
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
    float32 [B, S, S, 3] in [0, 1] with S = config.image_size.
  """
  images = _check_batch(images, "simclr_augment").astype(jnp.float32)
  b = images.shape[0]
  keys = per_image_keys(key, b)
  token = _cpu_token(keys)
  fn = lambda k, x: _augment_chunk(k, x, config, token)
  return _map_chunks(fn, keys, images, _chunk_size(config, b))


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
  images = _check_batch(images, "random_crop_and_flip").astype(jnp.float32)
  keys = _split_each(per_image_keys(key, images.shape[0]), 6)
  flip = _bernoulli(keys[:, 1], config.flip_p)  # same sub-keys as simclr_augment
  x = _crop_or_check(images, keys[:, 0], config, flip, "random_crop_and_flip")
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
  return jnp.moveaxis(_crop_resize_planar(images, boxes, size, None, method), 1, -1)


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
  range, as the on-device `sample_crop_boxes`.

  Args:
    image_bytes: scalar tf.string JPEG (or PNG: decoded fully, then cropped).
    seed: int32/int64 [2] stateless seed.
    size: output side.
    area_range: crop area fraction range.
    aspect_ratio_range: crop aspect (w / h) range.
    max_attempts: sampling attempts.

  Returns:
    uint8 [size, size, 3].
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  shape = tf.image.extract_jpeg_shape(image_bytes)
  begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
      seed=seed, min_object_covered=0.1, aspect_ratio_range=aspect_ratio_range,
      area_range=area_range, max_attempts=max_attempts, use_image_if_no_bounding_boxes=True)
  window = tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])
  whole = tf.reduce_all(tf.equal(crop_size[:2], shape[:2]))
  window = tf.where(whole, _tf_center_window(shape, 1.0, aspect_ratio_range), window)
  image = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)
  return _tf_resize_uint8(image, size)


def tf_two_crops(image_bytes: Any, seed: Any, size: int, **kwargs: Any) -> tuple[Any, Any]:
  """Two independent host-side random resized crops of one encoded image.

  Args:
    image_bytes: scalar tf.string JPEG.
    seed: int [2] stateless seed; the two crops use seeds split from it.
    size: output side.
    **kwargs: passed to `tf_decode_and_random_crop`.

  Returns:
    (view1, view2), each uint8 [size, size, 3].
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
  return (tf_decode_and_random_crop(image_bytes, seeds[0], size=size, **kwargs),
          tf_decode_and_random_crop(image_bytes, seeds[1], size=size, **kwargs))


def tf_decode_and_center_crop(image_bytes: Any, size: int, crop_fraction: float = 0.875) -> Any:
  """Host-side eval preprocessing: central crop_fraction square, bicubic resize.

  As `center_crop`, no crop for size <= 32 (SimCLR's CIFAR rule).

  Args:
    image_bytes: scalar tf.string JPEG.
    size: output side.
    crop_fraction: side of the central square relative to the shorter side.

  Returns:
    uint8 [size, size, 3].
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  shape = tf.image.extract_jpeg_shape(image_bytes)
  if size <= 32:
    image = tf.image.decode_jpeg(image_bytes, channels=3)
  else:
    window = _tf_center_window(shape, crop_fraction, None)
    image = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)
  return _tf_resize_uint8(image, size)


__all__ = [
    "SimCLRAugment", "adjust_brightness", "adjust_brightness_multiplicative",
    "adjust_contrast", "adjust_hue", "adjust_saturation", "blur_kernel_size",
    "center_crop", "color_jitter", "per_image_keys", "random_crop_and_flip",
    "random_flip_left_right", "random_gaussian_blur", "random_grayscale",
    "random_resized_crop", "random_solarize", "sample_crop_boxes",
    "simclr_augment", "simclr_augment_one", "solarize", "tf_decode_and_center_crop",
    "tf_decode_and_random_crop", "tf_two_crops", "to_grayscale",
]
