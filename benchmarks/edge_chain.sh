#!/usr/bin/env bash
# Issue 16: the whole edge chain on one benchmark, measured once, end to end:
#   vanilla yolo11n (FP32 ONNX, the baseline) -> distilled (and, as pruning's reference, fine-tuned for pruning's
#   epochs) -> pruned in ~20 % steps with distillation fine-tuning
#   -> INT8 by PTQ and by QAT (with and without the teacher), plus the pruned model fine-tuned FP32 for the same
#   extra epochs as QAT. One table (mAP50-95 mean ± std over the seeds, params, GFLOPs, size, INT8 convs, latency
#   at 640 px on onnxruntime, all files timed in turns) and a Pareto plot: $OUT/edge_chain.md, .json, .png.
# Run from the repository root. Finished runs are reused when it is started again. Every setting can be overridden
# from the environment; the tiny smoke test of this script:
#   PRESET=tiny IMGSZ=64 TEACHER_EPOCHS=1 EPOCHS=1 STEPS=2 EPOCHS_PER_STEP=1 QAT_EPOCHS=1 SEEDS=0 LAT_IMGSZ=64 \
#     LAT_SECONDS=0.5 EXTRA="fraction=0.25" OUT=runs/edge_chain_tiny bash benchmarks/edge_chain.sh
set -euo pipefail
PRESET=${PRESET:-bench}
DATA=${DATA:-datasets/shapes-$PRESET}
OUT=${OUT:-$PWD/runs/edge_chain}
IMGSZ=${IMGSZ:-128}                 # training/validation size of the bench set
TEACHER=${TEACHER:-yolo11s.yaml}
TEACHER_EPOCHS=${TEACHER_EPOCHS:-60}
EPOCHS=${EPOCHS:-60}                # vanilla and distilled students
TARGET_FLOPS=${TARGET_FLOPS:-0.5}
STEPS=${STEPS:-3}                   # 1 -> 0.83 -> 0.67 -> 0.5 of the GFLOPs: 17-25 % of the current model per step
EPOCHS_PER_STEP=${EPOCHS_PER_STEP:-10}
FINAL_EPOCHS=${FINAL_EPOCHS:-$EPOCHS_PER_STEP}  # fine-tuning epochs after the last step (a longer final recovery)
ALLOCATION=${ALLOCATION:-uniform}   # how each step's cut is shared among layers: uniform, global or flops
ROUND_TO=${ROUND_TO:-8}             # kept channels are multiples of this (16 suits AVX-512 CPUs)
REFERENCE=${REFERENCE:-1}           # 0: skip the unpruned reference (kdft), e.g. when only the camera model matters
QAT_EPOCHS=${QAT_EPOCHS:-10}        # also the FP32 fine-tune's epochs (equal extra epochs)
SEEDS=${SEEDS:-"0 1 2"}
LAT_IMGSZ=${LAT_IMGSZ:-640}
LAT_SECONDS=${LAT_SECONDS:-10}
BATCH=${BATCH:-16}
EXTRA=${EXTRA:-}                    # more Ultralytics key=value for every training, e.g. "fraction=0.25"
TABLE=${TABLE:-1}                   # 0: train only (e.g. one seed per lane), make the table in a last call
COMMON=(imgsz="$IMGSZ" batch="$BATCH" device=cpu workers=0 plots=False exist_ok=True $EXTRA)
export YOLO_OFFLINE=1
python tools/make_data.py --preset "$PRESET" --out "$DATA"
D="$DATA/data.yaml"
# the teacher (stock Ultralytics)
[ -f "$OUT/teacher/weights/best.pt" ] || yolo train model="$TEACHER" data="$D" epochs="$TEACHER_EPOCHS" seed=0 \
  project="$OUT" name=teacher "${COMMON[@]}"
