"""Benchmark the losses: forward + backward, time and memory.

NT-Xent on one device (default): dense vs chunked. Prints a markdown table with, for each
batch size B (per view) and path, the compiled temporary memory (XLA
``memory_analysis().temp_size_in_bytes``) and the median wall time of
``jax.value_and_grad`` w.r.t. both views (after a warm-up / compile call, synchronised with
``block_until_ready``). Dense evaluation needs several [2B, 2B] float32 matrices (16 B^2
bytes each), so above ``--skip_dense_above`` (or when its temp memory exceeds
``--max_run_gib``) it is compiled for the memory figure only, not run.

  env -u XLA_FLAGS python tools/benchmark_loss.py --sizes 4096,16384,65536 --chunk_size 2048 [--floor]

Image-text losses (``--loss clip`` or ``siglip``) under ``jax.shard_map`` on ``--devices``
host devices (default 8), global batch N, gradients w.r.t. x, y, the logit scale (and bias):
the gathered-dense, gathered-tiled and ring paths, and big_vision's formulation beside them
(a plain dense function of the global batch under jit, its rows sharded over the devices,
written from its definition). Temp memory is per device; sizes above ``--run_up_to`` are
compiled, not run.

  python tools/benchmark_loss.py --loss siglip --sizes 16384,65536 --chunk_size 1024
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import time



def _devices_flag(argv=None) -> None:
  """--devices N (the image-text losses: 8 by default) must reach XLA before JAX starts."""
  p = argparse.ArgumentParser(add_help=False)
  p.add_argument("--loss", default="nt_xent")
  p.add_argument("--devices", type=int, default=0)
  known, _ = p.parse_known_args(argv)
  n = known.devices or (8 if known.loss != "nt_xent" else 0)
  if n:
    flags = os.environ.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count", "--ignored")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


_devices_flag()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402
import numpy as np  # noqa: E402
import timing  # noqa: E402  (tools/ is this script's directory, hence on sys.path)

from contrastive_jax.losses import clip_loss, nt_xent, siglip_loss  # noqa: E402


def _parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--loss", default="nt_xent", choices=("nt_xent", "clip", "siglip"))
  p.add_argument("--devices", type=int, default=0, help="host devices (clip / siglip: 8 when 0)")
  p.add_argument("--run_up_to", type=int, default=16384, help="clip / siglip: larger N are compiled, not run")
  p.add_argument("--sizes", default="4096,16384,65536", help="comma-separated B per view (clip / siglip: N)")
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


AX = "d"
IMAGE_TEXT_PATHS = ("gathered-dense", "gathered-tiled", "ring", "big_vision")


def _big_vision(loss: str):
  """big_vision's formulation: the dense [N, N] logits of the global batch (jit shards the rows)."""
  def fn(x, y, t, b):
    zi = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
    zt = y / jnp.linalg.norm(y, axis=-1, keepdims=True)
    logits = zi @ zt.T * jnp.exp(t)
    if loss == "clip":
      return -(jnp.mean(jnp.diag(jax.nn.log_softmax(logits, axis=1)))
               + jnp.mean(jnp.diag(jax.nn.log_softmax(logits, axis=0)))) / 2
    labels = 2 * jnp.eye(x.shape[0], dtype=logits.dtype) - 1
    return -jnp.mean(jnp.sum(jax.nn.log_sigmoid(labels * (logits + b)), axis=-1))
  return fn


def _ours(loss: str, path: str, chunk: int):
  kw = {"gathered-dense": {}, "gathered-tiled": {"chunk_size": chunk}, "ring": {"ring": True, "chunk_size": chunk}}[path]

  def local(x, y, t, b):
    if loss == "clip":
      value = clip_loss(x, y, logit_scale=t, axis_name=AX, **kw)
    else:
      value = siglip_loss(x, y, logit_scale=t, logit_bias=b, axis_name=AX, **kw)
    return jax.lax.pmean(value, AX)
  return local


def _bench_image_text(n: int, path: str, args: argparse.Namespace, mesh, run: bool):
  """(temp bytes per device, compile s, time str, loss or None) of value_and_grad w.r.t. x, y, t, b."""
  rows, rep = NamedSharding(mesh, P(AX)), NamedSharding(mesh, P())
  if path == "big_vision":
    fn = jax.jit(jax.value_and_grad(_big_vision(args.loss), argnums=(0, 1, 2, 3)),
                 in_shardings=(rows, rows, rep, rep))
  else:
    sm = jax.shard_map(_ours(args.loss, path, args.chunk_size), mesh=mesh, in_specs=(P(AX), P(AX), P(), P()),
                       out_specs=P())
    fn = jax.jit(jax.value_and_grad(sm, argnums=(0, 1, 2, 3)))
  spec = jax.ShapeDtypeStruct((n, args.dim), jnp.float32, sharding=rows)
  scalar = jax.ShapeDtypeStruct((), jnp.float32, sharding=rep)
  t0 = time.perf_counter()
  compiled = fn.lower(spec, spec, scalar, scalar).compile()
  compile_s = time.perf_counter() - t0
  temp = compiled.memory_analysis().temp_size_in_bytes
  if not run or temp > args.max_run_gib * 2**30:
    return temp, compile_s, "not run", None
  rng = np.random.default_rng(0)
  x = rng.standard_normal((n, args.dim), np.float32)
  y = x + rng.standard_normal((n, args.dim), np.float32)
  x, y = jax.device_put(x, rows), jax.device_put(y, rows)
  t, b = (jax.device_put(np.float32(v), rep) for v in ((np.log(10.0), -10.0) if args.loss == "siglip"
                                                        else (np.log(1 / 0.07), 0.0)))
  t0 = time.perf_counter()
  value, _ = jax.block_until_ready(compiled(x, y, t, b))
  if time.perf_counter() - t0 > args.slow_s:
    return temp, compile_s, f"{time.perf_counter() - t0:.3f} (1 run)", float(value)
  times = []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(x, y, t, b))
    times.append(time.perf_counter() - t0)
  return temp, compile_s, f"{statistics.median(times):.3f}", float(value)


def _main_image_text(args: argparse.Namespace, sizes: list[int]) -> None:
  devices = jax.devices()
  mesh = jax.sharding.Mesh(np.array(devices), (AX,))
  print(f"jax {jax.__version__}, {len(devices)} {devices[0].platform} devices, cpus: {os.cpu_count()}, "
        f"{platform.processor() or platform.machine()}")
  print(f"{args.loss}, D={args.dim}, tile {args.chunk_size} (gathered-tiled, ring), median of {args.repeats} "
        f"runs after a warm-up run; fwd+bwd = value_and_grad w.r.t. x, y, logit scale and bias; temp memory "
        f"per device; N > {args.run_up_to} compiled, not run\n")
  print("| N (global) | path | temp memory / device | compile (s) | fwd+bwd (s) | loss |")
  print("|---:|---|---:|---:|---:|---:|")
  for n in sizes:
    for path in IMAGE_TEXT_PATHS:
      temp, compile_s, t_str, value = _bench_image_text(n, path, args, mesh, run=n <= args.run_up_to)
      print(f"| {n} | {path} | {_fmt_bytes(temp)} | {compile_s:.1f} | {t_str} | "
            f"{'-' if value is None else f'{value:.5f}'} |", flush=True)


def main(argv=None) -> None:
  args = _parse_args(argv)
  sizes = [int(s) for s in args.sizes.split(",") if s]
  if args.loss != "nt_xent":
    _main_image_text(args, sizes)
    return
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
