"""Tests for barlow_twins_loss and vicreg_loss: the redundancy-reduction losses.

Each is checked against a float64 NumPy model written from lightly's /
the paper's formula (np.cov, np.var; no call into our code), its gradient
against central differences of that model, and 8 devices against 1 in
values and gradients (embeddings, and a replicated layer's parameters under
shard_map and pmap). The batch statistics must be global: per-device
statistics (lightly's gather_distributed Barlow Twins, unsynchronised
VICReg) give another loss, which the 8-vs-1 tests would catch.
"""

import functools
import inspect

import chex
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from tolerances import REASSOC_RTOL

from loss_harness import AX, N_DEV, mesh, needs_devices, rand, rel_err

import contrastive_jax
from contrastive_jax import losses
from contrastive_jax.losses import barlow_twins_loss, vicreg_loss

# Non-default weights, so every term moves the total.
BARLOW_KW = {"lambda_": 0.05}
VICREG_KW = {"lambda_": 2.0, "mu": 3.0, "nu": 0.5, "eps": 1e-3}
F64_RTOL = 1e-12  # float64, same math in another order.


# ----------------------------------------------------------------------------
# float64 NumPy references.
# ----------------------------------------------------------------------------


def np_barlow(z1, z2, lambda_):
  """lightly BarlowTwinsLoss: F.batch_norm (biased var, eps 1e-5) per branch, c = zn1^T zn2 / N."""
  z1, z2 = np.asarray(z1, np.float64), np.asarray(z2, np.float64)
  n, d = z1.shape

  def bn(z):
    return (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)

  c = bn(z1).T @ bn(z2) / n
  on = sum((1.0 - c[i, i]) ** 2 for i in range(d))
  off = sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j)
  return on + lambda_ * off


def np_vicreg(z1, z2, lambda_=25.0, mu=25.0, nu=1.0, eps=1e-4):
  """lightly VICRegLoss: MSE, mean of the branches' variance hinges, sum of their covariance terms."""
  z1, z2 = np.asarray(z1, np.float64), np.asarray(z2, np.float64)
  d = z1.shape[1]

  def var_term(z):
    return np.mean(np.maximum(0.0, 1.0 - np.sqrt(z.var(0, ddof=1) + eps)))

  def cov_term(z):
    c = np.atleast_2d(np.cov(z, rowvar=False))  # Unbiased, mean-centred.
    return sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d

  inv = np.mean((z1 - z2) ** 2)
  return lambda_ * inv + mu * 0.5 * (var_term(z1) + var_term(z2)) + nu * (cov_term(z1) + cov_term(z2))


def np_per_device(np_loss, z1, z2, n_dev, **kw):
  """Per-device statistics: the mean over devices of each device's own loss."""
  return np.mean([np_loss(a, b, **kw) for a, b in zip(np.split(z1, n_dev), np.split(z2, n_dev))])


def np_barlow_lightly_gather(z1, z2, n_dev, lambda_):
  """lightly's gather_distributed: normalise each device's rows, all-reduce the mean of the c_d."""
  def bn(z):
    return (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)

  c = np.mean([bn(a).T @ bn(b) / len(a) for a, b in zip(np.split(z1, n_dev), np.split(z2, n_dev))], axis=0)
  return np.sum((1.0 - np.diag(c)) ** 2) + lambda_ * (np.sum(c ** 2) - np.sum(np.diag(c) ** 2))


LOSSES = {
    "barlow": (barlow_twins_loss, np_barlow, BARLOW_KW),
    "vicreg": (vicreg_loss, np_vicreg, VICREG_KW),
}


def _fd_grad(f, z, coords, h=1e-6):
  """Central differences of f at the given (row, col) coordinates of z."""
  out = []
  for i, j in coords:
    zp, zm = z.copy(), z.copy()
    zp[i, j] += h
    zm[i, j] -= h
    out.append((f(zp) - f(zm)) / (2 * h))
  return np.array(out)


