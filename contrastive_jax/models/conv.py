"""How the ResNet's convolutions are computed: XLA's convolution, im2col + GEMM, or Winograd.

`conv_impl` (a ResNet attribute, `config.model.encoder.conv_impl`):

* "xla": `lax.conv_general_dilated` (`nn.Conv`). The right choice on GPU/TPU.
* "im2col": the k*k shifted, strided views of the padded input are
  concatenated and multiplied with the kernel in one GEMM. XLA:CPU runs the
  kernel gradient of its own convolution far below matmul speed (about 5
  against 95 GFLOP/s on the 2-core test machine, docs/performance.md); as a
  GEMM it runs near matmul speed.
* "winograd": 3x3, stride-1, padding-1 convolutions (13 of ResNet-18's 17
  convolutions, most of its FLOPs) use Winograd's minimal filtering F(2x2, 3x3)
  (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
  16 GEMMs with 2.25x fewer multiplies than the direct convolution, and an
  input transform 4x the input instead of im2col's 9x. Every other convolution
  uses im2col. The transforms only add, subtract and halve, so results match
  the direct convolution to float32 rounding (relative error about 1e-6).
* "auto": "winograd" when JAX's default backend is the CPU, else "xla".

All of them use nn.Conv's `kernel` parameter [kh, kw, C, O] with the same
initialiser call, so variables, checkpoints and results are interchangeable.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from contrastive_jax import parallel

Array = Any
Dtype = Any

CONV_IMPLS: tuple[str, ...] = ("xla", "im2col", "winograd", "auto")


def check_conv_impl(conv_impl: Any) -> None:
  """Raises ValueError unless conv_impl is one of CONV_IMPLS."""
  if conv_impl not in CONV_IMPLS:
    raise ValueError(f"ResNet conv_impl must be one of {CONV_IMPLS}, got {conv_impl!r}.")


def resolve_conv_impl(conv_impl: str) -> str:
  """Maps "auto" to "winograd" when JAX's default backend is the CPU, else to "xla"; others unchanged."""
  check_conv_impl(conv_impl)
  if conv_impl == "auto":
    return "winograd" if jax.default_backend() == "cpu" else "xla"
  return conv_impl


def im2col_conv(x: Array, kernel: Array, strides: Sequence[int],
                padding: Sequence[tuple[int, int]]) -> Array:
  """NHWC / HWIO convolution as patches @ kernel; equals `lax.conv_general_dilated`.

  The k*k shifted, strided views of the padded input are concatenated on the
  channel axis (channel fastest, matching `kernel.reshape(k*k*C, O)`) and
  multiplied with the kernel in one GEMM. The gradients are then a GEMM plus
  pads and adds, which XLA:CPU runs much faster than its convolution backward.

  Args:
    x: [B, H, W, C].
    kernel: [kh, kw, C, O].
    strides: (sh, sw).
    padding: ((top, bottom), (left, right)).

  Returns:
    [B, Ho, Wo, O] in the dtype of x (and kernel).
  """
  kh, kw, c, o = kernel.shape
  sh, sw = strides
  if any(p for pair in padding for p in pair):
    x = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  b, h, w, _ = x.shape
  ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
  cols = [lax.slice(x, (0, i, j, 0), (b, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, c), (1, sh, sw, 1))
          for i in range(kh) for j in range(kw)]
  patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)
  # A plain 2-D GEMM: [B*Ho*Wo, k*k*C] @ [k*k*C, O].
  y = jnp.dot(patches.reshape(b * ho * wo, kh * kw * c), kernel.reshape(kh * kw * c, o))
  return y.reshape(b, ho, wo, o)


# Winograd F(2x2, 3x3): a 2x2 output tile is A^T [(G g G^T) * (B^T d B)] A for
# its 4x4 input tile d (overlapping by 2) and the 3x3 kernel g.
_BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
_AT = ((1, 1, 1, 0), (0, 1, -1, -1))


def winograd_applies(kernel_shape: Sequence[int], strides: Sequence[int],
                     padding: Sequence[Sequence[int]]) -> bool:
  """Whether `winograd_conv` computes this convolution: 3x3 kernel, stride 1, padding 1 on every side."""
  return (tuple(kernel_shape[:2]) == (3, 3) and tuple(strides) == (1, 1)
          and tuple(map(tuple, padding)) == ((1, 1), (1, 1)))


