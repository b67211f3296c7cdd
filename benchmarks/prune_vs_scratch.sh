#!/usr/bin/env bash
# Issue 16: what pruning costs against what the narrower width costs. Trains the architecture a pruning run ended
# with (PRUNED, e.g. prune-s0/step3/weights/best.pt) from fresh weights (yolo_kd.prune.scratch.reinitialized, seeded
# with SEED), without a teacher, for each of EPOCHS with the recipe of the unpruned model's own training (EXTRA).
# Compare with the unpruned architecture trained the same way, with the pruned model and with prune.py's --control.
# Run from the repository root; finished runs are reused. Writes $OUT/$NAME-eE-seedSEED/ (an Ultralytics run each;
# `tools/compare.py --runs` averages the runs of one name over seeds) and the fresh weights $OUT/$NAME-init-sSEED.pt.
set -euo pipefail
PRUNED=${PRUNED:?"set PRUNED to a pruned best.pt (docs/pruning.md: runs/demo/prune-s0/step3/weights/best.pt)"}
DATA=${DATA:?"set DATA to the data YAML the pruned model was trained on"}
OUT=${OUT:-$PWD/runs/prune_vs_scratch}
NAME=${NAME:-narrow}  # e.g. yolo11n when PRUNED is an unpruned model: the same path for the full width
SEED=${SEED:-0}
EPOCHS=${EPOCHS:-"140 170"}
IMGSZ=${IMGSZ:-96}
read -r -a EXTRA_ARGS <<< "${EXTRA:-nbs=16}"  # Ultralytics key=value, e.g. the demo preset's recipe nbs=16
export YOLO_OFFLINE=1
mkdir -p "$OUT"
FRESH="$OUT/$NAME-init-s$SEED.pt"
[ -f "$FRESH" ] || python - "$PRUNED" "$FRESH" "$SEED" <<'PY'
import sys, torch
from yolo_kd.core.checkpoints import load_checkpoint_model
from yolo_kd.prune.pruner import count_params, save_pruned_checkpoint
from yolo_kd.prune.scratch import reinitialized
model, ckpt = load_checkpoint_model(sys.argv[1], "pruned model")
torch.manual_seed(int(sys.argv[3]))
fresh = reinitialized(model)
save_pruned_checkpoint(fresh, sys.argv[2], ckpt.get("train_args"), {"reinitialized_from": sys.argv[1], "seed": int(sys.argv[3])})
print(f"{sys.argv[2]}: {count_params(fresh)} params, fresh weights")
PY
# stock `yolo train model=<pruned>.pt` would rebuild the unpruned network from the YAML: yolo_kd.train keeps the module
for E in $EPOCHS; do
  [ -f "$OUT/$NAME-e$E-seed$SEED/weights/best.pt" ] || python - "$FRESH" "$DATA" epochs="$E" seed="$SEED" imgsz="$IMGSZ" \
    batch=16 device=cpu workers=0 plots=False exist_ok=True project="$OUT" name="$NAME-e$E-seed$SEED" "${EXTRA_ARGS[@]}" <<'PY'
import sys, yaml, yolo_kd
yolo_kd.train(sys.argv[1], teacher=None, data=sys.argv[2],
              **{k: yaml.safe_load(v) for k, _, v in (a.partition("=") for a in sys.argv[3:])})
PY
done
