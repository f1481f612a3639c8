"""tools/gpu_check.sh: its argument checks, and issue 30's speed set run dry (CPU, tiny sizes)."""

import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_check.sh"


def _run(tmp_path, **env):
  environ = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  environ.update({"OUT": str(tmp_path / "out"), "PYTHON": os.environ.get("PYTHON", "python"), **env})
  return subprocess.run(["bash", str(SCRIPT), "--dry-run"], cwd=ROOT, env=environ, capture_output=True, text=True,
                        timeout=600)


def test_an_unknown_set_names_the_known_ones(tmp_path):
  proc = _run(tmp_path, SET="fast")
  assert proc.returncode == 2
  assert "SET must be 'check' or 'speed', got 'fast'" in proc.stderr
  assert not (tmp_path / "out").exists()  # nothing ran


@pytest.mark.slow
@pytest.mark.proof
def test_speed_set_times_vit_with_each_attention_kernel(tmp_path):
  proc = _run(tmp_path, SET="speed", ONLY="vit_s16_b256")
  out = tmp_path / "out"
  log = (out / "gpu_check.log").read_text()
  assert proc.returncode == 0, proc.stdout + proc.stderr
  # The dry run stands XLA's kernel in for cuDNN's, which needs a GPU.
  for name in ("vit_s16_b256_attn_flax", "vit_s16_b256_attn_xla"):
    assert f"end {name} rc=0" in log, log
  summary = json.loads((out / "summary.json").read_text())
  assert summary["command"].startswith("ONLY='vit_s16_b256' SET=speed")
  items = summary["figures"]["items"]
  assert sorted(items) == ["vit_s16_b256_attn_flax", "vit_s16_b256_attn_xla"]
  assert [r["attention_impl"] for r in items.values()] == ["flax", "xla"]
  for r in items.values():
    assert r["views_per_sec"] > 0 and r["flops_per_step"] > 0
  # The same model either way: the FLOP count does not depend on the attention kernel (to XLA's counting).
  flops = [r["flops_per_step"] for r in items.values()]
  assert abs(flops[0] - flops[1]) <= 1e-3 * flops[0]
  assert not (out / "r50_conv_layouts.txt").exists()  # ONLY left the ResNet-50 items out
