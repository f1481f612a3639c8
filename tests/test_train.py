"""The training system: views across meshes, resume, preemption, NaN, multi-process, CLI errors.

The step on 8 devices against 1, for every method, is tests/test_methods.py.
"""

import dataclasses
import pathlib
import re
import shutil
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from contrastive_jax import cli
from contrastive_jax import data as data_lib
from contrastive_jax import parallel
from contrastive_jax import sources
from contrastive_jax import train as train_lib
from contrastive_jax import views as views_lib
from contrastive_jax import writers
from contrastive_jax.checkpoint import Checkpointer
from cli_runner import free_port, launch_2x2, run_cli, wait_ok

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "experiments" / "cifar10_simclr.py")


def _test_config(**overrides):
  return cli.load_config(f"{CONFIG}:test", **overrides)


# ----------------------------------------------------------------------------- the step contract


def test_augmentation_keys_do_not_depend_on_device_count():
  """Views come from (key, step, global row): the same rows give the same views on any mesh."""
  config = _test_config()
  aug = views_lib.augment_config(config)
  images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
  key = jax.random.fold_in(jax.random.key(3), 5)
  keys = jax.vmap(lambda i: jax.random.split(jax.random.fold_in(key, i)))(jnp.arange(8))
  whole = views_lib.augment_views({"image": images}, keys, (aug, aug))
  half = views_lib.augment_views({"image": images[4:]}, keys[4:], (aug, aug))
  np.testing.assert_allclose(np.asarray(whole[0][4:]), np.asarray(half[0]), atol=1e-6)
  assert not np.allclose(np.asarray(whole[0]), np.asarray(whole[1]))


# ----------------------------------------------------------------------------- the loop


@pytest.mark.slow
def test_a_run_keeps_its_last_checkpoints_resumes_exactly_and_stops_at_a_nan(image_folder, tmp_path):
  """One straight 6-step run (a checkpoint every step, the last 4 kept) is the reference for three contracts.

  - Its files: config.json, TensorBoard events, metrics rows with every key; checkpoints 3-6 only.
  - A resume from step 3, as if the run died right after saving it, with the batches gathered on the
    device (`config.data.on_device`): steps 4-6 equal the straight host-fed run's, to the bit.
  - A NaN learning rate from there on: the run stops at step 7 naming the last good checkpoint, 6,
    and leaves the checkpoints as they were.
  """
  overrides = {"num_steps": 6, "checkpoint_every_steps": 1, "keep_checkpoints": 4,
               "data.image_folder": str(image_folder)}
  config = _test_config(**overrides)
  straight = tmp_path / "straight"
  train_lib.train_and_evaluate(config, str(straight))
  assert Checkpointer(str(straight / "checkpoints"), read_only=True).all_steps() == [3, 4, 5, 6]
  assert (straight / "config.json").exists()
  assert any(p.name.startswith("events") for p in (straight / "tensorboard").iterdir())
  rows = writers.read_metrics(straight)
  for key in ("step", "loss", "contrastive_acc", "learning_rate", "steps_per_sec", "probe_acc"):
    assert key in rows[-1], key
  want = {m["step"]: m["loss"] for m in rows}
  assert sorted(want) == [1, 2, 3, 4, 5, 6]

  resumed = tmp_path / "resumed"
  shutil.copytree(straight, resumed)
  for step in (4, 5, 6):
    shutil.rmtree(resumed / "checkpoints" / str(step))
  (resumed / "metrics.jsonl").write_text("")
  summary = train_lib.train_and_evaluate(_test_config(**overrides, **{"data.on_device": "true"}), str(resumed))
  got = {m["step"]: m["loss"] for m in writers.read_metrics(resumed)}
  assert sorted(got) == [4, 5, 6] and summary["last_step"] == 6
  # The same program on the same machine and inputs: the same float32 arithmetic, to the bit.
  assert got == {s: want[s] for s in got}
  assert Checkpointer(str(resumed / "checkpoints"), read_only=True).latest_step() == 6

  before = sorted(p.name for p in (straight / "checkpoints").iterdir())
  bad = _test_config(**{**overrides, "num_steps": 8, "learning_rate": float("nan"), "allow_schedule_change": True})
  with pytest.raises(train_lib.NonFiniteLossError, match=r"not finite at step 7.*last good checkpoint is step 6"):
    train_lib.train_and_evaluate(bad, str(straight))
  assert sorted(p.name for p in (straight / "checkpoints").iterdir()) == before


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly(image_folder, tmp_path):
  proc = run_cli("contrastive_jax.train",
                  [f"--config={CONFIG}:test", f"--workdir={tmp_path}", "--config.num_steps=100000",
                   "--config.checkpoint_every_steps=100000", f"--config.data.image_folder={image_folder}"],
                  start_new_session=False)
  lines = []
  deadline = time.time() + 240
  for line in proc.stdout:  # wait for training to be under way
    lines.append(line)
    if line.startswith("step 2/") or time.time() > deadline:
      break
  t0 = time.time()
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=60)
  elapsed = time.time() - t0
  assert proc.returncode == 0, "".join(lines) + out
  assert elapsed < 30, elapsed
  assert "SIGTERM: saved step" in out
  steps = Checkpointer(str(tmp_path / "checkpoints"), read_only=True).all_steps()
  assert steps and steps[-1] >= 2


