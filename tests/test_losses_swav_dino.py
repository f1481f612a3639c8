"""Tests for sinkhorn, swav_loss, dino_loss and dino_center: the clustering / self-distillation losses.

Each is checked against float64 NumPy models written from the papers (SwAV: Caron et al. 2020,
Alg. 1 and the official ``distributed_sinkhorn``; DINO: Caron et al. 2021, Alg. 1) and lightly's
formulas (no call into our code), its gradient against central differences of that model (the codes,
the teacher and the centre held fixed: they carry no gradient), and 8 devices against 1 in values and
gradients. Sinkhorn's sums run over the global batch (and a replicated queue once): per-device
Sinkhorn, or a queue counted once per device, is another loss, which the 8-vs-1 tests would catch.
"""

import functools

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
from contrastive_jax.losses import dino_center, dino_loss, sinkhorn, swav_loss

F64_RTOL = 1e-12  # float64, same math in another order.
# Non-default hyper-parameters, so each one moves the result.
SWAV_KW = {"temperature": 0.2, "iterations": 4, "epsilon": 0.1}
DINO_KW = {"teacher_temp": 0.05, "student_temp": 0.2}
B, K = 6, 5  # One-device batch and prototypes / classes.


# ----------------------------------------------------------------------------
# float64 NumPy references.
# ----------------------------------------------------------------------------


def np_log_softmax(x):
  x = x - x.max(axis=1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def np_sinkhorn(scores, iterations=3, epsilon=0.05):
  """lightly's sinkhorn / SwAV's official distributed_sinkhorn on one device, without a shift."""
  q = np.exp(np.asarray(scores, np.float64) / epsilon).T  # [K, B]
  q /= q.sum()
  k, b = q.shape
  for _ in range(iterations):
    q /= q.sum(axis=1, keepdims=True)
    q /= k
    q /= q.sum(axis=0, keepdims=True)
    q /= b
  return (q * b).T


def np_sinkhorn_paper(scores, iterations=3, epsilon=0.05):
  """SwAV paper, Alg. 1: marginals r = 1/K, c = 1/B, and a final column normalisation."""
  q = np.exp(np.asarray(scores, np.float64) / epsilon).T
  q /= q.sum()
  k, b = q.shape
  r, c = np.ones(k) / k, np.ones(b) / b
  for _ in range(iterations):
    u = q.sum(axis=1)
    q *= (r / u)[:, None]
    q *= (c / q.sum(axis=0))[None, :]
  return (q / q.sum(axis=0, keepdims=True)).T


def np_swav(high, low=(), queue=None, temperature=0.1, iterations=3, epsilon=0.05, code_scores=None, queue_copies=1):
  """lightly SwaVLoss; codes from ``code_scores`` (default ``high``: FD holds them fixed).

  queue_copies > 1 models the bug of psum-ing the replicated queue: each queue row counted per device.
  """
  code_scores = high if code_scores is None else code_scores
  crops = list(high) + list(low)
  loss = 0.0
  for i in range(len(high)):
    out = code_scores[i]
    if queue is not None:
      out = np.concatenate([out] + [queue[i]] * queue_copies)
    q = np_sinkhorn(out, iterations, epsilon)[: len(high[i])]
    sub = 0.0
    for v, z in enumerate(crops):
      if v != i:
        sub += -np.mean(np.sum(q * np_log_softmax(np.asarray(z, np.float64) / temperature), axis=1))
    loss += sub / (len(crops) - 1)
  return loss / len(high)


def np_dino(teacher, student, center, teacher_temp, student_temp=0.1):
  """DINO paper, Alg. 1's H(t, s), averaged over every (teacher view, other student view) pair."""
  def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)

  def h(t, s):
    t = softmax((np.asarray(t, np.float64) - center) / teacher_temp)
    s = softmax(np.asarray(s, np.float64) / student_temp)
    return -(t * np.log(s)).sum(axis=1).mean()

  pairs = [h(t, s) for it, t in enumerate(teacher) for iv, s in enumerate(student) if it != iv]
  return sum(pairs) / len(pairs)


def np_center(center, teacher, momentum):
  return momentum * np.asarray(center, np.float64) + (1 - momentum) * np.concatenate(teacher).mean(axis=0)


def crops(seed, n, b=B, k=K, scale=0.5):
  return [scale * rand(seed + v, b, k, dtype=np.float64) for v in range(n)]


