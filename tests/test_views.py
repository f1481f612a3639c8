"""Per-view settings reach the pipeline, and each view's statistics match its settings.

`config.augment.views` overrides ViewAugment fields per view (`views.view_configs`).
Here each view of a config runs through `augment_batch` with one op at a time on a
large batch: blur and solarize rates within a binomial tolerance of the view's
probability, crop boxes with areas in the view's range, and a rotation set in one
view only.
"""

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contrastive_jax import augment as A
from contrastive_jax import views as views_lib
from contrastive_jax.cli import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR_BYOL = f"{ROOT}/experiments/cifar10_byol.py"
IMAGENET_BYOL = f"{ROOT}/experiments/imagenet_byol.py"
N = 2048  # images per rate estimate
SIZE = 32


def _within_binomial(rate: float, p: float, n: int, sigmas: float = 4.5) -> bool:
  if p in (0.0, 1.0):
    return rate == p
  return abs(rate - p) <= sigmas * math.sqrt(p * (1 - p) / n)


def _only(view: A.ViewAugment, **ops: float) -> A.ViewAugment:
  """The view with every random op off but `ops`, on SIZE px images cropped beforehand."""
  off = dict(crop=False, image_size=SIZE, flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0,
             solarize_p=0.0, rotate_p=0.0)
  return dataclasses.replace(view, **{**off, **ops})


def _view_keys(n: int, num_views: int, seed: int = 0) -> jax.Array:
  """train.py's layout: per image, one key per view ([n, views] keys)."""
  return jax.vmap(lambda k: jax.random.split(k, num_views))(jax.random.split(jax.random.PRNGKey(seed), n))


def _noise(n: int, size: int, seed: int = 1) -> jax.Array:
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, size, size, 3))


def test_byol_presets_give_asymmetric_views():
  for spec, blur, solarize in [(CIFAR_BYOL, (0.0, 0.0), (0.0, 0.2)),      # no blur at 32 px
                               (IMAGENET_BYOL, (1.0, 0.1), (0.0, 0.2))]:  # BYOL's T and T'
    views = views_lib.view_configs(load_config(spec))
    assert tuple(v.blur_p for v in views) == blur, spec
    assert tuple(v.solarize_p for v in views) == solarize, spec
    assert all(v.jitter == (0.4, 0.4, 0.2, 0.1) for v in views)
    # Nothing else differs between the two views.
    same = lambda v: dataclasses.replace(v, blur_p=0.0, solarize_p=0.0)
    assert same(views[0]) == same(views[1])


@pytest.mark.slow  # the whole augmentation pipeline, several configurations
@pytest.mark.parametrize("spec", [CIFAR_BYOL, IMAGENET_BYOL], ids=os.path.basename)
def test_each_views_blur_and_solarize_rates_match_its_settings(spec):
  views = views_lib.view_configs(load_config(spec))
  x = _noise(N, SIZE)
  keys = _view_keys(N, len(views))
  solarized_x = np.asarray(A.solarize(x, views[0].solarize_threshold))
  x = np.asarray(x)
  for v, view in enumerate(views):
    # Solarize: each image either unchanged or exactly solarized.
    out = np.asarray(A.augment_batch(keys[:, v], x, _only(view, solarize_p=view.solarize_p)))
    hit = np.all(out == solarized_x, axis=(1, 2, 3))
    assert np.all(hit | np.all(out == x, axis=(1, 2, 3)))
    assert _within_binomial(hit.mean(), view.solarize_p, N), (spec, v, hit.mean(), view.solarize_p)
    # Blur: detected as a changed image. sigma >= 0.5 px so that every blur shows (with the
    # 3-tap kernel at 32 px, sigma 0.1 leaves float32 images unchanged).
    out = np.asarray(A.augment_batch(keys[:, v], x, _only(view, blur_p=view.blur_p,
                                                           blur_sigma_range=(0.5, 2.0))))
    blurred = np.any(out != x, axis=(1, 2, 3))
    assert _within_binomial(blurred.mean(), view.blur_p, N), (spec, v, blurred.mean(), view.blur_p)


