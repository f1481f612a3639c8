"""Is a resumed run the run it says it is? Compare the config with the one the run recorded.

A run records its config in every checkpoint (and in `WORKDIR/config.json` when it starts).
When the command is rerun on the same workdir, `check_resume_config` compares the two:
- fields that change the state, the data order or the schedule (the model, the batch size,
  the seed, the augmentation, the optimiser, the schedule's length, ...) must not change;
- the logging / checkpoint cadence, evaluation settings and where the data lives may
  (`FREE_FIELDS`);
- the schedule (`SCHEDULE_FIELDS`) may change only with `--config.allow_schedule_change=True`,
  and the change is reported.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

# Fields that change neither the state nor the data order nor the schedule. A prefix ending in "."
# covers a whole section.
FREE_FIELDS = (
    "log_every_steps", "checkpoint_every_steps", "keep_checkpoints", "allow_schedule_change",
    "eval.",               # evaluation runs after training and reads only the checkpoint
    "data.image_folder", "data.data_dir", "data.prefetch", "data.test_split",  # where, not what
    "loss_chunk_size",     # the chunked NT-Xent equals the dense one (tests/test_losses.py)
    "model.conv_impl",     # a lowering of the same convolution (tests/test_conv_impl.py)
    "model.bn_fast_variance",  # the same batch variance, rounded differently (docs/performance.md, Numerics)
)

# The learning-rate schedule: its length (num_steps / num_epochs), warmup and peak.
SCHEDULE_FIELDS = ("num_steps", "num_epochs", "warmup_epochs", "learning_rate", "lr_scaling")

# Fields added after the first release, with the value that reproduces runs recorded before
# them (what the code assumes when a config lacks the field).
LEGACY_DEFAULTS: dict[str, Any] = {
    "model.conv_impl": "xla",
    "model.base_width": 64,
    "allow_schedule_change": False,
    # The methods layer: runs before it were SimCLR with this head and two identical views.
    "method": "simclr",
    "optimizer": "lars",
    "augment.views": [{}, {}],
    "model.head_hidden_dim": 0,
    "model.head_hidden_bn": True,
    "model.head_last_bn": True,
    "model.head_last_bn_scale": True,
    "model.predictor_layers": 0,
    "model.head_init": "simclr",
    "model.arch": "resnet",
}


class ConfigMismatchError(ValueError):
  """The config differs from the recorded one in fields that a resumed run must keep."""


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """{"model": {"depth": 18}} -> {"model.depth": 18}, with values as JSON gives them back (tuples -> lists)."""
  out: dict[str, Any] = {}
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.update(flatten(value, name + "."))
    else:
      out[name] = json.loads(json.dumps(value))
  return out


def _matches(name: str, fields: tuple[str, ...]) -> bool:
  return any(name == f or (f.endswith(".") and name.startswith(f)) for f in fields)


def config_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
  """{field: (recorded value, current value)} over every field that differs.

  Fields the record lacks take `LEGACY_DEFAULTS`; a field the record lacks and that has no legacy
  default is new to this code and cannot have changed. Fields the current config lacks are
  reported with current value None.
  """
  old = {**LEGACY_DEFAULTS, **flatten(recorded)}
  new = flatten(current)
  diffs = {}
  for name in sorted(set(old) | set(new)):
    if name not in old:
      continue
    if old[name] != new.get(name):
      diffs[name] = (old[name], new.get(name))
  return diffs


def check_resume_config(recorded: Mapping[str, Any], current: Mapping[str, Any], *,
                        allow_schedule_change: bool = False) -> dict[str, tuple[Any, Any]]:
  """Raise ConfigMismatchError unless `current` may resume a run recorded with `recorded`.

  Returns the accepted schedule changes ({field: (old, new)}, empty unless
  `allow_schedule_change`), for the caller to log. Free fields are ignored.
  """
  diffs = {k: v for k, v in config_differences(recorded, current).items() if not _matches(k, FREE_FIELDS)}
  schedule = {k: v for k, v in diffs.items() if _matches(k, SCHEDULE_FIELDS)}
  fixed = {k: v for k, v in diffs.items() if k not in schedule}
  listing = lambda d: "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in d.items())
  if fixed:
    raise ConfigMismatchError(
        f"the config differs from the run recorded in this workdir in fields that change the training "
        f"state or the data order ({listing(fixed)}). Resume with the recorded values (the workdir's "
        f"config.json), or start a new run in another --workdir.")
  if schedule and not allow_schedule_change:
    raise ConfigMismatchError(
        f"the config changes the learning-rate schedule of the run recorded in this workdir "
        f"({listing(schedule)}). Resume with the recorded values, or pass "
        f"--config.allow_schedule_change=True to continue with the new schedule from the checkpoint's step.")
  return schedule