def _fd(f, xs, coords, h=1e-6):
  """Central differences of f(list of arrays) at (crop, row, col) coordinates."""
  out = []
  for v, i, j in coords:
    xp, xm = [x.copy() for x in xs], [x.copy() for x in xs]
    xp[v][i, j] += h
    xm[v][i, j] -= h
    out.append((f(xp) - f(xm)) / (2 * h))
  return np.array(out)


def _at(gs, coords):
  return np.array([gs[v][i, j] for v, i, j in coords])


@functools.lru_cache(maxsize=None)
def _jit(fn, argnums=None, **kw):
  """One jitted (value_and_grad of) fn per (fn, argnums, kw) for the session."""
  f = functools.partial(fn, **kw)
  return jax.jit(f if argnums is None else jax.value_and_grad(f, argnums=argnums))


def _swav_hlq(high, low, queue, **kw):
  """swav_loss with the queue positional, to differentiate w.r.t. it."""
  return swav_loss(high, low, queue=queue, **kw)


def _x64(*xs):
  return [jax.tree.map(jnp.asarray, x) for x in xs]


# ----------------------------------------------------------------------------
# Sinkhorn.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("iterations,epsilon", [(1, 0.05), (3, 0.05), (5, 0.2)])
def test_sinkhorn_matches_paper_and_lightly_in_float64(iterations, epsilon):
  s = rand(1, 9, K, dtype=np.float64)
  with jax.enable_x64(True):
    q = _jit(sinkhorn, iterations=iterations, epsilon=epsilon)(jnp.asarray(s))
    assert q.dtype == jnp.float64 and q.shape == (9, K)
  ref = np_sinkhorn(s, iterations, epsilon)
  np.testing.assert_allclose(np_sinkhorn_paper(s, iterations, epsilon), ref, rtol=F64_RTOL)
  assert rel_err(q, ref) < F64_RTOL


def test_sinkhorn_queue_is_concatenated_and_cut():
  s, queue = rand(2, 4, K, dtype=np.float64), rand(3, 7, K, dtype=np.float64)
  with jax.enable_x64(True):
    q = _jit(sinkhorn)(jnp.asarray(s), queue=jnp.asarray(queue))
  assert q.shape == (4, K)
  assert rel_err(q, np_sinkhorn(np.concatenate([s, queue]))[:4]) < F64_RTOL
  assert rel_err(q, np_sinkhorn(s)) > 0.01  # The queue moved the codes.


def test_sinkhorn_marginals_rows_sum_to_one_columns_approach_equipartition():
  s = rand(4, 40, 8, dtype=np.float64)
  s[:, 0] += 1.0  # Prototype 0 favoured: the softmax gives its column ~ 12, far from 40 / 8.
  dev = {}
  with jax.enable_x64(True):
    for it in (1, 3, 10):
      q = np.asarray(_jit(sinkhorn, iterations=it, epsilon=0.5)(jnp.asarray(s)))
      np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=0, atol=1e-14)
      assert q.min() >= 0.0
      dev[it] = np.max(np.abs(q.sum(axis=0) - 40 / 8))
  raw = np.max(np.abs(np.exp(s / 0.5) / np.exp(s / 0.5).sum(1, keepdims=True)).sum(0) - 40 / 8)
  # The NumPy model: 7.5 (softmax), 0.93, 0.14, 4.5e-4.
  assert dev[1] < 0.2 * raw and dev[3] < 0.2 * dev[1] and dev[10] < 1e-2 * dev[3], (raw, dev)


def test_sinkhorn_large_scores_stay_finite_in_float32():
  # scores / epsilon up to ~ 2000: lightly's exp would overflow to inf; the log domain does not.
  s = 100.0 * rand(5, 8, K)
  q = np.asarray(_jit(sinkhorn)(s))
  assert np.all(np.isfinite(q))
  np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-6)


def test_sinkhorn_has_no_gradient():
  s, queue = rand(6, 4, K), rand(7, 3, K)
  g = jax.grad(lambda s, q: jnp.sum(sinkhorn(s, queue=q) * jnp.arange(K)), argnums=(0, 1))(s, queue)
  for x in g:
    np.testing.assert_array_equal(x, 0.0)


