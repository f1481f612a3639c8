"""Tests for contrastive_jax.augment (on-device ops and host-side tf.data ops)."""

import functools
import io
import itertools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tolerances import VIEW_ATOL

from contrastive_jax import augment as A

CIFAR = A.ViewAugment.cifar10()


def _images(n: int = 8, size: int = 32, seed: int = 0) -> jax.Array:
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, size, size, 3))


@pytest.fixture(scope="module")
def tf():
  return pytest.importorskip("tensorflow")


# ---------------------------------------------------------------- colour ops


@pytest.mark.parametrize("lo,hi", [(0.0, 1.0), (-0.5, 1.5)])
def test_colour_ops_match_tf_image(tf, lo, hi):
  x = np.random.default_rng(0).uniform(lo, hi, (4, 16, 16, 3)).astype(np.float32)
  cases = [
      (A.adjust_brightness, tf.image.adjust_brightness, [-0.3, 0.25]),
      (A.adjust_contrast, tf.image.adjust_contrast, [0.2, 1.7]),
      (A.adjust_saturation, tf.image.adjust_saturation, [0.0, 0.3, 1.8]),
      (A.adjust_hue, tf.image.adjust_hue, [-0.45, -0.1, 0.2, 0.5]),
  ]
  for ours, theirs, factors in cases:
    for f in factors:
      np.testing.assert_allclose(ours(jnp.asarray(x), f), theirs(x, f).numpy(), atol=2e-4,
                                 err_msg=f"{ours.__name__}({f})")
  gray = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(x)).numpy()
  np.testing.assert_allclose(A.to_grayscale(jnp.asarray(x)), gray, atol=2e-4)
  np.testing.assert_allclose(A.adjust_brightness_multiplicative(jnp.asarray(x), 1.3), x * 1.3,
                             atol=1e-6)


def test_colour_ops_per_image_factors(tf):
  x = np.random.default_rng(1).uniform(0, 1, (3, 8, 8, 3)).astype(np.float32)
  factors = np.array([0.3, 1.0, 1.6], np.float32)
  for ours, theirs in [(A.adjust_saturation, tf.image.adjust_saturation),
                       (A.adjust_contrast, tf.image.adjust_contrast)]:
    got = ours(jnp.asarray(x), jnp.asarray(factors))
    want = np.stack([theirs(x[i], factors[i]).numpy() for i in range(3)])
    np.testing.assert_allclose(got, want, atol=2e-4)
  got = A.adjust_hue(jnp.asarray(x), jnp.asarray([0.1, -0.2, 0.3]))
  want = np.stack([tf.image.adjust_hue(x[i], d).numpy() for i, d in enumerate([0.1, -0.2, 0.3])])
  np.testing.assert_allclose(got, want, atol=2e-4)


def test_jitter_program_equals_sequential_ops():
  """The fused slot program == the 4 public ops applied one by one in order."""
  x = _images(24, 16, seed=3)
  keys = jax.random.split(jax.random.PRNGKey(5), 24)
  perms = jnp.asarray(list(itertools.permutations(range(4))))  # every order once

  @functools.partial(jax.jit, static_argnums=2)
  def sequential(x, params, mult):
    # Reference: at each step evaluate all four ops and pick the drawn one.
    bright = A.adjust_brightness_multiplicative if mult else A.adjust_brightness
    for step in range(4):
      candidates = jnp.stack([
          bright(x, params["brightness"]), A.adjust_contrast(x, params["contrast"]),
          A.adjust_saturation(x, params["saturation"]), A.adjust_hue(x, params["hue"])])
      x = jnp.clip(candidates[perms[:, step], jnp.arange(24)], 0.0, 1.0)
    return x

  for mult in (False, True):
    params = A._jitter_params(A._uniforms(keys, 6), 1.0, 1.0, mult)
    params["order"] = jnp.arange(24, dtype=jnp.int32)
    fused = jax.jit(A._jitter_planar, static_argnums=2)
    got = jnp.moveaxis(fused(jnp.moveaxis(x, -1, 1), params, mult), 1, -1)
    np.testing.assert_allclose(got, sequential(x, params, mult), atol=2e-5)


# ---------------------------------------------------------------- crop