def _signed_sum(coeffs: Sequence[int], terms: Sequence[Array]) -> Array:
  """sum(c * t) for coefficients in {-1, 0, 1}, with adds and subtracts only."""
  out = None
  for c, t in zip(coeffs, terms):
    if c:
      out = (t if c > 0 else -t) if out is None else (out + t if c > 0 else out - t)
  return out


def _tile_views(x: Array, n: int, h2: int, w2: int) -> list[list[Array]]:
  """views[a][e][b, i, j] = x[b, 2i + a, 2j + e]: n x n strided views, each [B, h2, w2, C]."""
  b, _, _, c = x.shape
  return [[lax.slice(x, (0, a, e, 0), (b, a + 2 * h2 - 1, e + 2 * w2 - 1, c), (1, 2, 2, 1)) for e in range(n)]
          for a in range(n)]


def _input_transform(xp: Array, h2: int, w2: int) -> list[Array]:
  """Padded input [B, 2h2+2, 2w2+2, C] -> the 16 entries of B^T d B, each [B*h2*w2, C]."""
  d = _tile_views(xp, 4, h2, w2)
  rows = [[_signed_sum(_BT[u], [d[a][e] for a in range(4)]) for e in range(4)] for u in range(4)]
  return [_signed_sum(_BT[v], rows[u]).reshape(-1, xp.shape[-1]) for u in range(4) for v in range(4)]


def _output_transform(m: Sequence[Array], b: int, h2: int, w2: int) -> Array:
  """The 16 tile products, each [B*h2*w2, O] -> A^T m A interleaved into [B, 2h2, 2w2, O]."""
  o = m[0].shape[-1]
  m = [[m[4 * a + e].reshape(b, h2, w2, o) for e in range(4)] for a in range(4)]
  t = [[_signed_sum(_AT[u], [m[a][e] for a in range(4)]) for e in range(4)] for u in range(2)]
  # out[b, 2i + u, 2j + v] = y[u][v][b, i, j]; stacking in place avoids a transpose.
  rows = [jnp.stack([_signed_sum(_AT[v], t[u]) for v in range(2)], axis=3) for u in range(2)]
  return jnp.stack(rows, axis=2).reshape(b, 2 * h2, 2 * w2, o)


def _output_transform_transpose(dy: Array, h2: int, w2: int) -> list[Array]:
  """Transpose of `_output_transform`: dy [B, 2h2, 2w2, O] -> 16 x [B*h2*w2, O]."""
  s = _tile_views(dy, 2, h2, w2)
  t = [[_signed_sum([_AT[u][a] for u in range(2)], [s[u][v] for u in range(2)]) for v in range(2)]
       for a in range(4)]
  return [_signed_sum([_AT[v][e] for v in range(2)], t[a]).reshape(-1, dy.shape[-1])
          for a in range(4) for e in range(4)]


def _kernel_transform(kernel: Array) -> Array:
  """[3, 3, C, O] -> G g G^T, [16, C, O]."""
  g = jnp.asarray(_G, kernel.dtype)
  return jnp.einsum("ai,ijco,bj->abco", g, kernel, g).reshape(16, *kernel.shape[2:])


def _pad_to_tiles(x: Array, before: int) -> Array:
  """Pads H and W by `before` on top/left and to an even size (+ `before`) on the bottom/right."""
  _, h, w, _ = x.shape
  return jnp.pad(x, ((0, 0), (before, before + h % 2), (before, before + w % 2), (0, 0)))


def _tiled_input(x: Array) -> tuple[list[Array], int, int]:
  """x [B, H, W, C] -> (B^T d B of its padded 4x4 tiles, 16 x [B*h2*w2, C]; h2; w2), h2 = ceil(H / 2)."""
  _, h, w, _ = x.shape
  h2, w2 = (h + 1) // 2, (w + 1) // 2
  return _input_transform(_pad_to_tiles(x, 1), h2, w2), h2, w2


def _winograd(x: Array, u: Array) -> Array:
  """3x3 / stride 1 / padding 1 convolution of x [B, H, W, C] with transformed kernel u [16, C, O]."""
  b, h, w, _ = x.shape
  v, h2, w2 = _tiled_input(x)
  y = _output_transform([v[k] @ u[k] for k in range(16)], b, h2, w2)
  return y[:, :h, :w] if (h % 2 or w % 2) else y


@jax.custom_vjp
def _winograd_conv(x: Array, kernel: Array) -> Array:
  return _winograd(x, _kernel_transform(kernel))


