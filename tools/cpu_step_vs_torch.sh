#!/usr/bin/env bash
# Issue 30's side-by-side CPU step: ours (tools/benchmark.py, SimCLR ResNet-18 CIFAR, 64 pairs,
# float32) against PyTorch eager + lightly (tools/benchmark_torch.py, the same model and batch),
# alternating, ROUNDS rounds, on one machine with nothing else running. Prints one JSON line per
# round and, last, the CPU model and the per-round ratios.
#   TORCH_PYTHON=/path/to/venv/bin/python bash tools/cpu_step_vs_torch.sh [ROUNDS]
# The PyTorch venv: python3 -m venv V && V/bin/pip install torch torchvision lightly
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
torch_python=${TORCH_PYTHON:?set TORCH_PYTHON to a python with torch, torchvision and lightly}
ours=() theirs=()
for r in $(seq "$rounds"); do
  a=$(python tools/benchmark.py --config experiments/cifar10_simclr.py --config.batch_size=64 --steps=5 2>/dev/null | tail -1)
  b=$("$torch_python" tools/benchmark_torch.py --pairs 64 --steps 5 --warmup 2 2>/dev/null | tail -1)
  ours+=("$(python -c 'import json, sys; print(json.loads(sys.argv[1])["pairs_per_sec"])' "$a")")
  theirs+=("$(python -c 'import json, sys; print(json.loads(sys.argv[1])["pairs_per_sec"])' "$b")")
  echo "{\"round\": $r, \"jax_pairs_per_sec\": ${ours[-1]}, \"torch_pairs_per_sec\": ${theirs[-1]}}"
done
python - "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)" "${ours[*]}" "${theirs[*]}" <<'EOF'
import json, statistics, sys
cpu, ours, theirs = sys.argv[1].strip(), list(map(float, sys.argv[2].split())), list(map(float, sys.argv[3].split()))
ratios = [a / b for a, b in zip(ours, theirs)]
print(json.dumps({"cpu": cpu, "jax_median": statistics.median(ours), "torch_median": statistics.median(theirs),
                  "ratio_per_round": [round(r, 3) for r in ratios], "ratio_of_medians":
                  statistics.median(ours) / statistics.median(theirs)}))
EOF
