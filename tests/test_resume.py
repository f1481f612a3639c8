"""A resumed run must be the run it says it is: the config is checked against the recorded one."""

import json
import pathlib

import pytest

from contrastive_jax import cli
from contrastive_jax import resume
from contrastive_jax import train as train_lib
from contrastive_jax.checkpoint import Checkpointer

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "experiments"
CONFIG = str(CONFIG_DIR / "cifar10_simclr.py")


def _config(**overrides):
  return cli.load_config(f"{CONFIG}:test", **overrides)


def _recorded(**overrides):
  return json.loads(_config(**overrides).to_json_best_effort())


def test_state_fields_must_not_change():
  recorded = _recorded()
  for field, value in (("batch_size", 32), ("seed", 1), ("model.encoder.depth", 34), ("augment.jitter_strength", 1.0),
                       ("temperature", 0.1), ("data.num_train_examples", 32), ("weight_decay", 0.0)):
    with pytest.raises(resume.ConfigMismatchError, match=field.replace(".", r"\.")):
      resume.check_resume_config(recorded, _recorded(**{field: value}))


def test_cadence_evaluation_and_data_location_may_change():
  changed = _recorded(**{"log_every_steps": 7, "checkpoint_every_steps": 9, "keep_checkpoints": 1,
                         "eval.linear_epochs": 3, "data.image_folder": "/elsewhere", "model.encoder.conv_impl": "winograd"})
  assert resume.check_resume_config(_recorded(), changed) == {}


def test_a_vit_run_may_resume_with_another_attention_kernel():
  vit = str(CONFIG_DIR / "cifar10_moco_v3.py") + ":vit_test"
  recorded = json.loads(cli.load_config(vit).to_json_best_effort())
  assert recorded["model"]["encoder"]["attention_impl"] == "flax"
  xla = json.loads(cli.load_config(vit, **{"model.encoder.attention_impl": "xla"}).to_json_best_effort())
  assert resume.check_resume_config(recorded, xla) == {}
  with pytest.raises(resume.ConfigMismatchError, match=r"model\.encoder\.patch_size"):
    resume.check_resume_config(recorded, json.loads(cli.load_config(vit, **{"model.encoder.patch_size": 4})
                                                    .to_json_best_effort()))


def test_schedule_changes_only_when_allowed():
  longer = _recorded(**{"num_steps": 8})
  with pytest.raises(resume.ConfigMismatchError, match=r"num_steps: 4 -> 8.*allow_schedule_change=True"):
    resume.check_resume_config(_recorded(), longer)
  assert resume.check_resume_config(_recorded(), longer, allow_schedule_change=True) == {"num_steps": (4, 8)}
  # The flag forces the schedule only: other fields still stop the run.
  with pytest.raises(resume.ConfigMismatchError, match="batch_size"):
    resume.check_resume_config(_recorded(), _recorded(**{"num_steps": 8, "batch_size": 32}),
                               allow_schedule_change=True)


# Configs recorded by the code before config.model had its groups (commit 78bdd2d): flat model fields.
FLAT = json.loads((pathlib.Path(__file__).parent / "data" / "configs_flat_model_layout.json").read_text())["configs"]


@pytest.mark.parametrize("spec", sorted(FLAT))
def test_runs_recorded_in_the_flat_model_layout_migrate_to_todays_groups(spec):
  """A ResNet, a predictor and a ViT recorded flat are today's groups, field for field: they resume."""
  path, _, preset = spec.partition(":")
  # Recorded before lars_clip_lr, on_device and the kNN monitor: trained without them, as today's
  # config does when told so; and when the test presets' ResNet had 18 layers (10 today).
  config = cli.load_config(str(CONFIG_DIR / pathlib.Path(path).name) + ":" + preset,
                           lars_clip_lr=False, **{"data.on_device": "false", "eval.knn_every_epochs": 0})
  if config.model.encoder.name == "resnet":
    config.model.encoder.depth = 18
  today = json.loads(config.to_json_best_effort())
  assert "depth" in FLAT[spec]["model"] and "encoder" not in FLAT[spec]["model"]
  assert resume.migrate_config(FLAT[spec]) == today
  assert resume.check_resume_config(FLAT[spec], today) == {}
  assert resume.migrate_config(today) == today  # today's layout passes through


def test_fields_older_runs_lack_take_what_the_code_did_without_them():
  old = json.loads(json.dumps(FLAT["experiments/cifar10_simclr.py:test"]))
  del old["model"]["conv_impl"], old["model"]["base_width"], old["method"]
  # base_width was 64 before it was a field: the test preset's 8 is a different network.
  with pytest.raises(resume.ConfigMismatchError, match=r"model\.encoder\.base_width: 64 -> 8"):
    resume.check_resume_config(old, _recorded(**{"model.encoder.depth": 18}))
  assert resume.check_resume_config(old, _recorded(**{"model.encoder.base_width": 64, "model.encoder.depth": 18})) == {}
  # lars_clip_lr came after the groups: a record of today's layout without it did not clip either.
  grouped = _recorded()
  del grouped["lars_clip_lr"]
  assert resume.migrate_config(grouped) == _recorded()
  with pytest.raises(resume.ConfigMismatchError, match=r"lars_clip_lr: False -> True"):
    resume.check_resume_config(grouped, _recorded(lars_clip_lr=True))


@pytest.mark.slow
def test_resume_checks_the_checkpointed_config(image_folder, tmp_path):
  """Through the train loop: the check runs before any data or compilation, and a forced change is logged."""
  base = {"num_steps": 2, "checkpoint_every_steps": 1, "data.image_folder": str(image_folder)}
  train_lib.train_and_evaluate(_config(**base), str(tmp_path))
  assert Checkpointer(str(tmp_path / "checkpoints"), read_only=True).restore_config()["batch_size"] == 16
  recorded_json = (tmp_path / "config.json").read_text()

  with pytest.raises(resume.ConfigMismatchError, match=r"batch_size: 16 -> 32"):
    train_lib.train_and_evaluate(_config(**{**base, "batch_size": 32}), str(tmp_path))
  with pytest.raises(resume.ConfigMismatchError, match=r"num_steps: 2 -> 3"):
    train_lib.train_and_evaluate(_config(**{**base, "num_steps": 3}), str(tmp_path))
  assert (tmp_path / "config.json").read_text() == recorded_json  # a refused resume rewrites nothing

  summary = train_lib.train_and_evaluate(
      _config(**{**base, "num_steps": 3, "allow_schedule_change": True, "log_every_steps": 3}), str(tmp_path))
  assert summary["last_step"] == 3
  changes = [json.loads(line) for line in (tmp_path / "config_changes.jsonl").read_text().splitlines()]
  assert changes[-1]["step"] == 2 and changes[-1]["changes"] == {"num_steps": {"from": 2, "to": 3}}
  assert json.loads((tmp_path / "config.json").read_text())["num_steps"] == 3
  assert Checkpointer(str(tmp_path / "checkpoints"), read_only=True).restore_config(step=3)["num_steps"] == 3
