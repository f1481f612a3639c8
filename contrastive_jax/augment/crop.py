"""Crop boxes and the crop + resize (+ flip) kernels.

Boxes are int32 (top, left, height, width). A crop is resized with separable
weights built from its box (bicubic: Keys a = -0.5; or bilinear; half-pixel
centres, taps outside the crop zeroed and each row renormalised, no
antialiasing), as tf.image.resize and jax.image.resize.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from contrastive_jax.augment._jit import jit_with_static
from contrastive_jax.augment.keys import _check_batch, _split_each, _uniforms, per_image_keys

Array = jax.Array

# ----------------------------------------------------------------------------
# Boxes.
# ----------------------------------------------------------------------------


def _centred(height: Any, width: Any, h: Any, w: Any) -> tuple[Any, Any, Any, Any]:
  """(top, left, h, w) of an h x w box centred in height x width (ints or int tensors)."""
  return (height - h) // 2, (width - w) // 2, h, w


class _PythonScalars:
  """`_center_box`'s arithmetic on static Python ints: float64, round half to even."""
  float = float
  int = int
  round = round
  where = staticmethod(lambda cond, a, b: a if cond else b)


def _center_box(height: Any, width: Any, aspect_ratio_range: Sequence[float],
                xp: Any = _PythonScalars) -> tuple[Any, Any, Any, Any]:
  """The crop fallback: the largest centred box with aspect w / h clamped into the range.

  One formula for the device crop (static Python ints, float64) and the
  tf.data host crop (int32 tensors of a decoded shape, `xp` with TensorFlow's
  float32 ops), each in the arithmetic it always used.

  Args:
    height: image height.
    width: image width.
    aspect_ratio_range: (lo, hi) of width / height, lo <= hi.
    xp: float, int, round and where for height and width's type.

  Returns:
    (top, left, box_height, box_width).
  """
  lo, hi = aspect_ratio_range
  h_f, w_f = xp.float(height), xp.float(width)
  ratio = w_f / h_f
  h = xp.where(ratio < lo, xp.round(w_f / lo), h_f)  # too tall: full width
  w = xp.where((ratio > hi) & (ratio >= lo), xp.round(h_f * hi), w_f)  # too wide: full height
  return _centred(height, width, xp.int(h), xp.int(w))


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
  the SimCLR defaults) are the other max_attempts - k drawn, from
  `more_keys`. Either way each image gets the first fitting candidate of
  max_attempts i.i.d. draws.
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


@jit_with_static("n", "height", "width", "area_range", "aspect_ratio_range", "max_attempts")
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
  `augment_batch` draws for the same per-image keys.

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


_NO_EVAL_CROP_MAX = 32  # eval crops of at most this size take the whole image


def _eval_takes_whole_image(size: int) -> bool:
  """SimCLR's eval rule (`get_preprocess_fn`): no centre crop for size <= 32 (CIFAR)."""
  return size <= _NO_EVAL_CROP_MAX


# ----------------------------------------------------------------------------
# Resize weights and the crop kernels.
# ----------------------------------------------------------------------------


def _keys_cubic(x: Array) -> Array:
  """Keys cubic kernel with a = -0.5 (tf.image / jax.image bicubic)."""
  x = jnp.abs(x)
  near = (1.5 * x - 2.5) * x * x + 1.0
  far = ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0
  return jnp.where(x <= 1.0, near, jnp.where(x < 2.0, far, 0.0))


