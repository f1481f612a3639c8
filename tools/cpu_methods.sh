#!/usr/bin/env bash
# Issue 12's CPU comparison: pretrain each method with its `cpu` preset on ../shared/data/cifar10,
# one at a time, evaluate on the full test split and merge the figures into
# experiments/results/cifar10_cpu_methods.json (tools/record_methods.py; the record's schema is in
# experiments/results/README.md). Rerunning resumes an interrupted run and skips a method whose
# runs/<method>_cpu/eval.json exists.
#   bash tools/cpu_methods.sh [method ...]      (default: all five; the first evaluation runs the baselines unless they are recorded)
# <method>_vit (moco_v3_vit, dino_vit) is the method with its config's `vit_cpu` ViT (issue 14); its
# random-init baselines are the ViT's, evaluated with it and recorded inside its row.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/cifar10}
methods=("$@")
[ ${#methods[@]} -eq 0 ] && methods=(simclr supcon moco_v2 moco_v3 byol)
# The random-init and raw-pixel baselines run once: with the first evaluation, unless recorded.
baselines=True
python -c 'import json, sys; sys.exit("random_knn_top1" not in json.load(open(sys.argv[1]))["figures"])' \
  experiments/results/cifar10_cpu_methods.json 2>/dev/null && baselines=False
mkdir -p runs
for m in "${methods[@]}"; do
  w=runs/${m}_cpu
  cfg=experiments/cifar10_${m}.py:cpu
  record=(--method "$m")
  vit=false
  case "$m" in *_vit) vit=true ;; esac
  if $vit; then
    cfg=experiments/cifar10_${m%_vit}.py:vit_cpu
    record+=(--baselines_in_row)
  fi
  b=$baselines
  $vit && b=True
  train="python -m contrastive_jax.train --config $cfg --workdir $w --config.data.image_folder=$DATA"
  eval="python -m contrastive_jax.evaluate --config $cfg --workdir $w --config.data.image_folder=$DATA --config.eval.baselines=$b"
  if [ ! -f "$w/eval.json" ]; then
    $train >> "$w.train.log" 2>&1
    $eval > "$w.eval.log" 2>&1
  fi
  python tools/record_methods.py "${record[@]}" --workdir "$w" --train_log "$w.train.log" --command "$train && $eval"
  $vit || baselines=False
done
