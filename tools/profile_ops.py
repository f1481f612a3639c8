"""Where a step's time goes: sums a jax.profiler trace per XLA op and per op kind.

  python tools/benchmark.py --config experiments/cifar10_simclr.py --config.batch_size=64 \\
      --steps=2 --trace_dir=/tmp/trace
  python tools/profile_ops.py /tmp/trace --steps 2 [--top 30]

Reads the newest `perfetto_trace.json.gz` under the directory. On XLA:CPU each
executed thunk (a fusion, a library GEMM "ynn_fusion" / "dot", a copy, a
collective) is one event; events of all threads are summed, so with thunks that
run concurrently the total can exceed the wall time. Op kinds are the names
without their numeric suffix (e.g. all `ynn_fusion.N`). Times are per step
(divided by --steps). Match names to the optimised HLO with
`--xla_flags=--xla_dump_to=DIR` on the benchmark.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re

# Host-side and runtime events, not ops of the compiled program.
_NOT_OPS = ("$", "ThunkExecutor", "SlinkyThreadPool", "PjitFunction", "CommonPjRtLoadedExecutable", "end: ")


def op_times(trace_dir: str) -> collections.Counter:
  """Microseconds per op name, summed over every thread of the newest trace under trace_dir."""
  files = sorted(glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True),
                 key=os.path.getmtime)
  if not files:
    raise SystemExit(f"no perfetto_trace.json.gz under {trace_dir}; record one with tools/benchmark.py --trace_dir")
  with gzip.open(files[-1], "rt", encoding="utf-8") as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  times = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and not e["name"].startswith(_NOT_OPS):
      times[e["name"]] += e.get("dur", 0)
  return times


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("trace_dir")
  ap.add_argument("--steps", type=float, default=1.0, help="steps in the trace (times are divided by it)")
  ap.add_argument("--top", type=int, default=25, help="ops to list")
  args = ap.parse_args()
  times = op_times(args.trace_dir)
  kinds, counts = collections.Counter(), collections.Counter()
  for name, us in times.items():
    kind = re.sub(r"[.\d]+$", "", name)
    kinds[kind] += us
    counts[kind] += 1
  total = sum(kinds.values())
  print(f"{total / 1e3 / args.steps:.1f} ms per step in {len(times)} ops")
  print("by kind:")
  for kind, us in kinds.most_common(args.top):
    print(f"  {us / 1e3 / args.steps:9.1f} ms {100 * us / total:5.1f}%  {counts[kind]:4d} ops  {kind}")
  print("by op:")
  for name, us in times.most_common(args.top):
    print(f"  {us / 1e3 / args.steps:9.1f} ms  {name}")


if __name__ == "__main__":
  main()
