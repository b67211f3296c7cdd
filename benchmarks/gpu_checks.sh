#!/usr/bin/env bash
# The CUDA checks, in one run on one GPU (issue 19's GPU picture; docs/bench/gpu.md holds what it printed):
#   1. the interleaved training-step ratio yolo11s -> yolo11n at 640 with AMP, batch 16 and 64 (benchmarks/step_time.py);
#   2. the teacher's precision on CUDA: fp16 (auto) and bf16 against fp32 at 640 and at the teacher's own 128
#      (benchmarks/teacher_precision.py);
#   3. a short distillation with AMP on the bench set, vanilla and yolo_kd side by side (tools/compare.py, 15 epochs);
#   4. the real trainer's epoch time at 640, vanilla then yolo_kd (3 epochs each, epoch 2 timed: no validation in it).
# Needs a trained yolo11s teacher for the bench set: TEACHER=runs/pays/teacher-s60/weights/best.pt (benchmarks/pays_e40.sh
# trains it). Each part has its own time limit, so one failing does not stop the others.
set -uo pipefail
TEACHER=${TEACHER:-runs/pays/teacher-s60/weights/best.pt}
RUN=${RUN:-runs/gpu_checks}
DATA=${DATA:-datasets/shapes-bench}
DEV=${DEV:-0}                # a CUDA index (cpu works too, for a dry run)
EPOCHS=${EPOCHS:-15}         # part 3
SEEDS=${SEEDS:-0 1}          # part 3
EXTRA=${EXTRA:-}             # more key=value for the trainings of parts 3 and 4 (a dry run: fraction=0.05)
PARTS=${PARTS:-1 2 3 4}       # which parts to run
part() { [[ " $PARTS " == *" $1 "* ]]; }
HALF=$([ "$DEV" = cpu ] && echo False || echo True)
mkdir -p "$RUN"
export YOLO_OFFLINE=1 PYTHONUNBUFFERED=1  # the AMP check's weights cannot be downloaded offline: Ultralytics then keeps AMP on
python -c "import torch, ultralytics; print('torch', torch.__version__, 'ultralytics', ultralytics.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
python tools/make_data.py --preset bench --out "$DATA" > /dev/null

part 1 && echo "== 1. step time at 640, AMP" && for B in 16 64; do
  timeout 120 python benchmarks/step_time.py --teacher "$TEACHER" --data "$DATA/data.yaml" --device "$DEV" --amp \
    --imgsz 640 --batch "$B" --rounds 6 --steps 3 --json "$RUN/step640_b$B.json" 2>&1 | grep -v "^Overriding"
done

part 2 && echo "== 2. teacher precision" && for S in 640 128; do
  timeout 90 python benchmarks/teacher_precision.py --teacher "$TEACHER" --data "$DATA/data.yaml" --device "$DEV" \
    --imgsz "$S" --batch 16 --json "$RUN/precision$S.json" 2>&1 | grep -v "^Overriding"
done

part 3 && { echo "== 3. short distillation with AMP, bench set at 128, $EPOCHS epochs, seeds $SEEDS, side by side"
timeout 270 python tools/compare.py --teacher "$TEACHER" --data "$DATA/data.yaml" --variants vanilla kd --epochs "$EPOCHS" \
  --imgsz 128 --batch 16 --device "$DEV" --seeds $SEEDS --jobs 4 --project "$RUN/short" nbs=16 workers=3 plots=False $EXTRA 2>&1 | tail -25
timeout 60 python - "$RUN/short" "$DEV" "$HALF" <<'EOF'
import sys, glob
from ultralytics import YOLO
for w in sorted(glob.glob(f"{sys.argv[1]}/*/weights/best.pt")):
    m = YOLO(w)  # stock Ultralytics loads the distilled checkpoint
    r = m.val(data=m.ckpt["train_args"]["data"], imgsz=128, batch=32, device=sys.argv[2], half=sys.argv[3] == "True", plots=False, verbose=False)
    print(f"stock YOLO val (half={sys.argv[3]}) {w}: mAP50-95 {r.box.map * 100:.1f}")
EOF
}

part 4 && { echo "== 4. trainer epoch time at 640 (epoch 2 of 3, no validation in it)"
for V in vanilla kd; do
  timeout 100 python tools/compare.py --teacher "$TEACHER" --data "$DATA/data.yaml" --variants "$V" --epochs 3 --seeds 0 \
    --imgsz 640 --batch 16 --device "$DEV" --project "$RUN/e640" nbs=64 workers=12 plots=False val=False $EXTRA > "$RUN/e640_$V.log" 2>&1
done
python - "$RUN/e640" <<'EOF'
import sys, glob, csv
for f in sorted(glob.glob(f"{sys.argv[1]}/*/results.csv")):
    rows = list(csv.DictReader(open(f)))
    t = [float(r["time"]) for r in rows]
    print(f"{f}: epoch times (s) {[round(b - a, 1) for a, b in zip([0] + t, t)]}; epoch 2: {t[1] - t[0] if len(t) > 1 else float('nan'):.1f} s")
EOF
}
tar czf "$RUN/runs.tgz" $(find "$RUN" -name results.csv -o -name args.yaml -o -name kd.yaml -o -name "*.log" -o -name "*.md" | grep -v "\.tgz")