T="$OUT/teacher/weights/best.pt"
for S in $SEEDS; do
  # 1. the baseline: vanilla yolo11n
  [ -f "$OUT/vanilla-s$S/weights/best.pt" ] || yolo train model=yolo11n.yaml data="$D" epochs="$EPOCHS" seed="$S" \
    project="$OUT" name="vanilla-s$S" "${COMMON[@]}"
  # 2. distilled yolo11n
  [ -f "$OUT/kd-s$S/weights/best.pt" ] || python tools/train_kd.py --teacher "$T" --student yolo11n.yaml --data "$D" \
    --epochs "$EPOCHS" --project "$OUT" --name "kd-s$S" seed="$S" "${COMMON[@]}"
  # 2b. the reference for pruning's cost: the unpruned distilled student fine-tuned with the teacher for the epochs
  #     pruning adds ((STEPS - 1) x EPOCHS_PER_STEP + FINAL_EPOCHS), so pruned and unpruned have had the same training
  [ "$REFERENCE" = 0 ] || [ -f "$OUT/kdft-s$S/weights/best.pt" ] || python tools/train_kd.py --teacher "$T" --student "$OUT/kd-s$S/weights/best.pt" \
    --data "$D" --epochs $(((STEPS - 1) * EPOCHS_PER_STEP + FINAL_EPOCHS)) --project "$OUT" --name "kdft-s$S" seed="$S" warmup_epochs=0 "${COMMON[@]}"
  # 3. pruned in steps, each fine-tuned with distillation from the teacher
  [ -f "$OUT/prune-s$S/weights/best.pt" ] || python tools/prune.py --model "$OUT/kd-s$S/weights/best.pt" --teacher "$T" \
    --data "$D" --target-flops "$TARGET_FLOPS" --steps "$STEPS" --epochs-per-step "$EPOCHS_PER_STEP" --final-epochs "$FINAL_EPOCHS" --allocation "$ALLOCATION" --round-to "$ROUND_TO" --imgsz "$IMGSZ" \
    --batch "$BATCH" --device cpu --project "$OUT" --name "prune-s$S" --exist-ok --latency-imgsz --no-plot seed="$S" workers=0 $EXTRA
  P="$OUT/prune-s$S/weights/best.pt"
  # 4. equal extra epochs, FP32: the pruned model fine-tuned with the teacher for the QAT epochs
  [ -f "$OUT/ft-s$S/weights/best.pt" ] || python tools/train_kd.py --teacher "$T" --student "$P" --data "$D" \
    --epochs "$QAT_EPOCHS" --project "$OUT" --name "ft-s$S" seed="$S" warmup_epochs=0 "${COMMON[@]}"
  # 5. INT8: PTQ of the pruned model (in the QAT report) and QAT with the teacher, then QAT without teacher
  [ -f "$OUT/qat-s$S/qat_int8.onnx" ] || python tools/qat.py --model "$P" --teacher "$T" --data "$D" --epochs "$QAT_EPOCHS" \
    --imgsz "$IMGSZ" --batch "$BATCH" --device cpu --project "$OUT" --name "qat-s$S" --exist-ok --backend onnxruntime \
    --no-report seed="$S" workers=0 $EXTRA
  [ -f "$OUT/qat-plain-s$S/qat_int8.onnx" ] || python tools/qat.py --model "$P" --data "$D" --epochs "$QAT_EPOCHS" \
    --imgsz "$IMGSZ" --batch "$BATCH" --device cpu --project "$OUT" --name "qat-plain-s$S" --exist-ok \
    --backend onnxruntime --no-report --no-ptq seed="$S" workers=0 $EXTRA
done
# 6. the chain table and the Pareto plot
[ "$TABLE" = 0 ] || python benchmarks/edge_chain_table.py --out "$OUT" --data "$D" --imgsz "$IMGSZ" --lat-imgsz "$LAT_IMGSZ" \
  --latency-seconds "$LAT_SECONDS" --seeds $SEEDS $(python -c "import openvino" 2>/dev/null && echo --openvino)
