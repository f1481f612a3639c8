#!/usr/bin/env bash
# The CIFAR-10 accuracy run of issue 26 on one GPU: for each METHOD, in one process, pretrain with
# experiments/cifar10_<method>.py:gpu200 (ResNet-18 CIFAR stem, batch 512, 200 epochs, bf16, the split
# on the device, the kNN monitor every 10 epochs), then kNN and linear evaluation on the whole test
# split (tools/accuracy_run.py). Writes $OUT/<method>.json, and $OUT/peer_torch.json for the PyTorch
# peer (tools/peer_torch_simclr.py) when torch is installed. Stops starting work after BUDGET_S seconds.
#
# Usage (repository root):
#   tools/gpu_accuracy.sh simclr byol           # on the GPU machine; OUT defaults to ./gpu_accuracy_out
#   tools/gpu_accuracy.sh --dry-run simclr      # the whole script on the CPU at tiny sizes, TensorFlow hidden
#   BENCH=0 PEER=0 tools/gpu_accuracy.sh simclr # without the step benchmark / the PyTorch peer
#
# What travels to the GPU machine (no TensorFlow, no TFDS, no network there), made on this machine:
#   mkdir -p .gpu_data .whl
#   tar -C ../shared/data -czf .gpu_data/cifar10.tar.gz cifar10   # 19.7 MB: the JPEGs' shared headers compress
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl ml_collections==1.1.0 dm-pix==0.4.5
# (.gpu_data/ and .whl/ are ignored by git), then the device tool's run with
#   command="bash tools/gpu_accuracy.sh simclr byol moco_v2 moco_v3 supcon", carry=[".gpu_data", ".whl"],
#   timeout_s=600
# The device runs one command for at most 600 s, and a GPU period is about 15 minutes with the machine's
# start, so one call: BUDGET_S (540) stops starting work with a minute to spare, and a run still going
# then gets SIGTERM and records what it has (the kNN curve, "preempted": true). In one call expect SimCLR
# (about 5 minutes of pretraining), the PyTorch peer and the benchmark; the next period starts at byol.
# The archive is unpacked to /tmp/cifar10 (DATA= to point at another copy).

