#!/usr/bin/env bash
# A/B of the class-distillation loss (seed 0, class term alone): per-class binary KL (default, = the "kd-cls" ablation
# run of compare_bench.sh) vs softmax KL. Run after compare_bench.sh, from the repository root.
set -euo pipefail
OUT=${OUT:-runs/bench}
python tools/train_kd.py --teacher "$OUT/teacher-s/weights/best.pt" --student yolo11n.yaml --data datasets/shapes-bench/data.yaml \
  --kd-box 0 --kd-feat 0 --kd-cls-loss softmax_kl epochs=10 imgsz=128 batch=32 device=cpu workers=0 plots=False seed=0 \
  project="$PWD/$OUT/compare" name=kd-cls-softmax-seed0 exist_ok=True
python tools/compare.py --runs "$OUT"/compare/*-seed* --teacher "$OUT/teacher-s/weights/best.pt" \
  --data datasets/shapes-bench/data.yaml --imgsz 128 --batch 32 --device cpu --project "$OUT/compare_all"
