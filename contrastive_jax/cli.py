"""Shared command-line flags of `python -m contrastive_jax.train` and `... .evaluate`."""

from __future__ import annotations

from typing import Callable


def define_flags() -> None:
  """Define `--config`, `--workdir` and the multi-process flags (once per process)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  if "workdir" in flags.FLAGS:
    return
  config_flags.DEFINE_config_file(
      "config", None, "Config file (ml_collections), as path.py or path.py:preset; override fields with "
      "--config.field=value.", lock_config=True)
  flags.DEFINE_string("workdir", None, "Run directory: checkpoints/, metrics.jsonl, TensorBoard, config.json.")
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process; auto on TPU/SLURM).")
  flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process runs).")
  flags.DEFINE_integer("process_id", None, "This process's index (multi-process runs).")
  flags.mark_flags_as_required(["config", "workdir"])


def run(main: Callable[[list[str]], None]) -> None:
  from absl import app  # pylint: disable=g-import-not-at-top
  define_flags()
  app.run(main)