set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
KNOWN="simclr byol moco_v2 moco_v3 supcon barlow_twins vicreg simsiam nnclr dcl swav dino"
if (( $# == 0 )); then echo "usage: tools/gpu_accuracy.sh [--dry-run] METHOD... (known: $KNOWN)" >&2; exit 2; fi
for m in "$@"; do
  if [[ " $KNOWN " != *" $m "* ]]; then echo "error: unknown method '$m'; the known ones are: $KNOWN" >&2; exit 2; fi
done

OUT="${OUT:-$PWD/gpu_accuracy_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
BUDGET_S="${BUDGET_S:-$(( DRY ? 1800 : 540 ))}"  # start nothing new after this many seconds (the device: 600 s a command)
BENCH="${BENCH:-1}"           # tools/benchmark.py on the first method's step (after its run), for the sustained-throughput ratio
PEER="${PEER:-1}"             # the PyTorch peer, when torch imports
START=$SECONDS
LOG="$OUT/gpu_accuracy.log"
: > "$LOG"
log() { echo "[gpu_accuracy +$((SECONDS - START))s] $*" | tee -a "$LOG"; }
left() { echo $((BUDGET_S - (SECONDS - START))); }

export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OVERRIDES=()
if (( DRY )); then
  # The GPU image has no TensorFlow: hide it, so that the dry run proves the path needs none.
  STUBS=$(mktemp -d)
  for m in tensorflow tensorflow_datasets; do
    mkdir -p "$STUBS/$m" && echo 'raise ImportError("hidden by gpu_accuracy.sh --dry-run: the GPU image has none")' > "$STUBS/$m/__init__.py"
  done
  export PYTHONPATH="$STUBS:$PYTHONPATH" JAX_PLATFORMS=cpu
  OVERRIDES=(--config.batch_size=32 --config.num_epochs=2 --config.data.num_train_examples=256
             --config.eval.knn_every_epochs=1 --config.eval.num_train_examples=256 --config.eval.num_test_examples=64
             --config.eval.knn_k=20 --config.eval.linear_epochs=1 --config.eval.feature_batch_size=64
             --config.model.encoder.base_width=8 --config.model.head.hidden_dim=64 --config.model.dtype=float32
             --config.data.on_device=true)
  log "dry run: CPU, tiny sizes, TensorFlow hidden"
else
  export XLA_PYTHON_CLIENT_PREALLOCATE=false
fi

# ------------------------------------------------------------------ packages and data
if ! "$PY" -c 'import ml_collections, dm_pix' >/dev/null 2>&1; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    log "installing carried wheels: $(ls .whl | tr '\n' ' ')"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .whl/*.whl 2>&1 | tee -a "$LOG"
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
  else
    log "ml_collections / dm_pix missing and no .whl/ carried: see the header of this script"; exit 1
  fi
fi
if [[ -z "${DATA:-}" ]]; then
  if [[ -f .gpu_data/cifar10.tar.gz ]]; then
    [[ -d /tmp/cifar10/train ]] || tar -C /tmp -xzf .gpu_data/cifar10.tar.gz
    DATA=/tmp/cifar10
  else
    DATA=../shared/data/cifar10
  fi
fi
if [[ ! -d "$DATA/train" || ! -d "$DATA/test" ]]; then log "no CIFAR-10 folder at $DATA (see the header)"; exit 1; fi
log "data: $DATA ($(find "$DATA/train" -name '*.jpg' | wc -l) train JPEGs)"
"$PY" -c 'import jax; print("jax", jax.__version__, jax.devices())' 2>&1 | tee -a "$LOG" || exit 1
BACKEND=$("$PY" -c 'import jax; print(jax.default_backend())' 2>/dev/null)
if (( ! DRY )) && [[ "$BACKEND" != "gpu" ]]; then log "jax backend is '$BACKEND', not gpu; stopping (--dry-run on a CPU)"; exit 1; fi
command -v nvidia-smi >/dev/null && nvidia-smi > "$OUT/nvidia_smi.txt" 2>&1

# ------------------------------------------------------------------ the PyTorch peer and the benchmark
run_peer() {
  if (( PEER )) && "$PY" -c 'import torch, torchvision' >/dev/null 2>&1; then
    local avail
    avail=$(left)
    if (( avail < 60 )); then log "skip the PyTorch peer: ${avail}s left"; return; fi
    PEER_ARGS=(--data "$DATA" --epochs 3 --json_out "$OUT/peer_torch.json")
    (( DRY )) && PEER_ARGS+=(--device cpu --limit 256 --batch_size 32 --epochs 2 --workers 2)
    log "start the PyTorch peer (limit ${avail}s)"
    timeout "$avail" "$PY" tools/peer_torch_simclr.py "${PEER_ARGS[@]}" > "$OUT/peer_torch.log" 2>&1
    log "end the PyTorch peer rc=$?: $(tail -1 "$OUT/peer_torch.log" | cut -c1-300)"
  else
    log "no PyTorch peer (PEER=$PEER, or torch/torchvision do not import)"
  fi
}

run_bench() {  # run_bench METHOD CONFIG_ARGS...: tools/benchmark.py on its step, for the sustained-throughput ratio
  local m=$1 limit=$(( DRY ? 300 : 120 ))  # on 2 busy CPU cores the compilation alone takes a minute or more
  shift
  (( $(left) < limit / 2 )) && { log "skip the benchmark: $(left)s left"; return; }
  log "benchmark $m (limit $limit s)"
  timeout "$limit" "$PY" tools/benchmark.py "$@" --steps=$(( DRY ? 1 : 20 )) --warmup=1 \
    --json_out="$OUT/benchmark_$m.json" > "$OUT/benchmark_$m.log" 2>&1
  log "benchmark rc=$?: $(grep -E 'pairs/s' "$OUT/benchmark_$m.log" | tail -1)"
}

# ------------------------------------------------------------------ the runs
# The first method, then the PyTorch peer and the step benchmark, then the other methods: within one
# device call the budget goes to the first method's result before the comparisons, and to both
# comparisons before more methods.
FIRST=1
for m in "$@"; do
  CONFIG=(--config "experiments/cifar10_$m.py:gpu200" "--config.data.image_folder=$DATA" "${OVERRIDES[@]}")
  avail=$(left)
  if (( avail < 60 )); then log "skip $m: ${avail}s of budget left"
  else
    log "start $m (limit ${avail}s)"
    rm -rf "/tmp/gpu_accuracy_runs/$m"
    timeout "$avail" "$PY" tools/accuracy_run.py "${CONFIG[@]}" --workdir="/tmp/gpu_accuracy_runs/$m" \
      --json_out="$OUT/$m.json" > "$OUT/$m.log" 2>&1
    rc=$?
    cp "/tmp/gpu_accuracy_runs/$m/metrics.jsonl" "$OUT/${m}_metrics.jsonl" 2>/dev/null
    log "end $m rc=$rc: $(tail -1 "$OUT/$m.log" | cut -c1-400)"
  fi
  if (( FIRST )); then
    FIRST=0
    run_peer
    (( BENCH )) && run_bench "$m" "${CONFIG[@]}"
  fi
done

log "done"
