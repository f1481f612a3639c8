"""Multi-crop views: N large + M small crops per image, from config, on device or on the host."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tolerances import REASSOC_RTOL

from contrastive_jax import cli
from contrastive_jax import data as data_lib
from contrastive_jax import methods as methods_lib
from contrastive_jax import models
from contrastive_jax import optim
from contrastive_jax import sources
from contrastive_jax import train as train_lib
from contrastive_jax import views as views_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _config(preset="multicrop_test"):
  return cli.load_config(str(ROOT / "experiments" / "cifar10_simclr.py") + f":{preset}")


def _batch(b=8):
  rng = np.random.default_rng(0)
  return {"image": rng.integers(0, 256, (b, 32, 32, 3), dtype=np.uint8),
          "label": np.arange(b, dtype=np.int32) % 4, "index": np.arange(b, dtype=np.int32)}


def test_multicrop_preset_gives_2_large_and_4_small_views():
  augs = views_lib.view_configs(_config("multicrop"))
  assert [a.image_size for a in augs] == [32, 32, 16, 16, 16, 16]
  assert [a.crop_area_range for a in augs] == [(0.14, 1.0)] * 2 + [(0.05, 0.14)] * 4
  assert views_lib.num_large_views(augs) == 2
  assert views_lib.resolution_groups([a.image_size for a in augs]) == ((0, 2), (2, 6))
  method = methods_lib.create(_config("multicrop"), total_steps=10, axis_name=None)
  assert (method.num_views, method.num_large_views) == (6, 2)


def test_multicrop_views_have_their_sizes_and_are_independent_per_image_and_crop():
  augs = views_lib.view_configs(_config())
  batch = _batch()
  batch["image"][1] = batch["image"][0]  # two copies of one source image
  keys = train_lib.view_keys(jax.random.key(3), jnp.asarray(0), jnp.asarray(batch["index"]), len(augs))
  views = views_lib.augment_views(batch, keys, augs)
  assert [v.shape for v in views] == [(8, 32, 32, 3)] * 2 + [(8, 16, 16, 3)] * 4
  for v in views:
    assert not np.allclose(v[0], v[1])  # the same image in two rows gets its own crops
  small = np.stack([np.asarray(v[0]) for v in views[2:]])
  assert all(not np.allclose(small[i], small[j]) for i in range(4) for j in range(i))


def test_adding_small_crops_leaves_the_large_views_as_they_were():
  """The keys of views 0 and 1 do not depend on how many views follow (SimCLR's stay as they are)."""
  augs = views_lib.view_configs(_config())
  batch = _batch()
  index = jnp.asarray(batch["index"])
  six = views_lib.augment_views(batch, train_lib.view_keys(jax.random.key(3), jnp.asarray(5), index, 6), augs)
  two = views_lib.augment_views(batch, train_lib.view_keys(jax.random.key(3), jnp.asarray(5), index, 2), augs[:2])
  for a, b in zip(six[:2], two):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_simclr_multicrop_step_runs_and_is_the_supcon_loss_without_labels():
  config = _config()
  model = models.create_model(config, num_classes=4, axis_name=None)
  tx, schedule = optim.create_optimizer(config, num_examples=64)
  method = methods_lib.create(config, total_steps=4, axis_name=None)
  state = train_lib.init_state(model, tx, jax.random.key(1), (32, 32, 3), method=method)
  step = jax.jit(train_lib.make_train_step(model, tx, schedule, views_lib.view_configs(config), method=method,
                                           axis_name=None))
  new_state, metrics = step(state, _batch(), jax.random.key(7))
  # 12 columns per image's crop: 5 positives (its other crops) among 8 * 6 - 1 others.
  assert np.isfinite(float(metrics["loss"])) and float(metrics["loss"]) > np.log(5)
  assert int(new_state.step) == 1
  moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(new_state.params))]
  assert all(moved[:3])


