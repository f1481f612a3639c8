"""clip_loss and siglip_loss (and nt_xent's ring path): papers' formulas, four paths, 1 and 8 devices."""

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from tolerances import REASSOC_RTOL

import contrastive_jax
from contrastive_jax.losses import clip_loss, info_nce, nt_xent, siglip_loss

from loss_harness import AX, N_DEV, needs_devices, rand, rel_err, sharded_value_and_grad

B_LOCAL, D = 6, 12
N = N_DEV * B_LOCAL
LOG_SCALE = float(np.log(1 / 0.07))
SIGLIP_SCALE, SIGLIP_BIAS = float(np.log(10.0)), -10.0


# ----------------------------------------------------------------------------
# NumPy float64 references, written from the papers.
# ----------------------------------------------------------------------------


def _np_unit(x):
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def np_clip(x, y, logit_scale):
  """CLIP (Radford et al. 2021, Fig. 3): logits = x̂ ŷᵀ e^t; (CE(logits, rows) + CE(logitsᵀ, rows)) / 2."""
  logits = _np_unit(x) @ _np_unit(y).T * np.exp(logit_scale)
  labels = np.arange(len(x))

  def ce(l):
    l = l - l.max(axis=1, keepdims=True)
    return np.mean(np.log(np.exp(l).sum(axis=1)) - l[labels, labels])

  return (ce(logits) + ce(logits.T)) / 2


def np_siglip(x, y, logit_scale, logit_bias):
  """SigLIP (Zhai et al. 2023, Alg. 1): labels 2I - 1, -sum log sigmoid(labels * logits), per image row."""
  logits = _np_unit(x) @ _np_unit(y).T * np.exp(logit_scale) + logit_bias
  labels = 2 * np.eye(len(x)) - 1
  return np.sum(np.logaddexp(0.0, -labels * logits)) / len(x)  # -log sigmoid(z) = log(1 + e^-z)


def test_clip_loss_matches_the_papers_formula_in_float64():
  x, y = rand(0, 9, D, dtype=np.float64), rand(1, 9, D, dtype=np.float64)
  with jax.enable_x64(True):
    for chunk in (None, 4):
      got = clip_loss(jnp.asarray(x), jnp.asarray(y), logit_scale=jnp.float64(LOG_SCALE), chunk_size=chunk)
      assert got.dtype == jnp.float64
      np.testing.assert_allclose(float(got), np_clip(x, y, LOG_SCALE), rtol=1e-12)


def test_siglip_loss_matches_the_papers_formula_in_float64():
  x, y = rand(2, 9, D, dtype=np.float64), rand(3, 9, D, dtype=np.float64)
  with jax.enable_x64(True):
    for chunk in (None, 4):
      got = siglip_loss(jnp.asarray(x), jnp.asarray(y), logit_scale=jnp.float64(SIGLIP_SCALE),
                        logit_bias=jnp.float64(SIGLIP_BIAS), chunk_size=chunk)
      np.testing.assert_allclose(float(got), np_siglip(x, y, SIGLIP_SCALE, SIGLIP_BIAS), rtol=1e-12)


def test_learned_scale_and_bias_gradients_match_finite_differences_in_float64():
  x, y = rand(4, 7, D, dtype=np.float64), rand(5, 7, D, dtype=np.float64)
  eps = 1e-6
  with jax.enable_x64(True):
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    for chunk in (None, 3):
      g = jax.grad(lambda t: clip_loss(xj, yj, logit_scale=t, chunk_size=chunk))(jnp.float64(1.3))
      fd = (np_clip(x, y, 1.3 + eps) - np_clip(x, y, 1.3 - eps)) / (2 * eps)
      np.testing.assert_allclose(float(g), fd, rtol=1e-6)
      gs, gb = jax.grad(lambda t, b: siglip_loss(xj, yj, logit_scale=t, logit_bias=b, chunk_size=chunk),
                        argnums=(0, 1))(jnp.float64(1.3), jnp.float64(-2.0))
      fds = (np_siglip(x, y, 1.3 + eps, -2.0) - np_siglip(x, y, 1.3 - eps, -2.0)) / (2 * eps)
      fdb = (np_siglip(x, y, 1.3, -2.0 + eps) - np_siglip(x, y, 1.3, -2.0 - eps)) / (2 * eps)
      np.testing.assert_allclose([float(gs), float(gb)], [fds, fdb], rtol=1e-6)


def test_clip_loss_is_the_mean_of_info_nce_both_ways():
  x, y = rand(6, 10, D), rand(7, 10, D)
  t = 0.07
  want = (info_nce(x, y, temperature=t) + info_nce(y, x, temperature=t)) / 2
  np.testing.assert_allclose(float(clip_loss(x, y, logit_scale=np.log(1 / t))), float(want), rtol=REASSOC_RTOL)