@functools.lru_cache(maxsize=None)  # One compile per (loss, x64, shapes) for the session.
def _vg(name):
  fn, _, kw = LOSSES[name]
  return jax.jit(jax.value_and_grad(functools.partial(fn, **kw), argnums=(0, 1)))


# ----------------------------------------------------------------------------
# Single device: formula, gradients, dtypes.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("n,d", [(2, 1), (2, 3), (7, 5)])
def test_matches_numpy_formula_and_finite_differences_in_float64(name, n, d):
  _, np_loss, kw = LOSSES[name]
  z1 = 0.5 * rand(n * 10 + d, n, d, dtype=np.float64)  # std ~ 0.5: VICReg's hinge is active for some features.
  z2 = z1 + rand(n * 10 + d + 1, n, d, dtype=np.float64)
  if d > 1:
    z1[:, 0] = 1.5  # A constant feature: Barlow's zn is 0 there, VICReg's std is sqrt(eps).
  with jax.enable_x64(True):
    loss, (g1, g2) = _vg(name)(jnp.asarray(z1), jnp.asarray(z2))
    assert loss.dtype == jnp.float64 and loss.shape == ()
  ref = np_loss(z1, z2, **kw)
  np.testing.assert_allclose(float(loss), ref, rtol=F64_RTOL)
  coords = [(i % n, (3 * i + 1) % d) for i in range(4)]
  fd1 = _fd_grad(lambda z: np_loss(z, z2, **kw), z1, coords)
  fd2 = _fd_grad(lambda z: np_loss(z1, z, **kw), z2, coords)
  scale = max(np.max(np.abs(g1)), np.max(np.abs(g2)), 1e-3)
  for g, fd in ((g1, fd1), (g2, fd2)):
    np.testing.assert_allclose([g[i, j] for i, j in coords], fd, rtol=0, atol=1e-7 * scale)


@functools.lru_cache(maxsize=None)
def _default(name):
  return jax.jit(LOSSES[name][0])  # Default weights: lightly's.


@pytest.mark.parametrize("name", LOSSES)
def test_float32_and_bfloat16_with_default_weights(name):
  np_loss = LOSSES[name][1]
  ref_kw = {"lambda_": 5e-3} if name == "barlow" else {}  # np_vicreg's defaults are lightly's.
  z1, z2 = 0.5 * rand(40, 16, 8), 0.5 * rand(41, 16, 8)
  loss = _default(name)(z1, z2)
  chex.assert_type(loss, jnp.float32)
  np.testing.assert_allclose(loss, np_loss(z1, z2, **ref_kw), rtol=REASSOC_RTOL)
  b1, b2 = jnp.asarray(z1, jnp.bfloat16), jnp.asarray(z2, jnp.bfloat16)
  lb = _default(name)(b1, b2)
  chex.assert_type(lb, jnp.float32)  # Statistics in float32, not bf16.
  np.testing.assert_allclose(
      lb, np_loss(np.asarray(b1, np.float64), np.asarray(b2, np.float64), **ref_kw), rtol=REASSOC_RTOL)


def test_defaults_are_the_papers_and_lightlys():
  assert inspect.signature(barlow_twins_loss).parameters["lambda_"].default == 5e-3
  want = {"lambda_": 25.0, "mu": 25.0, "nu": 1.0, "eps": 1e-4}
  assert {k: inspect.signature(vicreg_loss).parameters[k].default for k in want} == want


# ----------------------------------------------------------------------------
# 8 devices = 1 device, with global statistics.
# ----------------------------------------------------------------------------


def _embed(w, x1, x2):
  """Two "views" through one replicated linear layer."""
  return x1 @ w, jnp.tanh(x2) @ w


@functools.lru_cache(maxsize=None)
def _sharded_vg(name):
  """grad through shard_map of pmean(local loss), w.r.t. the (sharded) embeddings."""
  fn, _, kw = LOSSES[name]

  def local(a, b):
    return jax.lax.pmean(fn(a, b, axis_name=AX, **kw), AX)

  return jax.jit(jax.value_and_grad(
      jax.shard_map(local, mesh=mesh(), in_specs=(P(AX), P(AX)), out_specs=P()), argnums=(0, 1)))


