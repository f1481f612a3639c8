"""Every augmentation path still gives the views recorded before augment.py was split (issue 13).

`tests/data/augment_views_recorded.npz` holds, for fixed keys on fixed uint8 inputs, the outputs of
every path (presets, crop paths, chunk loops, per-op functions, tf.data host crops), recorded on
an AVX2 CPU with the single-module augment.py (e26fe07). It is a sample of that commit's 500 KB
recording, taken by `_sample` below (its key simclr_augment_one then renamed augment_image, as the function):
  git show e26fe07:tests/data/augment_before_split.npz > /tmp/full.npz
  PYTHONPATH=. python tests/test_augment_recorded_views.py /tmp/full.npz

What is compared, and how (docs/testing.md):
- integer outputs (crop boxes) and the uint8 tf.data host crops: exactly;
- float views: within `VIEW_ATOL`. XLA:CPU rounds them differently on another CPU (AVX2 or
  AVX-512 code, run-time dispatched dot kernels) and jax version, so a recording made elsewhere
  can only match to float32 rounding. That the same machine and program give the same views to
  the bit is tested in test_augment.py (determinism) and test_data.py.
"""

from __future__ import annotations

import io
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tolerances import VIEW_ATOL

from contrastive_jax import augment as A

DATA = pathlib.Path(__file__).resolve().parent / "data" / "augment_views_recorded.npz"
SAMPLES = 128  # float values kept per recorded array, evenly spaced over its elements


def _uint8(n: int, h: int, w: int, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _float(images: np.ndarray) -> jax.Array:
  return jnp.asarray(images, jnp.float32) / 255.0


def _encoded(fmt: str) -> bytes:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  y, x = np.mgrid[0:60, 0:80]
  noise = np.random.default_rng(5).integers(0, 40, (60, 80, 3))
  img = (np.stack([3 * y, 2 * x, x + y], -1) + noise).clip(0, 255).astype(np.uint8)
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, format=fmt)
  return buf.getvalue()


def _device_views() -> dict[str, np.ndarray]:
  """Every on-device path, for fixed keys on fixed uint8 inputs."""
  key = jax.random.PRNGKey(13)
  keys3 = jax.random.split(jax.random.PRNGKey(21), 3)
  x32 = _float(_uint8(4, 32, 32, 0))
  x40 = _float(_uint8(2, 40, 40, 1))
  x48 = _float(_uint8(2, 48, 48, 2))
  x56 = _float(_uint8(2, 56, 64, 3))
  x80 = _float(_uint8(1, 80, 96, 4))
  x16 = _float(_uint8(4, 16, 16, 5))
  x8 = _float(_uint8(2, 8, 8, 6)) * 1.4 - 0.2  # colour ops also see values outside [0, 1]
  cifar = A.ViewAugment.cifar10
  imagenet = A.ViewAugment.imagenet
  views = {
      # Presets: CIFAR-10 (no blur) and ImageNet-style (blur on) at small sizes.
      "cifar10": A.augment_batch(key, x32, cifar()),
      "cifar10_multiplicative": A.augment_batch(key, x32[:2], cifar(multiplicative_brightness=True)),
      "cifar10_byol_jitter": A.augment_batch(key, x32[2:], cifar(jitter=(0.4, 0.4, 0.2, 0.1))),
      "cifar10_bilinear": A.augment_batch(key, x40, cifar(resize_method="bilinear")),
      # Chunk loops with a tail chunk: in place (32 -> 32) and lax.map (32 -> 24).
      "cifar10_chunked": A.augment_batch(keys3, x32[1:],
                                          cifar(chunk_images=2)),
      "cifar10_24_chunked": A.augment_batch(keys3, x32[1:],
                                             cifar(image_size=24, chunk_images=2)),
      "typed_keys": A.augment_batch(jax.random.wrap_key_data(keys3[:2]), x16[:2],
                                     cifar(image_size=16)),
      "augment_image": A.augment_image(key, x16[2], cifar(image_size=16)),
      "imagenet48_crop": A.augment_batch(key, x56, imagenet(image_size=48)),
      "imagenet48_no_crop": A.augment_batch(key, x48, imagenet(image_size=48, crop=False)),
      "imagenet48_solarize": A.augment_batch(
          key, x56, imagenet(image_size=48, solarize_p=0.5, blur_padding="zeros")),
      "imagenet72_crop": A.augment_batch(key, x80, imagenet(image_size=72)),  # gathered columns
      "random_crop_and_flip_size": A.random_crop_and_flip(key, x40, 32),
      "random_crop_and_flip_config": A.random_crop_and_flip(key, x56, imagenet(image_size=48)),
      "center_crop_48": A.center_crop(x56[:1], 48),
      "center_crop_32": A.center_crop(x40[:1, :, :36], 32),  # size <= 32: whole image, resized
      "center_crop_40_bilinear": A.center_crop(x48[:1], 40, method="bilinear"),
      # Per-op functions.
      "color_jitter": A.color_jitter(key, x16, 1.0),
      "color_jitter_multiplicative": A.color_jitter(key, x16, 0.5, p=1.0,
                                                    multiplicative_brightness=True),
      "random_gaussian_blur": A.random_gaussian_blur(key, x16, p=0.75),
      "random_gaussian_blur_zeros": A.random_gaussian_blur(key, x16, p=1.0, padding="zeros",
                                                          kernel_size=5),
      "random_resized_crop": A.random_resized_crop(key, x56[:1], size=24),
      "random_resized_crop_bilinear": A.random_resized_crop(key, x56[1:], size=20,
                                                            method="bilinear"),
      "random_flip_left_right": A.random_flip_left_right(key, x8),
      "random_grayscale": A.random_grayscale(key, x8, p=0.5),
      "random_solarize": A.random_solarize(key, x8, p=0.5),
      "adjust_brightness": A.adjust_brightness(x8, jnp.asarray([-0.3, 0.2])),
      "adjust_brightness_multiplicative": A.adjust_brightness_multiplicative(x8, 1.3),
      "adjust_contrast": A.adjust_contrast(x8, jnp.asarray([0.4, 1.6])),
      "adjust_saturation": A.adjust_saturation(x8, jnp.asarray([0.3, 1.8])),
      "adjust_hue": A.adjust_hue(x8, jnp.asarray([-0.45, 0.2])),
      "to_grayscale": A.to_grayscale(x8),
      "solarize": A.solarize(x8, 0.4),
      "sample_crop_boxes": A.sample_crop_boxes(key, 64, 48, 40),
      # Hard boxes: 7 of 64 images need the extra attempts, 31 take the centre fallback.
      "sample_crop_boxes_hard": A.sample_crop_boxes(key, 64, 24, 60, area_range=(0.5, 0.6),
                                                    max_attempts=12),
  }
  return {k: np.asarray(v) for k, v in views.items()}