# ----------------------------------------------------------------------------
# Dense, tiled, gathered and ring paths: one value and one gradient, on 1 and 8 devices.
# ----------------------------------------------------------------------------

LOSSES = {
    "clip": lambda x, y, s, b, **kw: clip_loss(x, y, logit_scale=s, **kw),
    "siglip": lambda x, y, s, b, **kw: siglip_loss(x, y, logit_scale=s, logit_bias=b, **kw),
    # nt_xent's temperature is a number; s and b enter so that every path has the same signature.
    "nt_xent": lambda x, y, s, b, **kw: nt_xent(x, y, temperature=0.2, **kw) + 0.0 * (s + b),
}
PATHS = {"gathered_dense": {}, "gathered_tiled": {"chunk_size": 4}, "ring": {"ring": True},
         "ring_tiled": {"ring": True, "chunk_size": 4}}


@functools.lru_cache(maxsize=None)
def _single(name, chunk):
  return jax.jit(jax.value_and_grad(functools.partial(LOSSES[name], chunk_size=chunk), argnums=(0, 1, 2, 3)))


@functools.lru_cache(maxsize=None)
def _sharded(name, path):
  def local(x, y, s, b):
    return jax.lax.pmean(LOSSES[name](x, y, s, b, axis_name=AX, **PATHS[path]), AX)
  return sharded_value_and_grad(local, (P(AX), P(AX), P(), P()), argnums=(0, 1, 2, 3))


@pytest.mark.slow  # multi-device exactness of every path
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_dense_tiled_gathered_and_ring_paths_agree_on_1_and_8_devices(name):
  needs_devices()
  x, y = rand(10, N, D), rand(11, N, D)
  s, b = np.float32(SIGLIP_SCALE if name == "siglip" else LOG_SCALE), np.float32(SIGLIP_BIAS)
  ref_value, ref_grads = _single(name, None)(x, y, s, b)
  results = {"1 device, tiled": _single(name, 5)(x, y, s, b)}
  results.update({f"8 devices, {path}": _sharded(name, path)(x, y, s, b) for path in PATHS})
  for where, (value, grads) in results.items():
    np.testing.assert_allclose(float(value), float(ref_value), rtol=1e-5, err_msg=where)
    for arg, g, r in zip(("x", "y", "logit_scale", "logit_bias"), grads, ref_grads):
      assert rel_err(g, r) < 1e-5, (where, arg, rel_err(g, r))
  if name != "nt_xent":
    assert abs(float(ref_grads[2])) > 0  # the scale really learns
  if name == "siglip":
    assert abs(float(ref_grads[3])) > 0


def test_ring_under_jit_grad_with_a_traced_scale_and_an_uneven_tile():
  """B_local = 6 is not a multiple of the tile (4): the padded rows and columns add nothing."""
  needs_devices()
  x, y = rand(12, N, D), rand(13, N, D)
  vg = _sharded("siglip", "ring_tiled")
  v1, g1 = vg(x, y, np.float32(1.0), np.float32(-3.0))
  v2, g2 = _single("siglip", None)(x, y, np.float32(1.0), np.float32(-3.0))
  np.testing.assert_allclose(float(v1), float(v2), rtol=1e-5)
  assert max(rel_err(a, b) for a, b in zip(g1, g2)) < 1e-5


# ----------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("loss", [clip_loss, functools.partial(siglip_loss, logit_bias=-10.0)],
                         ids=["clip", "siglip"])
def test_bad_input_is_a_value_error(loss):
  x = jnp.ones((4, 8))
  with pytest.raises(ValueError, match="same shape"):
    loss(x, jnp.ones((4, 9)), logit_scale=1.0)
  with pytest.raises(ValueError, match="logit_scale must be a scalar"):
    loss(x, x, logit_scale=jnp.ones((2,)))
  with pytest.raises(ValueError, match="chunk_size"):
    loss(x, x, logit_scale=1.0, chunk_size=0)
  with pytest.raises(ValueError, match="ring=True.*axis_name"):
    loss(x, x, logit_scale=1.0, ring=True)


def test_siglip_bias_must_be_a_scalar_and_nt_xent_ring_needs_an_axis():
  x = jnp.ones((4, 8))
  with pytest.raises(ValueError, match="logit_bias must be a scalar"):
    siglip_loss(x, x, logit_scale=1.0, logit_bias=jnp.zeros((4,)))
  with pytest.raises(ValueError, match="ring=True.*axis_name"):
    nt_xent(x, x, ring=True)


def test_image_text_losses_are_exported_from_the_package():
  assert contrastive_jax.clip_loss is clip_loss
  assert contrastive_jax.siglip_loss is siglip_loss
