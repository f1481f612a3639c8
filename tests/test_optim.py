"""Tests for contrastive_jax.optim: LARS masks and updates, schedules, wrappers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tolerances import ELEMENTWISE_RTOL, REASSOC_RTOL

from contrastive_jax import optim


def _params():
  rng = np.random.default_rng(0)
  f = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  return {
      "encoder": {"conv1": {"kernel": f(3, 3, 2, 4)}, "bn1": {"scale": f(4), "bias": f(4)}},
      "head": {"dense0": {"kernel": f(4, 3)}, "bn0": {"scale": f(3)}},
      "probe": {"kernel": f(4, 5), "bias": f(5)},
  }


def _grads(seed: int = 1):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), _params())


def test_masks():
  params = _params()
  assert optim.is_1d_mask(params) == {
      "encoder": {"conv1": {"kernel": False}, "bn1": {"scale": True, "bias": True}},
      "head": {"dense0": {"kernel": False}, "bn0": {"scale": True}},
      "probe": {"kernel": False, "bias": True},
  }
  assert optim.decay_mask(params) == {
      "encoder": {"conv1": {"kernel": True}, "bn1": {"scale": False, "bias": False}},
      "head": {"dense0": {"kernel": True}, "bn0": {"scale": False}},
      "probe": {"kernel": True, "bias": False},
  }
  masked = optim.decay_mask(params, optim.exclude_by_name("probe"))
  assert masked["probe"] == {"kernel": False, "bias": False}
  assert masked["encoder"]["conv1"]["kernel"] and masked["head"]["dense0"]["kernel"]
  seen = []
  optim.decay_mask(params, lambda path, p: seen.append(path) or False)
  assert ("encoder", "conv1", "kernel") in seen and ("probe", "kernel") in seen
  assert ("probe", "bias") not in seen  # 1-D leaves are excluded before `exclude` is asked


def _lars_reference(w, g, lr, wd, eta, adapt):
  """Hand computation of LARS's first step (zero momentum) in numpy."""
  w, g = np.asarray(w, np.float64), np.asarray(g, np.float64)
  if not adapt:
    return -lr * g
  u = g + wd * w
  w_norm, u_norm = np.linalg.norm(w), np.linalg.norm(u)
  ratio = eta * w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
  return -lr * ratio * u


@pytest.mark.parametrize("exclude_probe", [False, True])
def test_lars_first_update_matches_hand_computation(exclude_probe):
  lr, wd, eta = 0.7, 1e-2, 1e-3
  params, grads = _params(), _grads()
  exclude = optim.exclude_by_name("probe") if exclude_probe else None
  tx = optim.lars(lr, weight_decay=wd, trust_coefficient=eta, exclude=exclude)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  adapt = optim.decay_mask(params, exclude)
  expected = jax.tree.map(lambda w, g, a: _lars_reference(w, g, lr, wd, eta, a), params, grads, adapt)
  jax.tree.map(lambda u, e: np.testing.assert_allclose(u, e, rtol=1e-5, atol=1e-8), updates, expected)
  # Spot checks: the kernel is scaled by eta * ||w|| / ||g + wd w|| (tiny), 1-D params by lr only.
  np.testing.assert_allclose(updates["encoder"]["bn1"]["scale"], -lr * grads["encoder"]["bn1"]["scale"], rtol=ELEMENTWISE_RTOL)
  assert np.abs(updates["encoder"]["conv1"]["kernel"]).max() < 1e-2 * lr
  probe_step = -lr * grads["probe"]["kernel"]
  assert np.allclose(updates["probe"]["kernel"], probe_step, rtol=ELEMENTWISE_RTOL) == exclude_probe


def test_lars_momentum_schedule_and_zero_norm():
  schedule = lambda step: 0.1 * (step + 1.0)
  params, g1, g2 = _params(), _grads(1), _grads(2)
  params["head"]["dense0"]["kernel"] = jnp.zeros((4, 3))  # ||w|| = 0: trust ratio falls back to 1
  tx = optim.lars(schedule, weight_decay=1e-4, momentum=0.9)
  state = tx.init(params)
  u1, state = tx.update(g1, state, params)
  u2, state = tx.update(g2, state, params)
  b1, b2 = g1["encoder"]["bn1"]["bias"], g2["encoder"]["bn1"]["bias"]
  # Classic momentum on lr-scaled steps: v2 = 0.9 * lr0 * g1 + lr1 * g2.
  np.testing.assert_allclose(u1["encoder"]["bn1"]["bias"], -0.1 * b1, rtol=ELEMENTWISE_RTOL)
  np.testing.assert_allclose(u2["encoder"]["bn1"]["bias"], -(0.9 * 0.1 * b1 + 0.2 * b2), rtol=ELEMENTWISE_RTOL)
  np.testing.assert_allclose(u1["head"]["dense0"]["kernel"], -0.1 * g1["head"]["dense0"]["kernel"], rtol=ELEMENTWISE_RTOL)