# ----------------------------------------------------------------------------
# SwAV: values, gradients, dtypes.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("n_low,with_queue", [(0, False), (3, False), (0, True), (2, True)])
def test_swav_matches_numpy_and_finite_differences_in_float64(n_low, with_queue):
  high, low = crops(10, 2), crops(20, n_low)
  queue = crops(30, 2, b=4) if with_queue else None
  with jax.enable_x64(True):
    loss, (gh, gl, gq) = _jit(_swav_hlq, argnums=(0, 1, 2), **SWAV_KW)(*_x64(high, low, queue))
    assert loss.dtype == jnp.float64 and loss.shape == ()
  np.testing.assert_allclose(float(loss), np_swav(high, low, queue, **SWAV_KW), rtol=F64_RTOL)
  # The codes are held fixed (computed from the unperturbed high): no gradient through Sinkhorn.
  coords = [(v % 2, (3 * v + 1) % B, (2 * v) % K) for v in range(4)]
  fd_h = _fd(lambda h: np_swav(h, low, queue, code_scores=high, **SWAV_KW), high, coords)
  scale = max(np.max(np.abs(np.asarray(gh))), 1e-3)
  np.testing.assert_allclose(_at(gh, coords), fd_h, rtol=0, atol=1e-7 * scale)
  if n_low:
    fd_l = _fd(lambda lo: np_swav(high, lo, queue, **SWAV_KW), low, coords)
    np.testing.assert_allclose(_at(gl, coords), fd_l, rtol=0, atol=1e-7 * scale)
  if with_queue:
    for g in gq:
      np.testing.assert_array_equal(g, 0.0)  # The queue only enters the codes.


def test_swav_defaults_are_the_papers_and_a_stacked_input_is_a_list():
  high, low = crops(40, 2), crops(50, 2)
  with jax.enable_x64(True):
    loss = _jit(swav_loss)(*_x64(high, low))
    stacked = _jit(swav_loss)(jnp.asarray(np.stack(high)), jnp.asarray(np.stack(low)))
  np.testing.assert_allclose(float(loss), np_swav(high, low, temperature=0.1, iterations=3, epsilon=0.05),
                             rtol=F64_RTOL)
  np.testing.assert_allclose(float(stacked), float(loss), rtol=F64_RTOL)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_float32_and_bfloat16_give_float32(dtype):
  high, low, queue = crops(60, 2), crops(70, 1), crops(80, 2, b=3)
  teacher, student, center = crops(90, 2), crops(100, 3), 0.1 * rand(110, K, dtype=np.float64)
  cast = lambda xs: [jnp.asarray(x, dtype) for x in xs]  # noqa: E731
  back = lambda xs: [np.asarray(x, np.float64) for x in xs]  # noqa: E731  # The rounded inputs, in float64.
  h, lo, q, t, s = cast(high), cast(low), cast(queue), cast(teacher), cast(student)
  c = jnp.asarray(center, dtype)
  out = {
      "swav": (_jit(_swav_hlq)(h, lo, q), np_swav(back(h), back(lo), back(q))),
      "dino": (_jit(dino_loss, teacher_temp=0.04)(t, s, c), np_dino(back(t), back(s), back([c])[0], 0.04)),
      "sinkhorn": (_jit(sinkhorn)(h[0]), np_sinkhorn(back(h)[0])),
      "center": (_jit(dino_center)(c, t), np_center(back([c])[0], back(t), 0.9)),
  }
  for name, (x, ref) in out.items():
    chex.assert_type(x, jnp.float32)
    # float32 maths (bf16 maths would be ~1e-2 off): scores / epsilon ~ 20 in magnitude carries an
    # absolute rounding of ~ 20 eps32 = 2.4e-6, a relative one in exp(scores / epsilon); measured <= 1e-7.
    assert rel_err(x, ref) < REASSOC_RTOL, (name, rel_err(x, ref))


# ----------------------------------------------------------------------------
# DINO: values, gradients.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("n_t,n_s", [(2, 2), (2, 5), (1, 3)])
def test_dino_matches_numpy_and_finite_differences_in_float64(n_t, n_s):
  teacher, student = crops(120, n_t), crops(130, n_s)
  center = 0.2 * rand(140, K, dtype=np.float64)
  with jax.enable_x64(True):
    loss, (gt, gs, gc) = _jit(dino_loss, argnums=(0, 1, 2), **DINO_KW)(*_x64(teacher, student, center))
    assert loss.dtype == jnp.float64 and loss.shape == ()
  np.testing.assert_allclose(float(loss), np_dino(teacher, student, center, **DINO_KW), rtol=F64_RTOL)
  coords = [(v % n_s, (5 * v + 2) % B, (3 * v) % K) for v in range(5)]
  fd = _fd(lambda s: np_dino(teacher, s, center, **DINO_KW), student, coords)
  scale = max(np.max(np.abs(np.asarray(gs))), 1e-3)
  np.testing.assert_allclose(_at(gs, coords), fd, rtol=0, atol=1e-7 * scale)
  for g in [*gt, gc]:
    np.testing.assert_array_equal(g, 0.0)  # No gradient to the teacher or the centre.


