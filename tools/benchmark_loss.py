"""Benchmark NT-Xent: dense vs chunked, forward + backward, time and memory.

Prints a markdown table with, for each batch size B (per view) and path, the
compiled temporary memory (XLA ``memory_analysis().temp_size_in_bytes``) and
the median wall time of ``jax.value_and_grad`` w.r.t. both views (after a
warm-up / compile call, synchronised with ``block_until_ready``).

Dense evaluation needs several [2B, 2B] float32 matrices (16 B^2 bytes each),
so above ``--skip_dense_above`` (or when its temp memory exceeds
``--max_run_gib``) it is compiled for the memory figure only, not run.

  python tools/benchmark_loss.py --sizes 4096,16384,65536 --chunk_size 2048 [--floor]

Run it with XLA_FLAGS unset (one CPU device).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import timing  # noqa: E402  (tools/ is this script's directory, hence on sys.path)

from contrastive_jax.losses import nt_xent  # noqa: E402


def _parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--sizes", default="4096,16384,65536", help="comma-separated B per view")
  p.add_argument("--dim", type=int, default=128, help="embedding size D")
  p.add_argument("--chunk_size", type=int, default=2048, help="tile size of the chunked path")
  p.add_argument("--temperature", type=float, default=0.1)
  p.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up")
  p.add_argument("--slow_s", type=float, default=30.0,
                 help="if the warm-up run takes longer, report it instead of repeating")
  p.add_argument("--skip_dense_above", type=int, default=16384,
                 help="for B above this, dense is compiled (memory) but not run")
  p.add_argument("--max_run_gib", type=float, default=12.0,
                 help="never run a program whose temp memory exceeds this (GiB)")
  p.add_argument("--paths", default="dense,chunked", help="which paths to benchmark")
  p.add_argument("--floor", action="store_true",
                 help="also time the chunked path's tile products alone and print the floor they set")
  return p.parse_args(argv)


def _fmt_bytes(n: int) -> str:
  if n >= 2**30:
    return f"{n / 2**30:.2f} GiB"
  return f"{n / 2**20:.1f} MiB"


def _bench_one(b: int, d: int, chunk: int | None, args: argparse.Namespace, run: bool):
  """Returns (temp bytes, compile s, time str, loss or None)."""
  loss_fn = functools.partial(nt_xent, temperature=args.temperature, chunk_size=chunk)
  step = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1)))
  spec = jax.ShapeDtypeStruct((b, d), jnp.float32)
  t0 = time.perf_counter()
  compiled = step.lower(spec, spec).compile()
  compile_s = time.perf_counter() - t0
  temp = compiled.memory_analysis().temp_size_in_bytes
  if not run or temp > args.max_run_gib * 2**30:
    return temp, compile_s, "not run", None
  k1, k2 = jax.random.split(jax.random.key(0))
  z1 = jax.random.normal(k1, (b, d), jnp.float32)
  z2 = z1 + 0.5 * jax.random.normal(k2, (b, d), jnp.float32)
  t0 = time.perf_counter()
  loss, grads = compiled(z1, z2)  # Warm-up (already compiled).
  jax.block_until_ready((loss, grads))
  first = time.perf_counter() - t0
  if first > args.slow_s:
    return temp, compile_s, f"{first:.3f} (1 run)", float(loss)
  times = []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(z1, z2))
    times.append(time.perf_counter() - t0)
  return temp, compile_s, f"{statistics.median(times):.3f}", float(loss)


def _matmul_floor(b: int, d: int, chunk: int, repeats: int) -> str:
  """Lower bound of the single-device chunked fwd+bwd from its matrix products alone.

  The symmetric path computes each of the P = nb(nb+1)/2 tile pairs (nb = 2B / chunk) with one
  [chunk, D] x [D, chunk] product forward and three backward (one of those, [chunk, chunk] x
  [chunk, D], twice); each is timed alone here.
  """
  k1, k2 = jax.random.split(jax.random.key(1))
  u = jax.random.normal(k1, (chunk, d), jnp.float32)
  w = jax.random.normal(k2, (chunk, chunk), jnp.float32)

  def best(f, *xs):
    return timing.best_seconds(jax.jit(f), *xs, repeats=max(repeats, 5))

  t_s = best(lambda a, c: a @ c.T, u, u)    # logits tile
  t_g = best(lambda m, a: m @ a, w, u)      # gradient product
  nb = -(-2 * b // chunk)
  pairs = nb * (nb + 1) // 2
  floor = pairs * (2 * t_s + 2 * t_g)
  gflops = 2 * chunk * chunk * d / 1e9
  return (f"matmul floor at B={b}, chunk {chunk}: {pairs} tile pairs x (2 x {t_s * 1e3:.2f} ms logits "
          f"[{gflops / t_s:.0f} GFLOP/s] + 2 x {t_g * 1e3:.2f} ms gradient [{gflops / t_g:.0f} GFLOP/s]) "
          f"= {floor:.2f} s")


def main(argv=None) -> None:
  args = _parse_args(argv)
  sizes = [int(s) for s in args.sizes.split(",") if s]
  paths = [p.strip() for p in args.paths.split(",") if p.strip()]
  print(f"jax {jax.__version__}, devices: {jax.devices()}, cpus: {os.cpu_count()}, "
        f"{platform.processor() or platform.machine()}")
  print(f"D={args.dim}, temperature={args.temperature}, median of {args.repeats} runs "
        f"after a warm-up run (one run if it took > {args.slow_s:g} s), "
        f"fwd+bwd = value_and_grad w.r.t. both views\n")
  print("| B per view | path | chunk | temp memory | compile (s) | fwd+bwd (s) | loss |")
  print("|---:|---|---:|---:|---:|---:|---:|")
  for b in sizes:
    for path in paths:
      chunk = args.chunk_size if path == "chunked" else None
      run = not (path == "dense" and b > args.skip_dense_above)
      temp, compile_s, t_str, loss = _bench_one(b, args.dim, chunk, args, run)
      loss_str = f"{loss:.5f}" if loss is not None else "-"
      print(f"| {b} | {path} | {chunk or '-'} | {_fmt_bytes(temp)} | {compile_s:.1f} | "
            f"{t_str} | {loss_str} |", flush=True)
  if args.floor:
    print()
    for b in sizes:
      print(_matmul_floor(b, args.dim, args.chunk_size, args.repeats), flush=True)


if __name__ == "__main__":
  main()