def test_crop_box_statistics():
  n = 4000
  for h, w in [(1000, 1000), (32, 32), (480, 640)]:
    boxes = np.asarray(A.sample_crop_boxes(jax.random.PRNGKey(0), n, h, w))
    top, left, bh, bw = boxes.T
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + bh <= h).all() and (left + bw <= w).all()
    # Sides are rounded to whole pixels: allow half a pixel on each side.
    area = bh * bw / (h * w)
    slack = (bh + bw + 1) / (2 * h * w)
    assert (area >= 0.08 - slack).all() and (area <= 1.0 + slack).all()
    ratio = bw / bh
    assert ((bw + 1) / np.maximum(bh - 1, 1) >= 3 / 4).all()
    assert ((bw - 1) / (bh + 1) <= 4 / 3).all()
    # The draws cover the ranges: log-uniform aspect, uniform-ish area.
    assert area.min() < 0.1 and area.max() > 0.95
    if h == w:  # symmetric only for square images
      assert abs(np.mean(np.log(ratio))) < 0.02
      assert 0.45 < np.median(area) < 0.6


def test_crop_fallback_is_centre_crop():
  # No candidate fits an area range above 1, so every box is the fallback.
  boxes = np.asarray(A.sample_crop_boxes(jax.random.PRNGKey(0), 16, 20, 60,
                                         area_range=(1.5, 2.0), max_attempts=10))
  np.testing.assert_array_equal(boxes, np.tile([0, 16, 20, 27], (16, 1)))  # aspect 4/3


def test_crop_extra_attempts_only_when_needed():
  # Hard boxes: about 30% of candidates fit, so the first 8 all miss for ~6%
  # of images. max_attempts=8 never draws more; 100 draws the other 92 for
  # the batch, keeps the boxes of images that had a fit, and finds the rest.
  n, kw = 4000, dict(area_range=(0.5, 0.6), aspect_ratio_range=(1 / 8, 8.0))
  key = jax.random.PRNGKey(3)
  few = np.asarray(A.sample_crop_boxes(key, n, 32, 32, max_attempts=8, **kw))
  many = np.asarray(A.sample_crop_boxes(key, n, 32, 32, max_attempts=100, **kw))
  fallback = lambda b: (b[:, 2] * b[:, 3] > 0.7 * 32 * 32)  # whole image, area 1
  assert 0.02 < fallback(few).mean() < 0.12, fallback(few).mean()
  assert not fallback(many).any()
  np.testing.assert_array_equal(many[~fallback(few)], few[~fallback(few)])
  top, left, bh, bw = many.T
  assert (top >= 0).all() and (left >= 0).all()
  assert (top + bh <= 32).all() and (left + bw <= 32).all()
  area = bh * bw / 1024
  assert (area >= 0.5 - (bh + bw + 1) / 2048).all() and (area <= 0.6 + (bh + bw + 1) / 2048).all()


@pytest.mark.parametrize("side,size", [(40, 24), (90, 72)])  # matmul / gather columns
def test_crop_resize_matches_jax_and_tf_resize(tf, side, size):
  images = _images(3, side, seed=1)
  boxes = A.sample_crop_boxes(jax.random.PRNGKey(2), 3, side, side)
  flip = jnp.asarray([False, True, False])
  src = jnp.moveaxis(images, -1, 1) if A._planar_crop(size) else images  # the path's layout
  got = jnp.moveaxis(A._crop_resize(src, boxes, size, flip, "bicubic"), 1, -1)
  for i, (t, l, h, w) in enumerate(np.asarray(boxes)):
    crop = images[i, t:t + h, l:l + w]
    want = jnp.clip(jax.image.resize(crop, (size, size, 3), "cubic", antialias=False), 0, 1)
    want = want[:, ::-1] if flip[i] else want
    np.testing.assert_allclose(got[i], want, atol=3e-5)
    # tf.image's bicubic kernel uses a 1024-entry weight table: looser bound.
    want_tf = np.clip(tf.image.resize(np.asarray(crop), (size, size), "bicubic").numpy(), 0, 1)
    want_tf = want_tf[:, ::-1] if flip[i] else want_tf
    np.testing.assert_allclose(got[i], want_tf, atol=3e-3)


def test_random_resized_crop_shapes_and_flip():
  x = _images(4, 48)
  y = A.random_resized_crop(jax.random.PRNGKey(0), x, size=32)
  chex.assert_shape(y, (4, 32, 32, 3))
  flipped = A.random_flip_left_right(jax.random.PRNGKey(0), x, p=1.0)
  np.testing.assert_array_equal(flipped, x[:, :, ::-1])
  np.testing.assert_array_equal(A.random_flip_left_right(jax.random.PRNGKey(0), x, p=0.0), x)


