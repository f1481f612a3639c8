"""XLA:CPU helpers of the fused pipeline: fusion barriers and the chunk loop.

They change how XLA:CPU schedules the work, never the result: without them
(on accelerators, `token` None and one whole-batch chunk) every view is the
same. Why each exists and what it gained: docs/performance.md, "Augmentation:
where the time goes".
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp

from contrastive_jax import parallel
from contrastive_jax.augment.keys import _is_typed_key

Array = jax.Array


def _cpu_token(keys: Array) -> Array | None:
  """A run-time True for `_fenced` on CPU; None elsewhere (no barriers)."""
  if jax.default_backend() != "cpu":
    return None
  data = jax.random.key_data(keys) if _is_typed_key(keys) else keys
  return (data.reshape(-1)[0] | 1) != 0


def _fenced(fn: Any, token: Array | None, *args: Any) -> Any:
  """fn(*args) behind a fusion barrier (XLA:CPU), without an extra copy.

  fn runs in the taken branch of a conditional whose predicate (`token`,
  always True) is known only at run time, so XLA:CPU writes fn's result to
  memory once instead of fusing it into its consumers.

  Args:
    fn: the function; its result is a pytree of arrays.
    token: `_cpu_token`, or None for a plain fn(*args).
    *args: fn's arguments.

  Returns:
    fn(*args).
  """
  if token is None:
    return fn(*args)
  # Inside shard_map both branches must vary over the same mesh axes as fn's output.
  zeros_like_out = lambda s: parallel.match_vma(jnp.zeros(s.shape, s.dtype), s)
  zeros = lambda *a: jax.tree.map(zeros_like_out, jax.eval_shape(fn, *a))
  return jax.lax.cond(token, fn, zeros, *args)


def _map_chunks(fn: Any, per_image: Any, inputs: Array, chunk: int, token: Array | None,
                out_like: Array) -> Array:
  """fn(per_image, inputs) over batch chunks of `chunk` images, concatenated.

  Args:
    fn: (per_image chunk, inputs chunk) -> [c, ...] outputs of c images.
    per_image: a pytree of arrays with a leading batch axis B (the draws).
    inputs: [B, ...] images.
    chunk: images per chunk; >= B runs fn once on the whole batch.
    token: `_cpu_token` or None.
    out_like: [B, ...]; when fn's output has its shape and dtype, the chunks
      are written into a copy of it (no zero-initialised output buffer).

  Returns:
    [B, ...] fn's outputs, the last chunk possibly shorter.
  """
  b = inputs.shape[0]
  if chunk >= b:
    return fn(per_image, inputs)
  n = b // chunk
  rows = lambda lo, hi: jax.tree.map(lambda a: a[lo:hi], per_image)
  tail = lambda: fn(rows(n * chunk, b), inputs[n * chunk:])
  out = jax.eval_shape(fn, rows(0, chunk), inputs[:chunk])
  if out.shape[1:] != out_like.shape[1:] or out.dtype != out_like.dtype:
    split = lambda a: a[:n * chunk].reshape((n, chunk) + a.shape[1:])
    out = jax.lax.map(lambda px: fn(*px), jax.tree.map(split, (per_image, inputs)))
    out = out.reshape((n * chunk,) + out.shape[2:])
    if n * chunk < b:
      out = jnp.concatenate([out, tail()], axis=0)
    return out

  def body(i, out):
    start = i * chunk
    chunk_of = lambda a: jax.lax.dynamic_slice_in_dim(a, start, chunk)
    # Materialise the chunk's draws: a dynamic slice fused into every consumer is slow on XLA:CPU.
    draws = _fenced(lambda p: jax.tree.map(chunk_of, p), token, per_image)
    return jax.lax.dynamic_update_slice_in_dim(out, fn(draws, chunk_of(inputs)), start, 0)

  out = jax.lax.fori_loop(0, n, body, out_like)
  if n * chunk < b:
    out = out.at[n * chunk:].set(tail())
  return out


_CPU_CHUNK_PIXELS = 131072  # images per chunk on CPU: this many pixels (128 at 32 px)
# On one core, small images (the planar layout, <= 64 px) run fastest in L2-sized chunks (16 at
# 32 px); with more cores each kernel needs more work to pay for its threads (docs/performance.md).
_ONE_CORE_SMALL_CHUNK_PIXELS = 16384


def _process_cores() -> int:
  """CPUs this process may run on (its affinity mask where the OS has one)."""
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _chunk_size(chunk_images: int | None, image_size: int, b: int) -> int:
  """Images per `_map_chunks` chunk: chunk_images, else cache-sized on CPU, else all b."""
  if chunk_images is not None:
    return max(1, chunk_images)
  if jax.default_backend() != "cpu":
    return b  # accelerators: one pass over the whole batch
  pixels = _CPU_CHUNK_PIXELS
  if image_size <= 64 and _process_cores() == 1:
    pixels = _ONE_CORE_SMALL_CHUNK_PIXELS
  return max(1, pixels // (image_size * image_size))
