"""Throughput and MFU of the full train step of any method (config.method) on synthetic data.

The step is exactly the one training runs (`train.build_step`): on-device augmentation of the views, encoder, heads, the
method's target and loss (SimCLR: NT-Xent with negatives gathered from every
device), the online probe, the optimiser update, the BN statistics and the
method's state. Input is random uint8 images, so no dataset is needed.

  python tools/benchmark.py --config experiments/cifar10_simclr.py --config.batch_size=64 --steps=5
  python tools/benchmark.py --config experiments/imagenet_simclr.py --config.batch_size=256 \\
      --config.data.host_crop=False --steps=10          # on a GPU
  python tools/benchmark.py --config ... --devices=8     # 8 host CPU devices (set before JAX starts)
  python tools/benchmark.py --config experiments/cifar10_byol.py:cpu --steps=5   # another method

Readable lines first; the LAST line is one JSON object:
  pairs_per_sec, views_per_sec     source images (pairs) and views per second (median step time)
  flops_per_step                   model FLOPs: XLA's cost analysis of the step with XLA convolutions
                                   (which counts only the multiply-adds on real, unpadded inputs), summed
                                   over devices; the same for every conv_impl, so MFUs compare
  executed_flops_per_step          the cost analysis of the program that ran (im2col also multiplies the
                                   zero padding, so it executes more)
  achieved_flops_per_sec           flops_per_step / median step time
  peak_flops_per_sec               a large matmul in the model dtype on the same devices (on CPU the
                                   devices share the host's cores, so it is measured once, not per device)
  mfu                              achieved / peak
  peak_memory_bytes                GPU/TPU: max peak_bytes_in_use over devices; CPU: the compiled step's
                                   temp + arguments + outputs - aliased (per device); null if unknown
and the configuration (model, batch, devices, dtype, backend, device kind, XLA flags).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import resource
import statistics
import time
from typing import Any


import argparse
import sys

import hugepages  # tools/ is this script's directory, hence on sys.path
import timing
from contrastive_jax import cli


def parse_args(argv: list[str]) -> tuple[Any, argparse.Namespace]:
  """The config (`--config path.py[:preset]`, `--config.x=y`) and this tool's own options."""
  try:
    config, rest = cli.split_config_args(argv)
  except ValueError as e:
    raise SystemExit(f"error: {e}") from None
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=10, help="Timed steps.")
  ap.add_argument("--warmup", type=int, default=1, help="Untimed steps after compilation.")
  ap.add_argument("--devices", type=int, default=0, help="Devices to use (0: all). On CPU, N > 1 splits the host into "
                  "N XLA devices (--xla_force_host_platform_device_count, set before JAX initialises).")
  ap.add_argument("--conv_impl", default="", help="ResNet convolution lowering: xla, im2col, winograd or auto "
                  "('' = config.model.encoder.conv_impl if the config has it, else the model default).")
  ap.add_argument("--donate", type=cli.bool_arg, nargs="?", const=True, default=True,
                  help="Donate the train state to the step (as training does).")
  ap.add_argument("--bn_fast_variance", type=cli.bool_arg, nargs="?", const=True, default=False,
                  help="BN batch variance as E[x^2] - E[x]^2 (one pass, one all-reduce per synchronised BN; the "
                  "models' behaviour before issue 17) instead of E[(x - E[x])^2] (docs/performance.md, Numerics).")
  ap.add_argument("--preempt_input", type=cli.bool_arg, nargs="?", const=True, default=True,
                  help="Feed the per-process SIGTERM flag into the step as the train loop does (batch['preempt'], "
                  "reduced with the metrics); false: the step without it.")
  ap.add_argument("--xla_flags", default="", help="Extra XLA_FLAGS, appended before JAX initialises.")
  ap.add_argument("--peak_size", type=int, default=0,
                  help="Matmul size n for the peak (n x n @ n x n); 0: 4096 on CPU, 8192 elsewhere.")
  ap.add_argument("--num_classes", type=int, default=0, help="Online-probe classes (0: from config.data.dataset).")
  ap.add_argument("--flops_only", type=cli.bool_arg, nargs="?", const=True, default=False,
                  help="Print the model FLOPs per step (XLA's cost analysis of the lowered XLA-convolution step) as "
                  "JSON and exit, without compiling or running: on a CPU, the count to pass as "
                  "--model_flops_per_step on a GPU, whose cost analysis leaves out cuDNN and cuBLAS calls "
                  "(docs/performance.md).")
  ap.add_argument("--model_flops_per_step", type=float, default=0.0, help="Model FLOPs per step for the MFU "
                  "(0: XLA's cost analysis here). Count them with --flops_only on a CPU for the same config.")
  ap.add_argument("--json_out", default="", help="Also write the JSON result to this file.")
  ap.add_argument("--trace_dir", default="", help="Also record a jax.profiler trace of the timed steps here "
                  "(TensorBoard/Perfetto; tools/profile_ops.py sums it per op). The profiler's overhead is then "
                  "part of the timed steps.")
  ap.add_argument("--hugepages", type=cli.bool_arg, nargs="?", const=True, default=True,
                  help="On Linux, re-run this process with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 so that glibc "
                  "backs large allocations (XLA:CPU's per-step temporaries) with transparent huge pages; with "
                  "4 KiB pages every step page-faults its fresh temporaries in again.")
  return config, ap.parse_args(rest)


