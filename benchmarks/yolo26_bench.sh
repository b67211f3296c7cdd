#!/usr/bin/env bash
# Issue 14 evidence: yolo26n vanilla vs yolo_kd vs Ultralytics' built-in distiller (distill_model=), yolo26s teacher,
# on the "bench" shapes preset, CPU, 3 seeds, equal epochs. Run from the repository root; finished runs are reused
# when it is started again. OUT, DATA, EPOCHS, TEACHER_EPOCHS, SEEDS and JOBS (runs side by side; 2 here) may be
# overridden from the environment. About 2 hours on 2 CPU cores with JOBS=2 (teacher 20 min).
set -euo pipefail
OUT=${OUT:-$PWD/runs/bench-y26}
DATA=${DATA:-datasets/shapes-bench}
EPOCHS=${EPOCHS:-20}
TEACHER_EPOCHS=${TEACHER_EPOCHS:-30}
read -r -a SEEDS <<< "${SEEDS:-0 1 2}"
python tools/make_data.py --preset bench --out "$DATA"
# 1. the teacher: yolo26s from scratch (stock Ultralytics), the recipe of the yolo11s bench teacher
[ -f "$OUT/teacher-26s/weights/best.pt" ] || yolo train model=yolo26s.yaml data="$DATA/data.yaml" \
  epochs="$TEACHER_EPOCHS" imgsz=128 batch=16 nbs=16 optimizer=AdamW lr0=0.001 device=cpu workers=0 plots=False \
  seed=0 project="$OUT" name=teacher-26s exist_ok=True
# 2. three yolo26n students per seed, identical settings (batch 16 with nbs=16: one optimizer step per batch)
python tools/compare.py --teacher "$OUT/teacher-26s/weights/best.pt" --student yolo26n.yaml --data "$DATA/data.yaml" \
  --epochs "$EPOCHS" --imgsz 128 --batch 16 --device cpu --project "$OUT/compare-e$EPOCHS" --seeds "${SEEDS[@]}" \
  --variants vanilla kd builtin nbs=16 workers=0 plots=False --jobs "${JOBS:-1}"
# 3. the two YOLO26 defaults against their alternatives, same seeds (vanilla reused; README: one2one 0, box_loss l1)
for ARM in kd_one2one=0 kd_box_loss=l1; do
  python tools/compare.py --teacher "$OUT/teacher-26s/weights/best.pt" --student yolo26n.yaml --data "$DATA/data.yaml" \
    --epochs "$EPOCHS" --imgsz 128 --batch 16 --device cpu --project "$OUT/compare-e$EPOCHS" --seeds "${SEEDS[@]}" \
    --variants vanilla --sweep "$ARM" nbs=16 workers=0 plots=False --jobs "${JOBS:-1}"
done
