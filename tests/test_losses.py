"""Tests for contrastive_jax.losses against an independent float64 NumPy model.

The NumPy reference writes the loss and its analytic gradient directly (no
autodiff, no finite differences), so it checks the JAX dense path, the chunked
custom_vjp path and the cross-device gather independently.
"""

import functools

from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from tolerances import REASSOC_RTOL

from loss_harness import AX, N_DEV, mesh, needs_devices, rand, rel_err

from contrastive_jax import losses
from contrastive_jax.losses import info_nce, nt_xent, nt_xent_with_metrics



# ----------------------------------------------------------------------------
# float64 NumPy reference.
# ----------------------------------------------------------------------------


def _np_normalize(x):
  """Returns (unit rows, row norms) in float64."""
  x = np.asarray(x, np.float64)
  norm = np.linalg.norm(x, axis=1, keepdims=True)
  return x / norm, norm


def _np_normalize_vjp(xn, norm, g):
  """Cotangent of x given the cotangent g of xn = x / |x|."""
  return (g - xn * np.sum(xn * g, axis=1, keepdims=True)) / norm


def _np_core(a, c, pos, self_idx, t):
  """Mean CE over anchors a [N, D] vs columns c [M, D]; value, dA, dC."""
  s = a @ c.T / t
  n = s.shape[0]
  mask = np.zeros_like(s, bool)
  if self_idx is not None:
    mask[np.arange(n), self_idx] = True
  s = np.where(mask, -np.inf, s)
  m = s.max(axis=1, keepdims=True)
  e = np.exp(s - m)
  lse = np.log(e.sum(axis=1)) + m[:, 0]
  loss = np.mean(lse - s[np.arange(n), pos])
  probs = e / e.sum(axis=1, keepdims=True)
  y = np.zeros_like(s)
  y[np.arange(n), pos] = 1.0
  g = (probs - y) / n  # dL/ds.
  return loss, g @ c / t, g.T @ a / t, s, probs


def np_nt_xent(z1, z2, t):
  """NT-Xent value and gradients (float64). Returns loss, dz1, dz2, extras."""
  b = z1.shape[0]
  z = np.concatenate([z1, z2]).astype(np.float64)
  zn, norm = _np_normalize(z)
  pos = np.concatenate([np.arange(b) + b, np.arange(b)])
  loss, da, dc, s, probs = _np_core(zn, zn, pos, np.arange(2 * b), t)
  dz = _np_normalize_vjp(zn, norm, da + dc)
  return loss, dz[:b], dz[b:], dict(zn=zn, pos=pos, logits=s, probs=probs)


def np_info_nce(q, k, t):
  """InfoNCE value and gradients (float64)."""
  qn, qnorm = _np_normalize(q)
  kn, knorm = _np_normalize(k)
  loss, dq, dk, _, _ = _np_core(qn, kn, np.arange(q.shape[0]), None, t)
  return loss, _np_normalize_vjp(qn, qnorm, dq), _np_normalize_vjp(kn, knorm, dk)


def np_metrics(z1, z2, t):
  _, _, _, ex = np_nt_xent(z1, z2, t)
  zn, pos, s, probs = ex["zn"], ex["pos"], ex["logits"], ex["probs"]
  n = zn.shape[0]
  sim = zn @ zn.T
  pos_sim = sim[np.arange(n), pos]
  neg = np.ones_like(sim, bool)
  neg[np.arange(n), pos] = False
  neg[np.arange(n), np.arange(n)] = False
  neg_sim = np.sum(np.where(neg, sim, 0.0), axis=1) / neg.sum(axis=1)
  neg_max = np.max(np.where(neg, s, -np.inf), axis=1)
  acc = np.mean(s[np.arange(n), pos] > neg_max)
  plogp = np.where(probs > 0, probs * np.log(np.where(probs > 0, probs, 1.0)), 0.0)
  entropy = np.mean(-plogp.sum(axis=1))
  return dict(contrastive_acc=acc, pos_sim=pos_sim.mean(), neg_sim=neg_sim.mean(),
              logits_entropy=entropy)





