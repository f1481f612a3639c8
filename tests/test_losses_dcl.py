"""Tests for dcl_loss (DCL / DCLW) and negative_cosine_similarity.

The float64 NumPy references port lightly's ``DCLLoss`` / ``DCLWLoss`` and
``NegativeCosineSimilarity`` (explicit masks, one direction at a time,
per-rank gathering as lightly does it); gradients are checked against
central finite differences of those references, not against our autodiff.
"""

import functools

import chex
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from tolerances import REASSOC_RTOL

from loss_harness import AX, N_DEV, needs_devices, rand, rel_err, sharded_value_and_grad

import contrastive_jax
from contrastive_jax import losses
from contrastive_jax.losses import dcl_loss, negative_cosine_similarity


# ----------------------------------------------------------------------------
# float64 NumPy references (lightly's formulas).
# ----------------------------------------------------------------------------


def _np_unit(x, eps):
  """x / max(|x|, eps) row-wise in float64 (torch's F.normalize / cosine_similarity)."""
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def _np_logsumexp(x):
  m = x.max(axis=1, keepdims=True)
  return np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]


def np_vmf_weights(z1, z2, sigma):
  """lightly's negative_mises_fisher_weights: 2 - N * softmax_N(<z1_i, z2_i> / sigma) of unit rows."""
  s = np.sum(_np_unit(z1, 1e-12) * _np_unit(z2, 1e-12), axis=1) / sigma
  e = np.exp(s - s.max())
  return 2.0 - len(s) * e / e.sum()


def np_dcl(z1, z2, t, sigma=None, ranks=1, weights=None):
  """lightly's DCLLoss / DCLWLoss forward (float64), averaged over `ranks` GPUs as DDP does.

  Each rank holds a contiguous block of rows, gathers every rank's embeddings
  for the negatives, and (sigma given, weights None) computes the vMF weights
  from its own block, as lightly's weight_fn(out0, out1) does. `weights` [N]
  fixes the weights instead (the stop-gradient, for finite differences).
  """
  o0_all, o1_all = _np_unit(z1, 1e-12), _np_unit(z2, 1e-12)
  n = len(o0_all)
  b = n // ranks
  per_rank = []
  for r in range(ranks):
    rows = slice(r * b, (r + 1) * b)
    o0, o1 = o0_all[rows], o1_all[rows]
    if weights is not None:
      w = weights[rows]
    elif sigma is not None:
      w = np_vmf_weights(o0, o1, sigma)  # the rank's own batch, as lightly.
    else:
      w = np.ones(b)

    def one_direction(a, c, a_all, c_all):
      diag = np.zeros((b, n), bool)
      diag[np.arange(b), r * b + np.arange(b)] = True  # dist.eye_rank.
      sim_00 = a @ a_all.T / t
      sim_01 = a @ c_all.T / t
      positive = -sim_01[diag] * w
      negatives = np.concatenate(
          [sim_00[~diag].reshape(b, -1), sim_01[~diag].reshape(b, -1)], axis=1)
      return np.mean(positive + _np_logsumexp(negatives))

    per_rank.append(0.5 * (one_direction(o0, o1, o0_all, o1_all)
                           + one_direction(o1, o0, o1_all, o0_all)))
  return float(np.mean(per_rank))


def np_neg_cos(p, z):
  """lightly's NegativeCosineSimilarity: -mean cos with torch's eps = 1e-8 norm clamp."""
  return float(-np.mean(np.sum(_np_unit(p, 1e-8) * _np_unit(z, 1e-8), axis=1)))


def fd_grad(f, *xs, h=1e-5):
  """Central finite differences of scalar f at float64 arrays xs."""
  xs = [np.asarray(x, np.float64) for x in xs]
  grads = []
  for k, x in enumerate(xs):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
      up = [y.copy() for y in xs]
      dn = [y.copy() for y in xs]
      up[k][idx] += h
      dn[k][idx] -= h
      g[idx] = (f(*up) - f(*dn)) / (2 * h)
    grads.append(g)
  return grads


def fd_dcl(z1, z2, t, sigma=None):
  """Finite-difference gradient of DCL(W) with the weights held at their value (stop-gradient)."""
  w = None if sigma is None else np_vmf_weights(z1, z2, sigma)
  return fd_grad(lambda a, b: np_dcl(a, b, t, weights=w), z1, z2)


@functools.lru_cache(maxsize=None)  # One compile per configuration for the module.
def _dcl_vg(temperature, weighted, chunk, sigma=0.5):
  """Jitted value_and_grad w.r.t. (z1, z2) of single-device dcl_loss."""
  return jax.jit(jax.value_and_grad(functools.partial(
      dcl_loss, temperature=temperature, weighted=weighted, sigma=sigma, chunk_size=chunk),
      argnums=(0, 1)))