def test_byol_multicrop_target_sees_the_large_crops_only():
  config = cli.load_config(str(ROOT / "experiments" / "cifar10_byol.py") + ":test")
  config.augment.views = (*config.augment.views, *[{"image_size": 16, "crop_area_range": (0.05, 0.14)}] * 2)
  method = methods_lib.create(config, total_steps=4, axis_name=None)
  assert (method.num_views, method.num_large_views) == (4, 2)
  rng = np.random.default_rng(0)
  p = tuple(jnp.asarray(rng.normal(size=(3, 8)), jnp.float32) for _ in range(4))
  t = tuple(jnp.asarray(rng.normal(size=(3, 8)), jnp.float32) for _ in range(2))
  loss, _ = method.loss({"prediction": p}, {"projection": t}, {}, jnp.zeros(3, jnp.int32), 0)
  from contrastive_jax import losses  # pylint: disable=g-import-not-at-top
  want = sum(losses.byol_loss(p[w], t[v]) for v in range(2) for w in range(4) if w != v)
  np.testing.assert_allclose(float(loss), float(want), rtol=REASSOC_RTOL)


def test_views_out_of_order_or_a_multicrop_moco_are_rejected():
  config = _config()
  config.augment.views = ({"image_size": 16}, {}, {})
  with pytest.raises(ValueError, match="large crops first"):
    views_lib.view_configs(config)
  config = cli.load_config(str(ROOT / "experiments" / "cifar10_moco_v3.py") + ":test")
  config.augment.views = (*config.augment.views, {"image_size": 16})
  with pytest.raises(ValueError, match="moco_v3 uses 2 views"):
    methods_lib.create(config, total_steps=4, axis_name=None)


def test_a_large_view_count_outside_1_to_num_views_is_rejected():
  for make in (lambda **kw: methods_lib.byol.make(total_steps=4, **kw),
               lambda **kw: methods_lib.simclr.make(temperature=0.5, **kw)):
    with pytest.raises(ValueError, match=r"num_large_views must be in 1..num_views=4.*got 5"):
      make(num_views=4, num_large_views=5)
    with pytest.raises(ValueError, match=r"got 0"):
      make(num_views=4, num_large_views=0)


def test_small_crops_are_cut_on_the_host_for_variable_size_datasets(image_folder):
  """Host crops per resolution group: the large crops equal those of the two-view iterator."""
  ds = sources.load_dataset("unused", "train", image_folder=str(image_folder), host_crop=True)
  config = _config()
  config.data.host_crop = True
  crop_views = views_lib.host_crop_views(views_lib.view_configs(config))

  def first(views):
    it = data_lib.TrainIterator(ds, global_batch_size=8, seed=1, crop_size=32, crop_views=views)
    try:
      return next(it)
    finally:
      it.close()

  multi, two = first(crop_views), first(crop_views[:2])
  assert multi["image"].shape == (8, 2, 32, 32, 3) and multi["image1"].shape == (8, 4, 16, 16, 3)
  np.testing.assert_array_equal(multi["image"], two["image"])
  augs = views_lib.view_configs(config)
  keys = train_lib.view_keys(jax.random.key(0), jnp.asarray(0), jnp.asarray(multi["index"]), len(augs))
  views = views_lib.augment_views(multi, keys, augs)
  assert [v.shape[1] for v in views] == [32, 32, 16, 16, 16, 16]
  with pytest.raises(ValueError, match="image1"):
    views_lib.augment_views(two, keys, augs)


@pytest.mark.parametrize("view, field", [({"crop_area_range": (0.0, 1.0)}, "crop_area_range"),
                                         ({"crop_area_range": (0.5, 1.5)}, "crop_area_range"),
                                         ({"rotate_max_degrees": -5.0}, "rotate_max_degrees"),
                                         ({"solarize_p": 1.2}, "solarize_p")])
def test_a_bad_view_setting_names_the_view_the_field_and_the_valid_range(view, field):
  config = _config("test")
  config.augment.views = ({}, view)
  with pytest.raises(ValueError, match=rf"config.augment.views\[1\]: ViewAugment.{field} must be"):
    views_lib.view_configs(config)
