#!/usr/bin/env bash
# Issue 3 benchmark: vanilla vs yolo_kd vs Ultralytics built-in distillation on the "bench" shapes preset, CPU.
# Run from the repository root. Took 76 min on 2 CPU cores with the teacher already trained (the teacher took
# 41 min in an earlier run on a loaded machine); finished runs are reused if it is started again. OUT, DATA and EPOCHS may be overridden from the environment.
set -euo pipefail
OUT=${OUT:-$PWD/runs/bench}
DATA=${DATA:-datasets/shapes-bench}
EPOCHS=${EPOCHS:-15}
python tools/make_data.py --preset bench --out "$DATA"
# 1. the teacher: yolo11s from scratch, 30 epochs (stock Ultralytics)
[ -f "$OUT/teacher-s/weights/best.pt" ] || yolo train model=yolo11s.yaml data="$DATA/data.yaml" \
  epochs=30 imgsz=128 batch=32 device=cpu workers=0 plots=False seed=0 project="$OUT" name=teacher-s exist_ok=True
# 2. three students per seed, identical settings (batch 16 with nbs=16: one optimizer step per batch)
COMMON=(--teacher "$OUT/teacher-s/weights/best.pt" --student yolo11n.yaml --data "$DATA/data.yaml"
  --epochs "$EPOCHS" --imgsz 128 --batch 16 --device cpu --project "$OUT/compare-e$EPOCHS" nbs=16 workers=0 plots=False)
python tools/compare.py "${COMMON[@]}" --seeds 0 1 2
# 3. ablation (seed 0): each distillation term alone; the seed-0 runs of step 2 are reused
python tools/compare.py "${COMMON[@]}" --seeds 0 --ablate
# 4. training-step cost, the three set-ups interleaved in one process (robust to background load)
python benchmarks/step_time.py --teacher "$OUT/teacher-s/weights/best.pt" --data "$DATA/data.yaml" --batch 16 --rounds 6
