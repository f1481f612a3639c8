"""Merge one method's CPU run into experiments/results/cifar10_cpu_methods.json (issue 12's comparison).

    python tools/record_methods.py --method byol --workdir W --train_log W.train.log \
        --command "the commands that reproduce it" [--out experiments/results/cifar10_cpu_methods.json]

Reads W/eval.json (from `python -m contrastive_jax.evaluate`) and the last `{"summary": ...}`
line of the train command's stdout (train_seconds; a run resumed after an interruption adds
the seconds of every summary in the log). Writes methods.<method> = {knn_top1, linear_top1,
linear_top5, train_minutes, eval_minutes, steps, command, hardware}, and the top-level
random_/pixels_ baselines when this evaluation ran them. Every figure comes from those files.
"""

import argparse
import json
import os
import platform


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--method", required=True)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--train_log", required=True)
  parser.add_argument("--command", required=True)
  parser.add_argument("--out", default="experiments/results/cifar10_cpu_methods.json")
  parser.add_argument("--hardware", default=f"{platform.machine()} CPU, {os.cpu_count()} cores")
  parser.add_argument("--note", default="", help="conditions worth knowing (e.g. the machine was shared)")
  parser.add_argument("--baselines_in_row", action="store_true",
                      help="record this evaluation's random-init figures inside the method's row (another "
                           "encoder, e.g. a ViT) instead of as the top-level baselines")
  args = parser.parse_args()
  with open(os.path.join(args.workdir, "eval.json"), encoding="utf-8") as f:
    ev = json.load(f)
  with open(args.train_log, encoding="utf-8") as f:
    summaries = [json.loads(line)["summary"] for line in f if line.startswith('{"summary"')]
  if not summaries or summaries[-1]["last_step"] != summaries[-1]["total_steps"]:
    raise SystemExit(f"error: {args.train_log} has no summary of a finished run; did training finish?")
  record = {}
  if os.path.exists(args.out):
    with open(args.out, encoding="utf-8") as f:
      record = json.load(f)
  record.setdefault("methods", {})[args.method] = {
      "knn_top1": ev["knn_top1"], "linear_top1": ev["linear_top1"], "linear_top5": ev["linear_top5"],
      "train_minutes": round(sum(s["train_seconds"] for s in summaries) / 60, 1),
      "eval_minutes": round(ev["seconds"] / 60, 1) if "seconds" in ev else None,
      "steps": summaries[-1]["total_steps"], "command": args.command, "hardware": args.hardware,
  }
  if args.note:
    record["methods"][args.method]["note"] = args.note
  for key in ("random_knn_top1", "random_linear_top1", "pixels_knn_top1", "pixels_linear_top1"):
    if key not in ev:
      continue
    if args.baselines_in_row and key.startswith("random_"):
      record["methods"][args.method][key] = ev[key]
    elif not args.baselines_in_row:
      record[key] = ev[key]
  with open(args.out, "w", encoding="utf-8") as f:
    json.dump(record, f, indent=2)
    f.write("\n")
  print(json.dumps(record["methods"][args.method]))


if __name__ == "__main__":
  main()
