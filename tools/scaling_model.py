"""Communication volume of the distributed SimCLR step and a projected step time on 8xH100 / TPU v4-32.

Compiles (never runs) the real train step (`train.build_step`, as training builds it; under
`train.distribute`) on N host CPU devices for ResNet-18 CIFAR and ResNet-50
224 px, reads every collective out of the optimised HLO (`compiled.as_text()`)
and sums its bytes by role:

  embedding all-gather     the projections z gathered for global negatives (forward)
  embedding reduce-scatter the all-gather's transpose in the backward pass
  gradient all-reduce      parameter gradients (incl. BN scale/offset and the probe)
  BN forward sync          cross-replica BN statistics: per BN layer the [C] mean, then the [C] variance
                           around it (one [2, C] op with --bn_fast_variance, E[x^2] - E[x]^2)
  BN backward sync         the transpose of those syncs in the backward pass
  loss/metrics             scalars

Roles come from the HLO op metadata (`op_name` holds the Flax module path and
whether the op is in the transposed (backward) computation) and shapes.

It then projects a step time with a standard cost model (all assumptions are
printed with the table): ring all-reduce 2(n-1)/n * bytes / bw, all-gather and
reduce-scatter (n-1)/n * (gathered bytes) / bw, plus a fixed latency per
collective; per-chip compute time from views/s per chip, which is either
measured (`--anchor_json`, a tools/benchmark.py JSON line from one GPU) or
assumed as MFU x nominal peak / (XLA flops per view).

  python tools/scaling_model.py [--markdown_out table.md] [--anchor_json gpu_check_out/resnet50_224_bf16_b256.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import time
from typing import Any

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4,
                "f32": 4, "s64": 8, "u64": 8, "f64": 8}
_COLLECTIVE = re.compile(
    r"^\s*(?:ROOT\s+)?%?[\w.\-]+ = (?P<shape>.+?) (?P<op>all-reduce|all-gather|reduce-scatter|all-to-all|"
    r"collective-permute)(?:-start)?\(")
_ARRAY = re.compile(r"\b(" + "|".join(_DTYPE_BYTES) + r")\[([\d,]*)\]")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_BN = re.compile(r"(^|/|\()(bn\d*|downsample_bn)/psum")

# Platforms: (name, chips, per-direction link bandwidth used by a ring, B/s; latency per collective, s;
#             nominal dense bf16 peak per chip, FLOP/s; assumed MFU)
PLATFORMS = {
    "8xH100": dict(chips=8, bw=450e9, latency=15e-6, peak=989.4e12, mfu=0.2,
                   note="NVLink 4 through NVSwitch, 450 GB/s per direction per GPU; ring all-reduce at that "
                        "bandwidth; 15 us per collective (NCCL small-message latency, assumed)"),
    "TPU v4-32": dict(chips=16, bw=2 * 4.5e10, latency=10e-6, peak=275e12, mfu=0.3,
                      note="16 chips (32 TensorCores, one JAX device per chip) in a 2x2x4 slice; ICI 4.5e10 B/s "
                           "per link per direction; a bidirectional ring over 2 links (90 GB/s per chip); "
                           "the 3-D mesh could drive up to 6 links, so this is conservative; 10 us per "
                           "collective (assumed)"),
}

SCENARIOS = {
    "resnet18_cifar": dict(config="experiments/cifar10_simclr.py", preset="", batch=512, num_classes=10,
                           label="ResNet-18 CIFAR 32 px"),
    "resnet50_224": dict(config="experiments/imagenet_simclr.py", preset="100ep", batch=4096, num_classes=1000,
                         label="ResNet-50 224 px bf16"),
}


def _array_bytes(shape_text: str) -> list[tuple[str, tuple[int, ...], int]]:
  out = []
  for dtype, dims in _ARRAY.findall(shape_text):
    shape = tuple(int(d) for d in dims.split(",") if d)
    n = 1
    for d in shape:
      n *= d
    out.append((dtype, shape, n * _DTYPE_BYTES[dtype]))
  return out


def classify_collectives(hlo: str, n_devices: int) -> dict[str, dict[str, float]]:
  """Role -> {ops, bytes (payload as the cost model uses it), arrays} from optimised HLO text.

  Bytes: all-reduce = its operand (= result) size; all-gather = the gathered (result) size;
  reduce-scatter = its input size (result x n). Scalars inside a gradient all-reduce count as metrics.
  """
  roles: dict[str, dict[str, float]] = collections.defaultdict(lambda: {"ops": 0, "bytes": 0, "arrays": 0})
  for line in hlo.splitlines():
    m = _COLLECTIVE.match(line)
    if not m or "-done(" in line:
      continue
    op, arrays = m.group("op"), _array_bytes(m.group("shape"))
    op_name = (_OP_NAME.search(line) or [None, ""])[1]
    backward = "transpose(" in op_name
    if op == "all-gather":
      role, nbytes = "embedding all-gather", sum(a[2] for a in arrays)
      roles[role]["ops"] += 1
      roles[role]["bytes"] += nbytes
      roles[role]["arrays"] += len(arrays)
      continue
    if op == "reduce-scatter":
      role = "embedding reduce-scatter"
      roles[role]["ops"] += 1
      roles[role]["bytes"] += sum(a[2] for a in arrays) * n_devices
      roles[role]["arrays"] += len(arrays)
      continue
    if op != "all-reduce":
      role = op
    elif all(not a[1] for a in arrays):
      role = "loss/metrics"
    elif _BN.search(op_name) and all(_BN.search(p) for p in op_name.strip("()").split(":") if "psum" in p):
      role = "BN backward sync" if backward else "BN forward sync"
    else:
      role = "gradient all-reduce"
    scalars = [a for a in arrays if not a[1]] if role == "gradient all-reduce" else []
    roles[role]["ops"] += 1
    roles[role]["bytes"] += sum(a[2] for a in arrays) - sum(a[2] for a in scalars)
    roles[role]["arrays"] += len(arrays) - len(scalars)
    if scalars:
      roles["loss/metrics"]["bytes"] += sum(a[2] for a in scalars)
      roles["loss/metrics"]["arrays"] += len(scalars)
  return dict(roles)


def compile_step(name: str, n_devices: int, conv_impl: str, bn_fast_variance: bool = False) -> dict[str, Any]:
  """Compile the n-device train step of a scenario; collectives, flops and parameter bytes."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from contrastive_jax import cli  # pylint: disable=g-import-not-at-top
  from contrastive_jax import parallel  # pylint: disable=g-import-not-at-top
  from contrastive_jax import train  # pylint: disable=g-import-not-at-top

  sc = SCENARIOS[name]
  config = cli.load_config(os.path.join(REPO, sc["config"]) + (f":{sc['preset']}" if sc["preset"] else ""))
  config.batch_size = sc["batch"]
  devices = jax.devices()[:n_devices]
  mesh = parallel.make_data_mesh(devices)
  if conv_impl:
    config.model.encoder.conv_impl = conv_impl
  config.model.bn_fast_variance = bn_fast_variance
  built = train.build_step(config, mesh, num_examples=1_281_167, num_classes=sc["num_classes"])
  aug = built.augs[0]
  rep, data = parallel.replicated_sharding(mesh), parallel.data_sharding(mesh)
  state = jax.eval_shape(built.init, train.init_key(0))
  state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep), state)
  b, s = config.batch_size, aug.image_size
  image = (b, 2, s, s, 3) if config.data.host_crop else (b, s, s, 3)
  batch = {"image": jax.ShapeDtypeStruct(image, jnp.uint8, sharding=data),
           "label": jax.ShapeDtypeStruct((b,), jnp.int32, sharding=data),
           "index": jax.ShapeDtypeStruct((b,), jnp.int32, sharding=data)}
  key = jax.eval_shape(lambda: jax.random.key(0))
  step = built.step
  t0 = time.perf_counter()
  compiled = step.lower(state, batch, key).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  param_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(state.params))
  return {"name": name, "label": sc["label"], "devices": n_devices, "global_batch": b,
          "flops_per_device": float(cost["flops"]), "param_bytes": param_bytes,
          "dtype": config.model.dtype, "compile_s": compile_s,
          "collectives": classify_collectives(compiled.as_text(), n_devices)}


