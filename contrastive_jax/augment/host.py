"""Host-side (tf.data) crops for variable-size datasets.

The crop must happen while each image still has its own size, so it runs in
tf.data, fused with JPEG decoding (`decode_and_crop_jpeg`), to uint8 crops of
one size that the device then augments with `ViewAugment(crop=False)`.
TensorFlow is imported lazily: importing this module does not import it.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from contrastive_jax.augment.crop import _center_box, _centred, _eval_takes_whole_image


class _TFScalars:
  """`_center_box`'s arithmetic on int32 tensors: TensorFlow float32 ops."""

  def __init__(self):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self.float = lambda v: tf.cast(v, tf.float32)
    self.int = lambda v: tf.cast(v, tf.int32)
    self.round = tf.round
    self.where = tf.where


def _tf_resize_uint8(image: Any, size: int) -> Any:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  image = tf.image.resize(image, [size, size], method="bicubic")
  return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def _tf_center_square(shape: Any, crop_fraction: float) -> Any:
  """[top, left, side, side] of the centred square, side = crop_fraction * the shorter side, truncated."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  side = tf.cast(crop_fraction * tf.cast(tf.minimum(shape[0], shape[1]), tf.float32), tf.int32)
  return tf.stack(_centred(shape[0], shape[1], side, side))


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
  window = tf.where(whole, tf.stack(_center_box(shape[0], shape[1], aspect_ratio_range, _TFScalars())),
                    window)
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
  if _eval_takes_whole_image(size):
    image = crop(tf.stack([0, 0, shape[0], shape[1]]))
  else:
    image = crop(_tf_center_square(shape, crop_fraction))
  return _tf_resize_uint8(image, size)