def _sigma(weighted):
  return 0.5 if weighted else None


# ----------------------------------------------------------------------------
# DCL / DCLW vs lightly's formula.
# ----------------------------------------------------------------------------


def test_reference_sanity():
  # DCL is NT-Xent minus the positive's share of the denominator: for
  # orthogonal, well separated examples the positive dominates NT-Xent's
  # denominator, so DCL is much lower; the vMF weights average to 1.
  z1, z2 = rand(0, 6, 5), rand(1, 6, 5)
  np.testing.assert_allclose(np.mean(np_vmf_weights(z1, z2, 0.5)), 1.0, rtol=1e-12)
  # Unweighted DCL has no per-rank part: lightly's 8-GPU loss is its 1-GPU loss.
  z1, z2 = rand(2, 16, 4), rand(3, 16, 4)
  np.testing.assert_allclose(np_dcl(z1, z2, 0.2, ranks=8), np_dcl(z1, z2, 0.2), rtol=1e-12)


@pytest.mark.parametrize("weighted", [False, True], ids=["dcl", "dclw"])
@pytest.mark.parametrize("chunk", [None, 3])
def test_matches_lightly_formula_in_float64(weighted, chunk):
  z1, z2 = rand(4, 5, 4, dtype=np.float64), rand(5, 5, 4, dtype=np.float64)
  ref = np_dcl(z1, z2, 0.1, _sigma(weighted))
  with jax.enable_x64(True):
    loss, (g1, g2) = jax.jit(jax.value_and_grad(functools.partial(
        dcl_loss, temperature=0.1, weighted=weighted, chunk_size=chunk), argnums=(0, 1)))(
            jnp.asarray(z1), jnp.asarray(z2))
    assert loss.dtype == jnp.float64 and g1.dtype == jnp.float64
  np.testing.assert_allclose(loss, ref, rtol=1e-12)
  # The weights have no gradient: the finite differences hold them fixed...
  r1, r2 = fd_dcl(z1, z2, 0.1, _sigma(weighted))
  assert rel_err(g1, r1) < 1e-7 and rel_err(g2, r2) < 1e-7
  if weighted:  # ... and differentiating through them would give another gradient.
    f1, _ = fd_grad(lambda a, b: np_dcl(a, b, 0.1, 0.5), z1, z2)
    assert rel_err(f1, r1) > 1e-3


@pytest.mark.parametrize("weighted,t,chunk", [
    (False, 0.1, None), (True, 0.1, None),
    (True, 0.1, 4),    # 2B = 10: ragged tiles, the symmetric single-device kernel.
    (False, 0.02, 3),  # T < 0.025: the generic online kernel with [N, 2] excluded columns.
])
def test_float32_matches_float64_reference(weighted, t, chunk):
  z1, z2 = rand(6, 5, 4), rand(7, 5, 4)
  loss, (g1, g2) = _dcl_vg(t, weighted, chunk)(z1, z2)
  chex.assert_type(loss, jnp.float32)
  chex.assert_shape((g1, g2), (5, 4))
  np.testing.assert_allclose(loss, np_dcl(z1, z2, t, _sigma(weighted)), rtol=REASSOC_RTOL)
  r1, r2 = fd_dcl(z1, z2, t, _sigma(weighted))
  assert rel_err(g1, r1) < 1e-5 and rel_err(g2, r2) < 1e-5


# With test_float32_matches_float64_reference's chunked cases: chunks 3, 4 and 7
# leave ragged tiles of the 2B = 10 anchors, 100 > 2B is one tile.
@pytest.mark.parametrize("weighted,t,chunk", [(True, 0.1, 3), (False, 0.1, 100), (True, 0.02, 7)])
def test_chunked_matches_dense(weighted, t, chunk):
  z1, z2 = rand(10, 5, 4), rand(11, 5, 4)
  (ld, gd), (lc, gc) = _dcl_vg(t, weighted, None)(z1, z2), _dcl_vg(t, weighted, chunk)(z1, z2)
  np.testing.assert_allclose(lc, ld, rtol=REASSOC_RTOL)
  for x, y in zip(gc, gd):
    assert rel_err(x, y) < 1e-5