def _ramp(n: int, size: int) -> jax.Array:
  """Images whose channel 0 is row / (size - 1) and channel 1 column / (size - 1)."""
  r = jnp.arange(size, dtype=jnp.float32)[:, None] / (size - 1)
  rc = jnp.stack([jnp.broadcast_to(r, (size, size)), jnp.broadcast_to(r.T, (size, size)),
                  jnp.zeros((size, size))], axis=-1)
  return jnp.broadcast_to(rc, (n, size, size, 3))


def _boxes_from_ramp_views(out: np.ndarray, size: int) -> np.ndarray:
  """(top, left, height, width) of each bilinear crop of `_ramp`, read off two interior pixels.

  Output pixel i of a crop [top, top + h) resized to S samples the input at
  top + (i + 0.5) h / S - 0.5, which the ramp returns as its value times (size - 1).
  """
  s = out.shape[1]
  i, j = s // 4, 3 * s // 4
  rows = out[:, :, s // 2, 0].astype(np.float64) * (size - 1)  # down the middle column
  cols = out[:, s // 2, :, 1].astype(np.float64) * (size - 1)
  h = (rows[:, j] - rows[:, i]) / (j - i) * s
  w = (cols[:, j] - cols[:, i]) / (j - i) * s
  top = rows[:, i] - (i + 0.5) * h / s + 0.5
  left = cols[:, i] - (i + 0.5) * w / s + 0.5
  return np.stack([top, left, h, w], axis=1)


@pytest.mark.slow  # the whole augmentation pipeline, several configurations
def test_each_views_crop_areas_match_its_settings():
  n, size = 512, 64
  config = load_config(CIFAR_BYOL)
  areas = ((0.1, 0.15), (0.5, 0.6))
  config.augment.views = tuple({"crop_area_range": a} for a in areas)
  # Everything but the crop off, and bilinear so that the view is linear in the crop box.
  for field, value in dict(flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0,
                           resize_method="bilinear").items():
    config.augment[field] = value
  views = views_lib.view_configs(config)
  assert [v.crop_area_range for v in views] == list(areas) and all(v.crop for v in views)
  keys = _view_keys(n, len(views), seed=2)
  x = _ramp(n, size)
  for v, (view, (lo, hi)) in enumerate(zip(views, areas)):
    boxes = np.asarray(A.sample_crop_boxes(keys[:, v], n, size, size, area_range=view.crop_area_range,
                                           aspect_ratio_range=view.aspect_ratio_range,
                                           max_attempts=view.crop_max_attempts))
    # The pipeline crops exactly the boxes sample_crop_boxes draws for the same keys ...
    seen = _boxes_from_ramp_views(np.asarray(A.augment_batch(keys[:, v], x, view)), size)
    np.testing.assert_allclose(seen, boxes, atol=2e-3, err_msg=f"view {v}")
    # ... whose areas lie in the view's range (up to rounding the sides to whole pixels).
    h, w = boxes[:, 2].astype(float), boxes[:, 3].astype(float)
    slack = (h + w + 1) / 2 / size ** 2
    frac = h * w / size ** 2
    assert np.all(frac >= lo - slack) and np.all(frac <= hi + slack), (v, frac.min(), frac.max())
    # and cover it: uniform in [lo, hi] before rounding.
    assert frac.min() < lo + 0.1 * (hi - lo) and frac.max() > hi - 0.1 * (hi - lo), v
    assert abs(np.median(frac) - (lo + hi) / 2) < 0.1 * (hi - lo), v


def test_a_rotation_set_in_one_view_reaches_the_pipeline():
  config = load_config(CIFAR_BYOL)
  config.augment.views = ({}, {"solarize_p": 0.2, "rotate_p": 1.0, "rotate_max_degrees": 30.0})
  views = views_lib.view_configs(config)
  assert (views[0].rotate_p, views[0].rotate_max_degrees) == (0.0, 0.0)
  assert (views[1].rotate_p, views[1].rotate_max_degrees) == (1.0, 30.0)
  x = _noise(64, SIZE)
  keys = _view_keys(64, 2)[:, 1]
  unrotated = np.asarray(A.augment_batch(keys, x, dataclasses.replace(views[1], rotate_p=0.0)))
  rotated = np.asarray(A.augment_batch(keys, x, views[1]))
  assert np.all(np.any(rotated != unrotated, axis=(1, 2, 3)))