def _winograd_conv_fwd(x, kernel):
  # Keep x, not the transformed input (4x larger): the backward pass rebuilds it.
  return _winograd_conv(x, kernel), (x, kernel)


def _winograd_conv_bwd(residuals, dy):
  x, kernel = residuals
  # The input gradient of a 3x3 / stride-1 / padding-1 convolution is the same
  # convolution of dy with the kernel rotated by 180 degrees, channels swapped.
  dx = _winograd(dy, _kernel_transform(jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)))
  v, h2, w2 = _tiled_input(x)
  dm = _output_transform_transpose(_pad_to_tiles(dy, 0), h2, w2)
  du = jnp.stack([v[k].T @ dm[k] for k in range(16)])
  # The kernel transform is linear: its VJP is its transpose.
  (dkernel,) = jax.vjp(_kernel_transform, kernel)[1](du)
  return dx, dkernel


_winograd_conv.defvjp(_winograd_conv_fwd, _winograd_conv_bwd)


def winograd_conv(x: Array, kernel: Array) -> Array:
  """3x3, stride-1, padding-1 NHWC / HWIO convolution by Winograd F(2x2, 3x3).

  Equals `lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)))` to
  float32 rounding. Each 4x4 input tile (stride 2) is transformed with adds
  and subtracts into 16 values per channel; 16 GEMMs [tiles, C] @ [C, O] with
  the transformed kernel replace the 9 taps, and adds fold the products back
  into 2x2 output tiles. The custom VJP computes the input gradient as the
  same Winograd convolution of dy with the rotated kernel, and the kernel
  gradient as 16 GEMMs of the transformed input and the transformed dy.

  Args:
    x: [B, H, W, C] (odd H or W are padded to even internally).
    kernel: [3, 3, C, O].

  Returns:
    [B, H, W, O] in the dtype of x (and kernel).
  """
  if x.ndim != 4 or kernel.shape[:2] != (3, 3) or kernel.shape[2] != x.shape[-1]:
    raise ValueError(f"winograd_conv needs x [B, H, W, C] and kernel [3, 3, C, O]; got {x.shape} and "
                     f"{kernel.shape}. Use im2col_conv for other kernel sizes.")
  # Inside shard_map the kernel is replicated and x varies over the data axis.
  # Casting the kernel to varying here makes the custom VJP's (per-device)
  # kernel gradient be summed over devices by the cast's transpose, as JAX
  # does for any replicated parameter.
  kernel = parallel.match_vma(kernel, x)
  return _winograd_conv(parallel.match_vma(x, kernel), kernel)


def convolve(x: Array, kernel: Array, strides: Sequence[int], padding: Sequence[tuple[int, int]],
             impl: str) -> Array:
  """Bias-free NHWC / HWIO convolution computed by `impl` ("xla", "im2col", "winograd" or "auto").

  "winograd" uses `winograd_conv` where `winograd_applies` and `im2col_conv`
  elsewhere. All give `lax.conv_general_dilated`'s result to float rounding.
  """
  impl = resolve_conv_impl(impl)
  if impl == "xla":
    return lax.conv_general_dilated(x, kernel, tuple(strides), tuple(map(tuple, padding)),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
  if impl == "winograd" and winograd_applies(kernel.shape, strides, padding):
    return winograd_conv(x, kernel)
  return im2col_conv(x, kernel, strides, padding)


class GemmConv(nn.Module):
  """Bias-free 2-D convolution computed with matrix multiplies; a drop-in for nn.Conv.

  impl="im2col" uses `im2col_conv` for every shape; impl="winograd" uses
  `winograd_conv` where `winograd_applies` (3x3, stride 1, padding 1) and
  `im2col_conv` elsewhere. The parameter is nn.Conv's: `kernel` [kh, kw, C, O],
  created with the same initialiser call, so both modules give identical
  variables for the same key.
  """
  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
  impl: str = "im2col"
  kernel_init: Callable[..., Array] = nn.initializers.lecun_normal()
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """[B, H, W, C] -> [B, Ho, Wo, features]."""
    if self.impl not in ("im2col", "winograd"):
      raise ValueError(f"GemmConv impl must be 'im2col' or 'winograd', got {self.impl!r}.")
    kernel = self.param("kernel", self.kernel_init, (*self.kernel_size, x.shape[-1], self.features),
                        self.param_dtype)
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    return convolve(x, kernel, self.strides, self.padding, self.impl)
