#!/usr/bin/env bash
# Issue 16: at equal extra epochs, FP32 fine-tune vs PTQ vs QAT without teacher vs QAT with teacher, from one trained
# parent. The teacher is TEACHER (default: the FP32 parent itself, self-distillation into its quantized copy). mAP50-95 of every file
# on a held-out set (EVAL, default: 1000 images of the same generator), each validated the same way on onnxruntime
# (batch 1, at IMGSZ); latency interleaved. Writes $OUT/qat_equal_epochs.md/.json.
# Run from the repository root; finished runs are reused.
set -euo pipefail
PARENT=${PARENT:?"set PARENT to a trained best.pt (the docs: yolo11n, 15 epochs at 160 px on shapes-small)"}
DATA=${DATA:-datasets/shapes-small/data.yaml}
EVAL=${EVAL:?"set EVAL to a held-out data YAML (the docs: 1000 images of the same generator, python tools/make_data.py)"}
OUT=${OUT:-$PWD/runs/qat_equal}
TEACHER=${TEACHER:-$PARENT}  # the teacher of the ft-kd and qat-kd arms
E=${E:-5}
IMGSZ=${IMGSZ:-160}
SEED=${SEED:-0}
ARMS=${ARMS:-"ft-plain ft-kd qat-plain qat-kd"}  # a subset skips the others (the table shows what exists)
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"  # Ultralytics key=value for every arm, e.g. EXTRA="nbs=16" (the demo preset's recipe)
has() { [[ " $ARMS " == *" $1 "* ]]; }
COMMON=(imgsz="$IMGSZ" batch=16 device=cpu workers=0 plots=False exist_ok=True seed="$SEED" warmup_epochs=0 "${EXTRA_ARGS[@]}")
export YOLO_OFFLINE=1
# the plain fine-tune goes through yolo_kd.train without a teacher: stock `yolo train model=pruned.pt` rebuilds the
# unpruned network from the checkpoint's YAML and keeps only the weights whose shapes match (docs/pruning.md)
! has ft-plain || [ -f "$OUT/ft-plain/weights/best.pt" ] || python - "$PARENT" "$DATA" epochs="$E" project="$OUT" name=ft-plain "${COMMON[@]}" <<'PY'
import sys, yaml, yolo_kd
yolo_kd.train(sys.argv[1], teacher=None, data=sys.argv[2],
              **{k: yaml.safe_load(v) for k, _, v in (a.partition("=") for a in sys.argv[3:])})
PY
! has ft-kd || [ -f "$OUT/ft-kd/weights/best.pt" ] || python tools/train_kd.py --teacher "$TEACHER" --student "$PARENT" --data "$DATA" \
  --epochs "$E" --kd-temperature 2 --project "$OUT" --name ft-kd "${COMMON[@]}"  # T = 2, as tools/qat.py's fine-tune
! has qat-plain || [ -f "$OUT/qat-plain/qat_int8.onnx" ] || python tools/qat.py --model "$PARENT" --data "$DATA" --epochs "$E" --imgsz "$IMGSZ" \
  --device cpu --project "$OUT" --name qat-plain --exist-ok --backend onnxruntime --no-report --no-ptq seed="$SEED" workers=0 "${EXTRA_ARGS[@]}"
! has qat-kd || [ -f "$OUT/qat-kd/qat_int8.onnx" ] || python tools/qat.py --model "$PARENT" --teacher "$TEACHER" --data "$DATA" --epochs "$E" \
  --imgsz "$IMGSZ" --device cpu --project "$OUT" --name qat-kd --exist-ok --backend onnxruntime --no-report seed="$SEED" workers=0 "${EXTRA_ARGS[@]}"
python - "$OUT" "$EVAL" "$IMGSZ" "$PARENT" "$DATA" <<'PY'
import json, sys
from pathlib import Path
from yolo_kd.core.files import write_json_atomic, write_text_atomic
from yolo_kd.quantize.ptq import export_int8
from yolo_kd.quantize.report import markdown_table, measure_all
out, evaly, imgsz, parent, data = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
files = {"parent FP32": out / "qat-kd" / "parent_fp32.onnx", "parent PTQ INT8": out / "qat-kd" / "parent_ptq_int8.onnx"}
for arm in ("ft-plain", "ft-kd"):  # the FP32 fine-tunes, and PTQ of each (same settings as the parent's PTQ)
    d = out / arm
    if not (d / "weights" / "best.pt").is_file():
        continue
    if not (d / "ptq_int8.onnx").is_file():
        export_int8(d / "weights" / "best.pt", data, imgsz=imgsz, calib_images=128, out_dir=d, fp32_name="fp32.onnx",
                    int8_name="ptq_int8.onnx", backend="onnxruntime")
    files[f"{arm} FP32 (+{arm[3:]} fine-tune)"] = d / "fp32.onnx"
    files[f"{arm} PTQ INT8"] = d / "ptq_int8.onnx"
files["QAT INT8 without teacher"] = out / "qat-plain" / "qat_int8.onnx"
files["QAT INT8 with teacher"] = out / "qat-kd" / "qat_int8.onnx"
if not files["parent FP32"].is_file():  # qat-kd was skipped: the parent's files from the QAT run without teacher
    export_int8(parent, data, imgsz=imgsz, calib_images=128, out_dir=out / "qat-kd", fp32_name="parent_fp32.onnx",
                int8_name="parent_ptq_int8.onnx", backend="onnxruntime")
files = {k: v for k, v in files.items() if v.is_file()}
rows = measure_all(files, evaly, imgsz, threads=2, latency_seconds=4)
table = markdown_table(rows)
write_text_atomic(out / "qat_equal_epochs.md", table + "\n")
write_json_atomic(out / "qat_equal_epochs.json", {"eval": evaly, "imgsz": imgsz, "rows": [r.to_dict() for r in rows]})
print(table)
PY