@functools.lru_cache(maxsize=None)
def _param_grads(name):
  """Single-device, shard_map and pmap gradients w.r.t. a replicated layer's weights."""
  fn, _, kw = LOSSES[name]
  loss = functools.partial(fn, **kw)

  def single(w, x1, x2):
    return jax.grad(lambda w: loss(*_embed(w, x1, x2)))(w)

  def sm_step(w, x1, x2):  # shard_map: grad of the pmean; JAX psums the replicated w's gradient.
    return jax.grad(lambda w: jax.lax.pmean(loss(*_embed(w, x1, x2), axis_name=AX), AX))(w)

  def pmap_step(w, x1, x2):  # pmap: grad of the local loss, then pmean of the gradients.
    return jax.lax.pmean(jax.grad(lambda w: loss(*_embed(w, x1, x2), axis_name="i"))(w), "i")

  sm = jax.jit(jax.shard_map(sm_step, mesh=mesh(), in_specs=(P(), P(AX), P(AX)), out_specs=P()))
  pm = jax.pmap(pmap_step, axis_name="i", in_axes=(None, 0, 0), devices=jax.devices()[:N_DEV])
  return jax.jit(single), sm, pm


# b_local = 1: one row per device is fine, only the global batch (8) needs N >= 2 (and VICReg's
# unbiased variance divides by the global N - 1 = 7, not by a local 0).
@pytest.mark.parametrize("name,b_local", [("barlow", 2), ("vicreg", 2), ("vicreg", 1)])
def test_8_devices_equal_1_device_in_float64(name, b_local):
  needs_devices()
  _, np_loss, kw = LOSSES[name]
  z1 = 0.5 * rand(50 + b_local, N_DEV * b_local, 4, dtype=np.float64)
  z2 = z1 + 0.5 * rand(60 + b_local, N_DEV * b_local, 4, dtype=np.float64)
  with jax.enable_x64(True):
    loss, grads = _sharded_vg(name)(jnp.asarray(z1), jnp.asarray(z2))
    ref, ref_grads = _vg(name)(jnp.asarray(z1), jnp.asarray(z2))
    assert loss.dtype == jnp.float64
  np.testing.assert_allclose(float(loss), float(ref), rtol=F64_RTOL)
  np.testing.assert_allclose(float(loss), np_loss(z1, z2, **kw), rtol=F64_RTOL)
  # No factor of axis size (or its inverse) anywhere in the backward pass.
  for g, r in zip(grads, ref_grads):
    assert rel_err(g, r) < 1e-12


@pytest.mark.parametrize("name", LOSSES)
def test_replicated_parameter_gradients_8_devices_equal_1_device(name):
  needs_devices()
  x1, x2 = rand(70, N_DEV * 2, 6, dtype=np.float64), rand(71, N_DEV * 2, 6, dtype=np.float64)
  w = 0.5 * rand(72, 6, 4, dtype=np.float64)
  single, sm, pm = _param_grads(name)
  with jax.enable_x64(True):
    ref = single(w, x1, x2)
    g_sm = sm(w, x1, x2)
    g_pm = pm(w, x1.reshape(N_DEV, 2, -1), x2.reshape(N_DEV, 2, -1))
  assert np.max(np.abs(ref)) > 1e-2
  assert rel_err(g_sm, ref) < 1e-12
  assert rel_err(g_pm[0], ref) < 1e-12


