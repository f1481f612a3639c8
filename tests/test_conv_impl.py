"""ResNet `conv_impl="im2col"` / `"winograd"` equal the XLA convolution: values, gradients, parameters."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from contrastive_jax import parallel
from contrastive_jax.models import ContrastiveModel, ResNet
from contrastive_jax.models.conv import GemmConv, im2col_conv, resolve_conv_impl, winograd_applies, winograd_conv

RTOL = 1e-4


def _normal(seed: int, shape) -> jax.Array:
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _xla_conv(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _assert_close(got, want, rtol=RTOL):
  # Relative to the largest magnitude: sums of many products cancel to near zero in places.
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=0, atol=rtol * max(np.max(np.abs(want)), 1e-30))


@pytest.mark.parametrize("kernel,stride,size", [
    (1, 1, 8), (1, 2, 8), (3, 1, 8), (3, 2, 8), (3, 2, 7), (7, 1, 12), (7, 2, 12), (7, 2, 11)])
def test_im2col_conv_values_and_grads_equal_xla(kernel, stride, size):
  pad = (kernel - 1) // 2
  padding = ((pad, kernel - 1 - pad), (pad, kernel - 1 - pad))
  x = _normal(0, (3, size, size, 5))
  w = _normal(1, (kernel, kernel, 5, 7))
  cot = _normal(2, _xla_conv(x, w, (stride, stride), padding).shape)

  def value_and_grads(conv):
    # One jit each: un-jitted, every slice of the 7x7 case would compile on its own.
    f = lambda x, w: conv(x, w, (stride, stride), padding)
    return jax.jit(lambda x, w: (f(x, w), jax.grad(lambda x, w: jnp.sum(f(x, w) * cot), argnums=(0, 1))(x, w)))(x, w)

  (y, grads), (y_ref, grads_ref) = value_and_grads(im2col_conv), value_and_grads(_xla_conv)
  _assert_close(y, y_ref)
  for g, r in zip(grads, grads_ref):
    _assert_close(g, r)


@pytest.mark.parametrize("height,width", [(8, 8), (7, 5), (2, 3), (1, 1)])
def test_winograd_conv_values_and_grads_equal_xla(height, width):
  """Even, odd and single-pixel sizes (odd ones are padded to whole 2x2 tiles and cropped)."""
  padding = ((1, 1), (1, 1))
  x = _normal(0, (3, height, width, 5))
  w = _normal(1, (3, 3, 5, 7))
  cot = _normal(2, (3, height, width, 7))

  def value_and_grads(conv):
    f = lambda x, w: conv(x, w)
    return jax.jit(lambda x, w: (f(x, w), jax.grad(lambda x, w: jnp.sum(f(x, w) * cot), argnums=(0, 1))(x, w)))(x, w)

  (y, grads), (y_ref, grads_ref) = (value_and_grads(winograd_conv),
                                    value_and_grads(lambda x, w: _xla_conv(x, w, (1, 1), padding)))
  _assert_close(y, y_ref)
  for g, r in zip(grads, grads_ref):
    _assert_close(g, r)


def test_winograd_conv_rejects_other_kernels_and_says_what_applies():
  assert winograd_applies((3, 3, 4, 4), (1, 1), ((1, 1), (1, 1)))
  assert not winograd_applies((3, 3, 4, 4), (2, 2), ((1, 1), (1, 1)))
  assert not winograd_applies((1, 1, 4, 4), (1, 1), ((0, 0), (0, 0)))
  with pytest.raises(ValueError, match=r"kernel \[3, 3, C, O\]"):
    winograd_conv(jnp.zeros((1, 4, 4, 2)), jnp.zeros((5, 5, 2, 3)))


@pytest.mark.slow  # multi-device exactness
def test_winograd_kernel_gradient_is_summed_over_devices_under_shard_map():
  """Replicated kernel, batch split over 4 devices: the same gradients as on one device."""
  mesh = parallel.make_data_mesh(jax.devices()[:4])
  x = _normal(0, (8, 6, 6, 3))
  w = _normal(1, (3, 3, 3, 4))
  cot = _normal(2, (8, 6, 6, 4))
  loss = lambda w, x, cot: jnp.sum(winograd_conv(x, w) * cot)
  spec = jax.sharding.PartitionSpec(parallel.DATA_AXIS)
  sharded = jax.shard_map(lambda w, x, cot: jax.grad(lambda w: jax.lax.psum(loss(w, x, cot), parallel.DATA_AXIS))(w),
                          mesh=mesh, in_specs=(jax.sharding.PartitionSpec(), spec, spec),
                          out_specs=jax.sharding.PartitionSpec())
  _assert_close(jax.jit(sharded)(w, x, cot), jax.grad(loss)(w, x, cot))


@pytest.mark.parametrize("impl", ["im2col", "winograd"])
def test_gemm_conv_module_has_nn_conv_parameters(impl):
  x = _normal(0, (2, 8, 8, 4))
  key = jax.random.key(0)
  ours = GemmConv(6, (3, 3), strides=(1 if impl == "winograd" else 2,) * 2, padding=((1, 1), (1, 1)), impl=impl)
  ref = nn.Conv(6, (3, 3), strides=ours.strides, padding=((1, 1), (1, 1)), use_bias=False,
                kernel_init=ours.kernel_init)
  v_ours, v_ref = ours.init(key, x), ref.init(key, x)
  assert jax.tree.structure(v_ours) == jax.tree.structure(v_ref)
  np.testing.assert_array_equal(v_ours["params"]["kernel"], v_ref["params"]["kernel"])
  _assert_close(ours.apply(v_ref, x), ref.apply(v_ref, x))


# ImageNet stem with im2col covers the 7x7 / stride-2 and 1x1 convs; the CIFAR
# stem with winograd its 3x3 / stride-1 ones (which every other conv_impl="winograd" shape shares).
@pytest.mark.slow  # a whole ResNet-18 compiled twice per case; the fast tier keeps the per-conv tests above
@pytest.mark.proof
@pytest.mark.parametrize("impl,cifar_stem,size", [("im2col", False, 32), ("winograd", True, 16)])
def test_resnet18_gemm_convs_equal_xla(impl, cifar_stem, size):
  """Whole ResNet-18 (train-mode BN): same variables, features, BN statistics and parameter gradients."""
  xla = ResNet(18, cifar_stem=cifar_stem, base_width=8)
  gemm = xla.clone(conv_impl=impl)
  x = _normal(3, (4, size, size, 3))
  key = jax.random.key(0, impl="rbg")
  variables = jax.jit(xla.init)(key, x)
  other = jax.jit(gemm.init)(key, x)
  assert jax.tree.structure(variables) == jax.tree.structure(other)
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(other)):
    np.testing.assert_array_equal(a, b)  # checkpoints are interchangeable

  def loss(model):
    def f(params):
      h, new = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, train=True,
                           mutable=["batch_stats"])
      return jnp.sum(h * jnp.arange(h.shape[-1], dtype=h.dtype)), (h, new["batch_stats"])
    return jax.jit(jax.value_and_grad(f, has_aux=True))

  (_, (h_i, stats_i)), g_i = loss(gemm)(variables["params"])
  (_, (h_x, stats_x)), g_x = loss(xla)(variables["params"])
  _assert_close(h_i, h_x)
  for a, b in zip(jax.tree.leaves(stats_i), jax.tree.leaves(stats_x)):
    _assert_close(a, b)
  # Gradients pass back through ~20 train-mode BNs over few samples, which amplify
  # float32 reassociation differences; 1e-3 of each leaf's scale still pins them.
  for a, b in zip(jax.tree.leaves(g_i), jax.tree.leaves(g_x)):
    _assert_close(a, b, rtol=1e-3)
  # Eval mode too (running averages).
  _assert_close(jax.jit(gemm.apply)(variables, x), jax.jit(xla.apply)(variables, x))


@pytest.mark.slow
def test_simclr_model_passes_conv_impl_and_bf16_works():
  impl = "winograd"
  encoder = {"name": "resnet", "depth": 18, "cifar_stem": True, "base_width": 8}
  model = ContrastiveModel(encoder_config={**encoder, "conv_impl": impl}, dtype=jnp.bfloat16)
  assert model.clone().encoder_config["conv_impl"] == impl
  x = _normal(4, (2, 8, 8, 3))
  variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), x)
  out = jax.jit(model.apply)(variables, x)
  h, z = out["features"], out["projection"]
  h_ref = jax.jit(model.clone(encoder_config={**encoder, "conv_impl": "xla"}).apply)(variables, x)["features"]
  assert h.dtype == z.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(h), np.asarray(h_ref), rtol=0.1, atol=0.1)  # bf16 rounding


def test_auto_picks_winograd_on_cpu():
  assert resolve_conv_impl("auto") == ("winograd" if jax.default_backend() == "cpu" else "xla")
  assert resolve_conv_impl("xla") == "xla"
  x = _normal(5, (2, 8, 8, 3))
  variables = jax.eval_shape(lambda x: ResNet(18, base_width=8, conv_impl="auto").init(jax.random.key(0), x), x)
  reference = jax.eval_shape(lambda x: ResNet(18, base_width=8).init(jax.random.key(0), x), x)
  assert jax.tree.structure(variables) == jax.tree.structure(reference)


def test_unknown_conv_impl_is_rejected():
  with pytest.raises(ValueError, match="conv_impl"):
    ResNet(18, conv_impl="fft")
  with pytest.raises(ValueError, match="conv_impl"):
    ContrastiveModel(encoder_config={"name": "resnet", "depth": 18, "conv_impl": "cudnn"})