_DATASET_CLASSES = {"cifar10": 10, "cifar100": 100, "stl10": 10, "imagenet2012": 1000, "imagenette": 10}


def _setup_env(args: argparse.Namespace) -> None:
  """XLA flags must be in the environment before the backend starts."""
  extra = []
  if args.devices > 1:
    extra.append(f"--xla_force_host_platform_device_count={args.devices}")
  if args.xla_flags:
    extra.append(args.xla_flags)
  if extra:
    os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *extra]).strip()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _cost_flops(stage: Any) -> float | None:
  """'flops' of a jax Lowered or Compiled stage's cost analysis, per device."""
  cost = stage.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per program
    cost = cost[0] if cost else None
  if not cost or "flops" not in cost:
    return None
  return float(cost["flops"])


def _memory_bytes(compiled: Any, devices: list[Any]) -> tuple[int | None, str | None]:
  """Peak memory: the allocator's high-water mark where reported, else XLA's static analysis."""
  stats = [d.memory_stats() for d in devices] if devices[0].platform != "cpu" else []
  peaks = [s.get("peak_bytes_in_use") for s in stats if s]
  if peaks and all(p is not None for p in peaks):
    return int(max(peaks)), "device.memory_stats peak_bytes_in_use (max over devices)"
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    m = None
  if m is None:
    return None, None
  total = m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
  return int(total), "compiled.memory_analysis temp + arguments + outputs - aliased (per device)"