@pytest.mark.parametrize("momentum", [0.9, 0.0, 1.0])
def test_dino_center_matches_numpy_and_has_no_gradient(momentum):
  teacher, center = crops(150, 3), rand(160, K, dtype=np.float64)
  with jax.enable_x64(True):
    c = _jit(dino_center, momentum=momentum)(*_x64(center, teacher))
    gc, gt = jax.grad(lambda c, t: jnp.sum(dino_center(c, t, momentum=momentum) * jnp.arange(K)),
                      argnums=(0, 1))(*_x64(center, teacher))
    stacked = _jit(dino_center, momentum=momentum)(jnp.asarray(center), jnp.asarray(np.stack(teacher)))
    assert c.dtype == jnp.float64 and c.shape == (K,)
  assert rel_err(c, np_center(center, teacher, momentum)) < F64_RTOL
  assert rel_err(stacked, c) < F64_RTOL
  for g in [gc, *gt]:
    np.testing.assert_array_equal(g, 0.0)


# ----------------------------------------------------------------------------
# 8 devices = 1 device.
# ----------------------------------------------------------------------------


def _shard(fn, in_specs, out_specs=P()):
  return jax.shard_map(fn, mesh=mesh(), in_specs=in_specs, out_specs=out_specs)


@functools.lru_cache(maxsize=None)
def _sharded_sinkhorn(with_queue, axis_name=AX):
  if with_queue:
    return jax.jit(_shard(lambda s, q: sinkhorn(s, queue=q, axis_name=axis_name), (P(AX), P()), P(AX)))
  return jax.jit(_shard(lambda s: sinkhorn(s, axis_name=axis_name), (P(AX),), P(AX)))


@functools.lru_cache(maxsize=None)
def _sharded_swav(axis_name=AX):
  """value_and_grad w.r.t. (high, low) of pmean(local swav_loss) under shard_map; queue replicated."""
  def local(h, lo, q):
    return jax.lax.pmean(swav_loss(h, lo, queue=q, axis_name=axis_name, **SWAV_KW), AX)
  return jax.jit(jax.value_and_grad(_shard(local, (P(AX), P(AX), P())), argnums=(0, 1)))