def project(c: dict[str, Any], platform: str, views_per_sec_chip: float | None = None) -> dict[str, Any]:
  """Step-time projection of one compiled scenario on a platform (same global batch)."""
  p = PLATFORMS[platform]
  n, bw, lat = p["chips"], p["bw"], p["latency"]
  col = c["collectives"]
  get = lambda role, k: col.get(role, {}).get(k, 0)
  views_chip = 2 * c["global_batch"] / n
  flops_per_view = c["flops_per_device"] / (2 * c["global_batch"] / c["devices"])
  if views_per_sec_chip is None:
    views_per_sec_chip = p["mfu"] * p["peak"] / flops_per_view
    compute_source = f"assumed MFU {p['mfu']} x {p['peak'] / 1e12:.0f} TFLOP/s"
  else:
    compute_source = "measured views/s per chip"
  t_compute = views_chip / views_per_sec_chip
  ring = (n - 1) / n
  t_grad = get("gradient all-reduce", "ops") * lat + 2 * ring * get("gradient all-reduce", "bytes") / bw
  t_emb = ((get("embedding all-gather", "ops") + get("embedding reduce-scatter", "ops")) * lat
           + ring * (get("embedding all-gather", "bytes") + get("embedding reduce-scatter", "bytes")) / bw)
  bn_ops = get("BN forward sync", "ops") + get("BN backward sync", "ops")
  bn_bytes = get("BN forward sync", "bytes") + get("BN backward sync", "bytes")
  t_bn = bn_ops * lat + 2 * ring * bn_bytes / bw
  t_misc = get("loss/metrics", "ops") * lat
  serial = t_emb + t_bn + t_misc  # on the critical path: each depends on the previous layer / the loss
  step_no_overlap = t_compute + serial + t_grad
  step_overlap = t_compute + serial + max(0.0, t_grad - 0.6 * t_compute)  # backward ~ 2/3 of compute
  return {"platform": platform, "chips": n, "views_per_chip": views_chip, "compute_ms": 1e3 * t_compute,
          "compute_source": compute_source, "views_per_sec_chip": views_per_sec_chip,
          "grad_ms": 1e3 * t_grad, "emb_ms": 1e3 * t_emb, "bn_ms": 1e3 * t_bn, "misc_ms": 1e3 * t_misc,
          "step_ms_no_overlap": 1e3 * step_no_overlap, "step_ms_overlap": 1e3 * step_overlap,
          "comm_fraction_no_overlap": (step_no_overlap - t_compute) / step_no_overlap,
          "views_per_sec_no_overlap": 2 * c["global_batch"] / step_no_overlap,
          "views_per_sec_overlap": 2 * c["global_batch"] / step_overlap,
          "scaling_efficiency_no_overlap": t_compute / step_no_overlap}


