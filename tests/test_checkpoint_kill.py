"""A run killed with SIGKILL, even during a save, restarts from the last complete checkpoint.

Orbax (0.12.8, local filesystem) writes step N into `N.orbax-checkpoint-tmp/`
(each item into `<item>.orbax-checkpoint-tmp/` inside it), writes
`commit_success.txt`, then renames the folder to `N`. A kill before the rename
leaves the tmp folder and the previous steps; a kill while old steps are being
garbage-collected (a plain rmtree) leaves a half-deleted old step.

Both tests use the shapes of tests/test_train.py (the `test` preset, 4 classes,
8 CPU devices, 6 steps), so the persistent compilation cache that conftest sets
up serves them all, in this process and in the CLI subprocesses.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from contrastive_jax import cli
from contrastive_jax import train as train_lib
from contrastive_jax import writers
from contrastive_jax.checkpoint import Checkpointer

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "experiments" / "cifar10_simclr.py")
TMP = ".orbax-checkpoint-tmp"  # orbax.checkpoint._src.path.atomicity_types.TMP_DIR_SUFFIX
STEPS = 6

pytestmark = [pytest.mark.slow, pytest.mark.proof]  # every test here trains, kills and resumes runs


def _tmp_dirs(ckpt_dir: pathlib.Path) -> list[str]:
  return sorted(p.name for p in ckpt_dir.iterdir() if TMP in p.name)


def test_checkpointer_resumes_past_a_save_killed_halfway(image_folder, tmp_path):
  """The on-disk state of a kill mid-save (and mid-garbage-collection): resume from the last complete step."""
  config = cli.load_config(f"{CONFIG}:test", **{"num_steps": STEPS, "checkpoint_every_steps": 2,
                                                "keep_checkpoints": 2, "data.image_folder": str(image_folder)})
  train_lib.train_and_evaluate(config, str(tmp_path))
  want = {m["step"]: m["loss"] for m in writers.read_metrics(tmp_path)}
  ckpt_dir = tmp_path / "checkpoints"
  assert Checkpointer(str(ckpt_dir), read_only=True).all_steps() == [4, 6]

  # As if SIGTERM came after step 5 and SIGKILL at the end of the grace period,
  # during the off-cycle save of step 5: its folder was never renamed, and its
  # opt_state item (the largest) is itself unfinished and partial. Step 6 was never reached.
  partial = ckpt_dir / f"5{TMP}"
  (ckpt_dir / "6").rename(partial)
  (partial / "opt_state").rename(partial / f"opt_state{TMP}")
  for marker in partial.rglob("commit_success.txt"):
    marker.unlink()
  data_files = sorted(p for p in (partial / f"opt_state{TMP}").rglob("*") if p.is_file())
  assert len(data_files) > 4
  for p in data_files[::2]:
    p.unlink()
  data_files[1].write_bytes(data_files[1].read_bytes()[:7])  # and one file cut short
  # ... and an older kill, while an old step was being garbage-collected (rmtree stopped halfway).
  shutil.copytree(ckpt_dir / "4", ckpt_dir / "2")
  shutil.rmtree(ckpt_dir / "2" / "params")

  assert Checkpointer(str(ckpt_dir), read_only=True).latest_step() == 4
  (tmp_path / "metrics.jsonl").write_text("")
  summary = train_lib.train_and_evaluate(config, str(tmp_path))
  got = {m["step"]: m["loss"] for m in writers.read_metrics(tmp_path)}
  assert sorted(got) == [5, 6]  # resumed after step 4
  for s in (5, 6):
    np.testing.assert_allclose(got[s], want[s], rtol=1e-5)
  assert summary["last_step"] == STEPS
  # Step 5 is off-cycle, so nothing saves over its tmp folder: it must have been cleaned up.
  assert _tmp_dirs(ckpt_dir) == []
  assert Checkpointer(str(ckpt_dir), read_only=True).all_steps() == [4, 6]  # the broken 2 went with the oldest


def _cli(workdir: pathlib.Path, image_folder: pathlib.Path, log: pathlib.Path) -> subprocess.Popen:
  # The parent's environment as it is (8 host devices, the compilation cache), so the subprocess
  # compiles the step of the in-process tests and finds it in the cache.
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
  args = [f"--config={CONFIG}:test", f"--workdir={workdir}", f"--config.num_steps={STEPS}",
          "--config.checkpoint_every_steps=1", f"--config.data.image_folder={image_folder}"]
  with open(log, "w", encoding="utf-8") as out:  # a file, not a pipe that could fill and block the run
    return subprocess.Popen([sys.executable, "-m", "contrastive_jax.train", *args], cwd=ROOT, env=env,
                            stdout=out, stderr=subprocess.STDOUT)


def _kill_during_a_save(proc: subprocess.Popen, ckpt_dir: pathlib.Path, timeout: float) -> bool:
  """SIGKILL `proc` while a step is being written after an earlier one is complete; False if it never was."""
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    names = os.listdir(ckpt_dir) if ckpt_dir.is_dir() else []
    tmp = [n for n in names if TMP in n]
    # Not yet marked committed: the rename is still some writes away.
    if any(n.isdigit() for n in names) and tmp and not (ckpt_dir / tmp[0] / "commit_success.txt").exists():
      proc.kill()
      proc.wait()
      return True
    time.sleep(0.001)
  return False


def test_sigkill_during_a_save_resumes_from_the_last_complete_checkpoint(image_folder, tmp_path):
  """The CLI, SIGKILLed while writing a checkpoint, then rerun: it resumes and finishes."""
  workdir, ckpt_dir = tmp_path / "run", tmp_path / "run" / "checkpoints"
  for attempt in range(3):  # a kill can land just after the rename; then kill the resumed run instead
    log = tmp_path / f"killed{attempt}.log"
    proc = _cli(workdir, image_folder, log)
    try:
      assert _kill_during_a_save(proc, ckpt_dir, timeout=180), log.read_text()
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
    assert proc.returncode == -9
    if _tmp_dirs(ckpt_dir):
      break
  assert _tmp_dirs(ckpt_dir), "no kill landed during a save"
  complete = max(int(n) for n in os.listdir(ckpt_dir) if n.isdigit())
  assert complete < STEPS

  log = tmp_path / "rerun.log"
  rerun = _cli(workdir, image_folder, log)
  try:
    assert rerun.wait(timeout=240) == 0, log.read_text()
  finally:
    if rerun.poll() is None:
      rerun.kill()
      rerun.wait()
  out = log.read_text()
  assert f"Resumed from {ckpt_dir} at step {complete}." in out, out
  assert "Traceback" not in out, out
  printed = [int(s) for s in re.findall(rf"^step (\d+)/{STEPS} ", out, re.MULTILINE)]
  assert printed == list(range(complete + 1, STEPS + 1)), out
  summary = json.loads(next(line for line in out.splitlines() if line.startswith('{"summary"')))["summary"]
  assert summary["last_step"] == STEPS and not summary["preempted"]
  assert Checkpointer(str(ckpt_dir), read_only=True).all_steps()[-1] == STEPS
  assert _tmp_dirs(ckpt_dir) == []
  # Steps that the killed run had already logged came out the same when recomputed.
  by_step: dict[int, list[float]] = {}
  for m in writers.read_metrics(workdir):
    by_step.setdefault(m["step"], []).append(m["loss"])
  assert sorted(by_step) == list(range(1, STEPS + 1))
  for losses in by_step.values():
    np.testing.assert_allclose(losses, losses[0], rtol=1e-5)