# ----------------------------------------------------------------------------
# Values and gradients vs NumPy (jit and no-jit).
# ----------------------------------------------------------------------------


class LossVsNumpyTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(
      dict(b=6, d=5, t=0.1, chunk=None),
      dict(b=5, d=3, t=0.5, chunk=4),  # 2B = 10: ragged last row and column tile.
      dict(b=1, d=4, t=0.1, chunk=1),  # One negative-free anchor pair.
  )
  def test_nt_xent(self, b, d, t, chunk):
    z1, z2 = rand(0, b, d), rand(1, b, d)
    fn = self.variant(
        jax.value_and_grad(
            functools.partial(nt_xent, temperature=t, chunk_size=chunk), argnums=(0, 1)))
    loss, (g1, g2) = fn(z1, z2)
    chex.assert_shape(loss, ())
    chex.assert_type(loss, jnp.float32)
    chex.assert_shape((g1, g2), (b, d))
    ref, r1, r2, _ = np_nt_xent(z1, z2, t)
    np.testing.assert_allclose(loss, ref, rtol=1e-5, atol=1e-6)
    if b == 1:  # No negatives: loss and gradient are exactly 0 (up to rounding).
      np.testing.assert_allclose(np.concatenate([g1, g2]), 0.0, atol=1e-5)
    else:
      assert rel_err(g1, r1) < 1e-5 and rel_err(g2, r2) < 1e-5

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(
      dict(b=7, d=4, t=0.07, chunk=None),
      dict(b=7, d=4, t=0.07, chunk=3),
  )
  def test_info_nce(self, b, d, t, chunk):
    q, k = rand(2, b, d), rand(3, b, d)
    fn = self.variant(
        jax.value_and_grad(
            functools.partial(info_nce, temperature=t, chunk_size=chunk), argnums=(0, 1)))
    loss, (gq, gk) = fn(q, k)
    chex.assert_shape(loss, ())
    chex.assert_type(loss, jnp.float32)
    ref, rq, rk = np_info_nce(q, k, t)
    np.testing.assert_allclose(loss, ref, rtol=1e-5)
    assert rel_err(gq, rq) < 1e-5 and rel_err(gk, rk) < 1e-5

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(None, 5)
  def test_bfloat16_inputs(self, chunk):
    z1, z2 = rand(4, 8, 16), rand(5, 8, 16)
    b1, b2 = jnp.asarray(z1, jnp.bfloat16), jnp.asarray(z2, jnp.bfloat16)
    fn = self.variant(
        jax.value_and_grad(functools.partial(nt_xent, chunk_size=chunk), argnums=(0, 1)))
    loss, (g1, g2) = fn(b1, b2)
    chex.assert_shape(loss, ())
    chex.assert_type(loss, jnp.float32)  # Softmax / lse in float32.
    chex.assert_type((g1, g2), jnp.bfloat16)
    # Same numbers as the float32 loss of the bf16-rounded embeddings.
    ref, _, _, _ = np_nt_xent(np.asarray(b1, np.float32), np.asarray(b2, np.float32), 0.1)
    np.testing.assert_allclose(loss, ref, rtol=1e-5)
    chex.assert_tree_all_finite((g1, g2))


# ----------------------------------------------------------------------------
# Chunked == dense.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("b,chunk", [(5, 3), (8, 4), (6, 100)])
def test_chunked_matches_dense(b, chunk):
  z1, z2 = rand(10, b, 6), rand(11, b, 6)

  def run(c):
    return jax.jit(jax.value_and_grad(
        functools.partial(nt_xent, temperature=0.2, chunk_size=c), argnums=(0, 1)))(z1, z2)

  (ld, gd), (lc, gc) = run(None), run(chunk)
  np.testing.assert_allclose(lc, ld, rtol=REASSOC_RTOL)
  for x, y in zip(gc, gd):
    assert rel_err(x, y) < 1e-5