def peak_matmul_flops(device: Any, dtype: Any, n: int, repeats: int = 3) -> float:
  """Best FLOP/s of an n x n matmul in `dtype` on `device` (2 n^3 flops per product)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  k1, k2 = jax.random.split(jax.random.key(0))
  a = jax.device_put(jax.random.normal(k1, (n, n), jnp.float32).astype(dtype), device)
  b = jax.device_put(jax.random.normal(k2, (n, n), jnp.float32).astype(dtype), device)
  return 2.0 * n ** 3 / timing.best_seconds(jax.jit(jnp.matmul), a, b, repeats=repeats)


def collective_ops(hlo_text: str) -> dict[str, int]:
  """Cross-device ops in a compiled program, by kind (after XLA's combiners merged what they could)."""
  op = r"(all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all)(?:-start)?\("
  kinds = re.findall(r"^\s*(?:ROOT )?\S+ = .*?\s" + op, hlo_text, flags=re.M)  # shapes may be tuples
  return {k: kinds.count(k) for k in sorted(set(kinds))}


def _synthetic_batch(config: Any, batch: int, image_size: int, num_classes: int,
                     preempt_input: bool) -> dict[str, Any]:
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  shape = (batch, 2, image_size, image_size, 3) if config.data.host_crop else (batch, image_size, image_size, 3)
  return {"image": rng.integers(0, 256, shape, dtype=np.uint8),
          "label": rng.integers(0, num_classes, (batch,), dtype=np.int32),
          "index": np.arange(batch, dtype=np.int32),
          **({"preempt": np.zeros((batch,), np.int32)} if preempt_input else {})}


def run(config: Any, args: argparse.Namespace) -> dict[str, Any]:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from contrastive_jax import models  # pylint: disable=g-import-not-at-top
  from contrastive_jax import parallel  # pylint: disable=g-import-not-at-top
  from contrastive_jax import train  # pylint: disable=g-import-not-at-top
  from contrastive_jax.models.conv import resolve_conv_impl  # pylint: disable=g-import-not-at-top
  from contrastive_jax.models import vit as vit_lib  # pylint: disable=g-import-not-at-top

  devices = jax.devices()
  if args.devices:
    if args.devices > len(devices):
      raise ValueError(f"--devices={args.devices} but only {len(devices)} devices: {devices}")
    devices = devices[:args.devices]
  mesh = parallel.make_data_mesh(devices)
  parallel.check_batch_divisible(config.batch_size, mesh.size)
  backend = devices[0].platform
  num_classes = args.num_classes or _DATASET_CLASSES.get(config.data.dataset, 10)

  if args.conv_impl:
    config.model.encoder.conv_impl = args.conv_impl
  config.model.bn_fast_variance = args.bn_fast_variance
  # Only the schedule depends on the dataset size; use a CIFAR-sized epoch.
  num_examples = max(config.data.num_train_examples, 50_000)
  built = train.build_step(config, mesh, num_examples=num_examples, num_classes=num_classes, donate=args.donate)
  augs = built.augs
  aug = augs[0]
  state = built.init(train.init_key(config.seed))
  batch = parallel.host_local_to_global(
      _synthetic_batch(config, config.batch_size, aug.image_size, num_classes, args.preempt_input), mesh)
  key = jax.random.key(config.seed)

  def xla_step():  # the model FLOPs: the XLA-convolution program (conv_impl changes no parameter)
    xla = config.copy_and_resolve_references()
    if "conv_impl" in xla.model.encoder:  # ViTs have no convolution lowering to pick
      xla.model.encoder.conv_impl = "xla"
    return train.build_step(xla, mesh, num_examples=num_examples, num_classes=num_classes, donate=args.donate).step

  if args.flops_only:
    flops = _cost_flops(xla_step().lower(state, batch, key))
    return {"flops_per_step": flops * len(devices) if flops is not None else None, "batch_size": config.batch_size,
            "image_size": aug.image_size, "dtype": str(config.model.dtype), "backend": backend,
            "devices": len(devices), "jax_version": jax.__version__}
  t0 = time.perf_counter()
  compiled = built.step.lower(state, batch, key).compile()
  compile_s = time.perf_counter() - t0
  executed_flops_per_device = _cost_flops(compiled)
  collectives = collective_ops(compiled.as_text())
  # Model FLOPs from the XLA-convolution program (lowered only; conv_impl changes no parameter).
  flops_per_device = _cost_flops(xla_step().lower(state, batch, key))

  for _ in range(args.warmup):
    state, metrics = compiled(state, batch, key)
  jax.block_until_ready(state)
  times = []
  if args.trace_dir:
    jax.profiler.start_trace(args.trace_dir, create_perfetto_trace=True)
  for _ in range(args.steps):
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch, key)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - t0)
  if args.trace_dir:
    jax.profiler.stop_trace()
  loss = float(metrics["loss"])
  median = statistics.median(times)
  mem, mem_source = _memory_bytes(compiled, devices)

  dtype = jnp.dtype(config.model.dtype)
  n = args.peak_size or (4096 if backend == "cpu" else 8192)
  peak_one = peak_matmul_flops(devices[0], dtype, n)
  # CPU "devices" are slices of one host sharing its cores: the host's peak is the peak.
  peak = peak_one if backend == "cpu" else peak_one * len(devices)
  flops = flops_per_device * len(devices) if flops_per_device is not None else None
  if args.model_flops_per_step:
    flops = args.model_flops_per_step
  executed = executed_flops_per_device * len(devices) if executed_flops_per_device is not None else None
  achieved = flops / median if flops is not None else None
  encoder_args = config.model.encoder.to_dict()
  arch = encoder_args.pop("name")
  resnet, vit = arch == "resnet", arch == "vit"
  encoder = (models.ResNet if resnet else models.ViT)(**encoder_args)  # its fields, defaults included
  return {
      "pairs_per_sec": config.batch_size / median,
      "views_per_sec": built.method.num_views * config.batch_size / median,
      "flops_per_step": flops,
      "executed_flops_per_step": executed,
      "achieved_flops_per_sec": achieved,
      "peak_flops_per_sec": peak,
      "mfu": achieved / peak if achieved is not None else None,
      "peak_memory_bytes": mem,
      "peak_memory_source": mem_source,
      "host_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
      "step_time_s_median": median,
      "step_time_s_mean": statistics.fmean(times),
      "step_time_s_min": min(times),
      "compile_s": compile_s,
      "collective_ops": collectives,
      "steps": args.steps,
      "warmup": args.warmup,
      "loss": loss,
      # Keys of the other architecture are null.
      "arch": arch,
      "depth": encoder.depth if resnet else None,
      "width_multiplier": encoder.width_multiplier if resnet else None,
      "base_width": encoder.base_width if resnet else None,
      "cifar_stem": encoder.cifar_stem if resnet else None,
      "conv_impl": encoder.conv_impl if resnet else None,
      "conv_impl_resolved": resolve_conv_impl(encoder.conv_impl) if resnet else None,
      "vit_variant": encoder.variant if vit else None,
      "patch_size": encoder.patch_size if vit else None,
      "vit_width": (encoder.width or vit_lib.VARIANTS[encoder.variant][0]) if vit else None,
      "attention_impl": encoder.attention_impl if vit else None,
      "dtype": str(dtype),
      "image_size": aug.image_size,
      "host_crop": bool(config.data.host_crop),
      "loss_chunk_size": config.loss_chunk_size,
      "method": built.method.name,
      "batch_size": config.batch_size,
      "batch_per_device": config.batch_size // len(devices),
      "devices": len(devices),
      "backend": backend,
      "device_kind": devices[0].device_kind,
      "peak_matmul_n": n,
      "donate": args.donate,
      "bn_fast_variance": args.bn_fast_variance,
      "preempt_input": args.preempt_input,
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
      "jax_version": jax.__version__,
      "cpu_count": os.cpu_count(),
      "machine": platform.machine(),
      "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
  }


