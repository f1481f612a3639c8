#!/usr/bin/env bash
# One prepared GPU check (issue 7), at most ~8 minutes on one H100/H200; JSON results in $OUT, and
# $OUT/summary.json, a result record of them all (experiments/results/README.md).
# Last run: experiments/results/gpu_check_h200.json (first item about 90 s, the whole script about 4 min).
#
#   1. ViT-S/16, 224 px, bf16, batch 256, MoCo v3's step (experiments/imagenet_moco_v3.py:vit_small):
#      views/s and MFU.
#   2. ResNet-50, 224 px, bf16, batch 256: views/s and MFU (tools/benchmark.py; the MFU there is
#      against a measured 8192^2 bf16 matmul; summary.json adds the MFU against the card's nominal
#      dense bf16 peak, 989.4 TFLOP/s for an H100 SXM).
#   3. ResNet-18 CIFAR, batch 512: views/s (bf16, then float32 if time is left).
#   4. Chunked NT-Xent, forward + backward, 2N = 65,536 and 262,144 (B per view 32,768 and 131,072):
#      time and peak GPU memory (peak_bytes_in_use, one process per size).
#
# SET=speed runs issue 30's GPU leads instead (about 8 minutes; after issue 26's accuracy run):
#   5. ViT-S/16 MoCo v3, attention "flax" (today's einsum + softmax) against cuDNN's fused attention
#      (config.model.encoder.attention_impl=cudnn) at batch 256, then cuDNN at 512 and 1024: views/s, MFU.
#   6. ResNet-50 at batch 256 with a jax.profiler trace and the optimised HLO: where the step's time goes
#      (r50_profile.txt, tools/profile_ops.py) and the layout of every cuDNN convolution
#      (r50_conv_layouts.txt: dim_labels b01f = NHWC, bf01 = NCHW), then batch 512, then
#      --xla_gpu_autotune_level=0 against the default.
#
# Usage (repository root):
#   tools/gpu_check.sh              # on the GPU machine; OUT defaults to ./gpu_check_out
#   tools/gpu_check.sh --dry-run    # or SMALL=1: tiny sizes on the CPU, to check the script itself
#   ONLY='vit|loss' tools/gpu_check.sh   # only the items whose names match this regex (a rerun)
#   SET=speed tools/gpu_check.sh    # issue 30's leads (items 5 and 6); SET=speed --dry-run on a CPU
#
# Packages: the GPU image has jax (CUDA), flax, optax, chex, absl-py, orbax, but not ml_collections
# or dm-pix, and it cannot download. Carry them as wheels in .whl/ (ignored by git via
# .git/info/exclude), made here with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl ml_collections==1.1.0 dm-pix==0.4.5
# and pass carry=[".whl"]; this script installs them into /tmp/site when they do not import.
# If jax itself is missing there, its CUDA wheels (jax, jaxlib, jax-cuda12-plugin, jax-cuda12-pjrt
# and the nvidia-* wheels they require) must be carried the same way; they exceed the 64 MiB carry
# limit, so in practice the image's own jax is required.

set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
if [[ "${1:-}" == "--dry-run" || "${SMALL:-0}" == "1" ]]; then DRY=1; fi
SET="${SET:-check}"
if [[ "$SET" != check && "$SET" != speed ]]; then echo "error: SET must be 'check' or 'speed', got '$SET'" >&2; exit 2; fi
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
# Keep JAX from pre-allocating 75% of the card, so peak_bytes_in_use is what the program used.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
BUDGET_S="${BUDGET_S:-470}"   # stop starting new items after this many seconds
START=$SECONDS
LOG="$OUT/gpu_check.log"
: > "$LOG"

log() { echo "[gpu_check +$((SECONDS - START))s] $*" | tee -a "$LOG"; }
left() { echo $((BUDGET_S - (SECONDS - START))); }

# ------------------------------------------------------------------ environment
# The tools import contrastive_jax from this checkout (installed here with `pip install -e .`; the
# device machine gets the tree without installing it).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if (( DRY )); then
  export JAX_PLATFORMS=cpu
  log "dry run: CPU, tiny sizes"