@pytest.mark.parametrize("temperature", [0.026, 0.02])
def test_symmetric_fixed_shift_path_at_its_temperature_limit(temperature):
  # Single-device chunked NT-Xent shifts every logit by 1/T instead of a
  # running max when T >= 0.025 (else it takes the online path). Antipodal
  # views put logits at -1/T, the worst case for that shift.
  z1 = rand(16, 6, 5)
  z2 = -z1
  fn = functools.partial(nt_xent, temperature=temperature)
  ref, r1, r2, _ = np_nt_xent(z1, z2, temperature)
  loss, (g1, g2) = jax.jit(jax.value_and_grad(
      functools.partial(fn, chunk_size=4), argnums=(0, 1)))(z1, z2)
  chex.assert_tree_all_finite((loss, g1, g2))
  np.testing.assert_allclose(loss, ref, rtol=1e-5)
  assert rel_err(g1, r1) < 1e-4 and rel_err(g2, r2) < 1e-4


@pytest.mark.parametrize("chunk", [None, 3])
def test_metrics_vs_numpy(chunk):
  # Correlated views so that some (not all) anchors are correct.
  z1 = rand(12, 9, 4)
  z2 = z1 + 0.8 * rand(13, 9, 4)
  loss, metrics = jax.jit(functools.partial(
      nt_xent_with_metrics, temperature=0.3, chunk_size=chunk))(z1, z2)
  np.testing.assert_allclose(
      loss, jax.jit(functools.partial(nt_xent, temperature=0.3))(z1, z2), rtol=REASSOC_RTOL)
  ref = np_metrics(z1, z2, 0.3)
  assert 0.0 < ref["contrastive_acc"] < 1.0
  assert set(ref) <= set(metrics)
  for k, v in ref.items():
    chex.assert_shape(metrics[k], ())
    np.testing.assert_allclose(metrics[k], v, rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("chunk", [None, 2])
def test_metrics_separated_pairs(chunk):
  # Pairs along distinct axes, both views identical: every positive wins.
  z = 3.0 * np.eye(6, 8, dtype=np.float32)
  _, m = jax.jit(functools.partial(nt_xent_with_metrics, chunk_size=chunk))(z, z)
  assert float(m["contrastive_acc"]) == 1.0
  np.testing.assert_allclose(m["pos_sim"], 1.0, rtol=REASSOC_RTOL)
  np.testing.assert_allclose(m["neg_sim"], 0.0, atol=1e-6)


def test_metrics_have_no_gradient():
  z1, z2 = rand(14, 4, 3), rand(15, 4, 3)
  g = jax.jit(jax.grad(lambda a: sum(nt_xent_with_metrics(a, z2, chunk_size=2)[1].values())))(z1)
  np.testing.assert_array_equal(g, 0.0)


# ----------------------------------------------------------------------------
# Invariances and numerics.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [None, 3])
def test_invariances(chunk):
  z1, z2 = rand(20, 7, 5), rand(21, 7, 5)
  f = jax.jit(functools.partial(nt_xent, temperature=0.3, chunk_size=chunk))
  base = f(z1, z2)
  perm = np.random.RandomState(0).permutation(7)
  np.testing.assert_allclose(f(z1[perm], z2[perm]), base, rtol=REASSOC_RTOL)
  np.testing.assert_allclose(f(4.5 * z1, 4.5 * z2), base, rtol=REASSOC_RTOL)
  np.testing.assert_allclose(f(z2, z1), base, rtol=REASSOC_RTOL)


@pytest.mark.parametrize("chunk", [None, 4])
def test_low_temperature_is_stable(chunk):
  # Large, axis-aligned embeddings at T = 0.01 give logits of 100 and 0.
  b, d = 8, 16
  z1 = 1e4 * np.eye(b, d, dtype=np.float32)
  z2 = z1.copy()
  z2[:, -1] = 1e4  # Positives not identical, so gradients are non-trivial.
  fn = jax.jit(jax.value_and_grad(
      functools.partial(nt_xent, temperature=0.01, chunk_size=chunk), argnums=(0, 1)))
  loss, grads = fn(z1, z2)
  chex.assert_tree_all_finite((loss, grads))
  ref, r1, r2, _ = np_nt_xent(z1, z2, 0.01)
  np.testing.assert_allclose(loss, ref, rtol=1e-4, atol=1e-6)
  # Random inputs too, at high logit range.
  z1, z2 = rand(22, 8, 16), rand(23, 8, 16)
  loss, (g1, g2) = fn(z1, z2)
  ref, r1, r2, _ = np_nt_xent(z1, z2, 0.01)
  np.testing.assert_allclose(loss, ref, rtol=1e-5)
  assert rel_err(g1, r1) < 1e-4 and rel_err(g2, r2) < 1e-4


# ----------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,z1_shape,z2_shape,match", [
    ({}, (4, 3), (5, 3), r"same shape .*\(4, 3\) and \(5, 3\)"),
    ({}, (4, 3, 2), (4, 3, 2), r"rank 2 .*got rank 3"),
    ({}, (4,), (4,), r"rank 2 .*got rank 1"),
    ({}, (0, 3), (0, 3), r"empty batch"),
    ({"temperature": 0.0}, (4, 3), (4, 3), r"temperature must be > 0; got 0.0"),
    ({"temperature": -1.0}, (4, 3), (4, 3), r"temperature must be > 0; got -1.0"),
    ({"chunk_size": 0}, (4, 3), (4, 3), r"chunk_size must be None or a positive int; got 0"),
    ({"chunk_size": -2}, (4, 3), (4, 3), r"chunk_size .* got -2"),
])
@pytest.mark.parametrize("fn", ["nt_xent", "nt_xent_with_metrics", "info_nce"])
def test_bad_input_raises(fn, kwargs, z1_shape, z2_shape, match):
  kwargs = dict(kwargs)
  if fn == "info_nce":
    kwargs.setdefault("temperature", 0.1)
  f = getattr(losses, fn)
  with pytest.raises(ValueError, match=match):
    jax.jit(functools.partial(f, **kwargs)).trace(
        jnp.zeros(z1_shape), jnp.zeros(z2_shape))  # Trace time, nothing runs.


