"""Numerics of the train step: 1 vs 8 devices over several steps, BN's variance, the float64 path.

Float32 runs on different device counts sum in different orders, and the step amplifies those
rounding differences (docs/performance.md, "Numerics across device counts"): mostly through ReLU
sign flips, which the gradient feels as jumps of about 1e-3. The bounds below are what the
two-pass BN variance reaches on this data, with a margin; `tools/dev/numerics_check.py` measures the
same against a float64 reference.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tolerances import REASSOC_RTOL
from jax.sharding import PartitionSpec as P

from contrastive_jax import cli
from contrastive_jax import methods as methods_lib
from contrastive_jax import models
from contrastive_jax import optim
from contrastive_jax import parallel
from contrastive_jax import train as train_lib
from contrastive_jax import views as views_lib
from contrastive_jax.models import ProjectionHead

CONFIG = "experiments/cifar10_simclr.py:test"
STEPS = 3
BATCH = 16


def _run(devices, steps=STEPS, dtype="float32", bn_fast_variance=False, seed=0):
  """`steps` train steps of the tiny test model on `devices`: [(loss, grad_norm)] per step, params before, after."""
  config = cli.load_config(CONFIG, **{"batch_size": BATCH, "model.dtype": dtype,
                                      "model.bn_fast_variance": bn_fast_variance})
  mesh = parallel.make_data_mesh(devices)
  built = train_lib.build_step(config, mesh, num_examples=64, num_classes=4, donate=False)
  fn = built.step
  state = jax.device_put(train_lib.init_state(built.model, built.tx, train_lib.init_key(seed), (32, 32, 3)),
                         parallel.replicated_sharding(mesh))
  params0 = jax.tree.map(np.asarray, state.params)
  rng = np.random.default_rng(seed)
  # Natural-image-like statistics (a colour per image plus texture), so that BN sees large means.
  base = rng.integers(40, 216, (steps, BATCH, 1, 1, 3))
  images = np.clip(base + rng.normal(0, 25, (steps, BATCH, 32, 32, 3)), 0, 255).astype(np.uint8)
  out = []
  for k in range(steps):
    batch = {"image": images[k], "label": rng.integers(0, 4, (BATCH,), dtype=np.int32),
             "index": np.arange(BATCH, dtype=np.int32)}
    state, m = fn(state, jax.device_put(batch, parallel.data_sharding(mesh)), jax.random.key(seed))
    out.append((float(m["loss"]), float(m["grad_norm"])))
  return out, params0, jax.tree.map(np.asarray, state.params)


def _dist(a, b):
  return float(np.sqrt(sum(np.sum((np.float64(x) - y) ** 2) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))))


@pytest.mark.slow
@pytest.mark.proof
def test_8_devices_stay_within_the_float32_floor_of_1_device():
  """3 steps on 8 devices × 2 images vs 1 device × 16: losses and parameters stay within the floor.

  The bounds are the float32 floor with ReLU flips, not the lucky case without. Measured
  (2026-11-30, two-pass BN) over seeds 0-5 of this data: step-1 loss 0 to 3.0e-7 relative,
  step-1 grad norm 8.5e-8 to 4.1e-4 (a flip at step 1), step-3 loss up to 2.8e-3, parameter
  distance 7.0e-6 to 7.4e-2 of the distance travelled. Seed 0 here: loss 0, 6.6e-8, 0; grad
  norm 8.5e-8 at step 1; parameters 7.0e-6. A BN that is not synchronised, or a gradient that
  is not summed over devices, is off by orders of magnitude more.
  """
  assert jax.device_count() >= 8
  (r8, _, p8), (r1, p0, p1) = _run(jax.devices()[:8]), _run(jax.devices()[:1])
  assert r8[0][0] == pytest.approx(r1[0][0], rel=REASSOC_RTOL)  # step 1: the same parameters, sums reordered
  assert r8[0][1] == pytest.approx(r1[0][1], rel=2e-3)
  for (l8, _), (l1, _) in zip(r8[1:], r1[1:]):
    assert l8 == pytest.approx(l1, rel=1e-2)
  assert _dist(p8, p1) / _dist(p1, p0) < 0.2


@pytest.mark.parametrize("axis_name", [None, parallel.DATA_AXIS])
def test_bn_batch_variance_is_accurate_in_float32_when_the_mean_is_large(axis_name):
  """The head's BN, plain and synchronised over 8 devices: E[(x - E[x])^2], not E[x^2] - E[x]^2.

  BN inputs with mean 300 and standard deviation 0.1 (E[x^2] / Var ~ 1e7): the one-pass formula
  loses every digit of the variance in float32; the two-pass one keeps about 6.
  """
  rng = np.random.default_rng(0)
  x = (300.0 + 0.1 * rng.standard_normal((16, 4))).astype(np.float32)
  head = ProjectionHead(num_layers=1, out_dim=4, bn_momentum=0.0, axis_name=axis_name)  # running var = batch var
  variables = head.clone(axis_name=None).init(jax.random.key(0), x)
  # An identity dense layer: BN sees x itself, exactly.
  variables = {**variables, "params": {**variables["params"], "dense0": {"kernel": np.eye(4, dtype=np.float32)}}}
  want = np.var(x.astype(np.float64), axis=0)

  def batch_var(v, x):
    return head.apply(v, x, train=True, mutable=["batch_stats"])[1]["batch_stats"]["bn0"]["var"]
  if axis_name is None:
    got = jax.jit(batch_var)(variables, x)
  else:
    mesh = parallel.make_data_mesh(jax.devices()[:8])
    got = jax.jit(jax.shard_map(batch_var, mesh=mesh, in_specs=(P(), P(axis_name)), out_specs=P()))(variables, x)
  np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-4)
  fast = ProjectionHead(num_layers=1, out_dim=4, bn_momentum=0.0, bn_fast_variance=True)
  got_fast = jax.jit(lambda v, x: fast.apply(v, x, train=True, mutable=["batch_stats"])[1])(variables, x)
  assert not np.allclose(np.asarray(got_fast["batch_stats"]["bn0"]["var"]), want, rtol=1e-2)  # why it matters


def test_every_bn_of_the_model_uses_the_two_pass_variance():
  """Encoder and head BatchNorms get use_fast_variance=False (and True with bn_fast_variance=True)."""
  config = cli.load_config(CONFIG)
  seen = {}

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, nn.BatchNorm):
      seen["/".join(context.module.path)] = context.module.use_fast_variance
    return next_fun(*args, **kwargs)
  for fast in (False, True):
    model = models.create_model(config, num_classes=4, axis_name=None).clone(bn_fast_variance=fast)
    seen.clear()
    with nn.intercept_methods(record):
      jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((2, 32, 32, 3)), train=True))
    assert any(k.startswith("encoder/") for k in seen) and any(k.startswith("head/") for k in seen), seen
    assert set(seen.values()) == {fast}, seen


@pytest.mark.slow
@pytest.mark.proof
def test_float64_step_is_float64_throughout_and_matches_float32():
  """config.model.dtype='float64' with x64: views, state, loss and metrics are float64; step 1 agrees with float32."""
  r32, _, _ = _run(jax.devices()[:1], steps=1)
  with jax.enable_x64(True):
    r64, _, _ = _run(jax.devices()[:1], steps=1, dtype="float64")
    config = cli.load_config(CONFIG, **{"model.dtype": "float64"})
    model = models.create_model(config, num_classes=4, axis_name=None)
    tx, schedule = optim.create_optimizer(config, num_examples=64)
    augs = views_lib.view_configs(config)
    method = methods_lib.create(config, total_steps=4, axis_name=None, views=augs)
    step = train_lib.make_train_step(model, tx, schedule, augs, method, axis_name=None)
    state = jax.eval_shape(lambda: train_lib.init_state(model, tx, train_lib.init_key(0), (32, 32, 3)))
    batch = {"image": jax.ShapeDtypeStruct((4, 32, 32, 3), jnp.uint8), "label": jax.ShapeDtypeStruct((4,), jnp.int32),
             "index": jax.ShapeDtypeStruct((4,), jnp.int32)}
    new_state, metrics = jax.eval_shape(step, state, batch, jax.random.key(0))
    keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), 8).reshape(4, 2))
    views = jax.eval_shape(lambda b, k: views_lib.augment_views(b, k, augs, jnp.float64), batch, keys)
  floats = [x.dtype for x in jax.tree.leaves((state, new_state, views)) if jnp.issubdtype(x.dtype, jnp.floating)]
  assert floats and set(floats) == {jnp.dtype(jnp.float64)}
  assert metrics["loss"].dtype == metrics["grad_norm"].dtype == metrics["probe_loss"].dtype == jnp.float64
  assert r64[0][0] == pytest.approx(r32[0][0], rel=REASSOC_RTOL)  # float32's rounding of one forward pass
  # The gradient jumps where float32 rounding flips a ReLU (docs/performance.md): measured 1.2e-4.
  assert r64[0][1] == pytest.approx(r32[0][1], rel=1e-3)
