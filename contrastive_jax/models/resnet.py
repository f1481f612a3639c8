"""ResNet v1 encoders (Flax linen, NHWC) as used by SimCLR.

The architecture follows torchvision's ResNet v1.5 (stride on the 3x3 conv of
the bottleneck) so parameter counts equal torchvision's backbones without the
final fc layer, e.g. ResNet-50: 23,508,032. SimCLR's width multiplier scales
every channel width, the stem included (Chen et al. 2020, google-research/simclr
`resnet.py`). The CIFAR variant swaps the 7x7/2 stem conv and max-pool for a
single 3x3 stride-1 conv (SimCLR paper, App. B.9).

Batch statistics are synchronised across devices when `axis_name` is set and
the module runs inside `jax.shard_map` (or `pmap`) over that axis ("global
BN", SimCLR Sec. 2.3). The batch variance is E[(x - E[x])^2] (two passes, two
all-reduces when synchronised), not Flax's default E[x^2] - E[x]^2, which
cancels in float32 when a channel's mean is large against its spread
(`bn_fast_variance=True` restores it; docs/performance.md, "Numerics").

`dtype` is the compute dtype. Parameters are created in float32; outputs are
float32 for bfloat16 / float16 compute and float64 for float64 compute
(`output_dtype`), so a float64 model (with `jax_enable_x64`, parameters cast
to float64) is a float64 reference of the float32 one.

`conv_impl` picks how convolutions are computed (models/conv.py): "xla"
(`lax.conv_general_dilated`), "im2col" (strided slices + one GEMM),
"winograd" (Winograd F(2x2, 3x3) for 3x3 stride-1 convs, im2col for the
rest) or "auto" (winograd when JAX's default backend is the CPU, else xla).
All use the same `kernel` parameter [k, k, C, O] (same names, shapes and
initial values), so checkpoints work with any of them.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from contrastive_jax.models.conv import GemmConv, check_conv_impl, resolve_conv_impl

Array = Any
Dtype = Any
ModuleDef = Callable[..., nn.Module]

# depth -> (block type, blocks per stage)
_STAGES: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    10: ("basic", (1, 1, 1, 1)),  # one block per stage (timm's resnet10t layout): small models, fast tests
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
ALLOWED_DEPTHS: tuple[int, ...] = tuple(sorted(_STAGES))
_BN_EPSILON = 1e-5  # SimCLR BATCH_NORM_EPSILON and torchvision's default.

# He normal with fan_out, as torchvision's kaiming_normal_(mode="fan_out").
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _check_depth_width(depth: Any, width_multiplier: Any, base_width: Any = 64) -> None:
  """Raises ValueError unless depth and width_multiplier are supported."""
  if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or int(depth) not in _STAGES:
    raise ValueError(f"ResNet depth must be one of {ALLOWED_DEPTHS}, got {depth!r}.")
  if (isinstance(width_multiplier, bool) or not isinstance(width_multiplier, numbers.Integral)
      or width_multiplier <= 0):
    raise ValueError(
        "ResNet width_multiplier must be a positive int (SimCLR uses 1, 2 or 4), "
        f"got {width_multiplier!r}.")
  if isinstance(base_width, bool) or not isinstance(base_width, numbers.Integral) or base_width <= 0:
    raise ValueError(f"ResNet base_width must be a positive int (standard ResNet: 64), got {base_width!r}.")


def output_dtype(dtype: Dtype) -> jnp.dtype:
  """The dtype of features and embeddings for compute `dtype`: at least float32 (float64 stays float64)."""
  return jnp.promote_types(dtype, jnp.float32)


def feature_dim(depth: int, width_multiplier: int = 1, base_width: int = 64) -> int:
  """Width of the pooled features h: 512 * wm (depth 18/34), 2048 * wm (50+), for base_width 64."""
  _check_depth_width(depth, width_multiplier, base_width)
  expansion = 1 if _STAGES[int(depth)][0] == "basic" else 4
  return 8 * base_width * expansion * int(width_multiplier)


def _conv(features: int, kernel: int, strides: int, *, name: str, dtype: Dtype = jnp.float32,
          conv_impl: str = "xla") -> nn.Module:
  # Symmetric explicit padding as torchvision / SimCLR's fixed_padding; 'SAME'
  # would pad (0, 1) for strided convs on even inputs.
  pad = (kernel - 1) // 2
  padding = ((pad, kernel - 1 - pad), (pad, kernel - 1 - pad))
  impl = resolve_conv_impl(conv_impl)
  if impl != "xla":
    return GemmConv(features, (kernel, kernel), strides=(strides, strides), padding=padding, impl=impl,
                    kernel_init=conv_kernel_init, dtype=dtype, param_dtype=jnp.float32, name=name)
  return nn.Conv(
      features, (kernel, kernel), strides=(strides, strides),
      padding=padding, use_bias=False,
      kernel_init=conv_kernel_init, dtype=dtype, param_dtype=jnp.float32, name=name)


class BasicBlock(nn.Module):
  """Two 3x3 convs (ResNet-18/34). Output channels: `filters`."""
  filters: int
  strides: int
  norm: ModuleDef
  zero_init_residual: bool = False
  conv: ModuleDef = _conv  # _conv with the encoder's dtype and conv_impl bound

  expansion = 1

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """[B, H, W, C] -> [B, H / strides, W / strides, filters]."""
    last_scale = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
    y = self.conv(self.filters, 3, self.strides, name="conv1")(x)
    y = nn.relu(self.norm(name="bn1")(y))
    y = self.conv(self.filters, 3, 1, name="conv2")(y)
    y = self.norm(scale_init=last_scale, name="bn2")(y)
    if x.shape[-1] != self.filters or self.strides != 1:
      x = self.conv(self.filters, 1, self.strides, name="downsample_conv")(x)
      x = self.norm(name="downsample_bn")(x)
    return nn.relu(x + y)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (strided, v1.5) -> 1x1 convs. Output channels: 4 * `filters`."""
  filters: int
  strides: int
  norm: ModuleDef
  zero_init_residual: bool = False
  conv: ModuleDef = _conv  # _conv with the encoder's dtype and conv_impl bound

  expansion = 4

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """[B, H, W, C] -> [B, H / strides, W / strides, 4 * filters]."""
    out = self.filters * self.expansion
    last_scale = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
    y = self.conv(self.filters, 1, 1, name="conv1")(x)
    y = nn.relu(self.norm(name="bn1")(y))
    y = self.conv(self.filters, 3, self.strides, name="conv2")(y)
    y = nn.relu(self.norm(name="bn2")(y))
    y = self.conv(out, 1, 1, name="conv3")(y)
    y = self.norm(scale_init=last_scale, name="bn3")(y)
    if x.shape[-1] != out or self.strides != 1:
      x = self.conv(out, 1, self.strides, name="downsample_conv")(x)
      x = self.norm(name="downsample_bn")(x)
    return nn.relu(x + y)