# ----------------------------------------------------------------------------- multi-process


@pytest.mark.slow
@pytest.mark.proof
def test_two_processes_sigterm_to_one_saves_the_same_step_and_resumes_exactly(image_folder, tmp_path):
  """2 processes x 2 CPU devices (gloo), SIGTERM to process 1 only.

  Both save the same step and exit 0 within 60 s; the rerun resumes, and its losses equal an
  uninterrupted 2 x 2 run's, whose first steps equal 1 process x 8 devices'.
  """
  steps = 10
  overrides = {"num_steps": steps, "checkpoint_every_steps": 1000, "data.image_folder": str(image_folder)}
  args = [f"--config={CONFIG}:test"] + [f"--config.{k}={v}" for k, v in overrides.items()]
  procs = launch_2x2(args, tmp_path / "stopped", free_port())
  lines = []
  for line in procs[0].stdout:  # only process 0 logs steps; signal process 1 once training is under way
    lines.append(line)
    if line.startswith("step 2/"):
      break
  t0 = time.time()
  procs[1].send_signal(signal.SIGTERM)
  outs = [p.communicate(timeout=90)[0] for p in procs]
  elapsed = time.time() - t0
  outs[0] = "".join(lines) + outs[0]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out
  assert elapsed < 60, elapsed
  saved = [int(re.search(r"SIGTERM: saved step (\d+)", out).group(1)) for out in outs]
  assert saved[0] == saved[1] and 2 < saved[0] < steps, saved
  assert "signalled on another process" in outs[0] and "signalled here" in outs[1]
  assert Checkpointer(str(tmp_path / "stopped" / "checkpoints"), read_only=True).all_steps() == [saved[0]]

  resume = launch_2x2(args, tmp_path / "stopped", free_port())
  # The 1-process reference runs here (8 devices) while the two processes work.
  train_lib.train_and_evaluate(_test_config(**overrides), str(tmp_path / "single"))
  wait_ok(resume)
  wait_ok(launch_2x2(args, tmp_path / "straight", free_port()))
  whole = {m["step"]: m["loss"] for m in writers.read_metrics(tmp_path / "straight")}
  resumed = {m["step"]: m["loss"] for m in writers.read_metrics(tmp_path / "stopped")[saved[0]:]}
  assert sorted(whole) == list(range(1, steps + 1))
  assert sorted(resumed) == list(range(saved[0] + 1, steps + 1))
  # The same devices, processes, program and inputs: the same float32 arithmetic, to the bit.
  assert resumed == {s: whole[s] for s in resumed}
  one = {m["step"]: m["loss"] for m in writers.read_metrics(tmp_path / "single")}
  # Step 1 is before any update; step 2 follows one LARS step, whose trust ratios amplify the
  # float32 rounding of gradient sums split 4 ways instead of 8 (measured: 1.05e-4 relative).
  for s, rtol in ((1, 1e-4), (2, 5e-4)):
    np.testing.assert_allclose(whole[s], one[s], rtol=rtol, err_msg=f"step {s}")


# ----------------------------------------------------------------------------- real data


@pytest.mark.slow
def test_loss_goes_down_on_real_cifar10(cifar10_dir):
  """1,024 real CIFAR-10 images, 30 steps of the trainer's step: the loss of fixed batches falls.

  The loss is measured before and after training on the same 4 batches, views and step number, so
  that batch-to-batch noise (about 0.1 per step here) cannot decide the test: the per-step training
  losses of this tiny net are chaotic at this rate, their 5-step means fell 0.15 on one device and
  0.001 on eight.
  """
  config = _test_config(**{"num_steps": 30, "batch_size": 64, "num_epochs": 100, "learning_rate": 4.0,
                           "warmup_epochs": 0.0, "data.image_folder": str(cifar10_dir),
                           "data.num_train_examples": 1024})
  dataset = sources.load_train_data(config)
  mesh = parallel.make_data_mesh()
  built = train_lib.build_step(config, mesh, num_examples=len(dataset), num_classes=dataset.num_classes,
                               donate=False)
  key = jax.random.key(config.seed)
  initial = state = built.init(train_lib.init_key(config.seed))
  batches = data_lib.TrainIterator(dataset, global_batch_size=64, seed=config.seed, crop_size=32)
  try:
    for _, batch in zip(range(30), batches):
      state, metrics = built.step(state, batch, key)
      assert np.isfinite(float(metrics["loss"]))
  finally:
    batches.close()
  held = [{"image": dataset.images[i::16], "label": dataset.labels[i::16], "index": np.arange(64, dtype=np.int32)}
          for i in range(4)]

  def held_loss(s):  # the step's metrics are of its input state; step 0 fixes the views
    s = dataclasses.replace(s, step=jnp.zeros_like(s.step))
    return np.mean([float(built.step(s, b, jax.random.key(1))[1]["loss"]) for b in held])

  before, after = held_loss(initial), held_loss(state)
  assert after < before - 0.03, (before, after)


