"""Tests for supcon, info_nce with a MoCo queue and byol_loss.

Each loss is checked against a float64 NumPy model written from its paper's
formula (explicit positive masks / loops; analytic gradients, no autodiff),
and the chunked path and the 8-device path against the dense single-device
one. tests/test_losses.py covers nt_xent and in-batch info_nce.
"""

import functools

import chex
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from tolerances import REASSOC_RTOL

from loss_harness import AX, N_DEV, mesh, needs_devices, rand, rel_err, sharded_value_and_grad

import contrastive_jax
from contrastive_jax import losses
from contrastive_jax.losses import byol_loss, info_nce, nt_xent, supcon



# ----------------------------------------------------------------------------
# float64 NumPy references.
# ----------------------------------------------------------------------------


def _np_normalize(x):
  """Returns (unit rows, row norms) in float64 along the last axis."""
  x = np.asarray(x, np.float64)
  norm = np.linalg.norm(x, axis=-1, keepdims=True)
  return x / norm, norm


def _np_normalize_vjp(xn, norm, g):
  """Cotangent of x given the cotangent g of xn = x / |x|."""
  return (g - xn * np.sum(xn * g, axis=-1, keepdims=True)) / norm


def np_supcon(z, labels, t):
  """Khosla et al. eq. 2 (L_out) and its gradient w.r.t. z [B, V, D] (float64).

  Anchors are all B * V views; for anchor i, A(i) = every other view and
  P(i) = the views p != i of images with the same label (>= 0), or only the
  other views of its own image when unlabelled (label < 0).
    L = 1/N sum_i  -1/|P(i)| sum_{p in P(i)} log( exp(s_ip) / sum_{a in A(i)} exp(s_ia) ).
  """
  b, v, _ = z.shape
  zn, norm = _np_normalize(z)
  flat = zn.reshape(b * v, -1)  # Anchor k = image k // v, view k % v.
  image = np.repeat(np.arange(b), v)
  n = b * v
  s = flat @ flat.T / t
  pos = np.zeros((n, n), bool)
  for i in range(n):
    for j in range(n):
      if i == j:
        continue
      same_image = image[i] == image[j]
      same_label = labels[image[i]] >= 0 and labels[image[i]] == labels[image[j]]
      pos[i, j] = same_image or same_label
  s_masked = np.where(np.eye(n, dtype=bool), -np.inf, s)
  m = s_masked.max(axis=1, keepdims=True)
  e = np.exp(s_masked - m)
  lse = np.log(e.sum(axis=1)) + m[:, 0]
  num_pos = pos.sum(axis=1)
  per_anchor = np.array([np.mean(lse[i] - s[i, pos[i]]) for i in range(n)])
  loss = per_anchor.mean()
  probs = e / e.sum(axis=1, keepdims=True)
  g = (probs - pos / num_pos[:, None]) / n  # dL/ds, [N, N].
  d_flat = (g + g.T) @ flat / t  # s = F F^T / t.
  dz = _np_normalize_vjp(zn, norm, d_flat.reshape(zn.shape))
  return loss, dz


def np_moco(q, k, negs, t):
  """MoCo InfoNCE: -log softmax_0 of [q.k, q.n_1..K] / t, mean over queries.

  Returns the loss and its gradients w.r.t. q, k and the queue (float64).
  """
  qn, qnorm = _np_normalize(q)
  kn, knorm = _np_normalize(k)
  nn, nnorm = _np_normalize(negs)
  b = q.shape[0]
  logits = np.concatenate([np.sum(qn * kn, axis=1, keepdims=True), qn @ nn.T], axis=1) / t
  m = logits.max(axis=1, keepdims=True)
  e = np.exp(logits - m)
  loss = np.mean(np.log(e.sum(axis=1)) + m[:, 0] - logits[:, 0])
  g = e / e.sum(axis=1, keepdims=True)
  g[:, 0] -= 1.0
  g /= b
  dqn = (g[:, :1] * kn + g[:, 1:] @ nn) / t
  dkn = g[:, :1] * qn / t
  dnn = g[:, 1:].T @ qn / t
  return (loss, _np_normalize_vjp(qn, qnorm, dqn), _np_normalize_vjp(kn, knorm, dkn),
          _np_normalize_vjp(nn, nnorm, dnn))


