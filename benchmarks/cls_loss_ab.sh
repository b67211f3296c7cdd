#!/usr/bin/env bash
# A/B of the class-distillation loss on the "bench" set (seed 0, 10 epochs): class term alone with per-class binary KL
# and with softmax KL, and all terms with softmax KL; then one table with vanilla-seed0 and kd-seed0 of
# compare_bench.sh (which used binary KL). Run after compare_bench.sh, from the repository root.
set -euo pipefail
OUT=${OUT:-runs/bench}
common=(--teacher "$OUT/teacher-s/weights/best.pt" --student yolo11n.yaml --data datasets/shapes-bench/data.yaml
        epochs=10 imgsz=128 batch=32 device=cpu workers=0 plots=False seed=0 project="$PWD/$OUT/compare" exist_ok=True)
for loss in bkl softmax_kl; do
  python tools/train_kd.py "${common[@]}" --kd-box 0 --kd-feat 0 --kd-cls-loss "$loss" name="kd-cls-$loss-seed0"
done
python tools/train_kd.py "${common[@]}" --kd-cls-loss softmax_kl name=kd-softmax_kl-seed0
python tools/compare.py --runs "$OUT"/compare/{vanilla,kd,kd-cls-bkl,kd-cls-softmax_kl,kd-softmax_kl}-seed0 \
  --teacher "$OUT/teacher-s/weights/best.pt" --data datasets/shapes-bench/data.yaml --imgsz 128 --batch 32 --device cpu \
  --project "$OUT/cls_ab"
