"""Tests for `rotate` / `random_rotate` and the pipeline's optional rotation."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contrastive_jax import augment as A
from contrastive_jax.augment.rotation import _rotate_draws

ndimage = pytest.importorskip("scipy.ndimage")

ANGLES = (-30.0, -7.5, 0.0, 12.0, 45.0, 90.0)
BORDER = 2  # px left out of the scipy comparison (where float32 and float64 may disagree on the edge)


def _images(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).uniform(0, 1, (n, height, width, 3)).astype(np.float32)


def _scipy_rotate(image: np.ndarray, degrees: float, fill: float = 0.0) -> np.ndarray:
  return ndimage.rotate(image.astype(np.float64), degrees, reshape=False, order=1, mode="constant",
                        cval=fill)


def _blob_angles(out: np.ndarray, radius: float) -> np.ndarray:
  """Angle (degrees, counter-clockwise as displayed) each image turned a blob that starts above the centre."""
  n, height, width = out.shape[:3]
  rows, cols = np.mgrid[0:height, 0:width]
  mass = out[..., 0]
  r = (mass * rows).sum((1, 2)) / mass.sum((1, 2)) - (height - 1) / 2
  c = (mass * cols).sum((1, 2)) / mass.sum((1, 2)) - (width - 1) / 2
  assert np.allclose(np.hypot(r, c), radius, atol=0.5)
  return np.degrees(np.arctan2(-r, c)) - 90.0


def _blob(n: int, size: int = 41, radius: float = 12.0) -> np.ndarray:
  """n copies of a Gaussian blob `radius` px above the centre of a size x size image."""
  rows, cols = np.mgrid[0:size, 0:size]
  centre = (size - 1) / 2
  g = np.exp(-((rows - (centre - radius)) ** 2 + (cols - centre) ** 2) / (2 * 1.5 ** 2))
  return np.broadcast_to(g[None, :, :, None], (n, size, size, 3)).astype(np.float32)


# ------------------------------------------------------------------ rotate


@pytest.mark.parametrize("height,width", [(17, 17), (16, 16), (15, 22)])
def test_rotate_matches_scipy_ndimage_rotate(height, width):
  x = _images(len(ANGLES), height, width)
  inner = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
  for fill in (0.0, 0.25):
    got = np.asarray(A.rotate(jnp.asarray(x), jnp.asarray(ANGLES), fill=fill))
    for i, angle in enumerate(ANGLES):
      want = _scipy_rotate(x[i], angle, fill)
      np.testing.assert_allclose(got[i][inner], want[inner], atol=1e-4,
                                 err_msg=f"{height}x{width}, {angle} degrees, fill {fill}")
      # One scalar angle for the batch: the same numbers.
      one = np.asarray(A.rotate(jnp.asarray(x[i:i + 1]), angle, fill=fill))[0]
      np.testing.assert_allclose(one[inner], want[inner], atol=1e-4)


def test_rotate_angle_sign_is_scipys_counter_clockwise():
  x = np.zeros((1, 5, 5, 3), np.float32)
  x[0, 0, 2] = 1.0  # top centre
  out = np.asarray(A.rotate(jnp.asarray(x), 90.0))[0, ..., 0]
  assert out[2, 0] == 1.0 and out.sum() == 1.0  # -> left centre
  np.testing.assert_array_equal(out, _scipy_rotate(x[0], 90.0)[..., 0])


def test_rotate_by_zero_is_the_identity_and_quarter_turns_are_exact():
  x = _images(2, 16, 16)
  np.testing.assert_array_equal(A.rotate(jnp.asarray(x), 0.0), x)
  np.testing.assert_array_equal(A.rotate(jnp.asarray(x), 90.0), np.rot90(x, 1, axes=(1, 2)))
  np.testing.assert_array_equal(A.rotate(jnp.asarray(x), -180.0), x[:, ::-1, ::-1])


def test_rotate_any_channel_count_under_jit_and_vmap():
  x = jnp.asarray(np.random.default_rng(2).uniform(0, 1, (3, 2, 12, 12, 5)).astype(np.float32))
  deg = jnp.asarray([[10.0, -20.0], [33.0, 0.0], [90.0, 5.0]])
  eager = jnp.stack([A.rotate(x[i], deg[i]) for i in range(3)])
  np.testing.assert_allclose(jax.vmap(jax.jit(A.rotate))(x, deg), eager, atol=1e-6)


# ------------------------------------------------------------------ random_rotate


def test_random_rotate_p0_is_the_identity():
  x = jnp.asarray(_images(8, 16, 16))
  np.testing.assert_array_equal(A.random_rotate(jax.random.PRNGKey(0), x, max_degrees=45.0, p=0.0), x)


def test_random_rotate_angles_in_range_independent_and_reproducible():
  n, max_degrees = 256, 30.0
  x = jnp.asarray(_blob(n))
  key = jax.random.PRNGKey(3)
  out = np.asarray(A.random_rotate(key, x, max_degrees=max_degrees))
  angles = _blob_angles(out, 12.0)
  assert np.all(np.abs(angles) <= max_degrees + 1.0), (angles.min(), angles.max())
  # Every image its own angle, spread over the range (uniform: mean 0, |angle| < 15 half the time).
  assert len(np.unique(np.round(angles, 2))) > 0.9 * n
  assert angles.min() < -25 and angles.max() > 25
  assert abs(angles.mean()) < 4.0 and abs(np.mean(np.abs(angles) < 15) - 0.5) < 0.12
  # Same key, same views; one key == its split into per-image keys; typed keys too.
  np.testing.assert_array_equal(A.random_rotate(key, x, max_degrees=max_degrees), out)
  np.testing.assert_array_equal(
      A.random_rotate(jax.random.split(key, n), x, max_degrees=max_degrees), out)
  typed = A.random_rotate(jax.random.key(3), x, max_degrees=max_degrees)
  assert np.asarray(typed).shape == out.shape
  assert not np.array_equal(A.random_rotate(jax.random.PRNGKey(4), x, max_degrees=max_degrees), out)


def test_random_rotate_rotates_a_fraction_p_of_the_images():
  n, p = 4000, 0.3
  x = jnp.asarray(_images(n, 8, 8))
  out = jax.jit(lambda k, x: A.random_rotate(k, x, max_degrees=20.0, p=p))(jax.random.PRNGKey(5), x)
  changed = np.any(np.asarray(out) != np.asarray(x), axis=(1, 2, 3))
  assert abs(changed.mean() - p) < 4.5 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("kwargs,match", [
    (dict(max_degrees=10.0, p=1.5), "probability p"),
    (dict(max_degrees=10.0, p=-0.1), "probability p"),
    (dict(max_degrees=-1.0), "max_degrees"),
    (dict(max_degrees=float("nan")), "max_degrees"),
    (dict(max_degrees=(1.0, 2.0)), "max_degrees"),
    (dict(max_degrees=10.0, fill="black"), "fill"),
])
def test_random_rotate_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    A.random_rotate(jax.random.PRNGKey(0), jnp.zeros((2, 8, 8, 3)), **kwargs)


def test_rotate_bad_arguments():
  with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
    A.rotate(jnp.zeros((8, 8, 3)), 10.0)
  with pytest.raises(ValueError, match="float images"):
    A.rotate(jnp.zeros((2, 8, 8, 3), jnp.uint8), 10.0)
  with pytest.raises(ValueError, match=r"one angle per image \(2,\)"):
    A.rotate(jnp.zeros((2, 8, 8, 3)), jnp.zeros(3))
  with pytest.raises(ValueError, match="2 per-image keys|got 3 per-image keys"):
    A.random_rotate(jax.random.split(jax.random.PRNGKey(0), 3), jnp.zeros((2, 8, 8, 3)),
                    max_degrees=5.0)
  with pytest.raises(ValueError, match="rotate_p"):
    A.augment_batch(jax.random.PRNGKey(0), jnp.zeros((2, 32, 32, 3)),
                     A.ViewAugment.cifar10(rotate_p=2.0, rotate_max_degrees=10.0))


# ------------------------------------------------------------------ pipeline


def test_presets_have_no_rotation():
  for config in (A.ViewAugment(), A.ViewAugment.cifar10(), A.ViewAugment.imagenet()):
    assert config.rotate_p == 0.0 and config.rotate_max_degrees == 0.0


@pytest.mark.slow  # the whole augmentation pipeline, several configurations
def test_pipeline_rotation_changes_no_other_draw():
  x = jnp.asarray(_images(16, 40, 40, seed=1))
  key = jax.random.PRNGKey(7)
  base = A.ViewAugment.cifar10(blur_p=0.5, solarize_p=0.3)
  default = np.asarray(A.augment_batch(key, x, base))
  # rotate_p = 0 whatever the angle: the default program and numbers.
  off = A.augment_batch(key, x, dataclasses.replace(base, rotate_max_degrees=30.0))
  np.testing.assert_array_equal(off, default)
  # Rotating every image by exactly 0 degrees: the same crops, flips and colours, to the bit.
  zero = A.augment_batch(key, x, dataclasses.replace(base, rotate_p=1.0))
  np.testing.assert_array_equal(zero, default)
  # And real angles change every view.
  on = np.asarray(A.augment_batch(key, x, dataclasses.replace(base, rotate_p=1.0,
                                                               rotate_max_degrees=30.0)))
  assert np.all(np.any(on != default, axis=(1, 2, 3)))


@pytest.mark.slow  # the whole augmentation pipeline, several configurations
def test_pipeline_rotates_after_crop_and_flip_before_the_colour_ops():
  x = jnp.asarray(_images(8, 40, 40, seed=2))
  keys = jax.random.split(jax.random.PRNGKey(8), 8)
  geometric = A.ViewAugment.cifar10(jitter_p=0.0, grayscale_p=0.0)
  rot = dict(rotate_p=1.0, rotate_max_degrees=45.0)
  # crop + flip + rotation == `rotate` of the crop + flip, by the pipeline's angles.
  _, degrees = _rotate_draws(keys, 1.0, 45.0)
  want = A.rotate(A.augment_batch(keys, x, geometric), degrees)
  rotated = A.augment_batch(keys, x, dataclasses.replace(geometric, **rot))
  np.testing.assert_allclose(rotated, want, atol=1e-5)
  # Solarize (a colour op) sees the rotated view: solarize(rotate(crop)), not the other order.
  solarized = A.augment_batch(keys, x, dataclasses.replace(geometric, solarize_p=1.0, **rot))
  np.testing.assert_allclose(solarized, A.solarize(rotated), atol=1e-6)