def np_byol(p, t):
  """mean_i 2 - 2 cos(p_i, t_i) and its gradients w.r.t. p and t (float64)."""
  pn, pnorm = _np_normalize(p)
  tn, tnorm = _np_normalize(t)
  b = p.shape[0]
  loss = np.mean(2.0 - 2.0 * np.sum(pn * tn, axis=1))
  return loss, _np_normalize_vjp(pn, pnorm, -2.0 * tn / b), _np_normalize_vjp(tn, tnorm, -2.0 * pn / b)






@functools.lru_cache(maxsize=None)  # One compile per (temperature, chunk, shapes) for the session.
def _supcon_vg(temperature, chunk):
  """Jitted value_and_grad w.r.t. z of single-device supcon."""
  return jax.jit(jax.value_and_grad(
      lambda z, labels: supcon(z, labels, temperature=temperature, chunk_size=chunk)))



# Mixed labelled / unlabelled images, labels repeating across the batch.
MIXED_LABELS = np.array([3, -1, 0, 3, -1, 0, 7], np.int32)


# ----------------------------------------------------------------------------
# SupCon.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("v,labels,t,chunk", [
    (3, MIXED_LABELS, 0.1, None),
    (3, MIXED_LABELS, 0.1, 4),       # N = 21: ragged tiles, symmetric single-device kernel.
    (2, MIXED_LABELS, 0.02, 5),      # T < 0.025: the generic online kernel.
])
def test_supcon_matches_paper_formula_in_numpy(v, labels, t, chunk):
  z = rand(0, len(labels), v, 5)
  loss, g = _supcon_vg(t, chunk)(z, labels)
  chex.assert_shape(loss, ())
  chex.assert_type(loss, jnp.float32)
  chex.assert_shape(g, z.shape)
  ref, ref_g = np_supcon(z, labels, t)
  np.testing.assert_allclose(loss, ref, rtol=1e-5)
  assert rel_err(g, ref_g) < 2e-5


@pytest.mark.parametrize("chunk", [None, 3])
@pytest.mark.parametrize("labels", [np.arange(6, dtype=np.int32), np.full(6, -1, np.int32)],
                         ids=["distinct", "unlabelled"])
def test_supcon_with_two_views_and_no_shared_labels_is_nt_xent(labels, chunk):
  z1, z2 = rand(1, 6, 4), rand(2, 6, 4)
  loss, g = _supcon_vg(0.2, chunk)(np.stack([z1, z2], 1), labels)
  ref, (r1, r2) = jax.jit(jax.value_and_grad(
      functools.partial(nt_xent, temperature=0.2, chunk_size=chunk), argnums=(0, 1)))(z1, z2)
  np.testing.assert_allclose(loss, ref, rtol=REASSOC_RTOL)
  assert rel_err(g, np.stack([r1, r2], 1)) < 1e-5


@pytest.mark.parametrize("labels,chunk", [
    (np.full(N_DEV * 2, -1, np.int32), None),
    (np.arange(N_DEV * 2, dtype=np.int32)[::-1].copy(), 3),
], ids=["unlabelled-dense", "distinct-chunked"])
def test_supcon_is_nt_xent_on_8_devices(labels, chunk):
  needs_devices()
  z1, z2 = rand(3, N_DEV * 2, 4), rand(4, N_DEV * 2, 4)

  def sup(z, lab):
    return jax.lax.pmean(supcon(z, lab, temperature=0.3, axis_name=AX, chunk_size=chunk), AX)

  def ntx(a, c):
    return jax.lax.pmean(nt_xent(a, c, temperature=0.3, axis_name=AX, chunk_size=chunk), AX)

  loss, g = sharded_value_and_grad(sup, (P(AX), P(AX)))(np.stack([z1, z2], 1), labels)
  ref, (r1, r2) = sharded_value_and_grad(ntx, (P(AX), P(AX)), argnums=(0, 1))(z1, z2)
  np.testing.assert_allclose(loss, ref, rtol=REASSOC_RTOL)
  assert rel_err(g, np.stack([r1, r2], 1)) < 1e-5