def _host_crops(jpeg: bytes, png: bytes) -> dict[str, np.ndarray]:
  """The tf.data host crops of one encoded JPEG (and one PNG)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  jpeg_t, png_t = tf.constant(jpeg), tf.constant(png)
  seed = tf.constant([3, 4], tf.int64)
  views = A.tf_random_crops(jpeg_t, seed, 24, ({}, {"area_range": (0.3, 1.0)}))
  crops = {f"tf_random_crops_{v}": c for v, c in enumerate(views)}
  crops["tf_two_crops_png"] = tf.stack(A.tf_two_crops(png_t, seed, 20))
  # An area range below min_object_covered=0.1 always takes the centre fallback.
  crops["tf_random_crop_fallback"] = A.tf_decode_and_random_crop(jpeg_t, seed, size=24,
                                                                 area_range=(0.01, 0.05))
  crops["tf_center_crop_40"] = A.tf_decode_and_center_crop(jpeg_t, 40)
  crops["tf_center_crop_32"] = A.tf_decode_and_center_crop(jpeg_t, 32)
  return {k: np.asarray(v) for k, v in crops.items()}


def _compute(jpeg: bytes, png: bytes) -> dict[str, np.ndarray]:
  return {**_device_views(), **_host_crops(jpeg, png)}


def _sample(recorded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Integer arrays whole; float arrays as their shape and `SAMPLES` evenly spaced values."""
  out = {}
  for k, v in recorded.items():
    if np.issubdtype(v.dtype, np.floating):
      out[k] = v.reshape(-1)[np.linspace(0, v.size - 1, min(SAMPLES, v.size)).astype(np.int64)]
      out[f"{k}:shape"] = np.asarray(v.shape, np.int64)
    else:
      out[k] = v
  return out


@pytest.mark.slow
@pytest.mark.skipif(jax.default_backend() != "cpu", reason="recorded on XLA:CPU")
def test_views_equal_the_recording_integers_exactly_floats_to_rounding():
  pytest.importorskip("tensorflow")
  with np.load(DATA) as f:
    want = dict(f)
  # The encoded inputs are stored: another encoder version must not change them.
  jpeg, png = want.pop("input_jpeg").tobytes(), want.pop("input_png").tobytes()
  full = _compute(jpeg, png)
  got = _sample(full)
  assert sorted(got) == sorted(want)
  for k, w in want.items():
    g = got[k]
    assert g.dtype == w.dtype, (k, g.dtype, w.dtype)
    if np.issubdtype(w.dtype, np.floating):
      np.testing.assert_allclose(g, w, rtol=0, atol=VIEW_ATOL, err_msg=k)
    else:
      np.testing.assert_array_equal(g, w, err_msg=k)
  # Large enough to see a changed draw: the views are not near-constant arrays.
  assert all(np.ptp(full[k]) > 0.1 for k in full if k.startswith(("cifar10", "imagenet")))


if __name__ == "__main__":
  import sys  # pylint: disable=g-import-not-at-top
  with np.load(sys.argv[1]) as f:
    sampled = _sample(dict(f))
  np.savez_compressed(DATA, **sampled)
  print(f"{DATA}: {len(sampled)} arrays, {DATA.stat().st_size / 1024:.0f} KiB")
