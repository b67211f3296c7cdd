#!/usr/bin/env bash
# Issue 19 near a plateau budget, on the "demo" shapes preset (480/120 images at 96 px, 3 classes): small enough that
# 100-140 epoch runs fit on 2 CPU cores (13-19 min each), which the "bench" preset does not (~1 h per 60 epochs).
#   (a) equal epochs: vanilla vs yolo_kd at EPOCHS (default 100), nbs=16, seeds SEEDS16 (default 0 1 2);
#   (b) equal compute: vanilla at EQ_EPOCHS (default 140; the distilled runs' measured time ratio here was 1.33-1.40);
#   (c) Ultralytics' default recipe nbs=64 (batch 16, one optimizer step per 4 batches), (a) and (b), seeds SEEDS64 (0 1);
#   (d) the cheaper lever kd_every=4 at nbs=16 and its equal-compute vanilla run (108 epochs: (1.33 + 3) / 4 = 1.08
#       vanilla epochs per epoch), seeds EVERY4_SEEDS (default 0 2).
# Two lanes train side by side, one thread each (Ultralytics trains on cores-1 threads), so every run shares the machine
# with exactly one other run. Finished runs are reused when the script is run again. Run from the repository root.
set -euo pipefail
OUT=${OUT:-$PWD/runs/plateau}
DATA=${DATA:-datasets/shapes-demo}
EPOCHS=${EPOCHS:-100}
EQ_EPOCHS=${EQ_EPOCHS:-140}
SEEDS16=${SEEDS16:-0 1 2}
SEEDS64=${SEEDS64:-0 1}
EVERY4_SEEDS=${EVERY4_SEEDS:-0 2}
TEACHER=${TEACHER:-$OUT/teacher-s100/weights/best.pt}
mkdir -p "$OUT/logs"
python tools/make_data.py --preset demo --out "$DATA"
run() { # project variant seed epochs nbs [extra compare args]
  local project=$1 variant=$2 seed=$3 epochs=$4 nbs=$5; shift 5
  local teacher=(); [ "$variant" = vanilla ] || teacher=(--teacher "$TEACHER")
  OMP_NUM_THREADS=1 python tools/compare.py "${teacher[@]}" --student yolo11n.yaml --data "$DATA/data.yaml" --epochs "$epochs" \
    --imgsz 96 --batch 16 --device cpu --project "$OUT/$project" --variants "$variant" --seeds "$seed" "$@" nbs="$nbs" \
    workers=0 plots=False > "$OUT/logs/$project-$variant-$seed.log" 2>&1
}
lane_teacher() {  # the teacher: yolo11s from scratch, stock Ultralytics, then the distilled runs
  [ -f "$TEACHER" ] || OMP_NUM_THREADS=1 yolo train model=yolo11s.yaml data="$DATA/data.yaml" epochs=100 imgsz=96 batch=16 \
    nbs=16 device=cpu workers=0 plots=False seed=0 project="$OUT" name=teacher-s100 exist_ok=True > "$OUT/logs/teacher.log" 2>&1
  for SEED in $SEEDS16; do run "e$EPOCHS-nbs16" kd "$SEED" "$EPOCHS" 16; done
  for SEED in $SEEDS64; do run "e$EPOCHS-nbs64" kd "$SEED" "$EPOCHS" 64; done
  for SEED in $EVERY4_SEEDS; do run "e$EPOCHS-nbs16-every4" kd "$SEED" "$EPOCHS" 16 --kd-every 4; done
}
lane_vanilla() {
  for NBS in 16 64; do
    [ "$NBS" = 16 ] && SEEDS=$SEEDS16 || SEEDS=$SEEDS64
    for SEED in $SEEDS; do run "e$EPOCHS-nbs$NBS" vanilla "$SEED" "$EPOCHS" "$NBS"; done
    for SEED in $SEEDS; do run "e$EQ_EPOCHS-nbs$NBS" vanilla "$SEED" "$EQ_EPOCHS" "$NBS"; done
  done
  for SEED in $EVERY4_SEEDS; do run e108-nbs16 vanilla "$SEED" 108 16; done
}
lane_teacher & lane_vanilla & wait
# one report per folder over its finished runs (curves, last-10-epoch gains, train times); the equal-compute vanilla
# runs get their own report, as they share the name "vanilla" with the equal-epoch ones
for PROJECT in "e$EPOCHS-nbs16" "e$EQ_EPOCHS-nbs16" "e$EPOCHS-nbs64" "e$EQ_EPOCHS-nbs64" "e$EPOCHS-nbs16-every4" e108-nbs16; do
  python tools/compare.py --runs "$OUT/$PROJECT"/*-seed* --teacher "$TEACHER" --data "$DATA/data.yaml" --imgsz 96 --batch 16 \
    --device cpu --project "$OUT/report-$PROJECT"
done