def test_integer_input_raises():
  with pytest.raises(ValueError, match="floating-point"):
    nt_xent(jnp.ones((2, 3), jnp.int32), jnp.ones((2, 3), jnp.int32))


def test_info_nce_feature_size_mismatch_raises():
  with pytest.raises(ValueError, match=r"queries and keys must have the same shape"):
    info_nce(jnp.ones((2, 3)), jnp.ones((2, 4)), temperature=0.1)


# ----------------------------------------------------------------------------
# Distributed contract on 8 host devices.
# ----------------------------------------------------------------------------



@pytest.mark.parametrize("loss_name,chunk", [
    ("nt_xent", None), ("nt_xent", 3), ("info_nce", None), ("info_nce", 5)])
def test_shard_map_matches_single_device(loss_name, chunk):
  needs_devices()
  b_local, d = 3, 5  # Global batch 24; chunk 3 / 5 leave ragged tiles.
  z1, z2 = rand(30, N_DEV * b_local, d), rand(31, N_DEV * b_local, d)
  f = functools.partial(getattr(losses, loss_name), temperature=0.2, chunk_size=chunk)

  def local(a, b):
    return jax.lax.pmean(f(a, b, axis_name=AX), AX)

  dist = jax.shard_map(local, mesh=mesh(), in_specs=(P(AX), P(AX)), out_specs=P())
  loss, grads = jax.jit(jax.value_and_grad(dist, argnums=(0, 1)))(z1, z2)
  ref_loss, ref_grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(z1, z2)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  for g, r in zip(grads, ref_grads):
    assert rel_err(g, r) < 1e-5
  # And against the float64 reference.
  np_ref = (np_nt_xent if loss_name == "nt_xent" else np_info_nce)(z1, z2, 0.2)
  np.testing.assert_allclose(loss, np_ref[0], rtol=1e-5)
  assert rel_err(grads[0], np_ref[1]) < 1e-5


