"""Collect a finished run's figures into one results file (e.g. experiments/results/cifar10_cpu.json).

    python tools/record_result.py --workdir W --train_log W.log --out experiments/results/NAME.json \
        --command "the commands that reproduce it" [--hardware "..."]

Reads W/eval.json (from `python -m contrastive_jax.evaluate`) and the `{"summary": ...}` line
that `python -m contrastive_jax.train` prints last (its train_seconds), and writes the keys
simclr_/random_/pixels_ × knn_top1/linear_top1 (those present), the semi-supervised keys
finetune_/scratch_/linear_<fraction>_top1 with their settings and training curves
(finetune_<fraction>_details), eval_minutes, train_minutes and command. Nothing is typed in by
hand: every figure comes from those two files.
"""

import argparse
import json
import os
import platform
import re


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--train_log", required=True, help="stdout of the train command (ends with its summary)")
  parser.add_argument("--out", required=True)
  parser.add_argument("--command", required=True)
  parser.add_argument("--hardware", default=f"{platform.machine()} CPU, {os.cpu_count()} cores")
  args = parser.parse_args()
  with open(os.path.join(args.workdir, "eval.json"), encoding="utf-8") as f:
    ev = json.load(f)
  summaries = []
  with open(args.train_log, encoding="utf-8") as f:
    for line in f:
      if line.startswith('{"summary"'):
        summaries.append(json.loads(line)["summary"])
  if not summaries:
    raise SystemExit(f"error: no summary line in {args.train_log}; did training finish?")
  result = {"simclr_knn_top1": ev["knn_top1"], "simclr_linear_top1": ev["linear_top1"],
            "simclr_linear_top5": ev["linear_top5"]}
  for key in ("random_knn_top1", "random_linear_top1", "pixels_knn_top1", "pixels_linear_top1"):
    if key in ev:
      result[key] = ev[key]
  semi = re.compile(r"^(finetune|scratch|linear)_[0-9.e-]+_(top1|details)$")
  result.update({k: v for k, v in ev.items() if semi.match(k)})
  if "seconds" in ev:
    result["eval_minutes"] = round(ev["seconds"] / 60, 1)
  result.update({
      "train_minutes": round(sum(s["train_seconds"] for s in summaries) / 60, 1),
      "train_steps": summaries[-1]["last_step"],
      "eval_settings": ev["settings"],
      "hardware": args.hardware,
      "command": args.command,
  })
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