def test_lars_differs_from_unmasked_optax():
  params, grads = _params(), _grads()
  ours, _ = optim.lars(1.0, weight_decay=1e-2).update(grads, optim.lars(1.0, weight_decay=1e-2).init(params), params)
  plain_tx = optax.lars(1.0, weight_decay=1e-2)
  plain, _ = plain_tx.update(grads, plain_tx.init(params), params)
  np.testing.assert_allclose(ours["encoder"]["conv1"]["kernel"], plain["encoder"]["conv1"]["kernel"], rtol=REASSOC_RTOL)
  assert not np.allclose(ours["encoder"]["bn1"]["scale"], plain["encoder"]["bn1"]["scale"])


def test_warmup_cosine_schedule():
  peak, total, warmup = 2.0, 1000, 100
  s = optim.warmup_cosine_schedule(peak, total, warmup)
  assert float(s(0)) == 0.0
  np.testing.assert_allclose(float(s(50)), peak / 2, rtol=ELEMENTWISE_RTOL)
  np.testing.assert_allclose(float(s(warmup)), peak, rtol=ELEMENTWISE_RTOL)
  np.testing.assert_allclose(float(s(warmup + (total - warmup) // 2)), peak / 2, rtol=1e-5)
  np.testing.assert_allclose(float(s(total)), 0.0, atol=1e-7)
  np.testing.assert_allclose(float(s(total + 10)), 0.0, atol=1e-7)
  assert 0.0 < float(s(total - 1)) < 1e-4 * peak
  values = np.asarray(jax.vmap(s)(jnp.arange(warmup, total + 1)))
  assert np.all(np.diff(values) <= 1e-7)  # monotone decay after warmup
  no_warmup = optim.warmup_cosine_schedule(peak, total, 0)
  np.testing.assert_allclose(float(no_warmup(0)), peak, rtol=ELEMENTWISE_RTOL)
  with pytest.raises(ValueError, match="warmup_steps"):
    optim.warmup_cosine_schedule(peak, 100, 100)


def test_scale_learning_rate():
  assert optim.scale_learning_rate(0.3, 4096) == pytest.approx(4.8)
  assert optim.scale_learning_rate(1.0, 512, "linear") == pytest.approx(2.0)  # SimCLR CIFAR-10
  assert optim.scale_learning_rate(0.075, 4096, "sqrt") == pytest.approx(4.8)
  assert optim.scale_learning_rate(0.1, 100, "sqrt") == pytest.approx(0.1 * math.sqrt(100))
  with pytest.raises(ValueError, match="linear"):
    optim.scale_learning_rate(0.3, 256, "cubic")


def test_sgd_nesterov_first_update():
  lr, wd, m = 0.1, 1e-3, 0.9
  params, grads = _params(), _grads()
  tx = optim.sgd_nesterov(lr, momentum=m, weight_decay=wd)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Nesterov from zero momentum: -lr * (1 + m) * (g + wd * w); no decay on 1-D params.
  np.testing.assert_allclose(updates["probe"]["kernel"],
                             -lr * (1 + m) * (grads["probe"]["kernel"] + wd * params["probe"]["kernel"]), rtol=ELEMENTWISE_RTOL)
  np.testing.assert_allclose(updates["probe"]["bias"], -lr * (1 + m) * grads["probe"]["bias"], rtol=ELEMENTWISE_RTOL)


def test_adamw_first_update():
  lr, wd = 1e-2, 0.5
  params, grads = _params(), _grads()
  tx = optim.adamw(lr, weight_decay=wd)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Bias-corrected first Adam step is g / (|g| + eps) ~ sign(g); decoupled decay on kernels only.
  k, gk = params["probe"]["kernel"], grads["probe"]["kernel"]
  np.testing.assert_allclose(updates["probe"]["kernel"], -lr * (gk / (np.abs(gk) + 1e-8) + wd * k), rtol=1e-5, atol=1e-6)
  gb = grads["probe"]["bias"]
  np.testing.assert_allclose(updates["probe"]["bias"], -lr * gb / (np.abs(gb) + 1e-8), rtol=1e-5)