fi
if ! "$PY" -c 'import ml_collections, dm_pix' >/dev/null 2>&1; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    log "installing carried wheels: $(ls .whl | tr '\n' ' ')"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .whl/*.whl 2>&1 | tee -a "$LOG"
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
  else
    log "ml_collections / dm_pix missing and no .whl/ carried: see the header of this script"
  fi
fi
if ! "$PY" -c 'import jax; print(jax.__version__, jax.devices())' 2>&1 | tee "$OUT/jax_devices.txt" | tee -a "$LOG"; then
  log "jax does not import: carry its wheels in .whl/ (see the header); stopping"
  exit 1
fi
if ! "$PY" -c 'import ml_collections, dm_pix, flax, optax, chex' 2>&1 | tee -a "$LOG"; then
  log "a Python dependency is missing (above); stopping"
  exit 1
fi
BACKEND=$("$PY" -c 'import jax; print(jax.default_backend())' 2>/dev/null)
if (( ! DRY )) && [[ "$BACKEND" != "gpu" ]]; then
  log "jax backend is '$BACKEND', not gpu; stopping (use --dry-run on a CPU)"
  exit 1
fi
command -v nvidia-smi >/dev/null && nvidia-smi > "$OUT/nvidia_smi.txt" 2>&1

# ------------------------------------------------------------------ benchmarks
# run NAME LIMIT_S ARGS...: one tools/benchmark.py run, JSON in $OUT/NAME.json, output in $OUT/NAME.log.
run() {
  local name=$1 limit=$2; shift 2
  if [[ -n "${ONLY:-}" && ! "$name" =~ $ONLY ]]; then return; fi
  local avail; avail=$(left)
  if (( avail < 30 )); then log "skip $name: ${avail}s of budget left"; return; fi
  (( limit > avail )) && limit=$avail
  log "start $name (limit ${limit}s)"
  timeout "$limit" "$PY" tools/benchmark.py "$@" --json_out="$OUT/$name.json" > "$OUT/$name.log" 2>&1
  local rc=$?
  log "end $name rc=$rc: $(grep -E 'pairs/s' "$OUT/$name.log" | tail -1)"
}

if (( DRY )); then
  R50=(--config experiments/imagenet_simclr.py --config.batch_size=4 --config.data.host_crop=False
       --config.augment.image_size=64 --config.model.encoder.base_width=8 --steps=1 --warmup=1 --peak_size=256)
  VIT=(--config experiments/imagenet_moco_v3.py:vit_small --config.batch_size=4 --config.data.host_crop=False
       --config.augment.image_size=64 --config.model.encoder.width=32 --config.model.encoder.depth=1
       --config.model.encoder.num_heads=2 --config.model.head.hidden_dim=32 --config.model.predictor.hidden_dim=32
       --steps=1 --warmup=1 --peak_size=256)
  R18=(--config experiments/cifar10_simclr.py --config.batch_size=8 --config.model.encoder.base_width=8
       --steps=1 --warmup=1 --peak_size=256)
  LOSS_SIZES="512 1024"; LOSS_CHUNK=256
  ATTN=xla  # cuDNN attention needs a GPU; the dry run checks the plumbing with XLA's
  VIT_FLOPS=([512]=0 [1024]=0) R50_FLOPS_B512=0  # 0: tools/benchmark.py counts them itself
else
  # Model FLOPs per step, counted on a CPU with the same flags plus --flops_only (jax 0.10.2): XLA:GPU's cost
  # analysis leaves out cuDNN and cuBLAS calls, so the MFU needs the CPU's count. Recount if a model changes
  # (recounted 2026-12-04: the ViT and ResNet-18 steps count 0.3% and 0.13% fewer than in gpu_check_h200.json).
  R50=(--config experiments/imagenet_simclr.py --config.batch_size=256 --config.data.host_crop=False
       --config.augment.image_size=224 --config.model.dtype=bfloat16 --steps=10 --warmup=2
       --model_flops_per_step=12187332509696)
  VIT=(--config experiments/imagenet_moco_v3.py:vit_small --config.batch_size=256 --config.data.host_crop=False
       --config.augment.image_size=224 --config.model.dtype=bfloat16 --steps=10 --warmup=2
       --model_flops_per_step=19153977081856)
  R18=(--config experiments/cifar10_simclr.py --config.batch_size=512 --steps=15 --warmup=2
       --model_flops_per_step=2974530666496)
  LOSS_SIZES="32768 131072"; LOSS_CHUNK=4096
  ATTN=cudnn
  # The same count at B = 512 / 1024 (ViT) and 512 (ResNet-50): linear in B to 0.01%.
  VIT_FLOPS=([512]=38306695872512 [1024]=76613744066560) R50_FLOPS_B512=24374228811776
fi

if [[ "$SET" == check ]]; then
  run vit_s16_224_bf16_b256_mocov3 110 "${VIT[@]}"
  run resnet50_224_bf16_b256 150 "${R50[@]}"
  run resnet18_cifar_bf16_b512 80 "${R18[@]}" --config.model.dtype=bfloat16
  run resnet18_cifar_f32_b512 50 "${R18[@]}" --config.model.dtype=float32
else
  # Issue 30. The later flag wins, so these override the batch size and FLOP count in VIT / R50.
  run vit_s16_b256_attn_flax 90 "${VIT[@]}" --config.model.encoder.attention_impl=flax
  run vit_s16_b256_attn_$ATTN 90 "${VIT[@]}" --config.model.encoder.attention_impl=$ATTN
  HLO=/tmp/gpu_check_r50_hlo TRACE=/tmp/gpu_check_r50_trace
  rm -rf "$HLO" "$TRACE"
  run resnet50_b256_profile 120 "${R50[@]}" --trace_dir="$TRACE" --xla_flags="--xla_dump_to=$HLO"
  if [[ -d "$TRACE" ]]; then
    "$PY" tools/profile_ops.py "$TRACE" --top 40 > "$OUT/r50_profile.txt" 2>&1
  fi
  # One line per distinct (custom-call target, dim_labels): how the compiled step lays out its convolutions.
  [[ -d "$HLO" ]] && "$PY" - "$HLO" > "$OUT/r50_conv_layouts.txt" 2>&1 <<'EOF'
import collections, glob, re, sys
counts = collections.Counter()
for path in glob.glob(f"{sys.argv[1]}/*after_optimizations.txt"):
  for line in open(path):
    target = re.search(r'custom_call_target="([^"]*conv[^"]*)"', line)
    if target:
      labels = re.search(r"dim_labels=([^ ,]+)", line)
      counts[(target.group(1), labels.group(1) if labels else "?")] += 1
for (target, labels), n in counts.most_common():
  print(n, target, labels)
if not counts:
  print(f"no convolution custom-calls in {sys.argv[1]}/*after_optimizations.txt")
EOF
  for B in 512 1024; do
    run vit_s16_b${B}_attn_$ATTN 90 "${VIT[@]}" --config.model.encoder.attention_impl=$ATTN \
      --config.batch_size=$((DRY ? B / 128 : B)) --model_flops_per_step=${VIT_FLOPS[$B]}
  done
  run resnet50_b512 120 "${R50[@]}" --config.batch_size=$((DRY ? 8 : 512)) \
    --model_flops_per_step=$R50_FLOPS_B512
  run resnet50_b256_autotune0 120 "${R50[@]}" --xla_flags=--xla_gpu_autotune_level=0
fi

# ------------------------------------------------------------------ chunked loss
[[ "$SET" == check ]] || LOSS_SIZES=""
for B in $LOSS_SIZES; do
  if [[ -n "${ONLY:-}" && ! "loss_2N_$((2 * B))" =~ $ONLY ]]; then continue; fi
  avail=$(left)
  if (( avail < 20 )); then log "skip loss B=$B: ${avail}s of budget left"; continue; fi
  limit=$(( avail < 60 ? avail : 60 ))
  log "start loss B=$B per view (2N=$((2 * B))), chunk $LOSS_CHUNK (limit ${limit}s)"
  timeout "$limit" "$PY" - "$B" "$LOSS_CHUNK" "$OUT/loss_2N_$((2 * B)).json" > "$OUT/loss_2N_$((2 * B)).log" 2>&1 <<'EOF'
import json, statistics, sys, time
import jax, jax.numpy as jnp
from contrastive_jax.losses import nt_xent

b, chunk, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
f = jax.jit(jax.value_and_grad(lambda z1, z2: nt_xent(z1, z2, temperature=0.1, chunk_size=chunk), argnums=(0, 1)))
k1, k2 = jax.random.split(jax.random.key(0))
z1 = jax.random.normal(k1, (b, 128), jnp.float32)
z2 = z1 + 0.5 * jax.random.normal(k2, (b, 128), jnp.float32)
t0 = time.perf_counter()
compiled = f.lower(z1, z2).compile()
compile_s = time.perf_counter() - t0
mem = compiled.memory_analysis()
t0 = time.perf_counter()
loss, _ = jax.block_until_ready(compiled(z1, z2))
first_s = time.perf_counter() - t0
times = []
for _ in range(3 if first_s < 20 else 0):
  t0 = time.perf_counter()
  jax.block_until_ready(compiled(z1, z2))
  times.append(time.perf_counter() - t0)
dev = jax.devices()[0]
stats = dev.memory_stats() or {}
r = {"b_per_view": b, "two_n": 2 * b, "dim": 128, "chunk_size": chunk, "temperature": 0.1,
     "fwd_bwd_s_median": statistics.median(times) if times else first_s, "first_run_s": first_s,
     "compile_s": compile_s, "loss": float(loss), "temp_bytes": mem.temp_size_in_bytes if mem else None,
     "peak_bytes_in_use": stats.get("peak_bytes_in_use"), "device_kind": dev.device_kind,
     "backend": dev.platform, "jax_version": jax.__version__}
print(json.dumps(r))
with open(out, "w") as fh:
  fh.write(json.dumps(r) + "\n")
EOF
  log "end loss B=$B rc=$?: $(tail -1 "$OUT/loss_2N_$((2 * B)).log")"
done

# ------------------------------------------------------------------ summary
# summary.json is a result record (experiments/results/README.md): copy it to experiments/results/ to keep it.
CMD="${ONLY:+ONLY='$ONLY' }SET=$SET BUDGET_S=$BUDGET_S bash tools/gpu_check.sh$( (( DRY )) && echo ' --dry-run')"
"$PY" - "$OUT" "$CMD" <<'EOF' 2>&1 | tee -a "$LOG"
import datetime, glob, json, os, subprocess, sys
out, command = sys.argv[1], sys.argv[2]
nominal = {"H100": 989.4e12, "H200": 989.4e12}  # dense bf16 tensor-core peak, SXM (NVIDIA datasheet)
items = {}
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
  name = os.path.basename(path)[:-5]
  if name == "summary":
    continue
  try:
    with open(path) as fh:
      r = json.loads(fh.read().strip().splitlines()[-1])
  except (OSError, ValueError, IndexError):
    continue
  if "views_per_sec" in r:
    peak = next((v for k, v in nominal.items() if k in str(r.get("device_kind", ""))), None)
    if peak and r.get("achieved_flops_per_sec") and r.get("dtype") == "bfloat16":
      r["mfu_vs_nominal_bf16_peak"] = r["achieved_flops_per_sec"] / (peak * r["devices"])
      r["nominal_bf16_peak_flops_per_sec"] = peak
  items[name] = r
try:
  commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip() or None
except (OSError, subprocess.CalledProcessError):
  commit = None  # the device machine may get the tree without .git
kinds = sorted({str(r["device_kind"]) for r in items.values() if "device_kind" in r})
jax_versions = sorted({str(r["jax_version"]) for r in items.values() if "jax_version" in r})
record = {
    "what": "tools/gpu_check.sh: full train-step throughput and MFU (ViT-S/16, ResNet-50, ResNet-18 CIFAR) and "
            "chunked NT-Xent time and peak memory on one accelerator.",
    "command": command, "commit": commit,
    "hardware": f"{', '.join(kinds) or 'unknown device'}, JAX {', '.join(jax_versions) or 'unknown'}",
    "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
    "figures": {"items": items},
    "notes": ["one item per file of OUT; mfu_vs_nominal_bf16_peak is against the card's dense bf16 datasheet peak"],
}
with open(os.path.join(out, "summary.json"), "w") as fh:
  json.dump(record, fh, indent=1)
for name, r in items.items():
  keys = ("views_per_sec", "mfu", "mfu_vs_nominal_bf16_peak", "peak_memory_bytes", "fwd_bwd_s_median",
          "peak_bytes_in_use", "device_kind")
  print(name, {k: r[k] for k in keys if k in r})
EOF
log "done in $((SECONDS - START))s; results in $OUT"
# The device tool returns at most 8 files: everything also goes back as one archive.
tar -czf /tmp/gpu_check_all.tgz -C "$OUT" . && mv /tmp/gpu_check_all.tgz "$OUT/all.tgz"
