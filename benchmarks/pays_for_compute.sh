#!/usr/bin/env bash
# Issue 19: does distillation pay for its compute? On the "bench" shapes preset, CPU, yolo11s teacher -> yolo11n student.
#   (a) equal epochs at a long budget (EPOCHS, default 60), vanilla vs yolo_kd, seeds 0 1;
#   (b) equal compute: vanilla given the epochs that fill each seed's distilled run's measured time (--equal-time);
#   (c) Ultralytics' default recipe (nbs=64) as well as nbs=16: set NBS=64 and OUT to another folder.
# Run from the repository root. The two seeds train side by side, one thread each (the machine has 2 cores), so the
# distilled and vanilla runs of a seed see the same load; finished runs are reused when the script is run again.
set -euo pipefail
OUT=${OUT:-$PWD/runs/pays}
DATA=${DATA:-datasets/shapes-bench}
EPOCHS=${EPOCHS:-60}
NBS=${NBS:-16}
TEACHER=${TEACHER:-$OUT/teacher-s60/weights/best.pt}
python tools/make_data.py --preset bench --out "$DATA"
# the teacher: yolo11s from scratch, 60 epochs, one optimizer step per batch (stock Ultralytics)
[ -f "$TEACHER" ] || OMP_NUM_THREADS=2 yolo train model=yolo11s.yaml data="$DATA/data.yaml" epochs=60 imgsz=128 batch=16 nbs=16 \
  device=cpu workers=0 plots=False seed=0 project="$OUT" name=teacher-s60 exist_ok=True
COMMON=(--teacher "$TEACHER" --student yolo11n.yaml --data "$DATA/data.yaml" --epochs "$EPOCHS" --imgsz 128 --batch 16
  --device cpu --project "$OUT/e$EPOCHS-nbs$NBS" --variants vanilla kd --equal-time nbs="$NBS" workers=0 plots=False)
for SEED in 0 1; do
  OMP_NUM_THREADS=1 python tools/compare.py "${COMMON[@]}" --seeds "$SEED" > "$OUT/e$EPOCHS-nbs$NBS-seed$SEED.log" 2>&1 &
done
wait
# one report over both seeds (reads the finished runs)
python tools/compare.py --runs "$OUT/e$EPOCHS-nbs$NBS"/*-seed* --teacher "$TEACHER" --data "$DATA/data.yaml" --imgsz 128 \
  --batch 16 --device cpu --project "$OUT/e$EPOCHS-nbs$NBS"