def test_invariant_to_scale_and_view_swap():
  z1, z2 = rand(12, 16, 4), rand(13, 16, 4)  # The 8-device test's shapes: one compile.
  f = _dcl_vg(0.2, True, None)
  base = f(z1, z2)[0]
  np.testing.assert_allclose(f(3.0 * z1, 0.5 * z2)[0], base, rtol=REASSOC_RTOL)
  np.testing.assert_allclose(f(z2, z1)[0], base, rtol=REASSOC_RTOL)


def test_bfloat16_computes_in_float32_and_float64_is_kept():
  z1, z2 = rand(14, 6, 8), rand(15, 6, 8)
  b1, b2 = jnp.asarray(z1, jnp.bfloat16), jnp.asarray(z2, jnp.bfloat16)
  loss, (g1, g2) = _dcl_vg(0.1, True, None)(b1, b2)
  chex.assert_type(loss, jnp.float32)
  chex.assert_type((g1, g2), jnp.bfloat16)
  ref = np_dcl(np.asarray(b1, np.float32), np.asarray(b2, np.float32), 0.1, 0.5)
  np.testing.assert_allclose(loss, ref, rtol=REASSOC_RTOL)


# ----------------------------------------------------------------------------
# 8 devices == 1 device.
# ----------------------------------------------------------------------------


# Unweighted dense is weighted dense without the weights: the three cover both paths and the weights.
@pytest.mark.parametrize("weighted,chunk", [(True, None), (False, 3), (True, 3)],
                         ids=["dclw-dense", "dcl-chunked", "dclw-chunked"])
def test_8_devices_equal_1_device(weighted, chunk):
  needs_devices()
  b_local, t = 2, 0.2  # Global batch 16; chunk 3 leaves ragged tiles of the 4 local anchors.
  z1, z2 = rand(20, N_DEV * b_local, 4), rand(21, N_DEV * b_local, 4)

  def local(a, b):
    return jax.lax.pmean(
        dcl_loss(a, b, temperature=t, weighted=weighted, axis_name=AX, chunk_size=chunk), AX)

  loss, grads = sharded_value_and_grad(local, (P(AX), P(AX)), argnums=(0, 1))(z1, z2)
  ref_loss, ref_grads = _dcl_vg(t, weighted, chunk)(z1, z2)
  np.testing.assert_allclose(loss, ref_loss, rtol=REASSOC_RTOL)
  for g, r in zip(grads, ref_grads):
    assert rel_err(g, r) < 1e-5
  np.testing.assert_allclose(loss, np_dcl(z1, z2, t, _sigma(weighted)), rtol=REASSOC_RTOL)
  if weighted:
    # Weights normalised per device (lightly's gather_distributed) give another
    # loss, far outside the tolerance above: the comparison would catch it.
    per_device = np_dcl(z1, z2, t, 0.5, ranks=N_DEV)
    assert abs(per_device - float(loss)) > 1e3 * REASSOC_RTOL * abs(float(loss))


# ----------------------------------------------------------------------------
# negative_cosine_similarity.
# ----------------------------------------------------------------------------


_ncs_vg = jax.jit(jax.value_and_grad(negative_cosine_similarity, argnums=(0, 1)))


def test_negative_cosine_matches_lightly_in_float64():
  p, z = rand(30, 7, 5, dtype=np.float64), rand(31, 7, 5, dtype=np.float64)
  p[3] = 0.0  # A zero row: cos = 0 through the eps clamp, as torch.
  with jax.enable_x64(True):
    loss, (gp, gz) = jax.value_and_grad(negative_cosine_similarity, argnums=(0, 1))(
        jnp.asarray(p), jnp.asarray(z))
    assert loss.dtype == jnp.float64
  np.testing.assert_allclose(loss, np_neg_cos(p, z), rtol=1e-12)
  p[3] = rand(32, 5, dtype=np.float64)  # Finite differences away from the clamp's kink.
  with jax.enable_x64(True):
    gp, gz = jax.grad(negative_cosine_similarity, argnums=(0, 1))(jnp.asarray(p), jnp.asarray(z))
  rp, rz = fd_grad(np_neg_cos, p, z)
  assert rel_err(gp, rp) < 1e-7 and rel_err(gz, rz) < 1e-7


def test_negative_cosine_float32_and_bfloat16():
  p, z = rand(33, 6, 8), rand(34, 6, 8)
  loss, (gp, gz) = _ncs_vg(p, z)
  chex.assert_type(loss, jnp.float32)
  np.testing.assert_allclose(loss, np_neg_cos(p, z), rtol=REASSOC_RTOL)
  rp, rz = fd_grad(np_neg_cos, p, z)
  assert rel_err(gp, rp) < 1e-5 and rel_err(gz, rz) < 1e-5
  bp, bz = jnp.asarray(p, jnp.bfloat16), jnp.asarray(z, jnp.bfloat16)
  loss, (gp, _) = _ncs_vg(bp, bz)
  chex.assert_type(loss, jnp.float32)  # bf16 in, float32 arithmetic.
  chex.assert_type(gp, jnp.bfloat16)
  ref = np_neg_cos(np.asarray(bp, np.float32), np.asarray(bz, np.float32))
  np.testing.assert_allclose(loss, ref, rtol=REASSOC_RTOL)