@pytest.mark.parametrize("v,chunk", [(2, None), (3, 4)])
def test_supcon_8_devices_equals_1_device_with_positives_on_other_devices(v, chunk):
  # solo-learn #206: a positive mask built for rank 0 is wrong on ranks > 0.
  # Labels repeat with period 5 over 8 devices x 2 images, so most positives
  # of an anchor live on other devices; image 4 is unlabelled.
  needs_devices()
  b_local = 2
  labels = (np.arange(N_DEV * b_local) % 5).astype(np.int32)
  labels[4] = -1
  z = rand(5, N_DEV * b_local, v, 4)

  def local(zl, lab):
    return jax.lax.pmean(supcon(zl, lab, temperature=0.2, axis_name=AX, chunk_size=chunk), AX)

  loss, g = sharded_value_and_grad(local, (P(AX), P(AX)))(z, labels)
  ref, ref_g = _supcon_vg(0.2, chunk)(z, labels)  # 1 device, all 16 images.
  np.testing.assert_allclose(loss, ref, rtol=1e-5)
  assert rel_err(g, ref_g) < 1e-5
  # And the paper's formula.
  np_loss, np_g = np_supcon(z, labels, 0.2)
  np.testing.assert_allclose(loss, np_loss, rtol=1e-5)
  assert rel_err(g, np_g) < 2e-5


@pytest.mark.parametrize("v,t,chunk", [
    (3, 0.1, 4),    # Single-device symmetric kernel; N = 21 = 5 * 4 + 1.
    (2, 0.02, 5),   # T < 0.025: the generic online kernel; N = 14 = 2 * 5 + 4.
])
def test_supcon_chunked_matches_dense(v, t, chunk):
  z = rand(6, 7, v, 5)
  ld, gd = _supcon_vg(t, None)(z, MIXED_LABELS)
  lc, gc = _supcon_vg(t, chunk)(z, MIXED_LABELS)
  np.testing.assert_allclose(lc, ld, rtol=REASSOC_RTOL)
  assert rel_err(gc, gd) < 1e-5


def test_supcon_keeps_float64():
  z = rand(7, 4, 2, 3, dtype=np.float64)
  labels = np.array([0, 1, 0, -1], np.int32)
  with jax.enable_x64(True):
    loss, g = jax.jit(jax.value_and_grad(functools.partial(supcon, temperature=0.1, chunk_size=3)))(
        jnp.asarray(z), jnp.asarray(labels))
    assert loss.dtype == jnp.float64 and g.dtype == jnp.float64
  ref, ref_g = np_supcon(z, labels, 0.1)
  np.testing.assert_allclose(loss, ref, rtol=1e-12)
  assert rel_err(g, ref_g) < 1e-11


# ----------------------------------------------------------------------------
# InfoNCE with a queue of negatives (MoCo).
# ----------------------------------------------------------------------------


def _moco_vg(t, chunk):
  return jax.jit(jax.value_and_grad(
      lambda q, k, n: info_nce(q, k, temperature=t, negatives=n, chunk_size=chunk), argnums=(0, 1, 2)))


