"""The six 640 px models of the latency run, with small calibration sets (the quantized graphs, and so the latency,
do not depend on the calibration images; accuracy is measured at the model's native 160 px with the defaults).
Made this way because on 2 cores under load average 20+ the default calibration (256 images at 640 px) did not finish
in time. Same calls as tools/export_int8.py --backend both; Ultralytics' peers with fraction=0.1 of their split."""
import json, shutil, sys, tempfile, time
from pathlib import Path
from ultralytics import YOLO
from yolo_kd.core.checkpoints import load_yolo
from yolo_kd.quantize.calibration import calibration_files, load_calibration
from yolo_kd.quantize.onnx_graph import kernel_share
from yolo_kd.quantize.openvino_graph import runtime_share
from yolo_kd.quantize.openvino_ir import OPENVINO_FLOAT_GROUPS, export_openvino, quiet_nncf, write_dir
from yolo_kd.quantize.ptq import export_fp32, quantize_onnx

if len(sys.argv) != 4:
    raise SystemExit("usage: python docs/bench/deploy/build640.py MODEL.pt DATA.yaml OUT_DIR")
model, data, out, imgsz, n = sys.argv[1], sys.argv[2], Path(sys.argv[3]), 640, 32
out.mkdir(parents=True, exist_ok=True)
log = {"calib_images": n, "peer_fraction": 0.1}
def save():
    (out / "build.json").write_text(json.dumps(log, indent=1))
fp32 = out / "best_fp32.onnx"
if not fp32.exists():
    export_fp32(load_yolo(model, "model", purpose="export"), fp32, imgsz)
files, _ = calibration_files(data, n)
files, _ = load_calibration(files, imgsz)
t0 = time.perf_counter()
quantize_onnx(fp32, out / "best_int8.onnx", files, imgsz, method="percentile")
log["ort_int8"] = {"seconds": round(time.perf_counter() - t0, 1), "kernels": kernel_share(out / "best_int8.onnx").summary()}
print("ort", log["ort_int8"], flush=True); save()
written = []
float_nodes, secs, share = export_openvino(fp32, out / "best_fp32_openvino_model", out / "best_int8_openvino_model", files,
                                           imgsz, OPENVINO_FLOAT_GROUPS, "mixed", written)
log["ov_int8"] = {"seconds": secs, "kernels": share.summary(), "float_nodes": float_nodes}
log["ov_fp32"] = {"kernels": runtime_share(out / "best_fp32_openvino_model").summary()}
print("ov", log["ov_int8"]["kernels"], flush=True); save()
for split, name in (("train", "best_ultralytics_int8"), ("val", "best_ultralytics_int8_valcalib")):
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="yolo_kd_x_", dir=out) as tmp:
        src = Path(tmp) / f"{name}.pt"
        shutil.copyfile(model, src)
        with quiet_nncf():
            f = YOLO(str(src)).export(format="openvino", quantize=8, data=data, imgsz=imgsz, batch=1, split=split,
                                      fraction=0.1, verbose=False)
        p = write_dir(Path(f), out / f"{name}_openvino_model")
    log[name] = {"split": split, "seconds": round(time.perf_counter() - t0, 1), "kernels": runtime_share(p).summary()}
    print(name, log[name], flush=True); save()
