"""One method's accuracy run in one process: pretrain, then kNN and linear evaluation; one JSON record.

  python tools/accuracy_run.py --config experiments/cifar10_simclr.py:gpu200 \\
      --config.data.image_folder=/tmp/cifar10 --workdir runs/simclr --json_out out/simclr.json

`tools/gpu_accuracy.sh` runs it per method on a GPU. The record holds: the final-epoch kNN top-1
(the monitor's last row, and `evaluate`'s on the final checkpoint) and linear top-1 on the test
split, the best kNN with its epoch, the kNN curve, the sustained views/s of the real run (all
views of all steps over the loop's wall time less the step's compilation), the compilation time,
and the wall times of pretraining and evaluation. The last line printed is that JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax

from contrastive_jax import cli
from contrastive_jax import evaluate
from contrastive_jax import train
from contrastive_jax import views
from contrastive_jax import writers


def record(config, workdir: str, summary: dict, eval_results: dict, train_wall_s: float, eval_wall_s: float) -> dict:
  """The run's JSON record from the train summary, metrics.jsonl and eval.json's results."""
  rows = writers.read_metrics(workdir)
  curve = [{"epoch": m["epoch"], "step": m["step"], "knn_top1": m["knn_top1"], "seconds": m["knn_seconds"]}
           for m in rows if "knn_top1" in m]
  best = max(curve, key=lambda c: c["knn_top1"]) if curve else None
  steps_run = summary["last_step"]
  loop_s = summary["train_seconds"] - summary["compile_seconds"]
  num_views = len(views.view_configs(config))
  return {
      "method": config.method,
      "device": f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}",
      "num_devices": jax.device_count(),
      "jax_version": jax.__version__,
      "batch_size": config.batch_size,
      "num_epochs": config.num_epochs,
      "steps": steps_run,
      "total_steps": summary["total_steps"],
      "preempted": summary["preempted"],
      "final_knn_top1_monitor": curve[-1]["knn_top1"] if curve else None,
      "final_knn_top1": eval_results.get("knn_top1"),
      "final_linear_top1": eval_results.get("linear_top1"),
      "best_knn_top1": best and best["knn_top1"],
      "best_knn_epoch": best and best["epoch"],
      "knn_curve": curve,
      "views_per_sec_sustained": steps_run * config.batch_size * num_views / max(loop_s, 1e-9),
      "compile_seconds": summary["compile_seconds"],
      "pretrain_wall_seconds": train_wall_s,
      "eval_wall_seconds": eval_wall_s,
      "last_loss": summary["last_loss"],
      "on_device": str(config.data.on_device),
      "dtype": config.model.dtype,
  }


def main(argv: list[str]) -> None:
  try:
    config, rest = cli.split_config_args(argv)
  except ValueError as e:
    raise SystemExit(f"error: {e}") from None
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--workdir", required=True, help="Run directory (checkpoints, metrics.jsonl, eval.json).")
  ap.add_argument("--json_out", default="", help="Also write the JSON record to this file.")
  args = ap.parse_args(rest)
  t0 = time.time()
  summary = train.train_and_evaluate(config, args.workdir)
  t1 = time.time()
  eval_results = evaluate.run_evaluation(config, args.workdir) if not summary["preempted"] else {}
  out = record(config, args.workdir, summary, eval_results, t1 - t0, time.time() - t1)
  line = json.dumps(out)
  if args.json_out and jax.process_index() == 0:
    with open(args.json_out, "w", encoding="utf-8") as f:
      f.write(line + "\n")
  print(line, flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
