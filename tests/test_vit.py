"""The ViT encoder: timm's parameter counts, shapes, MoCo v3's options, bad input.

The 8-vs-1-device step and the SIGTERM-and-rerun contracts of MoCo v3 with a ViT are in
tests/test_methods.py (case `moco_v3_vit`).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contrastive_jax import models
from contrastive_jax import optim
from contrastive_jax.cli import load_config
from contrastive_jax.models.vit import ViT, frozen_params, parameter_count, sincos2d_posemb

# timm 1.x, class token, learned position embeddings, num_classes=0 (the table).
TIMM_COUNTS = [
    ("tiny", 16, 224, 5_524_416),   # vit_tiny_patch16_224
    ("small", 16, 224, 21_665_664),  # vit_small_patch16_224
    ("base", 16, 224, 85_798_656),   # vit_base_patch16_224
    ("small", 4, 32, 21_338_496),
    ("tiny", 4, 32, 5_360_832),
]


def _params(model, size, batch=1):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((batch, size, size, 3))))["params"]


@pytest.mark.parametrize("variant,patch,size,count", TIMM_COUNTS)
def test_parameter_counts_equal_timms(variant, patch, size, count):
  assert parameter_count(_params(ViT(variant, patch), size)) == count


def test_sincos_and_gap_remove_exactly_their_parameters():
  width, tokens = 192, 64
  learned = parameter_count(_params(ViT("tiny", 4), 32))
  assert parameter_count(_params(ViT("tiny", 4, posemb="sincos2d"), 32)) == learned - (tokens + 1) * width
  assert parameter_count(_params(ViT("tiny", 4, pool="gap"), 32)) == learned - 2 * width  # no cls, one fewer position


@pytest.mark.parametrize("posemb,pool", [("learn", "cls"), ("sincos2d", "gap")])
def test_features_are_pooled_per_image_in_float32(posemb, pool):
  model = ViT("tiny", 8, posemb=posemb, pool=pool, width=32, depth=2, num_heads=2, dtype=jnp.bfloat16)
  x = jax.random.uniform(jax.random.key(1), (3, 32, 32, 3))
  variables = jax.jit(model.init)(jax.random.key(0), x)
  apply = jax.jit(model.apply)  # one program instead of an eager op-by-op compile
  h = apply(variables, x)
  assert h.shape == (3, 32) and h.dtype == jnp.float32
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  # Each image's features depend on that image only.
  np.testing.assert_allclose(apply(variables, x[1:2])[0], h[1], rtol=2e-2, atol=2e-2)


def test_sincos2d_posemb_is_mocov3s_layout():
  pe = sincos2d_posemb(4, 4, 16)
  assert pe.shape == (16, 16)
  # Columns [sin(x w), cos(x w), sin(y w), cos(y w)]: token (y=0, x=1) at frequency 1.
  np.testing.assert_allclose(pe[1, [0, 4, 8, 12]], [np.sin(1.0), np.cos(1.0), 0.0, 1.0], atol=1e-7)
  np.testing.assert_allclose(pe[4, [0, 4, 8, 12]], [0.0, 1.0, np.sin(1.0), np.cos(1.0)], atol=1e-7)


def test_a_frozen_patch_embedding_gets_no_update_and_no_decay():
  config = load_config("experiments/cifar10_moco_v3.py:vit_test")
  assert config.model.encoder.frozen_patch_embed and config.optimizer == "adamw"
  model = models.create_model(config, num_classes=10, axis_name=None)
  tx, _ = optim.create_optimizer(config, 64, frozen=models.frozen_params(config))
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((2, 32, 32, 3)))["params"]
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  frozen = frozen_params(params)
  assert sum(jax.tree.leaves(frozen)) == 2  # the patch conv's kernel and bias
  for f, u in zip(jax.tree.leaves(frozen), jax.tree.leaves(updates)):
    assert bool(jnp.all(u == 0)) == f


def test_a_frozen_patch_embedding_has_zero_gradient():
  images = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
  for frozen in (True, False):
    vit = ViT("tiny", 8, width=16, depth=1, num_heads=2, frozen_patch_embed=frozen)
    params = jax.jit(vit.init)(jax.random.key(0), images)["params"]
    assert set(params["embedding"]) == {"kernel", "bias"}  # the same names and checkpoints either way
    grads = jax.jit(jax.grad(lambda p, v=vit: jnp.sum(v.apply({"params": p}, images) ** 2)))(params)
    norms = [float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads["embedding"])]
    assert (max(norms) == 0) == frozen, (frozen, norms)
    assert float(jnp.abs(grads["block0"]["mlp"]["fc1"]["kernel"]).sum()) > 0  # the rest still trains


def test_moco_v3_vit_presets_build():
  for preset, width in (("vit", 384), ("vit_cpu", 192), ("vit_test", 32)):
    config = load_config(f"experiments/cifar10_moco_v3.py:{preset}")
    model = models.create_model(config, num_classes=10, axis_name=None)
    out = jax.eval_shape(lambda m=model: m.init(jax.random.key(0), jnp.zeros((2, 32, 32, 3))))
    assert out["params"]["encoder"]["norm"]["scale"].shape == (width,)


def test_bad_configurations_name_the_valid_choices():
  with pytest.raises(ValueError, match="huge.*base.*large.*small.*tiny|tiny"):
    ViT("huge", 16)
  with pytest.raises(ValueError, match="learn.*sincos2d"):
    ViT("tiny", 16, posemb="rope")
  with pytest.raises(ValueError, match="cls.*gap"):
    ViT("tiny", 16, pool="max")
  with pytest.raises(ValueError, match="multiples of patch_size=5"):
    ViT("tiny", 5).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


def test_xla_attention_equals_flax_attention_on_the_same_parameters():
  x = jax.random.uniform(jax.random.key(1), (4, 32, 32, 3))
  flax_vit = ViT("tiny", 8, width=64, depth=2, num_heads=4)
  variables = flax_vit.init(jax.random.key(0), x)
  xla_vit = ViT("tiny", 8, width=64, depth=2, num_heads=4, attention_impl="xla")
  assert jax.tree.structure(xla_vit.init(jax.random.key(0), x)) == jax.tree.structure(variables)
  a, b = flax_vit.apply(variables, x), xla_vit.apply(variables, x)
  assert b.shape == (4, 64) and b.dtype == jnp.float32
  np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(a))))


def test_cudnn_attention_asks_for_half_precision_and_a_gpu():
  with pytest.raises(ValueError, match="flax.*xla.*cudnn"):
    ViT("tiny", 16, attention_impl="flash")
  with pytest.raises(ValueError, match="cudnn.*bfloat16 or float16.*float32"):
    ViT("tiny", 16, attention_impl="cudnn")
  if jax.default_backend() != "gpu":
    model = ViT("tiny", 8, width=32, depth=1, num_heads=2, dtype=jnp.bfloat16, attention_impl="cudnn")
    with pytest.raises(ValueError, match="needs a GPU.*'cpu'"):
      model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


def test_images_of_another_size_than_the_position_embeddings_are_an_error():
  model = ViT("tiny", 8, width=32, depth=1, num_heads=2)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  with pytest.raises(ValueError, match="built for 17 tokens.*65"):
    model.apply(variables, jnp.zeros((1, 64, 64, 3)))