def test_info_nce_with_queue_matches_numpy_dense_and_chunked():
  # B = 6 queries, K = 11 negatives: chunk 4 divides neither (ragged row and queue tiles).
  q, k, negs = rand(10, 6, 5), rand(11, 6, 5), 3.0 * rand(12, 11, 5)
  ref, rq, rk, rn = np_moco(q, k, negs, 0.07)
  results = {chunk: _moco_vg(0.07, chunk)(q, k, negs) for chunk in (None, 4)}
  for chunk, (loss, grads) in results.items():
    chex.assert_type(loss, jnp.float32)
    np.testing.assert_allclose(loss, ref, rtol=1e-5, err_msg=str(chunk))
    for g, r in zip(grads, (rq, rk, rn)):
      assert rel_err(g, r) < 1e-5, chunk
  # The queue receives a gradient (callers stop it, the loss does not).
  assert np.max(np.abs(results[None][1][2])) > 1e-3
  # Chunked equals dense.
  (ld, gd), (lc, gc) = results[None], results[4]
  np.testing.assert_allclose(lc, ld, rtol=REASSOC_RTOL)
  for x, y in zip(gc, gd):
    assert rel_err(x, y) < 1e-5


@pytest.mark.parametrize("chunk", [None, 3])
def test_info_nce_queue_on_8_devices_is_per_device_without_gathering_keys(chunk):
  needs_devices()
  b_local = 2
  q, k = rand(16, N_DEV * b_local, 4), rand(17, N_DEV * b_local, 4)
  negs = rand(18, 7, 4)

  def local(ql, kl, n):
    loss = info_nce(ql, kl, temperature=0.2, negatives=n, axis_name=AX, chunk_size=chunk)
    return jax.lax.pmean(loss, AX), loss[None]

  dist = jax.jit(jax.shard_map(local, mesh=mesh(), in_specs=(P(AX), P(AX), P()),
                               out_specs=(P(), P(AX))))
  (loss, per_device), grads = jax.value_and_grad(dist, argnums=(0, 1, 2), has_aux=True)(q, k, negs)
  # Each device's local loss is the loss of its own queries, keys and the queue.
  blocks = [np_moco(q[i * b_local:(i + 1) * b_local], k[i * b_local:(i + 1) * b_local], negs, 0.2)[0]
            for i in range(N_DEV)]
  np.testing.assert_allclose(per_device, blocks, rtol=1e-5)
  # The global loss and gradients (queue included) are the single-device ones.
  ref, rq, rk, rn = np_moco(q, k, negs, 0.2)
  np.testing.assert_allclose(loss, ref, rtol=1e-5)
  for g, r in zip(grads, (rq, rk, rn)):
    assert rel_err(g, r) < 1e-5


# ----------------------------------------------------------------------------
# BYOL.
# ----------------------------------------------------------------------------


def test_byol_loss_is_two_minus_two_cos():
  p, t = rand(20, 5, 6), 2.5 * rand(21, 5, 6)
  loss, (gp, gt) = jax.jit(jax.value_and_grad(byol_loss, argnums=(0, 1)))(p, t)
  chex.assert_type(loss, jnp.float32)
  ref, rp, rt = np_byol(p, t)
  np.testing.assert_allclose(loss, ref, rtol=REASSOC_RTOL)
  assert rel_err(gp, rp) < 1e-5
  assert rel_err(gt, rt) < 1e-5  # Not stopped inside: the caller does that.
  np.testing.assert_allclose(byol_loss(p, 3.0 * p), 0.0, atol=REASSOC_RTOL)
  np.testing.assert_allclose(byol_loss(p, -p), 4.0, rtol=REASSOC_RTOL)


def test_byol_loss_keeps_float64():
  p, t = rand(22, 3, 4, dtype=np.float64), rand(23, 3, 4, dtype=np.float64)
  with jax.enable_x64(True):
    loss = byol_loss(jnp.asarray(p), jnp.asarray(t))
    assert loss.dtype == jnp.float64
  np.testing.assert_allclose(loss, np_byol(p, t)[0], rtol=1e-13)