# ---------------------------------------------------------------- composites


def test_independent_views_per_image():
  image = _images(1)
  batch = jnp.repeat(image, 256, axis=0)
  views = np.asarray(jax.jit(lambda k, x: A.augment_batch(k, x, CIFAR))(jax.random.PRNGKey(0), batch))
  flat = views.reshape(256, -1)
  dists = ((flat[:, None, :] - flat[None, :, :]) ** 2).sum(-1)
  dists[np.arange(256), np.arange(256)] = np.inf
  assert dists.min() > 0, "two images of the batch got the same augmentation"


def test_determinism_key_forms_and_jit():
  x = _images(8)
  key = jax.random.PRNGKey(7)
  f = jax.jit(lambda k, x: A.augment_batch(k, x, CIFAR))
  a, b = f(key, x), f(key, x)
  np.testing.assert_array_equal(a, b)
  chex.assert_shape(a, x.shape)
  chex.assert_type(a, jnp.float32)
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  keys = jax.random.split(key, 8)
  full = f(keys, x)
  np.testing.assert_array_equal(full, a)  # single key == split(key, B)
  # Image i's view depends only on its key, so a sub-batch (another device
  # count, another chunking) gives the same views.
  sub = A.augment_batch(keys[2:7], x[2:7], A.ViewAugment.cifar10(chunk_images=2))
  np.testing.assert_allclose(sub, full[2:7], atol=VIEW_ATOL)
  # Typed keys give the same result as raw uint32 keys with the same data.
  typed = jax.random.wrap_key_data(keys)
  np.testing.assert_allclose(A.augment_batch(typed, x, CIFAR), full, atol=VIEW_ATOL)
  assert not np.allclose(f(jax.random.PRNGKey(8), x), a)


@pytest.mark.slow  # the whole augmentation pipeline, several configurations
def test_chunked_paths_match_one_pass():
  # In-place chunk loop (output shape == input) and lax.map (a 24 px crop of
  # 32 px images), both with a tail chunk, equal a single pass.
  x = _images(7)
  keys = jax.random.split(jax.random.PRNGKey(4), 7)
  for size in (32, 24):
    one = A.augment_batch(keys, x, A.ViewAugment.cifar10(image_size=size, chunk_images=7))
    chunked = A.augment_batch(keys, x, A.ViewAugment.cifar10(image_size=size, chunk_images=3))
    chex.assert_shape(chunked, (7, size, size, 3))
    np.testing.assert_allclose(chunked, one, atol=VIEW_ATOL)


def test_cpu_chunk_size_follows_the_process_cores_and_leaves_views_bit_identical(monkeypatch):
  """One core: 16-image chunks at 32 px (the planar layout only); several: 128. Same views either way."""
  from contrastive_jax.augment import fusion
  if jax.default_backend() != "cpu":
    pytest.skip("CPU chunking only")
  sizes = {}
  for cores in (1, 2):
    monkeypatch.setattr(fusion, "_process_cores", lambda cores=cores: cores)
    sizes[cores] = (fusion._chunk_size(None, 32, 1024), fusion._chunk_size(None, 224, 128))
  assert sizes == {1: (16, 2), 2: (128, 2)}
  assert fusion._chunk_size(5, 32, 1024) == 5  # an explicit chunk_images wins
  x = _images(48)
  one_core = A.augment_batch(jax.random.PRNGKey(5), x, A.ViewAugment.cifar10(chunk_images=16))
  many = A.augment_batch(jax.random.PRNGKey(5), x, A.ViewAugment.cifar10(chunk_images=48))
  np.testing.assert_array_equal(np.asarray(one_core), np.asarray(many))


def test_random_crop_and_flip_matches_simclr_draws():
  # The same per-image draws: augment_batch without colour ops is exactly
  # random_crop_and_flip for the same keys.
  x = _images(6)
  keys = jax.random.split(jax.random.PRNGKey(6), 6)
  plain = A.ViewAugment.cifar10(jitter_p=0.0, grayscale_p=0.0)
  np.testing.assert_allclose(A.random_crop_and_flip(keys, x, plain),
                             A.augment_batch(keys, x, plain), atol=VIEW_ATOL)


