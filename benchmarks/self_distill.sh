#!/usr/bin/env bash
# Issue 15 on 2 CPU cores: self-distillation, the temperature sweep and the capacity gap, each against vanilla at equal
# epochs, seeds 0 1 2, every run through tools/compare.py (finished runs are reused when the script is run again).
#   bench preset (800/200 images at 128 px, 6 classes), yolo11n from scratch, 10 epochs, nbs=16, teacher yolo11s
#   trained 60 epochs (benchmarks/pays_for_compute.sh makes it):
#     (a) vanilla; online self-distillation (--teacher self, kd_self_refresh=1), with the default weights and with low
#         ones (cls 0.1, box 0.1, feat 0: the start the docs suggested after a single-seed run);
#     (b) born-again: each seed's vanilla best.pt distilled into a fresh yolo11n of the same seed;
#     (c) kd_temperature = 1, 2, 4, 8 with the default weights (and 2, 4, 8 on the demo preset below);
#   demo preset (480/120 images at 96 px, 3 classes), 30 epochs, nbs=16:
#     (d) s -> n vs m -> n vs vanilla, with yolo11s and yolo11m teachers trained by one recipe (60 epochs, made here),
#         and with the stronger yolo11s teacher of benchmarks/pays_plateau.sh (100 epochs). The bench preset cannot afford
#         a yolo11m teacher on 2 cores (~3 h). And the teacher-assistant chain m -> s -> n.
# Lanes train side by side, one thread each (Ultralytics trains on cores-1 threads). Run from the repository root.
set -euo pipefail
OUT=${OUT:-$PWD/runs/self_distill}
BENCH=${BENCH:-datasets/shapes-bench}
DEMO=${DEMO:-datasets/shapes-demo}
TEACHER_BENCH=${TEACHER_BENCH:-$PWD/runs/pays/teacher-s60/weights/best.pt}
TEACHER_S=${TEACHER_S:-$PWD/runs/plateau/teacher-s100/weights/best.pt}
TEACHER_M=${TEACHER_M:-$OUT/teacher-m60/weights/best.pt}
TEACHER_S60=${TEACHER_S60:-$OUT/teacher-s60/weights/best.pt}
for T in "$TEACHER_BENCH" "$TEACHER_S"; do
  [ -f "$T" ] || { echo "self_distill.sh: teacher $T not found: run benchmarks/pays_for_compute.sh and pays_plateau.sh first, or set TEACHER_BENCH/TEACHER_S"; exit 2; }