# ----------------------------------------------------------------------------
# Exports and bad input.
# ----------------------------------------------------------------------------


def test_new_losses_are_exported():
  for name in ("supcon", "info_nce", "byol_loss", "nt_xent", "nt_xent_with_metrics"):
    assert name in losses.__all__ and name in contrastive_jax.__all__
    assert getattr(contrastive_jax, name) is getattr(losses, name)


def _sds(shape, dtype=jnp.float32):
  return jax.ShapeDtypeStruct(shape, dtype)


@pytest.mark.parametrize("z,labels,kwargs,match", [
    (_sds((4, 3)), _sds((4,), jnp.int32), {},
     r"z must have rank 3 \(shape \[B, V, D\]\); got rank 2 .*jnp.stack"),
    (_sds((4, 2, 3, 1)), _sds((4,), jnp.int32), {}, r"z must have rank 3 .* got rank 4"),
    (_sds((4, 1, 3)), _sds((4,), jnp.int32), {}, r"V >= 2 views .* got V = 1"),
    (_sds((4, 2, 3)), _sds((5,), jnp.int32), {}, r"labels must have shape \[B\] = \(4,\).* got shape \(5,\)"),
    (_sds((4, 2, 3)), _sds((4, 1), jnp.int32), {}, r"labels must have shape \[B\] .* got shape \(4, 1\)"),
    (_sds((4, 2, 3)), _sds((4,), jnp.float32), {}, r"labels must be an integer array .* float32.*astype"),
    (_sds((4, 2, 3), jnp.int32), _sds((4,), jnp.int32), {}, r"z must be a floating-point array"),
    (_sds((0, 2, 3)), _sds((0,), jnp.int32), {}, r"B >= 1 images"),
    (_sds((4, 2, 3)), _sds((4,), jnp.int32), {"temperature": 0.0}, r"temperature must be > 0"),
    (_sds((4, 2, 3)), _sds((4,), jnp.int32), {"chunk_size": 0}, r"chunk_size must be None or a positive int"),
])
def test_supcon_bad_input_raises(z, labels, kwargs, match):
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(functools.partial(supcon, **kwargs), z, labels)  # Trace time, nothing runs.


@pytest.mark.parametrize("negatives,match", [
    (_sds((5,)), r"negatives must have rank 2 \(shape \[K, D\]\); got rank 1"),
    (_sds((5, 4)), r"negatives must have the queries' embedding size D = 3 .* got shape \(5, 4\)"),
    (_sds((0, 3)), r"negatives must hold K >= 1 keys; got shape \(0, 3\).*negatives=None"),
    (_sds((5, 3), jnp.int32), r"negatives must be a floating-point array; got dtype int32"),
])
def test_info_nce_bad_negatives_raise(negatives, match):
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(lambda q, k, n: info_nce(q, k, temperature=0.1, negatives=n),
                   _sds((4, 3)), _sds((4, 3)), negatives)


def test_info_nce_bad_negatives_raise_with_list():
  with pytest.raises(ValueError, match=r"negatives must be an array of shape \[K, D\]; got list"):
    info_nce(jnp.ones((2, 3)), jnp.ones((2, 3)), temperature=0.1, negatives=[[1.0, 2.0, 3.0]])


@pytest.mark.parametrize("p,t,match", [
    (_sds((4, 3)), _sds((4, 2)), r"same shape \[B, D\]; got \(4, 3\) and \(4, 2\)"),
    (_sds((4, 3), jnp.int32), _sds((4, 3), jnp.int32), r"floating-point"),
    (_sds((4, 3, 2)), _sds((4, 3, 2)), r"rank 2 .* got rank 3"),
    (_sds((4,)), _sds((4,)), r"rank 2 .* got rank 1"),
    (_sds((0, 3)), _sds((0, 3)), r"empty batch"),
])
def test_byol_loss_bad_input_raises(p, t, match):
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(byol_loss, p, t)