class ResNet(nn.Module):
  """ResNet v1 encoder returning globally average-pooled features h.

  Attributes:
    depth: one of 10, 18, 34 (basic blocks), 50, 101, 152, 200 (bottlenecks).
    width_multiplier: positive int scaling every channel width (SimCLR 1x/2x/4x).
    cifar_stem: 3x3 stride-1 stem conv without max-pool (for <= 32 px images)
      instead of 7x7/2 conv + BN + ReLU + 3x3/2 max-pool.
    axis_name: mapped axis over which BN batch statistics are averaged in train
      mode (cross-replica BN); the module must then run under shard_map/pmap
      with that axis. None: per-device statistics.
    bn_momentum: decay of the BN running averages (SimCLR: 0.9).
    zero_init_residual: zero-initialise the last BN scale of each residual
      block, so every block starts as the identity.
    dtype: compute dtype (e.g. jnp.bfloat16); params are created in float32,
      the returned features are `output_dtype(dtype)` (float32, or float64
      for float64 compute).
    base_width: channels of the first stage (stages use 1x, 2x, 4x, 8x that);
      64 is the standard ResNet. Narrower nets (e.g. 16) make CPU-sized
      experiments possible with the same architecture.
    conv_impl: how convolutions are computed, one of CONV_IMPLS: "xla"
      (`lax.conv_general_dilated`), "im2col" (strided slices + one GEMM),
      "winograd" (F(2x2, 3x3) for 3x3 stride-1 convs, im2col otherwise;
      fastest on XLA:CPU) or "auto" (winograd on a CPU default backend,
      else xla). Same parameters and results (up to float rounding).
    bn_fast_variance: BN batch variance as E[x^2] - E[x]^2 (Flax's default:
      one pass, one all-reduce when synchronised, but it cancels in float32)
      instead of E[(x - E[x])^2].

  Invalid configurations raise ValueError when the module is constructed.
  Variables: {'params', 'batch_stats'}. Parameter names are torchvision-like:
  `conv1`/`bn1` (stem), `layer{1..4}_block{j}` with `conv{k}`, `bn{k}`,
  `downsample_conv`, `downsample_bn`.
  """
  depth: int
  width_multiplier: int = 1
  cifar_stem: bool = False
  axis_name: str | None = None
  bn_momentum: float = 0.9
  zero_init_residual: bool = False
  dtype: Dtype = jnp.float32
  base_width: int = 64
  conv_impl: str = "xla"
  bn_fast_variance: bool = False

  def __post_init__(self):
    _check_depth_width(self.depth, self.width_multiplier, self.base_width)
    check_conv_impl(self.conv_impl)
    if not 0.0 <= self.bn_momentum < 1.0:
      raise ValueError(f"ResNet bn_momentum must be in [0, 1), got {self.bn_momentum!r}.")
    super().__post_init__()

  @property
  def feature_dim(self) -> int:
    """Width of the output features (module-level `feature_dim` of this config)."""
    return feature_dim(self.depth, self.width_multiplier, self.base_width)

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """Encodes images.

    Args:
      x: images [B, H, W, 3], float (any float dtype; cast to `dtype`).
      train: use batch statistics (and update `batch_stats`, which must then
        be mutable) instead of the running averages. With `axis_name` set,
        train mode must run inside shard_map/pmap over that axis.

    Returns:
      h: [B, feature_dim(depth, width_multiplier)] in `output_dtype(dtype)`.
    """
    if x.ndim != 4:
      raise ValueError(f"ResNet expects images of shape [B, H, W, C]; got shape {x.shape}.")
    block_kind, stage_sizes = _STAGES[int(self.depth)]
    block_cls = BasicBlock if block_kind == "basic" else Bottleneck
    wm = int(self.width_multiplier)
    widths = [self.base_width * m * wm for m in (1, 2, 4, 8)]
    norm = functools.partial(
        nn.BatchNorm, use_running_average=not train, momentum=self.bn_momentum,
        epsilon=_BN_EPSILON, axis_name=self.axis_name, dtype=self.dtype,
        param_dtype=jnp.float32, use_fast_variance=self.bn_fast_variance)

    conv = functools.partial(_conv, dtype=self.dtype, conv_impl=self.conv_impl)

    x = jnp.asarray(x, self.dtype)
    if self.cifar_stem:
      x = conv(widths[0], 3, 1, name="conv1")(x)
      x = nn.relu(norm(name="bn1")(x))
    else:
      x = conv(widths[0], 7, 2, name="conv1")(x)
      x = nn.relu(norm(name="bn1")(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

    for i, num_blocks in enumerate(stage_sizes):
      for j in range(num_blocks):
        x = block_cls(
            filters=widths[i], strides=2 if i > 0 and j == 0 else 1, norm=norm,
            zero_init_residual=self.zero_init_residual, conv=conv,
            name=f"layer{i + 1}_block{j}")(x)
    # Pool in (at least) float32 so low-precision compute still yields float32 features.
    return jnp.mean(x.astype(output_dtype(self.dtype)), axis=(1, 2))
