"""Calibration variants of one trained detector, scored side by side (issue 17: settings chosen on two datasets).

    python docs/bench/deploy/calib_variants.py --model best.pt --data data.yaml --eval heldout.yaml \
        --imgsz 128 --out runs/calib_variants

Every INT8 model is calibrated on the same ``--calib-images`` train images (``yolo_kd.quantize.calibration``, as
``tools/export_int8.py`` does) and scored with Ultralytics' validator on the ``val`` split of ``--data`` and of each
``--eval`` YAML (a larger held-out set of the same generator, to see through the noise of a 200-image val split).
Results are written after every model to ``<out>/variants.json`` and ``variants.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from yolo_kd.core.checkpoints import load_yolo
from yolo_kd.core.files import write_json_atomic, write_text_atomic
from yolo_kd.quantize.calibration import calibration_files, load_calibration
from yolo_kd.quantize.onnx_graph import kernel_share
from yolo_kd.quantize.openvino_graph import runtime_share
from yolo_kd.quantize.openvino_ir import quantize_ir
from yolo_kd.quantize.ptq import export_fp32, quantize_onnx
from yolo_kd.quantize.report import onnx_map, ultralytics_openvino_int8

#: name -> (backend, method/range, keep-float groups, calibration images; None: --calib-images)
VARIANTS = {
    "ort_percentile (default)": ("onnxruntime", "percentile", "head,dfl,concat", None),
    "ort_minmax": ("onnxruntime", "minmax", "head,dfl,concat", None),
    "ort_percentile_64img": ("onnxruntime", "percentile", "head,dfl,concat", 64),
    "ov_cls_head_float (default)": ("openvino", "mean_minmax", "cls_head,dfl,concat", None),
    "ov_all_head_float": ("openvino", "mean_minmax", "head,dfl,concat", None),
    "ov_no_head_float": ("openvino", "mean_minmax", "dfl,concat", None),
    "ov_cls_head_float_minmax": ("openvino", "minmax", "cls_head,dfl,concat", None),
    "ov_cls_head_float_64img": ("openvino", "mean_minmax", "cls_head,dfl,concat", 64),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="calibration from its train split, mAP on its val split")
    p.add_argument("--eval", nargs="*", default=[], help="more dataset YAMLs scored on their val split")
    p.add_argument("--imgsz", type=int, default=128)
    p.add_argument("--calib-images", type=int, default=256)
    p.add_argument("--out", required=True)
    p.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all, + fp32 and peer)")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sets = {"val": a.data, **{f"heldout{i}": e for i, e in enumerate(a.eval)}}
    res_path = out / "variants.json"
    results = json.loads(res_path.read_text()) if res_path.exists() else {}
    results.setdefault("settings", vars(a) | {"sets": sets})
    rows = results.setdefault("rows", {})

    fp32 = out / "fp32.onnx"
    if not fp32.exists():
        export_fp32(load_yolo(a.model, "model", purpose="export"), fp32, a.imgsz)

    def score(name: str, path: Path, backend: str, **extra) -> None:
        row = {"backend": backend, "path": str(path), **extra}
        for key, yaml in sets.items():
            t0 = time.perf_counter()
            m50, m = onnx_map(path, yaml, a.imgsz)
            row[key] = {"map50": round(m50 * 100, 2), "map50_95": round(m * 100, 2),
                        "val_s": round(time.perf_counter() - t0, 1)}
        rows[name] = row
        write_json_atomic(res_path, results)
        write_text_atomic(out / "variants.md", table(results))
        print(name, {k: row[k] for k in sets}, flush=True)

    todo = a.only if a.only is not None else ["fp32", *VARIANTS, "ultralytics_ov_int8_train"]
    for name in todo:
        if name in rows:
            continue
        if name == "fp32":
            score(name, fp32, "onnxruntime")
            continue
        if name == "ultralytics_ov_int8_train":
            t0 = time.perf_counter()
            path = ultralytics_openvino_int8(a.model, a.data, a.imgsz, out / "ultra_int8_openvino_model", split="train")
            score(name, path, "openvino", seconds=round(time.perf_counter() - t0, 1),
                  kernels=runtime_share(path).summary())
            continue
        backend, method, keep, n = VARIANTS[name]
        files, _ = calibration_files(a.data, n or a.calib_images)
        files, _ = load_calibration(files, a.imgsz)
        slug = name.split(" ")[0]
        t0 = time.perf_counter()
        if backend == "onnxruntime":
            path = out / f"{slug}.onnx"
            quantize_onnx(fp32, path, files, a.imgsz, method=method, keep_float=keep)
            kernels = kernel_share(path).summary()
        else:
            path = out / f"{slug}_openvino_model"
            quantize_ir(fp32, path, files, a.imgsz, keep_float=keep, activation_range=method)
            kernels = runtime_share(path).summary()
        score(name, path, backend, method=method, keep_float=keep, calib_images=len(files),
              seconds=round(time.perf_counter() - t0, 1), kernels=kernels)


def table(results: dict) -> str:
    sets = list(results["settings"]["sets"])
    head = "| variant | backend | calibration | keep float | INT8 convs | " + " | ".join(
        f"{s}: mAP50 / mAP50-95" for s in sets) + " |"
    lines = [head, "|" + "---|" * 5 + "--:|" * len(sets)]
    fp = results["rows"].get("fp32", {})
    for name, r in results["rows"].items():
        k = r.get("kernels") or {}
        cells = []
        for s in sets:
            d = r[s]
            delta = f" ({d['map50_95'] - fp[s]['map50_95']:+.2f})" if fp and name != "fp32" else ""
            cells.append(f"{d['map50']:.2f} / {d['map50_95']:.2f}{delta}")
        calib = f"{r.get('method', '')} {r.get('calib_images', '')}".strip() or "-"
        lines.append(f"| {name} | {r['backend']} | {calib} | {r.get('keep_float', '-')} | "
                     f"{k.get('int8', 0)}/{k.get('convs', '-')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
