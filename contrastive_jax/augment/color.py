"""Colour: the one RGB <-> (hue, min, max) pair and the fused colour-jitter program.

The jitter applies brightness, contrast, saturation and hue in a random order
per image, clipping after each, on planar images [B, 3, ...]. Any order runs
as a fixed program of slots (`_JITTER_PROGRAM`), each an identity or the
drawn op, so the program is branchless across the batch.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from contrastive_jax.augment.fusion import _fenced

Array = jax.Array


# ----------------------------------------------------------------------------
# RGB <-> (hue, min, max): TF's CPU hue representation.
# ----------------------------------------------------------------------------


def _hue_planes(r: Array, g: Array, b: Array) -> tuple[Array, Array, Array]:
  """RGB planes -> (hue in [0, 1), min, max), TF's CPU hue representation."""
  vmax = jnp.maximum(jnp.maximum(r, g), b)
  vmin = jnp.minimum(jnp.minimum(r, g), b)
  chroma = vmax - vmin
  norm = 1.0 / (6.0 * jnp.where(chroma > 0, chroma, 1.0))
  hue = jnp.where(vmax == g, norm * (b - r) + 2.0 / 6.0, norm * (r - g) + 4.0 / 6.0)
  hue = jnp.where(vmax == r, norm * (g - b), hue)
  hue = jnp.where(chroma > 0, hue, 0.0)
  return hue + (hue < 0), vmin, vmax


def _frac(x: Array) -> Array:
  """x mod 1 via floor (XLA:CPU lowers a float `rem` to a scalar fmod call)."""
  return x - jnp.floor(x)


# Channel weights of the inverse (dh = hue * 6 in [0, 6)):
# clip(sign * |dh - centre| + offset, 0, 1), i.e. |dh - 3| - 1, 2 - |dh - 2|, 2 - |dh - 4|.
_HUE_TO_RGB = ((3.0, 2.0, 4.0), (1.0, -1.0, -1.0), (-1.0, 2.0, 2.0))  # centre, sign, offset


def _hue_range_to_rgb(dh: Array, vmin: Array, chroma: Array, axis: int) -> Array:
  """(hue * 6, min, max - min) -> RGB, the inverse of `_hue_planes`.

  Args:
    dh: hue * 6 in [0, 6), with a size-1 channel axis at `axis`.
    vmin: the pixel's minimum channel, shaped as dh.
    chroma: max - min, shaped as dh.
    axis: the channel axis (1 for planar [B, 1, ...], -1 for [..., H, W, 1]).

  Returns:
    min + chroma * weight, the channel axis of size 3 (R, G, B), not clipped.
  """
  shape = [1] * dh.ndim
  shape[axis] = 3
  centre, sign, offset = (jnp.asarray(v, dh.dtype).reshape(shape) for v in _HUE_TO_RGB)
  weight = jnp.clip(sign * jnp.abs(dh - centre) + offset, 0.0, 1.0)
  return vmin + chroma * weight


# ----------------------------------------------------------------------------
# Colour jitter: a fixed slot program for every random op order.
# ----------------------------------------------------------------------------

# Ops: 0 brightness, 1 contrast (RGB, cheap) and 2 saturation, 3 hue (HSV).
# Any order of the four fits the slot program R H R R H R: the two HSV ops
# commute when adjacent (one changes only s, the other only h, and the clip
# between them is a no-op), so adjacent ones share one HSV slot. Unused slots
# are identities.
_JITTER_PROGRAM = ("R", "H", "R", "R", "H", "R")
_PERMUTATIONS = tuple(itertools.permutations(range(4)))


def _build_slot_tables() -> tuple[np.ndarray, np.ndarray]:
  """For each of the 24 orders: the RGB op per slot and the HSV op mask per slot."""
  rgb = np.full((24, len(_JITTER_PROGRAM)), -1, np.int32)  # op id or -1
  hsv = np.zeros((24, len(_JITTER_PROGRAM)), np.int32)  # bit 0 sat, bit 1 hue
  for i, perm in enumerate(_PERMUTATIONS):
    slot, prev_hsv_slot = 0, -1
    for op in perm:
      if op >= 2 and prev_hsv_slot >= 0:  # follows an HSV op: share its slot
        hsv[i, prev_hsv_slot] |= 1 << (op - 2)
        continue
      kind = "R" if op < 2 else "H"
      while _JITTER_PROGRAM[slot] != kind:
        slot += 1
      if kind == "R":
        rgb[i, slot], prev_hsv_slot = op, -1
      else:
        hsv[i, slot], prev_hsv_slot = 1 << (op - 2), slot
      slot += 1
  return rgb, hsv


_RGB_SLOTS, _HSV_SLOTS = _build_slot_tables()


