"""tools/gpu_accuracy.sh: its dry run (the whole script on the CPU at tiny sizes, TensorFlow hidden)."""

import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_accuracy.sh"


def _run(args, tmp_path, **env):
  environ = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  environ.update({"OUT": str(tmp_path / "out"), "PYTHON": os.environ.get("PYTHON", "python"), **env})
  return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=environ, capture_output=True, text=True,
                        timeout=600)


def test_an_unknown_method_lists_the_known_ones(tmp_path):
  proc = _run(["--dry-run", "simclr", "swav9"], tmp_path)
  assert proc.returncode == 2
  assert "unknown method 'swav9'" in proc.stderr and "simclr byol moco_v2 moco_v3 supcon" in proc.stderr
  assert not (tmp_path / "out").exists()  # nothing ran


def test_the_budget_goes_to_the_first_method_then_the_peer_and_benchmark_then_the_rest(image_folder, tmp_path):
  # BUDGET_S=0: every item is skipped, in the order the script would run them.
  proc = _run(["--dry-run", "simclr", "byol"], tmp_path, DATA=str(image_folder), BUDGET_S="0")
  assert proc.returncode == 0, proc.stdout + proc.stderr
  lines = (tmp_path / "out" / "gpu_accuracy.log").read_text().splitlines()
  order = [next(i for i, line in enumerate(lines) if marker in line)
           for marker in ("skip simclr", "PyTorch peer", "skip the benchmark", "skip byol", "done")]
  assert order == sorted(order), lines
  assert not list((tmp_path / "out").glob("*.json"))  # nothing ran


@pytest.mark.slow
@pytest.mark.proof
def test_dry_run_pretrains_evaluates_and_records_without_tensorflow(image_folder, tmp_path):
  proc = _run(["--dry-run", "simclr"], tmp_path, DATA=str(image_folder), PEER="0")
  out = tmp_path / "out"
  log = (out / "gpu_accuracy.log").read_text() if (out / "gpu_accuracy.log").exists() else ""
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert "TensorFlow hidden" in log and "end simclr rc=0" in log, log
  run_log = (out / "simclr.log").read_text()
  assert "no TensorBoard events" in run_log  # TensorFlow really was hidden from the run
  record = json.loads((out / "simclr.json").read_text())
  assert record["method"] == "simclr" and record["steps"] == record["total_steps"] == 4  # 2 epochs of 64 / 32
  assert [c["epoch"] for c in record["knn_curve"]] == [1.0, 2.0]
  for key in ("final_knn_top1", "final_linear_top1", "final_knn_top1_monitor", "best_knn_top1"):
    assert 0.0 <= record[key] <= 1.0, key
  assert record["final_knn_top1_monitor"] == pytest.approx(record["final_knn_top1"], abs=1e-9)
  assert record["views_per_sec_sustained"] > 0 and record["compile_seconds"] > 0
  assert record["pretrain_wall_seconds"] > record["compile_seconds"] and record["eval_wall_seconds"] > 0
  assert record["on_device"] == "true"
  bench = json.loads((out / "benchmark_simclr.json").read_text())
  assert bench["batch_size"] == 32 and bench["views_per_sec"] > 0
