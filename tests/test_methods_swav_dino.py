"""SwAV's and DINO's method pieces: prototypes, the frozen first epochs, the queue, the centre, the teacher's
temperature, DINO's head and clipping. Their 8-vs-1-device and SIGTERM contracts are tests/test_methods.py's."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from contrastive_jax import cli
from contrastive_jax import losses
from contrastive_jax import methods as methods_lib
from contrastive_jax import models
from contrastive_jax import optim
from contrastive_jax.methods import dino, swav
from contrastive_jax.models import Prototypes, ViT

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _config(name, preset="test", **overrides):
  return cli.load_config(str(ROOT / "experiments" / f"cifar10_{name}.py") + f":{preset}", **overrides)


def _unit(x, axis=-1):
  return x / np.linalg.norm(x, axis=axis, keepdims=True)


# ----------------------------------------------------------------------------- prototypes and the model


@pytest.mark.parametrize("normalize", [False, True])
def test_prototypes_score_unit_projections_against_the_kernel(normalize):
  z = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32) * 3
  layer = Prototypes(num_prototypes=7, normalize_weights=normalize)
  variables = layer.init(jax.random.key(0), jnp.asarray(z))
  kernel = np.asarray(variables["params"]["kernel"])
  assert kernel.shape == (6, 7) and np.abs(kernel).max() <= 1 / np.sqrt(6)  # nn.Linear's U(+-1/sqrt(fan_in))
  want = _unit(z) @ (_unit(kernel, axis=0) if normalize else kernel)
  np.testing.assert_allclose(layer.apply(variables, jnp.asarray(z)), want, rtol=1e-5, atol=1e-6)


def test_prototypes_need_two_or_more():
  with pytest.raises(ValueError, match="num_prototypes"):
    Prototypes(num_prototypes=1)


def test_dinos_head_is_a_gelu_mlp_without_bn_and_a_weight_normalised_last_layer():
  config = _config("dino")
  model = models.create_model(config, 10, axis_name=None)
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((2, 32, 32, 3)))
  head = variables["params"]["head"]
  assert sorted(head) == ["dense0", "dense1", "dense2"] and all("bias" in head[k] for k in head)
  assert "head" not in variables["batch_stats"]
  assert variables["params"]["prototypes"]["kernel"].shape == (config.model.proj_dim, 32)
  out = jax.jit(model.apply)(variables, jnp.ones((2, 32, 32, 3)))
  assert out["prototypes"].shape == (2, 32)
  # Scores of unit rows against unit columns: cosines.
  assert float(jnp.max(jnp.abs(out["prototypes"]))) <= 1.0 + 1e-5


def test_a_dino_vit_interpolates_its_learnt_position_embeddings_for_small_crops():
  vit = ViT(width=32, depth=1, num_heads=2, patch_size=8, interpolate_posemb=True)
  variables = jax.jit(vit.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  small = jax.jit(vit.apply)(variables, jnp.ones((2, 16, 16, 3)))
  assert small.shape == (2, 32) and bool(jnp.all(jnp.isfinite(small)))
  with pytest.raises(ValueError, match="interpolate_posemb"):
    ViT(width=32, depth=1, num_heads=2, patch_size=8).apply(variables, jnp.ones((2, 16, 16, 3)))


# ----------------------------------------------------------------------------- the optimiser


def test_frozen_until_leaves_params_and_state_alone_then_runs_fresh_on_the_global_schedule():
  schedule = lambda count: 0.1 * (count + 1.0)
  inner = lambda sched: optax.chain(optax.add_decayed_weights(0.01), optax.sgd(sched, momentum=0.9))
  tx = optim.frozen_until(inner(lambda c: schedule(c + 2)), 2)
  params = {"w": jnp.array([1.0, -2.0])}
  grads = [{"w": jnp.array([0.5, 0.25]) * (i + 1)} for i in range(5)]
  state = tx.init(params)
  for g in grads[:2]:  # frozen: no update, no weight decay, no momentum
    updates, state = tx.update(g, state, params)
    assert not np.any(np.asarray(updates["w"]))
    for a, b in zip(jax.tree.leaves(state.inner), jax.tree.leaves(inner(schedule).init(params))):
      np.testing.assert_array_equal(a, b)
  fresh = inner(lambda c: schedule(c + 2))
  fresh_state = fresh.init(params)
  for g in grads[2:]:  # then as a fresh optimiser whose rate is the global step's
    updates, state = tx.update(g, state, params)
    want, fresh_state = fresh.update(g, fresh_state, params)
    np.testing.assert_array_equal(updates["w"], want["w"])
  assert int(state.count) == 5


def test_clip_by_tensor_norm_is_dinos_per_tensor_clip():
  tx = optim.clip_by_tensor_norm(3.0, exclude=optim.exclude_by_name("probe"))
  grads = {"a": jnp.array([6.0, 8.0]), "b": jnp.array([0.3, 0.4]), "probe": {"kernel": jnp.array([60.0, 80.0])}}
  clipped, _ = tx.update(grads, tx.init(grads))
  np.testing.assert_allclose(clipped["a"], np.array([6.0, 8.0]) * 3.0 / (10.0 + 1e-6), rtol=1e-6)
  np.testing.assert_array_equal(clipped["b"], grads["b"])
  np.testing.assert_array_equal(clipped["probe"]["kernel"], grads["probe"]["kernel"])


@pytest.mark.parametrize("name", ["swav", "dino"])
def test_the_optimiser_freezes_only_the_prototypes_for_the_first_epochs(name):
  config = _config(name)  # freeze_prototypes_epochs 0.25: the first step of 4
  model = models.create_model(config, 10, axis_name=None)
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((2, 32, 32, 3)))["params"]
  tx, _ = optim.create_optimizer(config, num_examples=64)
  state = tx.init(params)
  grads = jax.tree.map(lambda p: jnp.ones_like(p) * 0.01, params)
  update = jax.jit(tx.update)
  for step in range(2):
    updates, state = update(grads, state, params)
    moved = {k: any(bool(jnp.any(u != 0)) for u in jax.tree.leaves(v)) for k, v in updates.items()}
    assert moved["encoder"] and moved["head"]
    assert moved["prototypes"] == (step >= 1), (step, moved)


# ----------------------------------------------------------------------------- SwAV


def test_swav_normalises_each_prototype():
  kernel = np.random.default_rng(1).normal(size=(4, 6))
  params = {"prototypes": {"kernel": jnp.asarray(kernel)}, "head": {"x": jnp.ones(2)}}
  out = swav.normalize_prototypes(params)
  np.testing.assert_allclose(out["prototypes"]["kernel"], _unit(kernel, axis=0), rtol=1e-6)
  assert out["head"] is params["head"]
  assert methods_lib.create(_config("swav"), total_steps=4, axis_name=None).project_params is swav.normalize_prototypes


def test_swav_queue_fills_from_its_start_epoch_and_joins_the_sinkhorn_once_full():
  """Global batch 4, queue 8, 2 steps per epoch, start at epoch 1: steps 2 and 3 fill it, step 4 uses it."""
  method = swav.make(queue_size=8, queue_start_epoch=1.0, global_batch=4, proj_dim=3, steps_per_epoch=2)
  rng = np.random.default_rng(2)
  kernel = jnp.asarray(_unit(rng.normal(size=(3, 5)), axis=0), jnp.float32)
  params = {"prototypes": {"kernel": kernel}}
  state = method.init_state(params, {}, None)
  for step in range(5):
    z = [jnp.asarray(rng.normal(size=(4, 3)), jnp.float32) for _ in range(2)]
    online = {"projection": tuple(z), "prototypes": tuple(jnp.asarray(_unit(np.asarray(x))) @ kernel for x in z)}
    value, metrics = method.loss(online, None, state, None, jnp.asarray(step))
    used = step == 4
    assert float(metrics["queue_used"]) == float(used), step
    queue = [state["queue"][i] @ kernel for i in range(2)] if used else None
    want = losses.swav_loss(list(online["prototypes"]), [], queue=queue)
    np.testing.assert_allclose(value, want, rtol=1e-6)
    before = np.asarray(state["queue"])
    state = method.update(state, params, None, None, online, None, jnp.asarray(step))
    if step < 2:
      np.testing.assert_array_equal(state["queue"], before)
      assert int(state["queue_filled"]) == 0
    else:
      rows = np.asarray(state["queue"])[:, (step - 2) % 2 * 4:][:, :4]
      np.testing.assert_allclose(rows, np.stack([_unit(np.asarray(x)) for x in z]), rtol=1e-6)
  assert int(state["queue_filled"]) == 8 and int(state["queue_ptr"]) == 4


def test_swav_queue_size_must_be_a_multiple_of_the_global_batch():
  with pytest.raises(ValueError, match="multiple of the global batch"):
    swav.make(queue_size=10, global_batch=4, proj_dim=3, steps_per_epoch=2)


@pytest.mark.parametrize("name", ["swav", "dino"])
def test_fewer_than_two_large_crops_is_an_error_naming_the_view_fields(name):
  config = _config(name, **{"augment.views": ({}, {"image_size": 16}, {"image_size": 16})})
  with pytest.raises(ValueError, match=r"config\.augment\.views"):
    methods_lib.create(config, total_steps=4, axis_name=None)


# ----------------------------------------------------------------------------- DINO


def test_dinos_teacher_temperature_warms_up_linearly_per_epoch():
  temp = lambda step, epochs: float(dino.teacher_temperature(jnp.asarray(step), warmup_temp=0.04, temp=0.07,
                                                             warmup_epochs=epochs, steps_per_epoch=10))
  # np.linspace(0.04, 0.07, 4) by epoch, then 0.07.
  for step, want in [(0, 0.04), (9, 0.04), (10, 0.05), (25, 0.06), (30, 0.07), (39, 0.07), (1000, 0.07)]:
    assert temp(step, 4) == pytest.approx(want, abs=1e-7), step
  assert temp(0, 0) == pytest.approx(0.07)  # no warmup: the final temperature from the start
  assert temp(0, 1) == pytest.approx(0.04) and temp(10, 1) == pytest.approx(0.07)


def test_dinos_loss_uses_the_scheduled_temperature_and_the_centre_moves_to_the_teacher_mean():
  method = dino.make(total_steps=100, steps_per_epoch=10, warmup_teacher_temp_epochs=4)
  rng = np.random.default_rng(3)
  crops = lambda n: tuple(jnp.asarray(rng.normal(size=(4, 6)), jnp.float32) for _ in range(n))
  teacher, student = crops(2), crops(2)
  center = jnp.asarray(rng.normal(size=(6,)), jnp.float32)
  state = {"center": center}
  value, metrics = method.loss({"prototypes": student}, {"prototypes": teacher}, state, None, jnp.asarray(10))
  assert float(metrics["teacher_temp"]) == pytest.approx(0.05)
  np.testing.assert_allclose(value, losses.dino_loss(teacher, student, center, teacher_temp=0.05), rtol=1e-6)
  # The centre's update, without the target's EMA (tested with the target in test_methods.py).
  new = losses.dino_center(center, teacher, momentum=0.9)
  np.testing.assert_allclose(new, 0.9 * center + 0.1 * np.mean(np.concatenate(teacher), axis=0), rtol=1e-6)


def test_dinos_bad_settings_are_errors():
  with pytest.raises(ValueError, match="teacher_temp"):
    dino.make(total_steps=10, steps_per_epoch=2, teacher_temp=0.0)
  with pytest.raises(ValueError, match="warmup_teacher_temp_epochs"):
    dino.make(total_steps=10, steps_per_epoch=2, warmup_teacher_temp_epochs=-1)
  with pytest.raises(ValueError, match="center_momentum"):
    dino.make(total_steps=10, steps_per_epoch=2, center_momentum=1.5)


@pytest.mark.slow
def test_a_bn_free_dino_vit_trains_saves_and_loads_for_evaluation_and_embedding(image_folder, tmp_path):
  """DINO's ViT has no BN anywhere: no batch_stats to save, and evaluate and embed load it all the same."""
  from contrastive_jax import embed, evaluate, train  # pylint: disable=g-import-not-at-top
  config = _config("dino", "vit_test", **{"num_steps": 2, "data.image_folder": str(image_folder)})
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["last_step"] == 2 and np.isfinite(summary["last_loss"])
  model, variables, step = evaluate.load_model(config, str(tmp_path), num_classes=4, image_size=32)
  assert step == 2 and variables["batch_stats"] == {} and "prototypes" in variables["params"]
  encode, _ = embed.load_encoder(str(tmp_path))
  features = encode(np.zeros((3, 32, 32, 3), np.uint8))
  assert features.shape == (3, 32) and np.all(np.isfinite(features))
