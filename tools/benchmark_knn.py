"""The cost of one kNN-monitor call (`config.eval.knn_every_epochs`) for a config, on this machine's devices.

  python tools/benchmark_knn.py --config experiments/cifar10_simclr.py:cpu \\
      --config.data.image_folder=../shared/data/cifar10 --calls 3

Builds the run's model and initial state (`train.build_step`), the monitor (which loads the labelled
train split and the test split), and times `--calls` calls: the first compiles the feature program,
the later ones are what each monitored epoch costs. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax

from contrastive_jax import cli
from contrastive_jax import monitor
from contrastive_jax import parallel
from contrastive_jax import train


def main(argv: list[str]) -> None:
  try:
    config, rest = cli.split_config_args(argv)
  except ValueError as e:
    raise SystemExit(f"error: {e}") from None
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--calls", type=int, default=3, help="Monitor calls to time (the first includes compilation).")
  args = ap.parse_args(rest)
  mesh = parallel.make_data_mesh()
  t0 = time.time()
  knn = monitor.KnnMonitor(config, None, mesh)  # loads the splits; the model comes below
  load_s = time.time() - t0
  built = train.build_step(config, mesh, num_examples=len(knn.train), num_classes=knn.num_classes)
  knn = monitor.KnnMonitor(config, built.model, mesh, pretrain_split=knn.train)
  state = built.init(train.init_key(config.seed))
  calls = [knn(state) for _ in range(args.calls)]
  for i, r in enumerate(calls):
    print(f"call {i + 1}: {r.seconds:.2f} s, kNN top-1 {r.top1:.4f}", flush=True)
  print(json.dumps({
      "what": "knn_monitor_call", "device": f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}",
      "num_devices": jax.device_count(), "jax_version": jax.__version__,
      "train_examples": len(knn.train), "test_examples": len(knn.test), "split_load_seconds": load_s,
      "call_seconds": [r.seconds for r in calls], "knn_top1": calls[-1].top1,
      "encoder": dict(config.model.encoder), "dtype": config.model.dtype,
      "feature_batch_size": config.eval.feature_batch_size}), flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