def _si(x: float | None, unit: str) -> str:
  if x is None:
    return "n/a"
  for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
    if abs(x) >= scale:
      return f"{x / scale:.2f} {prefix}{unit}"
  return f"{x:.2f} {unit}"


def main(argv: list[str]) -> None:
  config, args = parse_args(argv)
  if args.hugepages:
    hugepages.reexec_with_hugepages()
  _setup_env(args)
  r = run(config, args)
  if args.flops_only:
    print(json.dumps(r), flush=True)
    return
  print(f"{r['backend']} x{r['devices']} ({r['device_kind']}), jax {r['jax_version']}, "
        f"XLA_FLAGS='{r['xla_flags']}', GLIBC_TUNABLES='{r['glibc_tunables']}'")
  encoder = (f"ViT-{r['vit_variant']}/{r['patch_size']} (width {r['vit_width']})" if r["arch"] == "vit" else
             f"ResNet-{r['depth']} (width x{r['width_multiplier']}, base {r['base_width']}, "
             f"{'CIFAR' if r['cifar_stem'] else 'ImageNet'} stem, conv {r['conv_impl_resolved']})")
  print(f"{r['method']}: {encoder} {r['dtype']}, "
        f"{r['image_size']} px, batch {r['batch_size']} ({r['batch_per_device']}/device), "
        f"donate={r['donate']}")
  print(f"compile {r['compile_s']:.1f} s; step median {r['step_time_s_median'] * 1e3:.1f} ms, "
        f"mean {r['step_time_s_mean'] * 1e3:.1f} ms, min {r['step_time_s_min'] * 1e3:.1f} ms "
        f"over {r['steps']} steps (after {r['warmup']} warm-up); loss {r['loss']:.4f}")
  print(f"{r['pairs_per_sec']:.1f} pairs/s ({r['views_per_sec']:.1f} views/s); "
        f"{_si(r['flops_per_step'], 'FLOP')}/step (executed {_si(r['executed_flops_per_step'], 'FLOP')}), "
        f"{_si(r['achieved_flops_per_sec'], 'FLOP/s')} achieved, "
        f"peak ({r['peak_matmul_n']}^2 matmul) {_si(r['peak_flops_per_sec'], 'FLOP/s')}, "
        f"MFU {r['mfu'] if r['mfu'] is None else round(r['mfu'], 3)}")
  mem = r["peak_memory_bytes"]
  print(f"peak memory {'n/a' if mem is None else f'{mem / 2**30:.2f} GiB'} ({r['peak_memory_source']})",
        flush=True)
  line = json.dumps(r)
  if args.json_out:
    with open(args.json_out, "w", encoding="utf-8") as f:
      f.write(line + "\n")
  print(line, flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