@pytest.mark.parametrize("loss_name,chunk", [("nt_xent", None), ("nt_xent", 4), ("info_nce", 2)])
def test_pmap_matches_single_device(loss_name, chunk):
  needs_devices()
  b_local, d = 2, 4
  z1, z2 = rand(32, N_DEV * b_local, d), rand(33, N_DEV * b_local, d)
  f = functools.partial(getattr(losses, loss_name), temperature=0.5, chunk_size=chunk)
  pm = jax.pmap(lambda a, b: jax.lax.pmean(f(a, b, axis_name="i"), "i"), axis_name="i",
                devices=jax.devices()[:N_DEV])

  def dist(a, b):
    out = pm(a.reshape(N_DEV, b_local, d), b.reshape(N_DEV, b_local, d))
    return out[0]  # pmean: every device holds the same value.

  loss, grads = jax.jit(jax.value_and_grad(dist, argnums=(0, 1)))(z1, z2)
  ref_loss, ref_grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(z1, z2)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  for g, r in zip(grads, ref_grads):
    assert rel_err(g, r) < 1e-5


def test_data_parallel_param_gradient():
  """Per-device parameter gradients reproduce the single-device gradient.

  shard_map (varying-axis types): grad of the pmean of the local losses.
  pmap (no such types): grad of the local loss, then pmean of the gradients.
  """
  needs_devices()
  x = rand(34, N_DEV * 2, 6)
  w = rand(35, 6, 4)

  def embed(w, x):  # Two "views" from one linear projection.
    return x @ w, jnp.tanh(x) @ w

  def single(w):
    return nt_xent(*embed(w, x), chunk_size=3)

  def sm_step(w, xl):
    return jax.grad(
        lambda w: jax.lax.pmean(nt_xent(*embed(w, xl), axis_name=AX, chunk_size=3), AX))(w)

  def pmap_step(w, xl):
    g = jax.grad(lambda w: nt_xent(*embed(w, xl), axis_name="i", chunk_size=3))(w)
    return jax.lax.pmean(g, "i")

  ref = jax.jit(jax.grad(single))(w)
  g_sm = jax.jit(jax.shard_map(sm_step, mesh=mesh(), in_specs=(P(), P(AX)), out_specs=P()))(w, x)
  assert rel_err(g_sm, ref) < 1e-5
  g_pm = jax.pmap(pmap_step, axis_name="i", in_axes=(None, 0), devices=jax.devices()[:N_DEV])(
      w, x.reshape(N_DEV, -1, x.shape[-1]))
  assert rel_err(g_pm[0], ref) < 1e-5


@pytest.mark.parametrize("chunk", [None, 3])
def test_shard_map_metrics_are_global(chunk):
  needs_devices()
  z1 = rand(36, N_DEV * 2, 4)
  z2 = z1 + 0.5 * rand(37, N_DEV * 2, 4)

  def local(a, b):
    _, m = nt_xent_with_metrics(a, b, temperature=0.3, axis_name=AX, chunk_size=chunk)
    return m

  m = jax.jit(jax.shard_map(local, mesh=mesh(), in_specs=(P(AX), P(AX)), out_specs=P()))(z1, z2)
  ref = np_metrics(z1, z2, 0.3)
  for k, v in ref.items():
    np.testing.assert_allclose(m[k], v, rtol=1e-5, atol=1e-6, err_msg=k)
