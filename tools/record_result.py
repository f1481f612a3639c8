"""Write a result record (experiments/results/README.md has the schema) from a finished run or a tool's JSON.

    python tools/record_result.py --workdir W --train_log W.log --out experiments/results/NAME.json \
        --command "the commands that reproduce it" [--what "one sentence"] [--hardware "..."] [--note "..."]
    python tools/record_result.py --figures TOOL_OUTPUT.json --out experiments/results/NAME.json \
        --command "the command that wrote TOOL_OUTPUT.json" --what "one sentence" [--hardware "..."] [--note "..."]

From a run: reads W/eval.json (from `python -m contrastive_jax.evaluate`) and the `{"summary": ...}`
lines that `python -m contrastive_jax.train` prints (train_seconds; a resumed run adds every
segment's), and puts under `figures` the keys simclr_/random_/pixels_ × knn_top1/linear_top1 (those
present), the semi-supervised keys finetune_/scratch_/linear_<fraction>_top1 with their settings and
training curves (finetune_<fraction>_details), eval_minutes, train_minutes, train_steps and
eval_settings. From a tool: `figures` is the tool's JSON (a file of one JSON object per line, as
`benchmark_input.py --json_out` appends, becomes {"runs": [...]}). Nothing is typed in by hand: every
figure comes from those files; `commit` is --commit or this checkout's HEAD, `date` today's (UTC).
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _depth(value) -> int:
  if isinstance(value, dict):
    value = list(value.values())
  return 1 + max(map(_depth, value), default=0) if isinstance(value, list) else 0


def dumps(value, indent: int = 0, width: int = 120, column: int | None = None) -> str:
  """JSON, a line per entry below the top, except on one line: what fits in `width`, lists of numbers, and
  records (containers of numbers, strings and such lists or objects) up to 3 × `width` characters."""
  flat = json.dumps(value, ensure_ascii=False)
  numbers = isinstance(value, list) and all(v is None or isinstance(v, (int, float)) for v in value)
  fits = (indent if column is None else column) + len(flat) <= width or (_depth(value) <= 2 and len(flat) <= 3 * width)
  top = indent == 0 and column is None
  if not isinstance(value, (dict, list)) or not value or numbers or (fits and not top):
    return flat
  pad = " " * (indent + 2)
  if isinstance(value, dict):
    keys = {k: json.dumps(k, ensure_ascii=False) for k in value}
    items = [f"{pad}{keys[k]}: {dumps(v, indent + 2, width, indent + 4 + len(keys[k]))}" for k, v in value.items()]
    return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
  items = [pad + dumps(v, indent + 2, width) for v in value]
  return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def head_commit():
  """(short hash of HEAD or None, whether the working tree has uncommitted changes)."""
  try:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None, False
  return rev or None, bool(dirty)


def record(what, command, hardware, figures, notes, commit=None) -> dict:
  """A record in the schema of experiments/results/README.md, dated today, at `commit` or this checkout's HEAD."""
  commit, dirty = (commit, False) if commit else head_commit()
  if dirty:
    notes = list(notes) + [f"run on the working tree of {commit} with uncommitted changes"]
  return {"what": what, "command": command, "commit": commit, "hardware": hardware,
          "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(), "figures": figures,
          "notes": list(notes)}


def write(path: str, rec: dict) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write(dumps(rec) + "\n")


def run_figures(workdir: str, train_log: str) -> dict:
  with open(os.path.join(workdir, "eval.json"), encoding="utf-8") as f:
    ev = json.load(f)
  summaries = []
  with open(train_log, encoding="utf-8") as f:
    for line in f:
      if line.startswith('{"summary"'):
        summaries.append(json.loads(line)["summary"])
  if not summaries:
    raise SystemExit(f"error: no summary line in {train_log}; did training finish?")
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
  })
  return result


def tool_figures(path: str) -> dict:
  with open(path, encoding="utf-8") as f:
    text = f.read()
  try:
    return json.loads(text)
  except ValueError:
    return {"runs": [json.loads(line) for line in text.splitlines() if line.strip()]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", help="a finished run (with eval.json); needs --train_log")
  parser.add_argument("--train_log", help="stdout of the train command (ends with its summary)")
  parser.add_argument("--figures", help="instead of a run: a tool's JSON output, recorded as it is")
  parser.add_argument("--out", required=True)
  parser.add_argument("--command", required=True)
  parser.add_argument("--what", default=None, help="one sentence: what was measured")
  parser.add_argument("--hardware", default=f"{platform.machine()} CPU, {os.cpu_count()} cores")
  parser.add_argument("--commit", default=None, help="the commit the run's code was at (default: this checkout's HEAD)")
  parser.add_argument("--note", action="append", default=[], help="conditions worth knowing (repeatable)")
  args = parser.parse_args()
  if args.figures:
    if not args.what:
      parser.error("--figures needs --what")
    figures = tool_figures(args.figures)
  elif args.workdir and args.train_log:
    figures = run_figures(args.workdir, args.train_log)
  else:
    parser.error("give --workdir and --train_log (a run) or --figures (a tool's JSON)")
  what = args.what or f"Pretraining and evaluation of the run in {args.workdir} (eval.json and the training log)."
  rec = record(what, args.command, args.hardware, figures, args.note, args.commit)
  write(args.out, rec)
  print(dumps(rec))


if __name__ == "__main__":
  main()
