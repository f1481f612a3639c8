"""Vision Transformer encoder (Dosovitskiy et al. 2021), pre-LayerNorm as timm's VisionTransformer.

With a class token, learned position embeddings and no classifier, the parameter counts equal
timm's `vit_{tiny,small,base,large}_patch16_224(num_classes=0)` (tests/test_vit.py). MoCo v3's
options (Chen, Xie, He 2021): fixed 2-D sine-cosine position embeddings (`posemb="sincos2d"`)
and a random patch projection that is never trained (`frozen_patch_embed=True`: the optimiser
leaves `embedding` alone, `frozen_params`).

Mixed precision: `dtype` is the compute dtype (bfloat16 on accelerators); parameters are
float32, and LayerNorm statistics and the attention softmax are computed in float32.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from contrastive_jax.models.resnet import output_dtype

Array = Any
Dtype = Any

# (width, depth, heads) of the standard variants (ViT paper, DeiT for tiny / small).
VARIANTS = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16)}
POSEMBS = ("learn", "sincos2d")
POOLS = ("cls", "gap")
ATTENTION_IMPLS = ("flax", "xla", "cudnn")
_LN_EPSILON = 1e-6  # timm's and big_vision's


def sincos2d_posemb(h: int, w: int, width: int, temperature: float = 10_000.0) -> np.ndarray:
  """MoCo v3's fixed 2-D sine-cosine position embeddings, [h * w, width] (width % 4 == 0)."""
  if width % 4:
    raise ValueError(f"sincos2d position embeddings need a width divisible by 4; got {width}.")
  gy, gx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
  omega = 1.0 / temperature ** (np.arange(width // 4, dtype=np.float64) / (width // 4))
  oy, ox = gy.reshape(-1)[:, None] * omega[None], gx.reshape(-1)[:, None] * omega[None]
  return np.concatenate([np.sin(ox), np.cos(ox), np.sin(oy), np.cos(oy)], axis=1).astype(np.float32)


class _MLP(nn.Module):
  hidden: int
  dtype: Dtype

  @nn.compact
  def __call__(self, x: Array) -> Array:
    d = x.shape[-1]
    dense = lambda n, name: nn.Dense(n, dtype=self.dtype, param_dtype=jnp.float32,  # noqa: E731
                                     kernel_init=nn.initializers.xavier_uniform(), name=name)
    return dense(d, "fc2")(nn.gelu(dense(self.hidden, "fc1")(x), approximate=False))


def _attention_fn(impl: str):
  """The attention kernel of `ViT.attention_impl`: Flax's einsum + softmax, or `jax.nn.dot_product_attention`."""
  if impl == "flax":
    return nn.dot_product_attention
  # Same [B, tokens, heads, head_dim] layout as Flax's; it softmaxes in float32 whatever the dtype.
  return functools.partial(jax.nn.dot_product_attention, implementation=impl)


class _Block(nn.Module):
  """x + Attention(LN(x)), then x + MLP(LN(x))."""
  num_heads: int
  mlp_dim: int
  dtype: Dtype
  attention_impl: str = "flax"

  @nn.compact
  def __call__(self, x: Array) -> Array:
    y = nn.LayerNorm(epsilon=_LN_EPSILON, dtype=x.dtype, param_dtype=jnp.float32, name="norm1")(x)
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dtype=self.dtype, param_dtype=jnp.float32,
        kernel_init=nn.initializers.xavier_uniform(), attention_fn=_attention_fn(self.attention_impl),
        force_fp32_for_softmax=jnp.dtype(self.dtype).itemsize < 4, name="attn")(
            y.astype(self.dtype))
    x = x + y.astype(x.dtype)
    y = nn.LayerNorm(epsilon=_LN_EPSILON, dtype=x.dtype, param_dtype=jnp.float32, name="norm2")(x)
    return x + _MLP(self.mlp_dim, self.dtype, name="mlp")(y.astype(self.dtype)).astype(x.dtype)


class ViT(nn.Module):
  """Vision Transformer returning pooled features [B, width], as `ResNet` does.

  Attributes:
    variant: "tiny", "small", "base" or "large" (widths 192 / 384 / 768 / 1024, depths
      12 / 12 / 12 / 24, heads 3 / 6 / 12 / 16).
    patch_size: side of the square patches; it must divide the image side.
    posemb: "learn" (N(0, 0.02^2), timm) or "sincos2d" (fixed, no parameters; MoCo v3).
    pool: "cls" (a class token's output) or "gap" (the mean of the patch tokens; no class token).
    frozen_patch_embed: MoCo v3's random patch projection: `embedding` keeps its init. Its
      gradient is zero (a stop_gradient on its output, so no gradient reaches the images
      either) and `optim` masks it (`frozen_params`) so that weight decay does not move it.
    dtype: compute dtype; parameters float32; features `output_dtype(dtype)`.
    axis_name: unused (no BatchNorm); accepted so that encoders are interchangeable.
    width, depth, num_heads: override the variant's (a smaller ViT for CPUs).
    mlp_ratio: MLP hidden width / width (4).
    interpolate_posemb: learnt position embeddings resized (bicubic) to images of another size than
      the model was initialised with (DINO's multi-crop); False: such images are an error.
    attention_impl: "flax" (`nn.dot_product_attention`, the default), "xla" or "cudnn"
      (`jax.nn.dot_product_attention` with that implementation; "cudnn" is a fused
      flash-attention kernel that needs a GPU and bfloat16 or float16 compute). The parameters
      are the same for all three; results agree to the compute dtype's rounding.

  Parameters: `embedding` (the patch projection, a conv), `cls` and `pos_embedding` (if any),
  `block{i}` and `norm` (the final LayerNorm).
  """
  variant: str = "small"
  patch_size: int = 16
  posemb: str = "learn"
  pool: str = "cls"
  frozen_patch_embed: bool = False
  dtype: Dtype = jnp.float32
  axis_name: str | None = None
  width: int | None = None
  depth: int | None = None
  num_heads: int | None = None
  mlp_ratio: int = 4
  interpolate_posemb: bool = False
  attention_impl: str = "flax"

  def __post_init__(self):
    if self.variant not in VARIANTS:
      raise ValueError(f"ViT variant must be one of {sorted(VARIANTS)}; got {self.variant!r}.")
    if self.posemb not in POSEMBS:
      raise ValueError(f"ViT posemb must be one of {POSEMBS}; got {self.posemb!r}.")
    if self.pool not in POOLS:
      raise ValueError(f"ViT pool must be one of {POOLS}; got {self.pool!r}.")
    if self.attention_impl not in ATTENTION_IMPLS:
      raise ValueError(f"ViT attention_impl must be one of {ATTENTION_IMPLS}; got {self.attention_impl!r}.")
    if self.attention_impl == "cudnn" and jnp.dtype(self.dtype) not in (jnp.bfloat16, jnp.float16):
      raise ValueError(f"ViT attention_impl='cudnn' needs bfloat16 or float16 compute; got dtype "
                       f"{jnp.dtype(self.dtype).name}. Set the model dtype to bfloat16, or use 'flax' or 'xla'.")
    if not isinstance(self.patch_size, int) or self.patch_size < 1:
      raise ValueError(f"ViT patch_size must be a positive int; got {self.patch_size!r}.")
    if self.features % self.heads:
      raise ValueError(f"ViT width {self.features} is not divisible by its {self.heads} heads.")
    super().__post_init__()

  @property
  def features(self) -> int:
    return self.width or VARIANTS[self.variant][0]

  @property
  def heads(self) -> int:
    return self.num_heads or VARIANTS[self.variant][2]

  @property
  def layers(self) -> int:
    return self.depth or VARIANTS[self.variant][1]

  def feature_dim(self) -> int:
    return self.features

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """Encodes images [B, H, W, 3] (H, W multiples of patch_size) into features [B, width]."""
    del train  # no BatchNorm, no dropout
    if self.attention_impl == "cudnn" and jax.default_backend() != "gpu":
      raise ValueError(f"ViT attention_impl='cudnn' needs a GPU; JAX's backend is {jax.default_backend()!r}. "
                       "Use 'flax' or 'xla' here.")
    if x.ndim != 4 or x.shape[1] % self.patch_size or x.shape[2] % self.patch_size:
      raise ValueError(f"ViT expects images [B, H, W, C] with H and W multiples of patch_size={self.patch_size}; "
                       f"got shape {x.shape}. Choose a patch size that divides the image size.")
    d = self.features
    x = nn.Conv(d, (self.patch_size,) * 2, strides=(self.patch_size,) * 2, padding="VALID", dtype=self.dtype,
                param_dtype=jnp.float32, kernel_init=nn.initializers.xavier_uniform(), name="embedding")(
                    jnp.asarray(x, self.dtype))
    if self.frozen_patch_embed:
      # The patch projection is the first layer: stopping its output's gradient zeroes its kernel's and
      # bias's, so that any optimiser (not only ours, masked) leaves it alone.
      x = jax.lax.stop_gradient(x)
    b, h, w, _ = x.shape
    # The residual stream and LayerNorm stay float32 (float64 for float64 compute).
    x = x.reshape(b, h * w, d).astype(output_dtype(self.dtype))
    tokens = h * w + (self.pool == "cls")
    if self.posemb == "learn":
      if self.has_variable("params", "pos_embedding"):
        built = self.get_variable("params", "pos_embedding").shape[1]
        if built != tokens and self.interpolate_posemb:
          return self._encode(x, _resized_posemb(self.get_variable("params", "pos_embedding"), h, w,
                                                 self.pool == "cls"))
        if built != tokens:
          raise ValueError(f"ViT position embeddings were built for {built} tokens; these images give {tokens} "
                           f"({h} x {w} patches{' + the class token' if self.pool == 'cls' else ''}). Use images "
                           "of the size the model was initialised with, or interpolate_posemb=True (multi-crop).")
      pos = self.param("pos_embedding", nn.initializers.normal(0.02), (1, tokens, d))
    else:
      pos = jnp.asarray(sincos2d_posemb(h, w, d))[None]
      if self.pool == "cls":
        pos = jnp.concatenate([jnp.zeros((1, 1, d), pos.dtype), pos], axis=1)  # MoCo v3: zeros for the class token
    return self._encode(x, pos)

  def _encode(self, x: Array, pos: Array) -> Array:
    """Patch tokens [B, N, d] + position embeddings [1, N (+1), d] -> pooled features."""
    b, _, d = x.shape
    if self.pool == "cls":
      cls = self.param("cls", nn.initializers.normal(1e-6), (1, 1, d))
      x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)).astype(x.dtype), x], axis=1)
    x = x + pos.astype(x.dtype)
    for i in range(self.layers):
      x = _Block(self.heads, self.mlp_ratio * d, self.dtype, self.attention_impl, name=f"block{i}")(x)
    x = nn.LayerNorm(epsilon=_LN_EPSILON, dtype=x.dtype, param_dtype=jnp.float32, name="norm")(x)
    x = x[:, 0] if self.pool == "cls" else jnp.mean(x, axis=1)
    return x.astype(output_dtype(self.dtype))


def _resized_posemb(pos: Array, h: int, w: int, cls: bool) -> Array:
  """Learnt position embeddings [1, (cls +) g * g, d] resized to an h x w patch grid, bicubic (DINO's
  `interpolate_pos_encoding` for multi-crop; jax.image's cubic kernel, a = -0.5, where PyTorch's has -0.75)."""
  lead, grid = (pos[:, :1], pos[:, 1:]) if cls else (pos[:, :0], pos)
  g = int(round(grid.shape[1] ** 0.5))
  grid = grid.reshape(1, g, g, grid.shape[-1])
  grid = jax.image.resize(grid, (1, h, w, grid.shape[-1]), method="bicubic", antialias=False)
  return jnp.concatenate([lead, grid.reshape(1, h * w, -1)], axis=1)


def frozen_params(params: Any) -> Any:
  """A tree of bools like `params`: True on a frozen patch embedding (`.../embedding/...` of a ViT)."""
  def frozen(path, _):
    return any(getattr(k, "key", None) == "embedding" for k in path)
  return jax.tree_util.tree_map_with_path(frozen, params)


def parameter_count(params: Any) -> int:
  return int(sum(math.prod(np.shape(p)) for p in jax.tree.leaves(params)))
