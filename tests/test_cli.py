"""The command-line helpers that tools/ share with `python -m contrastive_jax.train`."""

import pytest

from contrastive_jax import cli

SPEC = "experiments/cifar10_simclr.py:cpu"


def test_split_config_args_reads_the_config_and_overrides_and_returns_the_rest():
  config, rest = cli.split_config_args(
      ["--steps=3", "--config", SPEC, "--config.batch_size=8", "--config.data.host_crop=false",
       "--config.temperature=0.5", "--devices", "8"])
  expected = cli.load_config(SPEC, batch_size=8, **{"data.host_crop": False, "temperature": 0.5})
  assert config.to_dict() == expected.to_dict()
  assert isinstance(config.batch_size, int) and config.data.host_crop is False
  assert rest == ["--steps=3", "--devices", "8"]
  with pytest.raises(AttributeError):  # locked, as the training CLI's config
    config.new_field = 1


def test_split_config_args_accepts_the_equals_form_of_config():
  config, rest = cli.split_config_args([f"--config={SPEC}"])
  assert config.to_dict() == cli.load_config(SPEC).to_dict() and rest == []


@pytest.mark.parametrize("argv, match", [
    (["--steps=3"], "--config is required"),
    (["--config", SPEC, "--config.no_such_field=1"], "no_such_field"),
    (["--config", SPEC, "--config.batch_size=abc"], "batch_size"),
    (["--config", SPEC, "--config.batch_size", "8"], "--config.batch_size=VALUE"),
])
def test_split_config_args_bad_arguments_are_value_errors(argv, match):
  with pytest.raises(ValueError, match=match):
    cli.split_config_args(argv)


@pytest.mark.parametrize("text, value", [("true", True), ("False", False), ("1", True), ("no", False)])
def test_bool_arg_reads_absl_spellings(text, value):
  assert cli.bool_arg(text) is value


def test_bool_arg_rejects_other_text():
  with pytest.raises(ValueError, match="true or false"):
    cli.bool_arg("maybe")