def _mb(x: float) -> str:
  return f"{x / 1e6:.3f}" if x < 1e6 else f"{x / 1e6:.1f}"


def markdown(compiled: list[dict[str, Any]], projections: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
  lines = ["### Collectives per step (from the compiled HLO, "
           f"{compiled[0]['devices']} host devices; bytes are per device)", "",
           "| model | global batch | role | ops | arrays | MB |", "|---|---:|---|---:|---:|---:|"]
  for c in compiled:
    for role in ("embedding all-gather", "embedding reduce-scatter", "gradient all-reduce", "BN forward sync",
                 "BN backward sync", "loss/metrics"):
      r = c["collectives"].get(role)
      if r:
        lines.append(f"| {c['label']} | {c['global_batch']} | {role} | {r['ops']} | {r['arrays']} | "
                     f"{_mb(r['bytes'])} |")
    lines.append(f"| {c['label']} | | (parameters, for comparison) | | | {_mb(c['param_bytes'])} |")
  lines += ["", "### Projected step time (same global batch on each platform)", "",
            "| model | platform | chips | views/chip/step | compute ms | grad all-reduce ms | embeddings ms | "
            "BN syncs ms | step ms (no overlap) | step ms (grad overlapped) | comm share | views/s (no overlap) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for c, p in projections:
    lines.append(
        f"| {c['label']} (B={c['global_batch']}) | {p['platform']} | {p['chips']} | {p['views_per_chip']:.0f} | "
        f"{p['compute_ms']:.2f} | {p['grad_ms']:.3f} | {p['emb_ms']:.3f} | {p['bn_ms']:.3f} | "
        f"{p['step_ms_no_overlap']:.2f} | {p['step_ms_overlap']:.2f} | {100 * p['comm_fraction_no_overlap']:.1f}% | "
        f"{p['views_per_sec_no_overlap']:,.0f} |")
  lines += ["", "Assumptions:", ""]
  for name, p in PLATFORMS.items():
    lines.append(f"- {name}: {p['note']}.")
  lines += [
      "- Ring all-reduce: latency + 2(n-1)/n x bytes / bw; all-gather and reduce-scatter: latency + "
      "(n-1)/n x gathered bytes / bw. One latency per collective op as XLA:CPU combined them; GPU/TPU "
      "compilers combine differently (bytes are the same, op counts differ).",
      "- BN syncs, the embedding all-gather/reduce-scatter and the loss scalars are on the critical path "
      "(each waits for the layer before); the gradient all-reduce can overlap the backward pass only if the "
      "compiler splits it: 'no overlap' adds it in full, 'grad overlapped' hides it behind 60% of the compute.",
      "- Compute per chip: " + "; ".join(sorted({f"{p['platform']}: {p['compute_source']}" for _, p in projections}))
      + ". Flops per view are XLA's cost analysis of the compiled step (augmentation, loss and optimiser "
      "included). Views/s per chip is held constant as the per-chip batch changes, which flatters small "
      "per-chip batches.",
  ]
  return "\n".join(lines)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--devices", type=int, default=8, help="host CPU devices to compile for")
  ap.add_argument("--scenarios", default="resnet18_cifar,resnet50_224")
  ap.add_argument("--conv_impl", default="xla",
                  help="convolution lowering to compile; xla (the accelerators' lowering) counts model FLOPs "
                       "without im2col's padding; '' keeps the config's; bytes do not depend on it")
  ap.add_argument("--anchor_json", action="append", default=[],
                  help="tools/benchmark.py JSON (one GPU): its views_per_sec replaces the assumed H100 compute "
                       "for the scenario with the same depth; repeatable")
  ap.add_argument("--markdown_out", default="", help="also write the markdown here")
  ap.add_argument("--bn_fast_variance", action="store_true",
                  help="BN variance as E[x^2] - E[x]^2: one all-reduce per synchronised BN instead of two "
                       "(the models before issue 17; docs/performance.md, Numerics)")
  args = ap.parse_args()

  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + f" --xla_force_host_platform_device_count={args.devices}").strip()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  anchors = {}
  for path in args.anchor_json:
    with open(path, encoding="utf-8") as f:
      r = json.loads(f.read().strip().splitlines()[-1])
    anchors[int(r["depth"])] = r["views_per_sec"] / r["devices"]

  compiled, projections = [], []
  for name in [s for s in args.scenarios.split(",") if s]:
    c = compile_step(name, args.devices, args.conv_impl, args.bn_fast_variance)
    print(f"{c['label']}: compiled for {c['devices']} devices in {c['compile_s']:.0f} s; "
          f"{c['flops_per_device'] / 1e9:.1f} GFLOP per device per step; collectives: "
          + json.dumps(c["collectives"]), flush=True)
    compiled.append(c)
    depth = 18 if name.startswith("resnet18") else 50
    for platform in PLATFORMS:
      anchor = anchors.get(depth) if platform == "8xH100" else None
      projections.append((c, project(c, platform, anchor)))
  md = markdown(compiled, projections)
  print(md)
  if args.markdown_out:
    with open(args.markdown_out, "w", encoding="utf-8") as f:
      f.write(md + "\n")
  print(json.dumps({"compiled": compiled, "projections": [p for _, p in projections]}))


if __name__ == "__main__":
  main()