@pytest.mark.parametrize("name,per_device", [
    ("barlow", lambda z1, z2: np_barlow_lightly_gather(z1, z2, N_DEV, **BARLOW_KW)),
    ("vicreg", lambda z1, z2: np_per_device(np_vicreg, z1, z2, N_DEV, **VICREG_KW)),
], ids=["barlow-lightly-gather", "vicreg-per-device"])
def test_per_device_statistics_give_another_loss(name, per_device):
  """Per-device normalisation / variance / covariance is not the global loss: the 8-vs-1 test catches it."""
  needs_devices()
  _, np_loss, kw = LOSSES[name]
  z1 = 0.5 * rand(52, N_DEV * 2, 4, dtype=np.float64)  # The data of the b_local = 2 test above.
  z2 = z1 + 0.5 * rand(62, N_DEV * 2, 4, dtype=np.float64)
  with jax.enable_x64(True):
    ours = float(_sharded_vg(name)(jnp.asarray(z1), jnp.asarray(z2))[0])
  np.testing.assert_allclose(ours, np_loss(z1, z2, **kw), rtol=F64_RTOL)
  other = per_device(z1, z2)
  assert abs(other - ours) > 0.05 * abs(ours), (other, ours)


# ----------------------------------------------------------------------------
# Exports and bad input.
# ----------------------------------------------------------------------------


def test_exported():
  for name in ("barlow_twins_loss", "vicreg_loss"):
    assert name in losses.__all__ and name in contrastive_jax.__all__
    assert getattr(contrastive_jax, name) is getattr(losses, name)


def _sds(shape, dtype=jnp.float32):
  return jax.ShapeDtypeStruct(shape, dtype)


BAD = [
    ({}, _sds((4, 3)), _sds((4, 2)), r"same shape \[B, D\]; got \(4, 3\) and \(4, 2\)"),
    ({}, _sds((4, 3, 2)), _sds((4, 3, 2)), r"rank 2 .* got rank 3"),
    ({}, _sds((4,)), _sds((4,)), r"rank 2 .* got rank 1"),
    ({}, _sds((4, 3), jnp.int32), _sds((4, 3), jnp.int32), r"floating-point"),
    ({}, _sds((1, 3)), _sds((1, 3)), r"global batch of N >= 2 rows.*got N = 1"),
    ({}, _sds((0, 3)), _sds((0, 3)), r"empty batch"),
    ({"lambda_": -1.0}, _sds((4, 3)), _sds((4, 3)), r"lambda_ must be >= 0; got -1.0"),
    ({"lambda_": float("nan")}, _sds((4, 3)), _sds((4, 3)), r"lambda_ must be >= 0; got nan"),
]
VICREG_BAD = [
    ({"mu": -0.5}, r"mu must be >= 0"),
    ({"nu": -0.5}, r"nu must be >= 0"),
    ({"eps": -1e-4}, r"eps must be >= 0"),
]


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("kw,z1,z2,match", BAD)
def test_bad_input_raises(name, kw, z1, z2, match):
  fn = LOSSES[name][0]
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(functools.partial(fn, **kw), z1, z2)  # Trace time, nothing runs.


@pytest.mark.parametrize("kw,match", VICREG_BAD)
def test_vicreg_bad_weights_raise(kw, match):
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(functools.partial(vicreg_loss, **kw), _sds((4, 3)), _sds((4, 3)))


@pytest.mark.parametrize("name", LOSSES)
def test_global_batch_size_is_checked_under_axis_name(name):
  needs_devices()
  fn = LOSSES[name][0]

  def sharded(devices):
    m = jax.sharding.Mesh(np.array(jax.devices()[:devices]), (AX,))
    return jax.shard_map(lambda a, b: fn(a, b, axis_name=AX), mesh=m, in_specs=(P(AX), P(AX)), out_specs=P())

  # One row on each of 8 devices is a batch of 8; one row on one device is not.
  assert jax.eval_shape(sharded(N_DEV), _sds((N_DEV, 3)), _sds((N_DEV, 3))).shape == ()
  with pytest.raises(ValueError, match=r"got N = 1 \(1 local rows x 1 devices on axis 'data'\)"):
    jax.eval_shape(sharded(1), _sds((1, 3)), _sds((1, 3)))
