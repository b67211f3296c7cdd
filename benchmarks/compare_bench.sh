#!/usr/bin/env bash
# Issue 3 benchmark: vanilla vs yolo_kd vs Ultralytics built-in distillation on the "bench" shapes preset, CPU.
# Run from the repository root. Takes hours on 2 CPU cores; finished runs are reused if it is started again.
set -euo pipefail
OUT=${OUT:-runs/bench}
python tools/make_data.py --preset bench --out datasets/shapes-bench
# 1. the teacher: yolo11s from scratch, 30 epochs (stock Ultralytics)
[ -f "$OUT/teacher-s/weights/best.pt" ] || yolo train model=yolo11s.yaml data=datasets/shapes-bench/data.yaml \
  epochs=30 imgsz=128 batch=32 device=cpu workers=0 plots=False seed=0 project="$PWD/$OUT" name=teacher-s exist_ok=True
# 2. three students per seed, identical settings
python tools/compare.py --teacher "$OUT/teacher-s/weights/best.pt" --student yolo11n.yaml \
  --data datasets/shapes-bench/data.yaml --epochs 10 --imgsz 128 --batch 32 --device cpu --seeds 0 1 2 \
  --project "$OUT/compare" workers=0 plots=False
# 3. ablation (seed 0): each distillation term alone; the seed-0 runs of step 2 are reused
python tools/compare.py --teacher "$OUT/teacher-s/weights/best.pt" --student yolo11n.yaml \
  --data datasets/shapes-bench/data.yaml --epochs 10 --imgsz 128 --batch 32 --device cpu --seeds 0 --ablate \
  --project "$OUT/compare" workers=0 plots=False
