"""Is a resumed run the run it says it is? Compare the config with the one the run recorded.

A run records its config in every checkpoint (and in `WORKDIR/config.json` when it starts).
When the command is rerun on the same workdir, `check_resume_config` compares the two:
- fields that change the state, the data order or the schedule (the model, the batch size,
  the seed, the augmentation, the optimiser, the schedule's length, ...) must not change;
- the logging / checkpoint cadence, evaluation settings and where the data lives may
  (`FREE_FIELDS`);
- the schedule (`SCHEDULE_FIELDS`) may change only with `--config.allow_schedule_change=True`,
  and the change is reported.
A config recorded by an older version is first brought to today's layout (`migrate_config`), so
older runs resume, evaluate and load as they were trained.
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
    "data.on_device",      # the same batches, gathered on the device (tests/test_data.py)
    "loss_chunk_size",     # the chunked NT-Xent equals the dense one (tests/test_losses.py)
    "model.encoder.conv_impl",  # a lowering of the same convolution (tests/test_conv_impl.py)
    "model.encoder.attention_impl",  # a kernel for the same attention (tests/test_vit.py)
    "model.bn_fast_variance",  # the same batch variance, rounded differently (docs/performance.md, Numerics)
)

# The learning-rate schedule: its length (num_steps / num_epochs), warmup and peak.
SCHEDULE_FIELDS = ("num_steps", "num_epochs", "warmup_epochs", "learning_rate", "lr_scaling")

# What runs recorded before a field existed did without it (the code's behaviour then), for fields
# added before the grouped model layout (config.model.encoder / head / predictor): only configs in
# the flat layout lack these.
_BEFORE_THE_FIELD: dict[str, Any] = {
    "allow_schedule_change": False,
    # The methods layer: runs before it were SimCLR with this head and two identical views.
    "method": "simclr",
    "optimizer": "lars",
    "augment.views": [{}, {}],
    "model.conv_impl": "xla",
    "model.base_width": 64,
    "model.bn_fast_variance": False,
    "model.head_hidden_dim": 0,
    "model.head_hidden_bn": True,
    "model.head_last_bn": True,
    "model.head_last_bn_scale": True,
    "model.head_init": "simclr",
    "model.predictor_layers": 0,
    "model.predictor_hidden_dim": 4096,
    "model.predictor_last_bias": True,
    "model.arch": "resnet",
}
# Fields added since the grouped layout: runs recorded before them, in either layout, did without them.
_ADDED_SINCE_THE_GROUPS: dict[str, Any] = {
    "lars_clip_lr": False,  # LARS without solo-learn's clipped rate
    "data.on_device": "false",  # batches from the host
    "eval.knn_every_epochs": 0,  # no kNN monitor
    "predictor_fixed_lr": False,  # the predictor on the schedule
    "loss": "nt_xent",  # simclr's loss
    "dcl_sigma": 0.5,
}
_RESNET = ("depth", "width_multiplier", "base_width", "cifar_stem", "zero_init_residual", "conv_impl")
_VIT = {"vit_variant": "variant", "patch_size": "patch_size", "posemb": "posemb", "pool": "pool",
        "frozen_patch_embed": "frozen_patch_embed", "vit_width": "width", "vit_depth": "depth", "vit_heads": "num_heads"}


def migrate_config(recorded: Mapping[str, Any]) -> dict[str, Any]:
  """A recorded config in today's layout: the one place that knows older runs' configs.

  Before config.model had its groups, the model's fields were flat (`model.depth`,
  `model.head_layers`, `model.vit_variant`, ...), and older runs lack fields added since; both
  are turned into the groups the same model is built from today (ResNet / ViT, ProjectionHead).
  A config in today's layout comes back unchanged but for the fields added since it was recorded.
  """
  config = json.loads(json.dumps(recorded))  # a deep copy, with JSON's types
  _set_defaults(config, _ADDED_SINCE_THE_GROUPS)
  if "encoder" in config.get("model", {}):
    _set_vit_defaults(config["model"]["encoder"])
    return config
  _set_defaults(config, _BEFORE_THE_FIELD)
  m = config["model"]
  if m["arch"] == "vit":
    encoder = {"name": "vit", **{new: m[old] for old, new in _VIT.items() if old in m and m[old] != 0}}
  else:
    encoder = {"name": "resnet", **{k: m[k] for k in _RESNET}}
  head = {"num_layers": m["head_layers"], "hidden_dim": m["head_hidden_dim"] or None, "hidden_bn": m["head_hidden_bn"],
          "last_bn": m["head_last_bn"], "last_bn_scale": m["head_last_bn_scale"], "dense_init": m["head_init"]}
  predictor = {"num_layers": m["predictor_layers"]}
  if m["predictor_layers"]:  # the predictor's BNs were fixed then: hidden yes, last no
    predictor.update(hidden_dim=m["predictor_hidden_dim"], hidden_bn=True, last_bn=False,
                     last_bias=m["predictor_last_bias"], dense_init=m["head_init"])
  _set_vit_defaults(encoder)
  config["model"] = {"encoder": encoder, "head": head, "predictor": predictor,
                     **{k: m[k] for k in ("proj_dim", "bn_momentum", "dtype", "bn_fast_variance", "online_probe")}}
  return config


def _set_vit_defaults(encoder: dict[str, Any]) -> None:
  """A ViT encoder group recorded before a ViT field existed: the field's value then."""
  if encoder.get("name") == "vit":
    encoder.setdefault("attention_impl", "flax")  # Flax's attention, the only one before the field


def _set_defaults(config: dict[str, Any], defaults: Mapping[str, Any]) -> None:
  """Each dotted field of `defaults` that `config` lacks, set in place to its value."""
  for dotted, value in defaults.items():
    *parents, leaf = dotted.split(".")
    node = config
    for name in parents:
      node = node.setdefault(name, {})
    node.setdefault(leaf, value)


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

  The record is first brought to today's layout (`migrate_config`); a field it still lacks is
  new to this code and cannot have changed. Fields the current config lacks are reported with
  current value None.
  """
  old = flatten(migrate_config(recorded))
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