def _resize_weights(start: Array, length: Array, out_size: int, in_size: int, method: str,
                    dtype: Any, dense: bool) -> tuple[Array, Array]:
  """Interpolation weights mapping a per-image 1-D window to `out_size` pixels.

  Half-pixel centres; source pixels outside [start, start + length) get
  weight 0 and each output pixel's weights are renormalised (tf.image.resize /
  jax.image.scale_and_translate, antialias=False). The weights are evaluated
  at the T taps around each centre (4 bicubic, 2 bilinear) or, dense, at
  every source pixel, where those taps are the only nonzero ones.

  Args:
    start: [B] window start (pixels).
    length: [B] window length (pixels).
    out_size: output length.
    in_size: input length.
    method: 'bicubic' or 'bilinear'.
    dtype: float dtype of the weights (the images').
    dense: weigh every source pixel instead of the taps.

  Returns:
    (source positions, weights in `dtype`): [B, out_size, T] each, or, dense,
    [1, 1, in_size] and [B, out_size, in_size]. Tap positions may lie outside
    [0, in_size), with weight 0.
  """
  if method not in ("bicubic", "bilinear"):
    raise ValueError(f"resize method must be 'bicubic' or 'bilinear', got {method!r}")
  start = start.astype(dtype)[:, None, None]
  length = length.astype(dtype)[:, None, None]
  out = jnp.arange(out_size, dtype=dtype)[None, :, None]
  centre = start + (out + 0.5) * (length / out_size) - 0.5
  if dense:
    src = jnp.arange(in_size, dtype=dtype)[None, None, :]
  else:
    offsets = jnp.arange(-1, 3) if method == "bicubic" else jnp.arange(0, 2)
    src = jnp.floor(centre) + offsets.astype(dtype)
  d = centre - src
  w = _keys_cubic(d) if method == "bicubic" else jnp.maximum(0.0, 1.0 - jnp.abs(d))
  w = jnp.where((src >= start) & (src < start + length), w, 0.0)
  total = jnp.sum(w, axis=-1, keepdims=True)
  return src, w / jnp.where(jnp.abs(total) > 1e-6, total, 1.0)


def _resize_taps(start: Array, length: Array, out_size: int, in_size: int,
                 method: str, dtype: Any = jnp.float32) -> tuple[Array, Array]:
  """`_resize_weights` at the taps: (index int32 [B, out_size, T], weight [B, out_size, T])."""
  src, w = _resize_weights(start, length, out_size, in_size, method, dtype, dense=False)
  return jnp.clip(src, 0, in_size - 1).astype(jnp.int32), w


def _resize_matrix(start: Array, length: Array, out_size: int, in_size: int,
                   method: str, dtype: Any = jnp.float32) -> Array:
  """`_resize_weights`, dense: [B, out_size, in_size] in `dtype`."""
  return _resize_weights(start, length, out_size, in_size, method, dtype, dense=True)[1]


_DENSE_COLUMN_RESIZE_MAX = 64  # output sides up to this resize columns with a matmul


def _planar_crop(size: int) -> bool:
  """Whether crops to `size` px take planar input (see `_crop_resize`)."""
  return size <= _DENSE_COLUMN_RESIZE_MAX


def _crop_resize_small(planar: Array, boxes: Array, size: int, flip: Array | None,
                       method: str) -> Array:
  """`_crop_resize` for size <= 64 from planar input [B, 3, H, W], unclipped.

  Rows: the weighted sum of each output row's source rows, one gather per
  tap. Columns: a per-image matmul with the [S, W] weights; a flip reverses
  their rows.
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

  Rows: gather the taps' source rows (W x 3 contiguous values each). Columns:
  transposed into rows and gathered the same way.
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
  crop = _crop_resize_small if _planar_crop(size) else _crop_resize_large
  out = crop(images, boxes, size, flip, method)
  return jnp.clip(out, 0.0, 1.0) if clip else out


def _crop_resize_nhwc(images: Array, boxes: Array, size: int, method: str) -> Array:
  """`_crop_resize` of NHWC images to NHWC, no flip."""
  if _planar_crop(size):
    images = jnp.moveaxis(images, -1, 1)
  return jnp.moveaxis(_crop_resize(images, boxes, size, None, method), 1, -1)


@jit_with_static("size", "area_range", "aspect_ratio_range", "max_attempts", "method")
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


@jit_with_static("size", "crop_fraction", "method")
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
  if _eval_takes_whole_image(size):
    crop_fraction = 1.0
  if crop_fraction >= 1.0 and height == width == size:
    return images
  side = int(round(crop_fraction * min(height, width)))
  box = jnp.asarray(_centred(height, width, side, side), jnp.int32)
  boxes = jnp.broadcast_to(box, (b, 4))
  if crop_fraction >= 1.0 and height != width:  # whole image, no crop
    boxes = jnp.broadcast_to(jnp.asarray([0, 0, height, width], jnp.int32), (b, 4))
  return _crop_resize_nhwc(images, boxes, size, method)
