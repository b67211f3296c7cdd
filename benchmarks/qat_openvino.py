"""A QAT run's two OpenVINO IRs against NNCF's PTQ IR of its parent: mAP50-95 per run, latency at 640 px (issue 16).

    python benchmarks/qat_openvino.py runs/qat/s0 runs/qat/s1 runs/qat/s2 --imgsz 96 --lat-imgsz 640 --out runs/qat_ov
    # + the same QAT runs trained with --placement nncf, in the same order (same parents and seeds):
    python benchmarks/qat_openvino.py runs/qat/s0 runs/qat/s1 runs/qat/s2 --nncf-runs runs/qatn/s0 runs/qatn/s1 runs/qatn/s2 ...

For each ``tools/qat.py`` run folder (``qat.yaml``, ``train/weights/best.pt``), at ``--imgsz`` and calibrated on
``--calib-images`` train images as ``tools/qat.py`` calibrates:

- ``QAT IR, NNCF placement``: what ``tools/qat.py`` writes as ``qat_int8_openvino_model/`` (the trained network
  quantized by NNCF, :func:`yolo_kd.quantize.qat.export_qat_openvino_nncf`);
- ``QAT IR, QAT placement``: ``qat_int8_convs.onnx`` as an IR (:func:`yolo_kd.quantize.qat.export_qat_openvino`);
- ``NNCF PTQ IR (parent)``: the model QAT started from, quantized by NNCF (``tools/export_int8.py --backend openvino``);
- with ``--nncf-runs``, ``QAT trained in NNCF placement``: what ``tools/qat.py --placement nncf`` writes as
  ``qat_int8_openvino_model/`` (its own quantizers, :func:`yolo_kd.quantize.qat.export_qat_openvino`).

The runs' own onnxruntime files (``qat_int8.onnx``, as ``tools/qat.py`` wrote them) are validated too, in a second
table, when every run has one.

Each is validated on the val split (Ultralytics' validator, batch 1). Then the first run's three IRs and its parent's
FP32 IR are exported again at ``--lat-imgsz`` and timed in turns in one process (:mod:`yolo_kd.quantize.report`).
Writes ``<out>/qat_openvino.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import yaml

ARMS = ("QAT IR, NNCF placement", "QAT IR, QAT placement", "NNCF PTQ IR (parent)")
TRAINED_NNCF = "QAT trained in NNCF placement"


def build_trained_nncf(run: Path, out: Path, imgsz: int) -> Path:
    """The IR ``tools/qat.py --placement nncf`` writes for ``run``, at ``imgsz`` in ``out`` (kept when it exists)."""
    from yolo_kd.quantize.openvino_ir import ir_dir
    from yolo_kd.quantize.qat import export_qat_onnx, export_qat_openvino

    out.mkdir(parents=True, exist_ok=True)
    folder = ir_dir(out, "qat_nncf_int8")
    if not folder.is_dir():
        export_qat_openvino(export_qat_onnx(run / "train" / "weights" / "best.pt", out / "qat_nncf_int8.onnx", imgsz), folder)
    return folder


def build(run: Path, out: Path, imgsz: int, calib_images: int) -> dict[str, Path]:
    """The three IRs of ``run`` at ``imgsz`` in ``out`` (and the parent's FP32 IR); existing folders are kept."""
    from yolo_kd.quantize.openvino_ir import ir_dir
    from yolo_kd.quantize.ptq import export_int8
    from yolo_kd.quantize.qat import calibration_images, export_qat_onnx, export_qat_openvino, export_qat_openvino_nncf

    settings = yaml.safe_load((run / "qat.yaml").read_text())
    out.mkdir(parents=True, exist_ok=True)
    convs = out / "qat_int8_convs.onnx"
    if not convs.is_file():
        export_qat_onnx(run / "train" / "weights" / "best.pt", convs, imgsz)
    nncf, qat = ir_dir(out, "qat_int8"), ir_dir(out, "qat_int8_convs")
    if not nncf.is_dir():
        export_qat_openvino_nncf(convs, nncf, calibration_images(settings["data"], calib_images, imgsz), imgsz)
    if not qat.is_dir():
        export_qat_openvino(convs, qat)
    parent = export_int8(settings["model"], settings["data"], imgsz=imgsz, calib_images=calib_images, out_dir=out,
                         fp32_name="parent_fp32.onnx", backend="openvino")  # no onnxruntime INT8 file: unused here
    return {ARMS[0]: nncf, ARMS[1]: qat, ARMS[2]: parent.openvino_int8, "FP32 IR (parent)": parent.openvino_fp32}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="tools/qat.py run folders")
    p.add_argument("--nncf-runs", nargs="*", type=Path, default=[],
                   help="tools/qat.py --placement nncf runs of the same parents and seeds, in the order of runs")
    p.add_argument("--imgsz", type=int, required=True, help="the size the runs trained at (mAP)")
    p.add_argument("--lat-imgsz", type=int, default=640, help="the size latency is measured at")
    p.add_argument("--calib-images", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=20.0, help="timing budget per file")
    p.add_argument("--repeats", type=int, default=2, help="timing rounds (each times every file in turns)")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()

    from yolo_kd.core.files import write_json_atomic, write_text_atomic
    from yolo_kd.quantize.report import markdown_table, measure_all, onnx_map

    if a.nncf_runs and len(a.nncf_runs) != len(a.runs):
        p.error(f"--nncf-runs: {len(a.nncf_runs)} runs for {len(a.runs)}: pass one per run, in the same order")
    arms = ARMS + ((TRAINED_NNCF,) if a.nncf_runs else ())
    maps: dict[str, list[float]] = {arm: [] for arm in arms}
    data_of = lambda run: yaml.safe_load((run / "qat.yaml").read_text())["data"]  # noqa: E731
    for k, run in enumerate(a.runs):
        data = data_of(run)
        irs = build(run, a.out / f"run{k}_{a.imgsz}", a.imgsz, a.calib_images)
        if a.nncf_runs:
            irs[TRAINED_NNCF] = build_trained_nncf(a.nncf_runs[k], a.out / f"run{k}_{a.imgsz}", a.imgsz)
        for arm in arms:
            maps[arm].append(100 * onnx_map(irs[arm], data, a.imgsz)[1])
    ort_files = {"qat_int8.onnx, conv placement": [r / "qat_int8.onnx" for r in a.runs]}
    if a.nncf_runs:
        ort_files["qat_int8.onnx, trained in NNCF placement"] = [r / "qat_int8.onnx" for r in a.nncf_runs]
    ort_maps = {name: [100 * onnx_map(f, data_of(r), a.imgsz)[1] for f, r in zip(files, a.runs)]
                for name, files in ort_files.items() if all(f.is_file() for f in files)}
    lines = [f"| IR | {' | '.join('/'.join(r.parts[-2:]) for r in a.runs)} | mean | − QAT placement |", "|---" * (len(a.runs) + 3) + "|"]
    for arm in arms:
        m = maps[arm]
        lines.append(f"| {arm} | {' | '.join(f'{v:.2f}' for v in m)} | {statistics.mean(m):.2f} | "
                     f"{statistics.mean(m) - statistics.mean(maps[ARMS[1]]):+.2f} |")
    irs = build(a.runs[0], a.out / f"run0_{a.lat_imgsz}", a.lat_imgsz, min(a.calib_images, 32))
    if a.nncf_runs:
        irs[TRAINED_NNCF] = build_trained_nncf(a.nncf_runs[0], a.out / f"run0_{a.lat_imgsz}", a.lat_imgsz)
    rounds = [measure_all({"FP32 IR (parent)": irs["FP32 IR (parent)"], **{arm: irs[arm] for arm in arms}}, data_of(a.runs[0]),
                          a.lat_imgsz, threads=a.threads, latency_seconds=a.seconds, with_map=False)
              for _ in range(a.repeats)]
    if ort_maps:
        lines += ["", f"onnxruntime files, mAP50-95 (points) at {a.imgsz} px, val split:", "",
                  f"| file | {' | '.join('/'.join(r.parts[-2:]) for r in a.runs)} | mean |", "|---" * (len(a.runs) + 2) + "|"]
        lines += [f"| {name} | {' | '.join(f'{v:.2f}' for v in m)} | {statistics.mean(m):.2f} |" for name, m in ort_maps.items()]
    table = (f"mAP50-95 (points) at {a.imgsz} px, val split:\n\n" + "\n".join(lines)
             + "".join(f"\n\nLatency of {a.runs[0]}'s IRs at {a.lat_imgsz} px, {a.threads} threads, in turns, round "
                       f"{k + 1} of {a.repeats}:\n\n" + markdown_table(rows) for k, rows in enumerate(rounds)))
    write_text_atomic(a.out / "qat_openvino.md", table + "\n")
    write_json_atomic(a.out / "qat_openvino.json", {"runs": [str(r) for r in a.runs], "nncf_runs": [str(r) for r in a.nncf_runs],
                                                    "imgsz": a.imgsz, "map50_95": maps, "onnxruntime_map50_95": ort_maps,
                                                    "latency": [[r.to_dict() for r in rows] for rows in rounds]})
    print(table)


if __name__ == "__main__":
    main()