def _skewed(seed, b_local=2):
  """[N_DEV * b_local, K] scores whose device d's rows all favour prototype d % K."""
  s = 0.3 * rand(seed, N_DEV * b_local, K, dtype=np.float64)
  s[np.arange(N_DEV * b_local), (np.arange(N_DEV * b_local) // b_local) % K] += 1.0
  return s


def _queue(seed, n=2):
  """n replicated [4, K] queues whose rows favour prototype 0: counting them once per device shows."""
  qs = crops(seed, n, b=4, scale=0.3)
  for q in qs:
    q[:, 0] += 1.0
  return qs


@pytest.mark.parametrize("with_queue", [False, True])
def test_sinkhorn_8_devices_equal_1_device_in_float64(with_queue):
  needs_devices()
  s, queue = _skewed(170), _queue(171, 1)[0]
  args = (s, queue) if with_queue else (s,)
  with jax.enable_x64(True):
    codes = _sharded_sinkhorn(with_queue)(*_x64(*args))
    ref = _jit(sinkhorn)(*_x64(s), **({"queue": jnp.asarray(queue)} if with_queue else {}))
  assert rel_err(codes, ref) < F64_RTOL
  assert rel_err(codes, np_sinkhorn(np.concatenate(args))[: len(s)]) < F64_RTOL


@pytest.mark.parametrize("with_queue", [False, True])
def test_swav_8_devices_equal_1_device_in_float64(with_queue):
  needs_devices()
  high, low = [_skewed(180), _skewed(181)], crops(182, 2, b=N_DEV * 2)
  queue = _queue(183) if with_queue else None
  with jax.enable_x64(True):
    loss, grads = _sharded_swav()(*_x64(high, low, queue))
    ref, ref_grads = _jit(_swav_hlq, argnums=(0, 1), **SWAV_KW)(*_x64(high, low, queue))
  np.testing.assert_allclose(float(loss), float(ref), rtol=F64_RTOL)
  np.testing.assert_allclose(float(loss), np_swav(high, low, queue, **SWAV_KW), rtol=F64_RTOL)
  for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    assert rel_err(g, r) < 1e-12


def test_per_device_sinkhorn_or_a_queue_per_device_is_another_loss():
  """What the 8-vs-1 tests catch: Sinkhorn over each device's rows alone, or the replicated queue psum-ed."""
  needs_devices()
  high, low, queue = [_skewed(180), _skewed(181)], crops(182, 2, b=N_DEV * 2), _queue(183)
  with jax.enable_x64(True):
    ours = float(_sharded_swav()(*_x64(high, low, queue))[0])
    local = float(_sharded_swav(axis_name=None)(*_x64(high, low, queue))[0])
    codes = _sharded_sinkhorn(False)(jnp.asarray(high[0]))
    local_codes = _sharded_sinkhorn(False, axis_name=None)(jnp.asarray(high[0]))
  np.testing.assert_allclose(ours, np_swav(high, low, queue, **SWAV_KW), rtol=F64_RTOL)
  # Per-device Sinkhorn forces equipartition inside each device's 2 rows, all of which favour one prototype.
  assert rel_err(local_codes, codes) > 0.3, rel_err(local_codes, codes)
  assert abs(local - ours) > 0.05 * abs(ours), (local, ours)
  # The replicated queue psum-ed: each of its rows counted N_DEV times in the sums over the samples.
  with jax.enable_x64(True):
    codes_q = _sharded_sinkhorn(True)(*_x64(high[0], queue[0]))
  once = np_sinkhorn(np.concatenate([high[0], queue[0]]))[: len(high[0])]
  copies = np_sinkhorn(np.concatenate([high[0]] + [queue[0]] * N_DEV))[: len(high[0])]
  assert rel_err(codes_q, once) < F64_RTOL
  assert rel_err(codes_q, copies) > 0.05, rel_err(codes_q, copies)  # 0.09: at epsilon 0.05 codes are near one-hot.
  queue_per_device = np_swav(high, low, queue, queue_copies=N_DEV, **SWAV_KW)
  assert abs(queue_per_device - ours) > 0.01 * abs(ours), (queue_per_device, ours)  # 2.150 against 2.118.


def test_dino_pmean_and_center_8_devices_equal_1_device_in_float64():
  needs_devices()
  teacher, student = crops(190, 2, b=N_DEV * 2), crops(200, 4, b=N_DEV * 2)
  center = 0.2 * rand(210, K, dtype=np.float64)

  def local_loss(t, s, c):
    return jax.lax.pmean(dino_loss(t, s, c, **DINO_KW), AX)

  sharded_loss = jax.jit(jax.value_and_grad(_shard(local_loss, (P(AX), P(AX), P())), argnums=1))
  sharded_center = jax.jit(_shard(lambda c, t: dino_center(c, t, axis_name=AX), (P(), P(AX))))
  with jax.enable_x64(True):
    loss, grads = sharded_loss(*_x64(teacher, student, center))
    ref, ref_grads = _jit(dino_loss, argnums=1, **DINO_KW)(*_x64(teacher, student, center))
    c = sharded_center(*_x64(center, teacher))
    ref_c = _jit(dino_center)(*_x64(center, teacher))
  np.testing.assert_allclose(float(loss), float(ref), rtol=F64_RTOL)
  np.testing.assert_allclose(float(loss), np_dino(teacher, student, center, **DINO_KW), rtol=F64_RTOL)
  for g, r in zip(grads, ref_grads):
    assert rel_err(g, r) < 1e-12
  assert rel_err(c, ref_c) < F64_RTOL
  assert rel_err(c, np_center(center, teacher, 0.9)) < F64_RTOL


# ----------------------------------------------------------------------------
# Exports and bad input.
# ----------------------------------------------------------------------------


def test_exported():
  for name in ("sinkhorn", "swav_loss", "dino_loss", "dino_center"):
    assert name in losses.__all__ and name in contrastive_jax.__all__
    assert getattr(contrastive_jax, name) is getattr(losses, name)


def _sds(*shape, dtype=jnp.float32):
  return jax.ShapeDtypeStruct(shape, dtype)


S = _sds(4, 3)
BAD = [
    # sinkhorn
    (sinkhorn, (_sds(4, 3, 2),), {}, r"sinkhorn: scores must have rank 2 .* got rank 3"),
    (sinkhorn, (_sds(4, 1),), {}, r"sinkhorn: scores needs K >= 2 .* got shape \(4, 1\)"),
    (sinkhorn, (_sds(4, 3, dtype=jnp.int32),), {}, r"floating-point"),
    (sinkhorn, (S,), {"epsilon": 0.0}, r"sinkhorn: epsilon must be > 0; got 0.0"),
    (sinkhorn, (S,), {"iterations": 0}, r"iterations must be an int >= 1 .* got 0"),
    (sinkhorn, (S,), {"iterations": 2.0}, r"iterations must be an int >= 1 .* got 2.0"),
    (sinkhorn, (S,), {"queue": _sds(5, 4)}, r"queue must have the scores' K = 3 .* got shapes \(5, 4\) and \(4, 3\)"),
    # swav_loss
    (swav_loss, ([], [S]), {}, r"swav_loss: high must hold at least one crop; got an empty list"),
    (swav_loss, ([S], []), {}, r"at least 2 crops in all .* got 1 high and 0 low"),
    (swav_loss, (S, [S]), {}, r"high must be a list of \[B, K\] arrays .* got one array of shape \(4, 3\)"),
    (swav_loss, ([S, _sds(4)], []), {}, r"high\[1\] must have rank 2"),
    (swav_loss, ([S, _sds(4, 1)], []), {}, r"high\[1\] needs K >= 2"),
    (swav_loss, ([S], [_sds(5, 3)]), {}, r"same batch size B .* low\[0\] has 5 rows, high\[0\] 4"),
    (swav_loss, ([S], [_sds(4, 6)]), {}, r"low\[0\] has K = 6 .* high\[0\] has K = 3"),
    (swav_loss, ([S, S], []), {"queue": [_sds(2, 3)]}, r"queue must hold one \[Q, K\] array per large crop, 2; got 1"),
    (swav_loss, ([S, S], []), {"queue": [_sds(2, 3), _sds(2, 4)]}, r"queue\[1\] must have the crops' K = 3"),
    (swav_loss, ([S, S], []), {"temperature": -0.1}, r"swav_loss: temperature must be > 0; got -0.1"),
    (swav_loss, ([S, S], []), {"epsilon": float("nan")}, r"swav_loss: epsilon must be > 0; got nan"),
    (swav_loss, ([S, S], []), {"iterations": 0}, r"swav_loss: iterations must be an int >= 1"),
    # dino_loss
    (dino_loss, ([], [S], _sds(3)), {"teacher_temp": 0.04}, r"dino_loss: teacher must hold at least one crop"),
    (dino_loss, ([S], [S], _sds(3)), {"teacher_temp": 0.04}, r"needs two views: .* got 1 teacher and 1 student"),
    (dino_loss, ([S], [S, _sds(4, 5)]), None, r"student\[1\] has K = 5 .* teacher\[0\] has K = 3"),
    (dino_loss, ([S], [S, _sds(2, 3)]), None, r"same batch size B .* student\[1\] has 2 rows, teacher\[0\] 4"),
    (dino_loss, ([S], [S, S], _sds(4)), {"teacher_temp": 0.04}, r"dino_loss: center must have shape \[K\] = \(3,\)"),
    (dino_loss, ([S], [S, S], _sds(1, 3)), {"teacher_temp": 0.04}, r"center must have rank 1"),
    (dino_loss, ([S], [S, S], _sds(3)), {"teacher_temp": 0.0}, r"dino_loss: teacher_temp must be > 0; got 0.0"),
    (dino_loss, ([S], [S, S], _sds(3)), {"teacher_temp": 0.04, "student_temp": -1.0},
     r"student_temp must be > 0; got -1.0"),
    # dino_center
    (dino_center, (_sds(3), []), {}, r"dino_center: teacher must hold at least one crop"),
    (dino_center, (_sds(3), [S]), {"momentum": 1.5}, r"momentum must be in \[0, 1\] .* got 1.5"),
    (dino_center, (_sds(3), [S]), {"momentum": -0.1}, r"momentum must be in \[0, 1\] .* got -0.1"),
    (dino_center, (_sds(4), [S]), {}, r"dino_center: center must have shape \[K\] = \(3,\), .* got \(4,\)"),
    (dino_center, (_sds(3), [S, _sds(2, 3)]), {}, r"same batch size B .* teacher\[1\] has 2 rows"),
]


@pytest.mark.parametrize("fn,args,kw,match", BAD, ids=[f"{b[0].__name__}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_raises(fn, args, kw, match):
  if kw is None:  # dino_loss with a centre of the first crop's K.
    args, kw = (*args, _sds(3)), {"teacher_temp": 0.04}
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(functools.partial(fn, **kw), *args)  # Trace time, nothing runs.
