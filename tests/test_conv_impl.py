"""ResNet `conv_impl="im2col"` equals the XLA convolution: values, gradients, parameters."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from contrastive_jax.models import ResNet, SimCLRModel
from contrastive_jax.models.resnet import Im2ColConv, im2col_conv, resolve_conv_impl

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


def test_im2col_module_has_nn_conv_parameters():
  x = _normal(0, (2, 8, 8, 4))
  key = jax.random.key(0)
  ours = Im2ColConv(6, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
  ref = nn.Conv(6, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=False,
                kernel_init=ours.kernel_init)
  v_ours, v_ref = ours.init(key, x), ref.init(key, x)
  assert jax.tree.structure(v_ours) == jax.tree.structure(v_ref)
  np.testing.assert_array_equal(v_ours["params"]["kernel"], v_ref["params"]["kernel"])
  _assert_close(ours.apply(v_ref, x), ref.apply(v_ref, x))


@pytest.mark.parametrize("cifar_stem,size", [(True, 16), (False, 32)])
def test_resnet18_im2col_equals_xla(cifar_stem, size):
  """Whole ResNet-18 (train-mode BN): same variables, features, BN statistics and parameter gradients."""
  xla = ResNet(18, cifar_stem=cifar_stem, base_width=8)
  im2col = xla.clone(conv_impl="im2col")
  x = _normal(3, (4, size, size, 3))
  key = jax.random.key(0, impl="rbg")
  variables = jax.jit(xla.init)(key, x)
  other = jax.jit(im2col.init)(key, x)
  assert jax.tree.structure(variables) == jax.tree.structure(other)
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(other)):
    np.testing.assert_array_equal(a, b)  # checkpoints are interchangeable

  def loss(model):
    def f(params):
      h, new = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, train=True,
                           mutable=["batch_stats"])
      return jnp.sum(h * jnp.arange(h.shape[-1], dtype=h.dtype)), (h, new["batch_stats"])
    return jax.jit(jax.value_and_grad(f, has_aux=True))

  (_, (h_i, stats_i)), g_i = loss(im2col)(variables["params"])
  (_, (h_x, stats_x)), g_x = loss(xla)(variables["params"])
  _assert_close(h_i, h_x)
  for a, b in zip(jax.tree.leaves(stats_i), jax.tree.leaves(stats_x)):
    _assert_close(a, b)
  # Gradients pass back through ~20 train-mode BNs over few samples, which amplify
  # float32 reassociation differences; 1e-3 of each leaf's scale still pins them.
  for a, b in zip(jax.tree.leaves(g_i), jax.tree.leaves(g_x)):
    _assert_close(a, b, rtol=1e-3)
  # Eval mode too (running averages).
  _assert_close(jax.jit(im2col.apply)(variables, x), jax.jit(xla.apply)(variables, x))


def test_simclr_model_passes_conv_impl_and_bf16_works():
  model = SimCLRModel(depth=18, cifar_stem=True, base_width=8, conv_impl="im2col", dtype=jnp.bfloat16)
  assert model.clone().conv_impl == "im2col"
  x = _normal(4, (2, 8, 8, 3))
  variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), x)
  h, z = jax.jit(model.apply)(variables, x)
  h_ref, _ = jax.jit(model.clone(conv_impl="xla").apply)(variables, x)
  assert h.dtype == z.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(h), np.asarray(h_ref), rtol=0.1, atol=0.1)  # bf16 rounding


def test_auto_picks_im2col_on_cpu():
  assert resolve_conv_impl("auto") == ("im2col" if jax.default_backend() == "cpu" else "xla")
  assert resolve_conv_impl("xla") == "xla"
  x = _normal(5, (2, 8, 8, 3))
  variables = jax.eval_shape(lambda x: ResNet(18, base_width=8, conv_impl="auto").init(jax.random.key(0), x), x)
  reference = jax.eval_shape(lambda x: ResNet(18, base_width=8).init(jax.random.key(0), x), x)
  assert jax.tree.structure(variables) == jax.tree.structure(reference)


def test_unknown_conv_impl_is_rejected():
  with pytest.raises(ValueError, match="conv_impl"):
    ResNet(18, conv_impl="winograd")
  with pytest.raises(ValueError, match="conv_impl"):
    SimCLRModel(depth=18, conv_impl="cudnn")