def test_negative_cosine_simsiam_stop_gradient():
  # SimSiam: D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2; no gradient reaches z.
  p1, p2, z1, z2 = (rand(35 + i, 4, 6) for i in range(4))

  def simsiam(p1, p2, z1, z2):
    return 0.5 * (negative_cosine_similarity(p1, jax.lax.stop_gradient(z2))
                  + negative_cosine_similarity(p2, jax.lax.stop_gradient(z1)))

  loss, (gp1, _, gz1, gz2) = jax.jit(jax.value_and_grad(simsiam, argnums=(0, 1, 2, 3)))(
      p1, p2, z1, z2)
  np.testing.assert_array_equal(gz1, 0.0)
  np.testing.assert_array_equal(gz2, 0.0)
  np.testing.assert_allclose(loss, 0.5 * (np_neg_cos(p1, z2) + np_neg_cos(p2, z1)), rtol=REASSOC_RTOL)
  assert np.all(np.abs(gp1) > 0)
  # Without the stop-gradient z would get one.
  assert np.any(_ncs_vg(p1, z2)[1][1] != 0)


def test_negative_cosine_global_mean_is_pmean_of_local():
  needs_devices()
  p, z = rand(40, N_DEV * 2, 4), rand(41, N_DEV * 2, 4)

  def local(a, b):
    return jax.lax.pmean(negative_cosine_similarity(a, b), AX)

  loss, (gp, _) = sharded_value_and_grad(local, (P(AX), P(AX)), argnums=(0, 1))(p, z)
  ref, (rp, _) = _ncs_vg(p, z)
  np.testing.assert_allclose(loss, ref, rtol=REASSOC_RTOL)
  assert rel_err(gp, rp) < 1e-5


# ----------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,shape_a,shape_b,match", [
    ({}, (4, 3), (5, 3), r"same shape .*\(4, 3\) and \(5, 3\)"),
    ({}, (4, 3, 2), (4, 3, 2), r"rank 2 .*got rank 3"),
    ({}, (4,), (4,), r"rank 2 .*got rank 1"),
    ({}, (0, 3), (0, 3), r"empty batch"),
    ({}, (1, 3), (1, 3), r"global batch of >= 2"),
    ({"temperature": 0.0}, (4, 3), (4, 3), r"temperature must be > 0; got 0.0"),
    ({"temperature": -1.0}, (4, 3), (4, 3), r"temperature must be > 0"),
    ({"sigma": 0.0}, (4, 3), (4, 3), r"sigma must be > 0; got 0.0"),
    ({"sigma": -0.5, "weighted": True}, (4, 3), (4, 3), r"sigma must be > 0"),
    ({"chunk_size": 0}, (4, 3), (4, 3), r"chunk_size must be None or a positive int"),
])
def test_dcl_bad_input_raises(kwargs, shape_a, shape_b, match):
  with pytest.raises(ValueError, match=match):
    jax.jit(functools.partial(dcl_loss, **kwargs)).trace(
        jnp.zeros(shape_a), jnp.zeros(shape_b))  # Trace time, nothing runs.


@pytest.mark.parametrize("shape_a,shape_b,match", [
    ((4, 3), (4, 2), r"p and z must have the same shape"),
    ((4,), (4,), r"rank 2"),
    ((2, 4, 3), (2, 4, 3), r"rank 2"),
])
def test_negative_cosine_bad_input_raises(shape_a, shape_b, match):
  with pytest.raises(ValueError, match=match):
    jax.jit(negative_cosine_similarity).trace(jnp.zeros(shape_a), jnp.zeros(shape_b))


@pytest.mark.parametrize("fn", [dcl_loss, negative_cosine_similarity])
def test_integer_input_raises(fn):
  with pytest.raises(ValueError, match="floating-point"):
    fn(jnp.ones((2, 3), jnp.int32), jnp.ones((2, 3), jnp.int32))


def test_exported():
  for name in ("dcl_loss", "negative_cosine_similarity"):
    assert name in losses.__all__ and name in contrastive_jax.__all__
    assert getattr(contrastive_jax, name) is getattr(losses, name)
