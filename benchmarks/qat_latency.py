"""Latency of a QAT run's INT8 files against its parent's FP32 and PTQ files at another image size (issue 16).

``tools/qat.py`` reports at the size it trained at; cameras run larger. This exports, at ``--imgsz``, the run's
``best.pt`` as both QAT files (``qat_int8.onnx``, every op in INT8 with QAT's scales, and ``qat_int8_convs.onnx``,
convolutions only) and its parent as FP32 and PTQ INT8 ONNX, then times the four in turns in one process
(``yolo_kd.quantize.report``):

    python benchmarks/qat_latency.py runs/qat/exp --imgsz 640 --threads 2 --seconds 10
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a tools/qat.py run folder (holds qat.yaml and train/weights/best.pt)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0, help="timing budget per file")
    p.add_argument("--calib-images", type=int, default=32, help="calibration images (they do not change the latency)")
    a = p.parse_args()

    from yolo_kd.core.files import write_text_atomic
    from yolo_kd.quantize.ptq import export_int8
    from yolo_kd.quantize.qat import export_qat_int8
    from yolo_kd.quantize.report import markdown_table, measure_all

    run = Path(a.run)
    settings = yaml.safe_load((run / "qat.yaml").read_text())
    out = run / f"latency_{a.imgsz}"
    out.mkdir(exist_ok=True)
    int8, convs, _ = export_qat_int8(run / "train" / "weights" / "best.pt", out, a.imgsz, settings["data"], a.calib_images)
    parent = export_int8(settings["model"], settings["data"], imgsz=a.imgsz, calib_images=a.calib_images, out_dir=out,
                         fp32_name="parent_fp32.onnx", int8_name="parent_ptq_int8.onnx", backend="onnxruntime")
    rows = measure_all({"FP32 ONNX (parent)": parent.fp32_onnx, "PTQ INT8 ONNX (parent)": parent.int8_onnx,
                        "QAT INT8 ONNX": int8, "QAT INT8 ONNX, convolutions only": convs},
                       settings["data"], a.imgsz, threads=a.threads, latency_seconds=a.seconds, with_map=False)
    table = markdown_table(rows)
    write_text_atomic(out / "latency.md", table + "\n")
    print(table)


if __name__ == "__main__":
    main()
