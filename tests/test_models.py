"""Tests for contrastive_jax.models: ResNet, ProjectionHead, ContrastiveModel."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P

from contrastive_jax.models import ContrastiveModel, ProjectionHead, ResNet, feature_dim
from contrastive_jax.models.resnet import Bottleneck

# torchvision backbones without fc (torchvision total minus fc weights + bias).
TORCHVISION_PARAMS = {
    (18, False): 11_176_512,
    (18, True): 11_168_832,
    (34, False): 21_284_672,
    (50, False): 23_508_032,
    (50, True): 23_500_352,
    (101, False): 42_500_160,
    (152, False): 58_143_808,
}


def _key(seed: int) -> jax.Array:
  # rbg keys: XLA:CPU compiles their sampling much faster than threefry's.
  return jax.random.key(seed, impl="rbg")


def _normal(seed: int, shape) -> jax.Array:
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _abstract_init(model: nn.Module, shape=(2, 32, 32, 3)):
  """(output, variables) as ShapeDtypeStructs; nothing big is allocated."""
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.eval_shape(lambda x: model.init_with_output(_key(0), x, train=False), x)


def _num_params(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152, 200])
@pytest.mark.parametrize("width", [1, 2, 4])
def test_resnet_output_shapes(depth, width):
  expected = (512 if depth < 50 else 2048) * width
  assert feature_dim(depth, width) == expected
  model = ResNet(depth, width_multiplier=width)
  assert model.feature_dim == expected
  h, variables = _abstract_init(model, (3, 64, 64, 3))
  chex.assert_shape(h, (3, expected))
  assert h.dtype == jnp.float32
  assert set(variables) == {"params", "batch_stats"}
  # Stem width scales with the multiplier too (SimCLR).
  chex.assert_shape(variables["params"]["conv1"]["kernel"], (7, 7, 3, 64 * width))


@pytest.mark.parametrize("depth,cifar_stem", sorted(TORCHVISION_PARAMS))
def test_resnet_param_counts_match_torchvision(depth, cifar_stem):
  _, variables = _abstract_init(ResNet(depth, cifar_stem=cifar_stem))
  assert _num_params(variables["params"]) == TORCHVISION_PARAMS[(depth, cifar_stem)]
  # Convs have no bias: every 4-D param is a kernel, every 1-D one a BN param.
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(variables["params"])]
  assert not any("conv" in p and "bias" in p for p in paths)


def test_cifar_stem_layout():
  h, variables = _abstract_init(ResNet(18, cifar_stem=True), (2, 32, 32, 3))
  chex.assert_shape(variables["params"]["conv1"]["kernel"], (3, 3, 3, 64))
  chex.assert_shape(h, (2, 512))


def _train_apply(model: nn.Module):
  return jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))


def _random_variables(model: nn.Module, shape, seed: int = 0):
  """Variables with init-like random values, built in numpy from the abstract
  init: much cheaper on CPU than compiling `model.init` (init itself is tested
  separately). 1-D params get non-trivial values so BN affine terms matter."""
  _, abstract = _abstract_init(model, shape)
  rng = np.random.default_rng(seed)

  def make(path, leaf):
    name = path[-1].key
    if name == "kernel":
      std = np.sqrt(2.0 / np.prod(leaf.shape[:-1]))
      return jnp.asarray(rng.normal(0.0, std, leaf.shape), jnp.float32)
    if name in ("scale", "var"):
      return jnp.asarray(1.0 + 0.1 * rng.uniform(-1, 1, leaf.shape) * (name == "scale"), jnp.float32)
    return jnp.asarray(0.1 * rng.normal(size=leaf.shape) * (name == "bias"), jnp.float32)

  return jax.tree_util.tree_map_with_path(make, abstract)


@pytest.fixture(scope="module")
def sim10():
  """ContrastiveModel with ResNet-10 (CIFAR stem; one basic block per stage, 512-wide features
  like ResNet-18's) + probe, variables, a [16, 16, 16, 3] batch and the single-device
  train-mode outputs on it (shared to compile less)."""
  model = ContrastiveModel(encoder_config={"name": "resnet", "depth": 10, "cifar_stem": True}, num_probe_classes=5)
  x = _normal(1, (16, 16, 16, 3))
  variables = _random_variables(model, x.shape)
  out, updates = _train_apply(model)(variables, x)
  return model, variables, x, (out["features"], out["projection"], out["probe_logits"]), updates


def _rel_err(a, b) -> float:
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def test_forward_train_and_eval(sim10):
  model, variables, x, (h, z, logits), updates = sim10
  chex.assert_shape([h, z, logits], [(16, 512), (16, 128), (16, 5)])
  chex.assert_tree_all_finite((h, z, logits))
  # Running stats move from their init (mean 0, var 1) in train mode.
  old, new = variables["batch_stats"]["encoder"]["bn1"], updates["batch_stats"]["encoder"]["bn1"]
  assert not np.allclose(old["mean"], new["mean"])
  assert not np.allclose(old["var"], new["var"])
  out_eval = jax.jit(model.apply)(variables, x)
  h_eval, z_eval = out_eval["features"], out_eval["projection"]
  chex.assert_shape([h_eval, z_eval], [(16, 512), (16, 128)])
  assert h_eval.dtype == z_eval.dtype == jnp.float32
  assert not np.allclose(h_eval, h)  # running averages != batch statistics


def test_bfloat16_compute_keeps_float32_params_and_features(sim10):
  model32, variables, x, (h32, z32, _), _ = sim10
  model = model32.clone(dtype=jnp.bfloat16)
  _, abstract = _abstract_init(model, x.shape)
  for leaf in jax.tree.leaves(abstract):
    assert leaf.dtype == jnp.float32
  out, updates = _train_apply(model)(variables, x)
  h, z, logits = out["features"], out["projection"], out["probe_logits"]
  assert h.dtype == z.dtype == logits.dtype == jnp.float32
  for leaf in jax.tree.leaves(updates):
    assert leaf.dtype == jnp.float32
  # bf16 has ~3 significant digits; the features must still track float32.
  assert _rel_err(h, h32) < 0.05
  assert _rel_err(z, z32) < 0.05


@pytest.mark.parametrize("depth,last_bn,num_blocks", [(18, "bn2", 8), (50, "bn3", 16)])
def test_zero_init_residual(depth, last_bn, num_blocks):
  x = jnp.zeros((1, 8, 8, 3))

  def scales(model):
    # Only BN scales are returned, so jit prunes the forward pass and kernel RNG.
    def block_bn_scales(key):
      params = model.init(key, x)["params"]
      return {name: {bn: block[bn]["scale"] for bn in block if bn.startswith("bn")}
              for name, block in params.items() if name.startswith("layer")}
    return jax.jit(block_bn_scales)(_key(0))

  zero = scales(ResNet(depth, cifar_stem=True, zero_init_residual=True))
  default = scales(ResNet(depth, cifar_stem=True))
  assert len(zero) == num_blocks
  for name, bns in zero.items():
    for bn, scale in bns.items():
      np.testing.assert_array_equal(scale, 0.0 if bn == last_bn else 1.0)
      np.testing.assert_array_equal(default[name][bn], 1.0)


def test_zero_init_bottleneck_starts_as_identity():
  norm = functools.partial(nn.BatchNorm, use_running_average=True)
  block = Bottleneck(filters=2, strides=1, norm=norm, zero_init_residual=True)
  x = _normal(2, (1, 4, 4, 8))
  y = jax.jit(lambda k, x: block.apply(block.init(k, x), x))(_key(0), x)
  np.testing.assert_allclose(y, jax.nn.relu(x), atol=1e-6)


class _BNOnly(nn.Module):
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool = True):
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.axis_name)(x)


def _mesh() -> Mesh:
  devices = jax.devices()
  assert len(devices) == 8, "tests/conftest.py should provide 8 host devices"
  return Mesh(np.array(devices), ("data",))


def _sharded_train_apply(model: nn.Module, variables, x):
  """model.apply(train=True) with the batch split over 8 devices; replicated batch_stats out."""
  step = lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])
  return jax.jit(jax.shard_map(
      step, mesh=_mesh(), in_specs=(P(), P("data")), out_specs=(P("data"), P())))(variables, x)


def test_sync_bn_bn_only_matches_global_batch():
  # Per-device means differ strongly, so unsynchronised BN would disagree.
  x = _normal(0, (16, 5)) + jnp.repeat(jnp.arange(8.0), 2)[:, None]
  variables = _BNOnly().init(_key(0), x, train=False)
  out_global, stats_global = _BNOnly().apply(variables, x, mutable=["batch_stats"])
  out_sync, stats_sync = _sharded_train_apply(_BNOnly(axis_name="data"), variables, x)
  chex.assert_trees_all_close(out_sync, out_global, rtol=1e-5, atol=1e-5)
  chex.assert_trees_all_close(stats_sync, stats_global, rtol=1e-5, atol=1e-5)
  out_local, _ = jax.shard_map(
      lambda v, x: _BNOnly().apply(v, x, mutable=["batch_stats"]),
      mesh=_mesh(), in_specs=(P(), P("data")), out_specs=(P("data"), P()), check_vma=False)(variables, x)
  assert not np.allclose(out_local, out_global, atol=1e-2)


def test_sync_bn_simclr_model_matches_global_batch(sim10):
  # ResNet-10 (CIFAR stem) + head + probe: 8 devices x 2 images vs one device x 16.
  model, variables, x, outputs, updates = sim10
  out_sync, updates_sync = _sharded_train_apply(model.clone(axis_name="data"), variables, x)
  outputs_sync = (out_sync["features"], out_sync["projection"], out_sync["probe_logits"])
  chex.assert_trees_all_close(outputs_sync, outputs, rtol=2e-4, atol=2e-4)
  chex.assert_trees_all_close(updates_sync, updates, rtol=2e-4, atol=2e-4)


def test_projection_head_layers():
  h = _normal(0, (4, 64))
  for num_layers in (1, 2, 3):
    head = ProjectionHead(num_layers=num_layers)

    def run(key, h):
      variables = head.init(key, h)
      (z, hiddens), _ = head.apply(variables, h, train=True, return_hidden=True, mutable=["batch_stats"])
      return variables, z, hiddens, head.apply(variables, h), head.apply(variables, h, return_hidden=True)[0]

    variables, z, hiddens, z_eval, z_eval2 = jax.jit(run)(_key(1), h)
    params = variables["params"]
    assert sorted(params) == sorted([f"dense{i}" for i in range(num_layers)]
                                    + [f"bn{i}" for i in range(num_layers)])
    last = num_layers - 1
    assert set(params[f"dense{last}"]) == {"kernel"}  # no bias
    assert set(params[f"bn{last}"]) == {"scale"}  # no BN offset
    chex.assert_shape(params[f"dense{last}"]["kernel"], (64, 128))
    for i in range(last):
      chex.assert_shape(params[f"dense{i}"]["kernel"], (64, 64))  # hidden = input width
      assert set(params[f"bn{i}"]) == {"scale", "bias"}
    chex.assert_shape([z, z_eval], [(4, 128), (4, 128)])
    assert z.dtype == z_eval.dtype == jnp.float32
    assert len(hiddens) == num_layers - 1
    for hid in hiddens:
      chex.assert_shape(hid, (4, 64))
      assert np.all(np.asarray(hid) >= 0)  # after ReLU
    np.testing.assert_allclose(z_eval, z_eval2)

  _, abstract = jax.eval_shape(lambda h: ProjectionHead(num_layers=3, hidden_dim=32, out_dim=16).init_with_output(
      _key(1), h), h)
  params = abstract["params"]
  chex.assert_shape(params["dense1"]["kernel"], (32, 32))
  chex.assert_shape(params["dense2"]["kernel"], (32, 16))


@pytest.mark.parametrize("num_probe_classes", [0, 10])
def test_simclr_model_outputs(num_probe_classes):
  model = ContrastiveModel(encoder_config={"name": "resnet", "depth": 18, "cifar_stem": True}, head_config={"num_layers": 3},
                           num_probe_classes=num_probe_classes)
  out, variables = _abstract_init(model, (3, 32, 32, 3))
  assert set(variables["params"]) == ({"encoder", "head", "probe"} if num_probe_classes else {"encoder", "head"})
  assert set(variables["batch_stats"]) == {"encoder", "head"}
  assert len(variables["params"]["head"]) == 6  # 3 x (dense, bn)
  chex.assert_shape([out["features"], out["projection"]], [(3, 512), (3, 128)])
  if num_probe_classes:
    assert set(out) == {"features", "projection", "probe_logits"}
    chex.assert_shape(out["probe_logits"], (3, 10))
  else:
    assert set(out) == {"features", "projection"}


def test_probe_gradient_does_not_reach_encoder(sim10):
  model, variables, x, _, _ = sim10
  labels = jnp.arange(16) % 5

  def probe_loss(params):
    out, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                         x, train=True, mutable=["batch_stats"])
    logits = out["probe_logits"]
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(16), labels])

  grads = jax.jit(jax.grad(probe_loss))(variables["params"])
  for part in ("encoder", "head"):
    for g in jax.tree.leaves(grads[part]):
      np.testing.assert_array_equal(g, 0.0)
  assert float(jnp.abs(grads["probe"]["kernel"]).sum()) > 0
  assert float(jnp.abs(grads["probe"]["bias"]).sum()) > 0


def test_probe_is_zero_initialised():
  _, variables = _abstract_init(ContrastiveModel(encoder_config={"name": "resnet", "depth": 18, "cifar_stem": True}, num_probe_classes=3))
  chex.assert_shape(variables["params"]["probe"]["kernel"], (512, 3))
  kernel = jax.jit(lambda k: ContrastiveModel(encoder_config={"name": "resnet", "depth": 18, "cifar_stem": True}, num_probe_classes=3).init(
      k, jnp.zeros((1, 8, 8, 3)))["params"]["probe"]["kernel"])(_key(0))
  np.testing.assert_array_equal(kernel, 0.0)


def test_base_width_narrows_every_stage():
  """base_width=16 is the standard net at a quarter of the channels (about 1/16 of the weights)."""
  model = ResNet(18, cifar_stem=True, base_width=16)
  assert model.feature_dim == feature_dim(18, 1, 16) == 128
  h, variables = _abstract_init(model, (2, 32, 32, 3))
  chex.assert_shape(h, (2, 128))
  chex.assert_shape(variables["params"]["conv1"]["kernel"], (3, 3, 3, 16))
  n_narrow = _num_params(variables["params"])
  assert 0.055 < n_narrow / TORCHVISION_PARAMS[(18, True)] < 0.07
  with pytest.raises(ValueError, match="base_width must be a positive int"):
    ResNet(18, base_width=0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(depth=19), r"18, 34, 50, 101, 152, 200"),
    (dict(depth="50"), r"depth must be one of"),
    (dict(depth=[18]), r"depth must be one of"),
    (dict(depth=18, width_multiplier=0), r"positive int"),
    (dict(depth=18, width_multiplier=1.5), r"positive int"),
    (dict(depth=18, width_multiplier=True), r"positive int"),
    (dict(depth=18, bn_momentum=1.0), r"bn_momentum"),
])
def test_resnet_bad_config(kwargs, match):
  with pytest.raises(ValueError, match=match):
    ResNet(**kwargs)
  if "bn_momentum" not in kwargs:
    with pytest.raises(ValueError, match=match):
      feature_dim(kwargs["depth"], kwargs.get("width_multiplier", 1))


def test_bad_inputs_and_head_configs():
  with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
    ResNet(18).init(_key(0), jnp.zeros((32, 32, 3)))
  with pytest.raises(ValueError, match="num_layers"):
    ProjectionHead(num_layers=0)
  with pytest.raises(ValueError, match="out_dim"):
    ProjectionHead(out_dim=0)
  with pytest.raises(ValueError, match=r"\[B, D\]"):
    ProjectionHead().init(_key(0), jnp.zeros((2, 3, 4)))
  with pytest.raises(ValueError, match="num_probe_classes"):
    ContrastiveModel(num_probe_classes=-1)
  with pytest.raises(ValueError, match="depth must be one of"):
    ContrastiveModel(encoder_config={"name": "resnet", "depth": 7})
  with pytest.raises(ValueError, match="num_layers"):
    ContrastiveModel(head_config={"num_layers": 0})
  with pytest.raises(ValueError, match="bn_momentum"):
    ContrastiveModel(bn_momentum=1.5)
  with pytest.raises(ValueError, match=r"encoder_config has unknown fields \['head_layers'\]; ResNet takes"):
    ContrastiveModel(encoder_config={"name": "resnet", "depth": 18, "head_layers": 3})
  with pytest.raises(ValueError, match=r"name must be one of \['resnet', 'vit'\]; got 'convnext'"):
    ContrastiveModel(encoder_config={"name": "convnext"})


def test_torch_dense_init_draws_kernels_and_biases_from_pytorch_linear_default_range():
  fan_in, hidden = 256, 512
  head = ProjectionHead(num_layers=2, hidden_dim=hidden, out_dim=128, hidden_bn=False, last_bn=False,
                        dense_init="torch")
  params = head.init(jax.random.PRNGKey(0), jnp.ones((2, fan_in)))["params"]
  bound0, bound1 = 1 / np.sqrt(fan_in), 1 / np.sqrt(hidden)
  for name, bound in (("dense0", bound0), ("dense1", bound1)):
    for leaf in ("kernel", "bias"):
      x = np.asarray(params[name][leaf])
      assert np.abs(x).max() <= bound
      # U(-b, b) has std b / sqrt(3).
      np.testing.assert_allclose(x.std(), bound / np.sqrt(3), rtol=0.05)
  simclr = ProjectionHead(num_layers=2, hidden_dim=hidden, hidden_bn=False, last_bn=False)
  p = simclr.init(jax.random.PRNGKey(0), jnp.ones((2, fan_in)))["params"]
  np.testing.assert_allclose(np.asarray(p["dense0"]["kernel"]).std(), 0.01, rtol=0.05)
  assert not np.asarray(p["dense0"]["bias"]).any()


def test_an_unknown_dense_init_is_an_error_naming_the_known_ones():
  with pytest.raises(ValueError, match="simclr.*torch"):
    ProjectionHead(dense_init="xavier")