done
python tools/make_data.py --preset bench --out "$BENCH"
python tools/make_data.py --preset demo --out "$DEMO"
mkdir -p "$OUT/logs"
export OMP_NUM_THREADS=1
bench() { # log name, then compare arguments
  local log=$1; shift
  python tools/compare.py --student yolo11n.yaml --data "$BENCH/data.yaml" --epochs 10 --imgsz 128 --batch 16 --device cpu \
    --seeds 0 1 2 "$@" nbs=16 workers=0 plots=False > "$OUT/logs/$log.log" 2>&1
}
demo() { # log name, then compare arguments
  local log=$1; shift
  python tools/compare.py --student yolo11n.yaml --data "$DEMO/data.yaml" --epochs 30 --imgsz 96 --batch 16 --device cpu \
    --seeds 0 1 2 "$@" nbs=16 workers=0 plots=False > "$OUT/logs/$log.log" 2>&1
}
lane_bench() {
  bench vanilla --teacher "$TEACHER_BENCH" --project "$OUT/bench-e10" --variants vanilla
  bench sweep --teacher "$TEACHER_BENCH" --project "$OUT/bench-e10" --variants vanilla --sweep kd_temperature=1,2,4,8
  bench self --teacher "$TEACHER_BENCH" --project "$OUT/bench-e10" --variants vanilla --self-distill
  # low weights: their own project (another kd_cfg), so its vanilla arm trains again (deterministic: the same runs)
  bench selflow --teacher "$TEACHER_BENCH" --project "$OUT/bench-e10-selflow" --variants vanilla --self-distill \
    --kd-cls 0.1 --kd-box 0.1 --kd-feat 0
  demo demo-vanilla --teacher "$TEACHER_S" --project "$OUT/demo-e30-s" --variants vanilla
  # the temperature sweep again on a second data set and a longer schedule (T = 2 is the kd arm of lane_teachers)
  demo demo-temperature --teacher "$TEACHER_S" --project "$OUT/demo-e30-s" --variants vanilla --sweep kd_temperature=4,8
}
lane_teachers() {
  [ -f "$TEACHER_M" ] || yolo train model=yolo11m.yaml data="$DEMO/data.yaml" epochs=60 imgsz=96 batch=16 nbs=16 device=cpu \
    workers=0 plots=False seed=0 project="$OUT" name=teacher-m60 exist_ok=True > "$OUT/logs/teacher-m60.log" 2>&1
  for SEED in 0 1 2; do  # born-again needs that seed's vanilla run from the other lane
    while [ ! -f "$OUT/bench-e10/vanilla-seed$SEED/run_result.json" ]; do sleep 30; done
    python tools/compare.py --student yolo11n.yaml --data "$BENCH/data.yaml" --epochs 10 --imgsz 128 --batch 16 --device cpu \
      --teacher "$OUT/bench-e10/vanilla-seed$SEED/weights/best.pt" --project "$OUT/bench-e10-ba" --variants kd --seeds "$SEED" \
      nbs=16 workers=0 plots=False > "$OUT/logs/ba-$SEED.log" 2>&1
  done
  demo demo-s --teacher "$TEACHER_S" --project "$OUT/demo-e30-s" --variants kd
  demo demo-m --teacher "$TEACHER_M" --project "$OUT/demo-e30-m" --variants kd
  # the teacher-assistant chain m -> s -> n, the assistant being the yolo11s teacher of lane_s60 (distilled from m, 30 epochs)
  while [ ! -f "$TEACHER_S60" ]; do sleep 30; done
  demo demo-assistant --teacher "$TEACHER_M" --project "$OUT/demo-e30-m" --variants kd --assistant "$TEACHER_S60"
}
lane_s60() {
  [ -f "$TEACHER_S60" ] || yolo train model=yolo11s.yaml data="$DEMO/data.yaml" epochs=60 imgsz=96 batch=16 nbs=16 device=cpu \
    workers=0 plots=False seed=0 project="$OUT" name=teacher-s60 exist_ok=True > "$OUT/logs/teacher-s60.log" 2>&1
  demo demo-s60 --teacher "$TEACHER_S60" --project "$OUT/demo-e30-s60" --variants kd
}
lane_teachers & lane_bench & lane_s60 & wait
# reports over finished runs, one per docs/bench/self_distillation/ folder (born-again is the bench report's "kd" row)
R=(--data "$BENCH/data.yaml" --imgsz 128 --batch 16 --device cpu)
python tools/compare.py --runs "$OUT"/bench-e10/*-seed* "$OUT"/bench-e10-ba/kd-seed* --sweep kd_temperature=1,2,4,8 \
  --teacher "$TEACHER_BENCH" "${R[@]}" --project "$OUT/report-bench"
python tools/compare.py --runs "$OUT"/bench-e10-selflow/{vanilla,kd-self}-seed* --teacher "$TEACHER_BENCH" "${R[@]}" \
  --project "$OUT/report-bench-selflow"
R=(--data "$DEMO/data.yaml" --imgsz 96 --batch 16 --device cpu)
python tools/compare.py --runs "$OUT"/demo-e30-s/*-seed* --sweep kd_temperature=4,8 --teacher "$TEACHER_S" "${R[@]}" \
  --project "$OUT/report-demo-temperature"
python tools/compare.py --runs "$OUT"/demo-e30-m/*-seed[0-9] --teacher "$TEACHER_M" "${R[@]}" --project "$OUT/report-demo-m"
python tools/compare.py --runs "$OUT"/demo-e30-s60/*-seed* --teacher "$TEACHER_S60" "${R[@]}" --project "$OUT/report-demo-s60"