# ----------------------------------------------------------------------------- bad input


def test_missing_image_folder_names_the_path(tmp_path):
  config = _test_config(**{"data.image_folder": str(tmp_path / "nowhere")})
  with pytest.raises(Exception, match="nowhere"):
    train_lib.train_and_evaluate(config, str(tmp_path / "w"))


def test_empty_image_folder_names_the_path(tmp_path):
  (tmp_path / "empty" / "train").mkdir(parents=True)
  config = _test_config(**{"data.image_folder": str(tmp_path / "empty")})
  with pytest.raises(Exception, match="empty"):
    train_lib.train_and_evaluate(config, str(tmp_path / "w"))


def test_unavailable_tfds_dataset_points_to_image_folder(no_network, tmp_path):
  del no_network  # without it, TFDS would retry the download for 3.5 minutes
  config = _test_config(**{"data.dataset": "cifar10", "data.data_dir": str(tmp_path / "tfds")})
  with pytest.raises(Exception, match=r"cifar10.*--config.data.image_folder"):
    train_lib.train_and_evaluate(config, str(tmp_path / "w"))


def test_batch_not_divisible_by_devices_says_what_to_set(image_folder, tmp_path):
  config = _test_config(**{"batch_size": 12, "data.image_folder": str(image_folder)})
  with pytest.raises(ValueError, match=r"config.batch_size=12 is not divisible.*8.*--config.batch_size=16"):
    train_lib.train_and_evaluate(config, str(tmp_path))


def test_unreadable_image_names_the_file(image_folder, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  broken = tmp_path / "broken"
  shutil.copytree(image_folder, broken)
  (broken / "train" / "class1" / "bad.jpg").write_bytes(b"this is not a jpeg")
  config = _test_config(**{"data.image_folder": str(broken), "data.num_train_examples": 0})
  with pytest.raises(ValueError, match="bad.jpg"):
    train_lib.train_and_evaluate(config, str(tmp_path / "w"))


@pytest.mark.slow
def test_cli_unknown_config_key_is_named(tmp_path):
  res = run_cli("contrastive_jax.train", [f"--config={CONFIG}:test", f"--workdir={tmp_path}",
                                           "--config.batch_sise=64"])
  assert res.returncode != 0
  assert "batch_sise" in res.stdout + res.stderr


@pytest.mark.slow
def test_variable_size_images_are_cropped_on_the_host(tmp_path):
  """ImageNet-like folders: images of their own sizes, two crops per image in tf.data, rest on device."""
  rng = np.random.default_rng(0)
  for c in range(2):
    d = tmp_path / "data" / "train" / f"c{c}"
    d.mkdir(parents=True)
    for i in range(16):
      h, w = rng.integers(36, 80, size=2)
      Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / f"{i}.jpg")
  config = _test_config(**{"data.image_folder": str(tmp_path / "data"), "data.host_crop": True,
                           "data.num_train_examples": 0, "num_steps": 2})
  batches = data_lib.TrainIterator(sources.load_train_data(config), global_batch_size=16, seed=0, crop_size=32)
  batch = next(batches)
  batches.close()
  assert batch["image"].shape == (16, 2, 32, 32, 3) and batch["image"].dtype == np.uint8
  assert not np.array_equal(batch["image"][:, 0], batch["image"][:, 1])  # two independent crops
  summary = train_lib.train_and_evaluate(config, str(tmp_path / "w"))
  assert summary["last_step"] == 2 and np.isfinite(summary["last_loss"])


def test_load_config_applies_overrides_and_names_unknown_keys():
  config = cli.load_config(f"{CONFIG}:test", **{"batch_size": 32, "model.encoder.depth": 34})
  assert config.batch_size == 32 and config.model.encoder.depth == 34
  with pytest.raises(KeyError, match="model.depht"):
    cli.load_config(f"{CONFIG}:test", **{"model.depht": 34})
