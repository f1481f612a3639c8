"""Shared command-line flags of `python -m contrastive_jax.train` and `... .evaluate`."""

from __future__ import annotations

import importlib.util
import json
import sys
from typing import Any, Callable, Sequence


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


def run(job: Callable[[Any, str], Any], expected_errors: tuple[type[BaseException], ...], *,
        indent: int | None = 2) -> None:
  """Runs `job(config, workdir)` as the command: flags, `jax.distributed` start-up, exit status.

  An expected error (bad data, bad config, ...) prints `error: <message>` to stderr and exits
  with status 1 instead of a traceback. Process 0 prints the job's result as JSON.
  """
  from absl import app, flags  # pylint: disable=g-import-not-at-top

  def main(argv: list[str]) -> None:
    del argv
    import jax  # pylint: disable=g-import-not-at-top
    from contrastive_jax import parallel  # pylint: disable=g-import-not-at-top
    f = flags.FLAGS
    _quiet_orbax_info()
    parallel.initialize_distributed(f.coordinator_address, f.num_processes, f.process_id)
    try:
      result = job(f.config, f.workdir)
    except expected_errors as e:
      print(f"error: {e}", file=sys.stderr, flush=True)
      sys.exit(1)
    if jax.process_index() == 0:
      print(json.dumps(result, indent=indent), flush=True)

  define_flags()
  app.run(main)


def _quiet_orbax_info() -> None:
  """Drop Orbax's INFO records (dozens per save) from the absl log; warnings and errors stay.

  The rest of the INFO log stays visible.
  """
  import logging  # pylint: disable=g-import-not-at-top
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top

  def keep(record: logging.LogRecord) -> bool:
    return record.levelno > logging.INFO or "/orbax/" not in record.pathname.replace("\\", "/")

  absl_logging.get_absl_handler().addFilter(keep)


def load_config(spec: str, **overrides: Any):
  """The config of `path.py[:preset]` (the `--config` form), with dotted-key overrides.

  `load_config("experiments/cifar10_simclr.py:test", **{"data.image_folder": p})` is what
  `--config experiments/cifar10_simclr.py:test --config.data.image_folder=p` gives the CLI.
  """
  path, _, preset = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("contrastive_jax_config", path)
  if module_spec is None or module_spec.loader is None:
    raise ValueError(f"cannot load config file {path!r}; expected a Python file defining get_config().")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(preset) if preset else module.get_config()
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for name in parents:
      node = node[name]
    if leaf not in node:
      raise KeyError(f"config {spec!r} has no field {key!r}.")
    node[leaf] = value
  return config


def split_config_args(argv: Sequence[str]) -> tuple[Any, list[str]]:
  """Reads `--config path.py[:preset]` and `--config.field=value` out of `argv`.

  Tools parse their own options with argparse; the config arguments go through ml_collections'
  own parser, so their syntax and type checks are those of `python -m contrastive_jax.train`.
  Returns the (locked) config and the remaining arguments. Raises ValueError if `--config` is absent or an override names no field or has the wrong type.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_args, rest = [], []
  tokens = iter(argv)
  for token in tokens:
    name = token.split("=", 1)[0]
    if token == "--config":
      config_args.append(f"--config={next(tokens, '')}")
    elif name == "--config" or name.startswith("--config."):
      if "=" not in token:
        raise ValueError(f"{token}: write a config override as {token}=VALUE.")
      config_args.append(token)
    else:
      rest.append(token)
  if not any(a.startswith("--config=") for a in config_args):
    raise ValueError("--config is required: a config file, path.py or path.py:preset "
                     "(for example --config experiments/cifar10_simclr.py:cpu).")
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file(
      "config", None, "Config file, path.py or path.py:preset.", flag_values=flag_values, lock_config=True,
      sys_argv=["tool", *config_args])
  try:
    flag_values(["tool", *config_args])
  except (flags.Error, AttributeError, KeyError) as e:  # unknown field, or a value of the wrong type
    raise ValueError(f"bad config argument among {config_args}: {e}") from None
  return flag_values.config, rest


def bool_arg(text: str) -> bool:
  """argparse type for `--flag=true|false` (absl's spelling, as recorded commands use it)."""
  value = text.strip().lower()
  if value in ("1", "true", "yes"):
    return True
  if value in ("0", "false", "no"):
    return False
  raise ValueError(f"expected true or false, got {text!r}")