def test_jitter_clip_input_equals_clipping_first():
  x = _images(16, 8, seed=2) * 1.4 - 0.2  # a bicubic crop can leave [0, 1]
  keys = jax.random.split(jax.random.PRNGKey(8), 16)
  params = A._jitter_params(A._uniforms(keys, 6), 1.0, 0.5, False)
  planar = jnp.moveaxis(x, -1, 1)
  token = A._cpu_token(keys)
  got = A._jitter_planar(planar, params, False, token, clip_input=True)
  want = A._jitter_planar(jnp.clip(planar, 0.0, 1.0), params, False, token)
  np.testing.assert_allclose(got, want, atol=VIEW_ATOL)
  assert float(got.min()) >= 0.0 and float(got.max()) <= 1.0


def test_vmap_and_one_image():
  x = _images(2 * 4).reshape(2, 4, 32, 32, 3)
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  y = jax.vmap(lambda k, xs: A.augment_batch(k, xs, CIFAR))(keys, x)
  chex.assert_shape(y, (2, 4, 32, 32, 3))
  np.testing.assert_allclose(y[1], A.augment_batch(keys[1], x[1], CIFAR), atol=VIEW_ATOL)
  one = A.augment_image(jax.random.split(keys[1], 4)[2], x[1, 2], CIFAR)
  np.testing.assert_allclose(one, y[1, 2], atol=VIEW_ATOL)


def test_grayscale_fraction():
  n, p = 2000, 0.2
  y = np.asarray(A.random_grayscale(jax.random.PRNGKey(0), _images(n, 4), p=p))
  gray = np.all(np.abs(y - y[..., :1]) < 1e-6, axis=(1, 2, 3))
  tol = 4 * math.sqrt(p * (1 - p) / n)
  assert abs(gray.mean() - p) < tol, gray.mean()
  # Inside the full pipeline: jitter never makes a colour image gray, so the
  # colour-drop rate is p as well.
  cfg = A.ViewAugment.cifar10(image_size=8, crop=False, flip_p=0.0)
  z = np.asarray(A.augment_batch(jax.random.PRNGKey(1), _images(n, 8), cfg))
  gray = np.all(np.abs(z - z[..., :1]) < 1e-6, axis=(1, 2, 3))
  assert abs(gray.mean() - p) < tol, gray.mean()


def test_imagenet_pipeline_and_host_crop_split():
  x = _images(3, 64)
  y = A.augment_batch(jax.random.PRNGKey(0), x, A.ViewAugment.imagenet(image_size=48))
  chex.assert_shape(y, (3, 48, 48, 3))
  assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
  no_crop = A.ViewAugment.imagenet(image_size=64, crop=False, solarize_p=0.2)
  chex.assert_shape(A.augment_batch(jax.random.PRNGKey(0), x, no_crop), (3, 64, 64, 3))
  with pytest.raises(ValueError, match="crop=False"):
    A.augment_batch(jax.random.PRNGKey(0), x, A.ViewAugment.imagenet(crop=False))


def test_eval_preprocessing():
  x = _images(2, 32)
  np.testing.assert_array_equal(A.center_crop(x, 32), x)  # CIFAR: identity
  big = _images(2, 64)
  chex.assert_shape(A.center_crop(big, 48), (2, 48, 48, 3))
  y = A.random_crop_and_flip(jax.random.PRNGKey(0), big, 32)
  chex.assert_shape(y, (2, 32, 32, 3))
  y = A.random_crop_and_flip(jax.random.split(jax.random.PRNGKey(0), 2), x, CIFAR)
  chex.assert_shape(y, (2, 32, 32, 3))


# ---------------------------------------------------------------- blur, solarize


def test_blur_kernel_and_constant_image():
  assert [A.blur_kernel_size(s) for s in (32, 96, 224)] == [3, 9, 23]
  assert all(A.blur_kernel_size(s) % 2 == 1 for s in range(10, 300))
  const = jnp.full((4, 40, 40, 3), 0.37)
  out = A.random_gaussian_blur(jax.random.PRNGKey(0), const, p=1.0)
  np.testing.assert_allclose(out, const, atol=1e-6)
  # Zero padding (SimCLR's 'SAME' conv) preserves the sum of an image whose
  # border is zero, and blur spreads a point.
  blob = jnp.zeros((1, 40, 40, 3)).at[:, 20, 20].set(1.0)
  for padding in ("reflect", "zeros"):
    out = A.random_gaussian_blur(jax.random.PRNGKey(0), blob, p=1.0, padding=padding)
    np.testing.assert_allclose(out.sum(), blob.sum(), rtol=1e-5)
    assert float(out.max()) < 1.0
  np.testing.assert_array_equal(A.random_gaussian_blur(jax.random.PRNGKey(0), blob, p=0.0), blob)