def _jitter_params(u: Array, strength: float, p: float, multiplicative_brightness: bool,
                   jitter: tuple[float, float, float, float] | None = None) -> dict[str, Array]:
  """Per-image jitter draws from uniforms u [B, 6] (SimCLR's `color_jitter_rand` ranges).

  `jitter` (brightness, contrast, saturation, hue) replaces SimCLR's (0.8, 0.8, 0.8, 0.2) * strength.
  """
  b, c, s, h = jitter if jitter is not None else (0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength)
  if multiplicative_brightness:  # v2: factor U[max(1 - b, 0), 1 + b]
    lo = max(1.0 - b, 0.0)
    brightness = lo + (1.0 + b - lo) * u[:, 0]
  else:  # v1: tf.image.random_brightness, delta U[-b, b]
    brightness = (2.0 * u[:, 0] - 1.0) * b
  lo_c, lo_s = max(1.0 - c, 0.0), max(1.0 - s, 0.0)
  return dict(
      brightness=brightness,
      contrast=lo_c + (1.0 + c - lo_c) * u[:, 1],
      saturation=lo_s + (1.0 + s - lo_s) * u[:, 2],
      hue=(2.0 * u[:, 3] - 1.0) * h,
      order=jnp.minimum((u[:, 4] * 24).astype(jnp.int32), 23),  # index into _PERMUTATIONS
      apply=u[:, 5] < p,
  )


def _rgb_slot(x: Array, a: Array, m: Array, d: Array) -> Array:
  """clip(a * x + m * mean(x) + d): brightness (+ or *), contrast or identity."""
  mean = jnp.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True)
  return jnp.clip(a * x + m * mean + d, 0.0, 1.0)


def _hsv_slot_planes(x: Array, sat: Array, dhue: Array) -> tuple[Array, Array, Array]:
  """Saturation and hue step 1: (hue * 6, max, new chroma), each [B, 1, ...]."""
  hue, vmin, vmax = _hue_planes(x[:, 0:1], x[:, 1:2], x[:, 2:3])
  # tf.image.adjust_saturation sets s' = clip(s * f, 0, 1) with
  # s = chroma / max; for max >= 0 (inputs in [0, 1]) the new chroma
  # s' * max is clip(chroma * f, 0, max), which needs no division.
  chroma = jnp.clip((vmax - vmin) * sat, 0.0, vmax)
  return _frac(hue + dhue) * 6.0, vmax, chroma


def _hsv_slot_rgb(dh: Array, vmax: Array, chroma: Array) -> Array:
  """Saturation and hue step 2: back to RGB [B, 3, ...], clipped.

  min = max - chroma is recomputed here rather than stored by step 1.
  """
  return jnp.clip(_hue_range_to_rgb(dh, vmax - chroma, chroma, axis=1), 0.0, 1.0)


def _jitter_planar(x: Array, params: dict[str, Array], multiplicative_brightness: bool,
                   token: Array | None = None, clip_input: bool = False) -> Array:
  """Applies the jitter program to planar images [B, 3, ...] in [0, 1].

  Each slot runs behind a fusion barrier (`_fenced`); an HSV slot is two
  steps, so that its hue math runs once per pixel rather than per channel.

  Args:
    x: planar images [B, 3, ...].
    params: `_jitter_params`.
    multiplicative_brightness: SimCLR v2 brightness.
    token: `_cpu_token` (fusion barriers on CPU) or None.
    clip_input: clip x to [0, 1] first (a bicubic crop overshoots), fused
      into the first slot and the final select instead of a pass of its own.

  Returns:
    [B, 3, ...] in [0, 1].
  """
  rgb_ops = jnp.asarray(_RGB_SLOTS)[params["order"]]  # [B, slots]
  hsv_ops = jnp.asarray(_HSV_SLOTS)[params["order"]]
  col = lambda v: v.reshape(v.shape + (1,) * (x.ndim - 1))  # per-image scalar -> [B, 1, ...]
  clip = lambda v: jnp.clip(v, 0.0, 1.0) if clip_input else v
  out = x
  for slot, kind in enumerate(_JITTER_PROGRAM):
    first = clip if slot == 0 else lambda v: v
    if kind == "R":
      # y = a * x + m * mean + d covers brightness (+ or *), contrast, identity.
      op = rgb_ops[:, slot]
      is_b, is_c = op == 0, op == 1
      if multiplicative_brightness:
        a = jnp.where(is_b, params["brightness"], jnp.where(is_c, params["contrast"], 1.0))
        d = jnp.zeros_like(a)
      else:
        a = jnp.where(is_c, params["contrast"], 1.0)
        d = jnp.where(is_b, params["brightness"], 0.0)
      m = jnp.where(is_c, 1.0 - params["contrast"], 0.0)
      out = _fenced(lambda v, *coeffs, first=first: _rgb_slot(first(v), *coeffs), token,
                    out, col(a), col(m), col(d))
    else:
      mask = hsv_ops[:, slot]
      sat = col(jnp.where(mask & 1, params["saturation"], 1.0))
      dhue = col(jnp.where(mask & 2, params["hue"], 0.0))
      planes = _fenced(lambda v, *coeffs, first=first: _hsv_slot_planes(first(v), *coeffs),
                       token, out, sat, dhue)
      out = _fenced(_hsv_slot_rgb, token, *planes)
  return jnp.where(col(params["apply"]), out, clip(x))


_GRAY = (0.2989, 0.5870, 0.1140)  # tf.image.rgb_to_grayscale weights


def _grayscale_planar(x: Array, apply: Array) -> Array:
  """Rec.601 luma of planar [B, 3, ...] where apply [B], else x."""
  gray = _GRAY[0] * x[:, 0:1] + _GRAY[1] * x[:, 1:2] + _GRAY[2] * x[:, 2:3]
  return jnp.where(apply.reshape((-1,) + (1,) * (x.ndim - 1)), gray, x)
