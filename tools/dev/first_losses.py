"""The first N logged losses of each CPU preset, to show that a refactor changed no number.

Runs `python -m contrastive_jax.train` on each preset with a loss logged every step, stops it
with SIGTERM once step N is logged (the schedule stays the preset's own), and writes
{"commit", "command", "steps", "losses": {preset: [...]}} as JSON. Run it before and after a
change from checkouts of the two commits, then compare the files (`--compare A.json B.json`).

  python tools/dev/first_losses.py --out before.json [--steps 20] [--data ../shared/data/cifar10]
  python tools/dev/first_losses.py --compare before.json after.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

PRESETS = ("cifar10_simclr.py:cpu", "cifar10_supcon.py:cpu", "cifar10_moco_v2.py:cpu", "cifar10_moco_v3.py:cpu",
           "cifar10_byol.py:cpu", "cifar10_simclr.py:multicrop_cpu", "cifar10_moco_v3.py:vit_cpu")
ROOT = pathlib.Path.cwd()


def _losses(metrics: pathlib.Path) -> dict[int, float]:
  if not metrics.exists():
    return {}
  rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
  return {r["step"]: r["loss"] for r in rows if "loss" in r and "step" in r}


def first_losses(preset: str, steps: int, data: str) -> list[float]:
  """The losses of steps 1..`steps` of `preset`, logged every step."""
  with tempfile.TemporaryDirectory() as workdir:
    args = [sys.executable, "-m", "contrastive_jax.train", f"--config=experiments/{preset}", f"--workdir={workdir}",
            "--config.log_every_steps=1", "--config.checkpoint_every_steps=100000", f"--config.data.image_folder={data}"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = pathlib.Path(workdir) / "metrics.jsonl"
    while proc.poll() is None and len(_losses(metrics)) < steps:
      time.sleep(1)
    if proc.poll() is None:
      proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    got = _losses(metrics)
    if any(s not in got for s in range(1, steps + 1)):
      raise RuntimeError(f"{preset}: logged steps {sorted(got)[:steps]}, not 1..{steps}:\n{err[-3000:]}")
    return [got[s] for s in range(1, steps + 1)]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", help="where to write the JSON")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
  parser.add_argument("--presets", nargs="*", default=list(PRESETS))
  parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two outputs: exit 1 unless equal")
  args = parser.parse_args()
  if args.compare:
    a, b = (json.loads(pathlib.Path(p).read_text())["losses"] for p in args.compare)
    differ = [p for p in a if a[p] != b.get(p)]
    print(f"{len(a) - len(differ)} of {len(a)} presets bit-identical" + (f"; differ: {differ}" if differ else ""))
    return 1 if differ or set(a) != set(b) else 0
  commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
  out = {"commit": commit.strip(), "steps": args.steps, "command": " ".join(sys.argv), "losses": {}}
  for preset in args.presets:
    t0 = time.time()
    out["losses"][preset] = first_losses(preset, args.steps, args.data)
    print(f"{preset}: {out['losses'][preset][:3]}... ({time.time() - t0:.0f} s)", flush=True)
    pathlib.Path(args.out).write_text(json.dumps(out, indent=1) + os.linesep)
  return 0


if __name__ == "__main__":
  sys.exit(main())