def test_solarize():
  x = _images(4)
  np.testing.assert_allclose(A.random_solarize(jax.random.PRNGKey(0), x, p=1.0),
                             jnp.where(x < 0.5, x, 1 - x))


# ---------------------------------------------------------------- bad input


def test_bad_input_raises_clear_errors():
  key = jax.random.PRNGKey(0)
  with pytest.raises(ValueError, match=r"4-D NHWC.*\(32, 32, 3\)"):
    A.augment_batch(key, jnp.zeros((32, 32, 3)), CIFAR)
  with pytest.raises(ValueError, match="4-D NHWC"):
    A.augment_batch(key, jnp.zeros((2, 3, 32, 32)), CIFAR)
  with pytest.raises(ValueError, match=r"astype\(jnp.float32\) / 255"):
    A.augment_batch(key, jnp.zeros((2, 32, 32, 3), jnp.uint8), CIFAR)
  with pytest.raises(ValueError, match="uint8"):
    A.adjust_hue(np.zeros((2, 8, 8, 3), np.uint8), 0.1)
  with pytest.raises(ValueError, match="per-image keys"):
    A.augment_batch(jax.random.split(key, 3), jnp.zeros((2, 32, 32, 3)), CIFAR)


# ---------------------------------------------------------------- host side


def _jpeg(h: int, w: int, seed: int = 0) -> bytes:
  from PIL import Image
  rng = np.random.default_rng(seed)
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG")
  return buf.getvalue()


def test_tf_host_crops_read_png_as_jpeg(tf):
  from PIL import Image
  # A smooth image, so that a quality-100 JPEG is within a few levels of the PNG.
  y, x = np.mgrid[0:90, 0:120]
  img = np.stack([2 * y, 2 * x, x + y], -1).clip(0, 255).astype(np.uint8)
  encoded = {}
  for fmt, kw in (("PNG", {}), ("JPEG", {"quality": 100, "subsampling": 0})):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **kw)
    encoded[fmt] = tf.constant(buf.getvalue())
  seed = tf.constant([3, 4], tf.int64)
  for fn in (lambda b: A.tf_decode_and_random_crop(b, seed, size=40), lambda b: A.tf_decode_and_center_crop(b, 56)):
    png, jpeg = fn(encoded["PNG"]).numpy(), fn(encoded["JPEG"]).numpy()
    assert png.shape == jpeg.shape and png.dtype == np.uint8
    assert np.abs(png.astype(float) - jpeg).mean() < 2.0


def test_tf_host_crops(tf):
  data = tf.constant(_jpeg(90, 120))
  seed = tf.constant([1, 2], tf.int64)
  crop = A.tf_decode_and_random_crop(data, seed, size=40)
  assert crop.shape == (40, 40, 3) and crop.dtype == tf.uint8
  again = A.tf_decode_and_random_crop(data, seed, size=40)
  np.testing.assert_array_equal(crop.numpy(), again.numpy())  # stateless
  v1, v2 = A.tf_two_crops(data, seed, 40)
  assert v1.shape == v2.shape == (40, 40, 3) and v1.dtype == tf.uint8
  assert not np.array_equal(v1.numpy(), v2.numpy())
  center = A.tf_decode_and_center_crop(data, 56)
  assert center.shape == (56, 56, 3) and center.dtype == tf.uint8
  # In a tf.data pipeline with per-element seeds.
  ds = tf.data.Dataset.from_tensor_slices([_jpeg(50 + 10 * i, 70, i) for i in range(4)])
  ds = ds.enumerate().map(lambda i, b: tf_two(b, i, tf)).batch(4)
  a, b = next(iter(ds))
  assert a.shape == (4, 32, 32, 3)


def tf_two(image_bytes, index, tf):
  return A.tf_two_crops(image_bytes, tf.stack([tf.cast(index, tf.int64), tf.constant(0, tf.int64)]), 32)


@pytest.mark.slow  # a subprocess
def test_importing_augment_does_not_import_tensorflow():
  import subprocess
  import sys
  code = "import sys, contrastive_jax.augment; assert 'tensorflow' not in sys.modules"
  subprocess.run([sys.executable, "-c", code], check=True)
