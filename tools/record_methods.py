"""Merge one method's CPU run into experiments/results/cifar10_cpu_methods.json (issue 12's comparison).

    python tools/record_methods.py --method byol --workdir W --train_log W.train.log \
        --command "the commands that reproduce it" [--out experiments/results/cifar10_cpu_methods.json] [--tried]

Reads W/eval.json (from `python -m contrastive_jax.evaluate`) and the `{"summary": ...}` lines of
the train command's stdout (train_seconds; a run resumed after an interruption adds the seconds of
every summary in the log). The file is a result record (experiments/results/README.md) whose rows
are runs made at different times, so `command` and `commit` are objects keyed by row. Writes
figures.methods.<method> (figures.tried.<method> with --tried: a variant that did not replace the
recipe) = {knn_top1, linear_top1, linear_top5, train_minutes, eval_minutes, steps}, command.<method>,
commit.<method> (HEAD unless --commit), a "<method>: ..." line in notes for --note, and the figures.random_/pixels_
baselines when this evaluation ran them. Every figure comes from those files.
"""

import argparse
import datetime
import json
import os
import platform

from record_result import dumps, head_commit

WHAT = ("Issue 12's CPU comparison: each method's cpu preset (and the vit_cpu ViT) pretrained on CIFAR-10 and "
        "evaluated on the full test split by the same code; rows under 'tried' are short-run variants.")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--method", required=True, help="the row's name, e.g. byol or byol_base_momentum0.9")
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--train_log", required=True)
  parser.add_argument("--command", required=True)
  parser.add_argument("--out", default="experiments/results/cifar10_cpu_methods.json")
  parser.add_argument("--hardware", default=f"{platform.machine()} CPU, {os.cpu_count()} cores")
  parser.add_argument("--note", default="", help="conditions worth knowing (e.g. the machine was shared)")
  parser.add_argument("--commit", default=None, help="the commit the run's code was at (default: this checkout's HEAD)")
  parser.add_argument("--tried", action="store_true", help="record the row under figures.tried, not figures.methods")
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
  rec = {"what": WHAT, "command": {}, "commit": {}, "hardware": args.hardware, "date": None, "figures": {},
         "notes": []}
  if os.path.exists(args.out):
    with open(args.out, encoding="utf-8") as f:
      rec.update(json.load(f))
  for key in ("command", "commit"):  # objects keyed by row in a merged record
    if not isinstance(rec.get(key), dict):
      rec[key] = {}
  m = args.method
  figures = rec["figures"]
  for section in ("methods", "tried"):
    figures.get(section, {}).pop(m, None)
  row = figures.setdefault("tried" if args.tried else "methods", {})[m] = {
      "knn_top1": ev["knn_top1"], "linear_top1": ev["linear_top1"], "linear_top5": ev["linear_top5"],
      "train_minutes": round(sum(s["train_seconds"] for s in summaries) / 60, 1),
      "eval_minutes": round(ev["seconds"] / 60, 1) if "seconds" in ev else None,
      "steps": summaries[-1]["total_steps"],
  }
  for key in ("random_knn_top1", "random_linear_top1", "pixels_knn_top1", "pixels_linear_top1"):
    if key not in ev:
      continue
    if args.baselines_in_row and key.startswith("random_"):
      row[key] = ev[key]
    elif not args.baselines_in_row:
      figures[key] = ev[key]
  commit, dirty = (args.commit, False) if args.commit else head_commit()
  rec["command"][m] = args.command
  rec["commit"][m] = commit
  notes = [n for n in rec["notes"] if not n.startswith(f"{m}: ")]
  row_notes = [args.note] if args.note else []
  if dirty:
    row_notes.append(f"run on the working tree of {commit} with uncommitted changes")
  if args.hardware != rec["hardware"]:
    row_notes.append(f"hardware: {args.hardware}")
  rec["notes"] = notes + ([f"{m}: " + "; ".join(row_notes)] if row_notes else [])
  rec["date"] = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
  with open(args.out, "w", encoding="utf-8") as f:
    f.write(dumps(rec) + "\n")
  print(json.dumps({m: row}))


if __name__ == "__main__":
  main()
