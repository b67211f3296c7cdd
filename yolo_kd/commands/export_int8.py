"""``tools/export_int8.py`` / ``yolo-kd export``: best.pt -> FP32 + calibrated INT8 models for onnxruntime and/or
OpenVINO, and one side-by-side report with Ultralytics' own INT8 exports.

    python tools/export_int8.py --model best.pt --data my.yaml --imgsz 640 --calib-images 256 --backend both
    python tools/export_int8.py model=best.pt data=my.yaml imgsz=640 backend=openvino
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from ..core.errors import KDError
from ..core.files import write_json_atomic
from ..quantize.onnx_graph import GROUPS
from ..quantize.openvino_ir import EXPORT_BACKENDS, OPENVINO_FLOAT_GROUPS, PRESETS, ir_dir
from ..quantize.ptq import FLOAT_GROUPS, METHODS, QuantSettings, export_int8, stride_multiple
from ..quantize.report import (Entry, ModelRow, markdown_table, measure_all, ultralytics_int8,
                               ultralytics_openvino_int8)
from .args import ArgParser, parse_args


def build_parser() -> ArgParser:
    p = ArgParser(prog="export_int8", description="best.pt -> FP32 ONNX (Ultralytics exporter) + calibrated INT8 for "
                  "onnxruntime (static QDQ ONNX) and/or OpenVINO (NNCF IR), with size, INT8 kernel share, latency and "
                  "mAP side by side. Every option also works as key=value. See docs/int8.md.")
    p.add_argument("--model", required=True, help="trained detection checkpoint (best.pt)")
    p.add_argument("--data", required=True, help="dataset YAML: calibration reads its train split, mAP its val split")
    p.add_argument("--imgsz", type=int, default=640, help="fixed input size (rounded up to a multiple of 32)")
    p.add_argument("--backend", choices=EXPORT_BACKENDS, default="auto",
                   help="INT8 for onnxruntime, openvino or both; auto: both where openvino and nncf are installed on x86")
    p.add_argument("--calib-images", type=int, default=256, help="number of train images for calibration")
    p.add_argument("--method", choices=METHODS, default="percentile",
                   help="calibration: onnxruntime's method (percentile measured most accurate, minmax fastest); "
                        "for OpenVINO minmax takes NNCF's MINMAX ranges, the others its default (mean of per-image min/max)")
    p.add_argument("--preset", choices=PRESETS, default="mixed",
                   help="NNCF preset: mixed (asymmetric activations, for SiLU) or performance (symmetric)")
    p.add_argument("--keep-float", default=",".join(FLOAT_GROUPS),
                   help=f"onnxruntime: comma list of parts kept in float: {', '.join(GROUPS)}, 'all' or 'none'")
    p.add_argument("--ov-keep-float", default=",".join(OPENVINO_FLOAT_GROUPS),
                   help="OpenVINO: the same for the INT8 IR (its default keeps the class output convs, not the box ones)")
    p.add_argument("--end2end", choices=("auto", "yes", "no"), default="auto",
                   help="auto: a model with a one-to-one head (YOLO26) exports NMS-free, top-k (1, K, 6) output; "
                        "no: its one-to-many raw output for NMS")
    p.add_argument("--act-type", choices=("u8", "s8"), default="u8",
                   help="onnxruntime activation type: u8 fuses into INT8 kernels on x86; s8 is onnxruntime's default")
    p.add_argument("--op-types", default="all", help="onnxruntime op types to quantize: 'all' or a comma list such as Conv")
    p.add_argument("--exclude", default="", help="extra ONNX nodes kept float: comma list of node-name parts, e.g. /attn/")
    p.add_argument("--no-per-channel", action="store_true", help="per-tensor weight scales (less accurate)")
    p.add_argument("--reduce-range", action="store_true", help="7-bit weights (for CPUs without VNNI)")
    p.add_argument("--out-dir", default=None, help="output folder (default: the model's folder)")
    p.add_argument("--fp32-name", default=None, help="FP32 file name (default <stem>_fp32.onnx)")
    p.add_argument("--int8-name", default=None, help="INT8 file name (default <stem>_int8.onnx)")
    p.add_argument("--json", default=None, help="report JSON path (default <out-dir>/<stem>_int8_report.json)")
    p.add_argument("--threads", type=int, default=2, help="inference threads for the latency test")
    p.add_argument("--latency-seconds", type=float, default=10.0, help="minimum timing duration per model")
    p.add_argument("--no-peer", action="store_true", help="skip Ultralytics' own INT8 exports (slow)")
    p.add_argument("--no-map", action="store_true", help="skip mAP validation")
    p.add_argument("--device", default="cpu", help="device for Ultralytics' validation of the exported models")
    return p


def _peers(args, backends: tuple[str, ...], out_dir: Path, e2e: bool = False) -> tuple[dict[str, Entry], list[ModelRow]]:
    """Ultralytics' INT8 exports for the chosen runtimes (NMS-free when ours is); a peer that cannot be made here is a
    row with its reason."""
    stem, made, failed = Path(args.model).stem, {}, []
    jobs = []
    if "openvino" in backends:
        jobs += [("Ultralytics OpenVINO INT8, train-calibrated", "openvino", "peer_ov",
                  lambda: ultralytics_openvino_int8(args.model, args.data, args.imgsz,
                                                    ir_dir(out_dir, f"{stem}_ultralytics_int8"), split="train", end2end=e2e)),
                 ("Ultralytics OpenVINO INT8, its default (val-calibrated)", "openvino", "peer_ov_val",
                  lambda: ultralytics_openvino_int8(args.model, args.data, args.imgsz,
                                                    ir_dir(out_dir, f"{stem}_ultralytics_int8_valcalib"), split="val",
                                                    end2end=e2e))]
    if "onnxruntime" in backends:
        jobs.append(("Ultralytics quantize=8", "onnxruntime", "peer_ort",
                     lambda: ultralytics_int8(args.model, args.data, args.imgsz, out_dir / f"{stem}_ultralytics_int8.onnx",
                                              end2end=e2e)))
    for name, backend, role, make in jobs:
        try:
            made[name] = Entry(make(), backend, role)
        except KDError as e:
            failed.append(ModelRow(name, error=str(e), backend=backend, role=role))
    return made, failed


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv).args
    if args.threads < 1:
        raise KDError(f"--threads must be at least 1 (got {args.threads}): pass e.g. --threads 2")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    op_types = None if args.op_types.strip().lower() == "all" else tuple(s.strip() for s in args.op_types.split(",") if s.strip())
    settings = QuantSettings(activation_type=args.act_type, per_channel=not args.no_per_channel,
                             reduce_range=args.reduce_range, op_types=op_types,
                             exclude=tuple(s.strip() for s in args.exclude.split(",") if s.strip()))
    args.imgsz = stride_multiple(args.imgsz)
    res = export_int8(args.model, args.data, imgsz=args.imgsz, calib_images=args.calib_images, method=args.method,
                      keep_float=args.keep_float, out_dir=args.out_dir, fp32_name=args.fp32_name,
                      int8_name=args.int8_name, settings=settings, backend=args.backend, preset=args.preset,
                      openvino_keep_float=args.ov_keep_float, end2end={"auto": None, "yes": True, "no": False}[args.end2end])
    out_dir = res.fp32_onnx.parent
    models: dict[str, Entry] = {"FP32 ONNX": Entry(res.fp32_onnx, "onnxruntime", "fp32_ort")}
    if res.openvino_fp32:
        models["FP32 IR"] = Entry(res.openvino_fp32, "openvino", "fp32_ov")
    if res.int8_onnx:
        models["yolo_kd INT8"] = Entry(res.int8_onnx, "onnxruntime", "int8_ort")
    if res.openvino_int8:
        models["yolo_kd INT8 IR"] = Entry(res.openvino_int8, "openvino", "int8_ov")
    if res.int8_onnx and res.openvino_int8:  # what OpenVINO makes of the onnxruntime INT8 file (not picked by auto)
        models["yolo_kd INT8 (the ONNX file, read by OpenVINO)"] = Entry(res.int8_onnx, "openvino", "int8_ort_on_ov")
    failed: list[ModelRow] = []
    if not args.no_peer:
        peers, failed = _peers(args, res.backends, out_dir, res.end2end)
        models.update(peers)
    rows = measure_all(models, args.data, args.imgsz, threads=args.threads, latency_seconds=args.latency_seconds,
                       with_map=not args.no_map, device=args.device) + failed
    table = markdown_table(rows)
    verdict = targets(rows)
    report = {"export": res.to_dict(), "threads": args.threads, "rows": [r.to_dict() for r in rows], "targets": verdict}
    json_path = Path(args.json) if args.json else out_dir / f"{Path(args.model).stem}_int8_report.json"
    write_json_atomic(json_path, report)
    print(f"\nINT8 export of {args.model} at {args.imgsz}px for {' and '.join(res.backends)}, {res.calib_images} "
          f"'{res.calib_split}' calibration images (onnxruntime: {res.method}, {res.quantize_seconds:.0f} s; OpenVINO: "
          f"NNCF {args.preset}, {res.openvino_seconds:.0f} s), float-kept: {', '.join(res.keep_float) or 'none'}"
          + (f" (OpenVINO: {', '.join(res.openvino_float_nodes) or 'none'})" if res.openvino_int8 else "")
          + (", NMS-free end-to-end output (one-to-one head)" if res.end2end else "") + f", {args.threads} threads\n")
    print(table)
    print()
    for name, (ok, text) in verdict.items():
        print(f"- {'met' if ok else 'NOT met' if ok is False else 'n/a'}: {name}: {text}")
    for w in res.warnings:
        print(f"- warning: {w}")
    written = [res.fp32_onnx, res.int8_onnx, res.openvino_fp32, res.openvino_int8, json_path]
    print("\n" + "\n".join(f"wrote {p}" for p in written if p))
    return 0


def targets(rows: list[ModelRow]) -> dict[str, tuple[bool | None, str]]:
    """The issues' targets, for the rows present.

    onnxruntime (issue 9): INT8 <= 0.5x FP32 latency, mAP50-95 drop <= 0.5 points, better than Ultralytics' ONNX
    quantize=8. Best CPU path (issue 17): the fastest of our INT8 models at most the latency of Ultralytics'
    OpenVINO INT8 and at most 0.30x onnxruntime FP32, mAP50-95 drop <= 0.3 points and not below that peer's.
    """
    by = {r.role: r for r in rows if not r.error and r.role}
    fp, q, peer = by.get("fp32_ort"), by.get("int8_ort"), by.get("peer_ort")
    out: dict[str, tuple[bool | None, str]] = {}
    drop = lambda a, b: 100 * (b.map50_95 - a.map50_95) if a.map50_95 is not None and b.map50_95 is not None else None  # noqa: E731
    if fp and q:
        ratio = q.latency_ms / fp.latency_ms
        out["onnxruntime INT8 latency <= 0.5x FP32"] = (ratio <= 0.5, f"{ratio:.2f}x")
        if (d := drop(q, fp)) is not None:
            out["onnxruntime INT8 mAP50-95 drop <= 0.5 points"] = (d <= 0.5, f"{d:+.2f} points")
    if q and peer:
        better = q.latency_ms < peer.latency_ms
        text = f"latency {q.latency_ms:.1f} vs {peer.latency_ms:.1f} ms"
        if q.map50_95 is not None and peer.map50_95 is not None:
            text += f", mAP50-95 {100 * q.map50_95:.2f} vs {100 * peer.map50_95:.2f} points"
            better = better and q.map50_95 >= peer.map50_95
        out["onnxruntime INT8 better than Ultralytics quantize=8"] = (better, text)
    ours = [r for r in (by.get("int8_ov"), q) if r is not None]
    if not ours or "int8_ov" not in by:
        return out
    best = min(ours, key=lambda r: r.latency_ms)
    label = f"best CPU path ({best.name}, {best.backend})"
    ov_peer = by.get("peer_ov")
    if ov_peer:
        out[f"{label} latency <= Ultralytics OpenVINO INT8"] = (
            best.latency_ms <= ov_peer.latency_ms, f"{best.latency_ms:.1f} vs {ov_peer.latency_ms:.1f} ms")
    if fp:
        ratio = best.latency_ms / fp.latency_ms
        out[f"{label} latency <= 0.30x onnxruntime FP32"] = (ratio <= 0.30, f"{ratio:.2f}x")
    ref = by.get("fp32_ov") or fp
    if ref and (d := drop(best, ref)) is not None:
        out[f"{label} mAP50-95 drop <= 0.3 points vs FP32"] = (d <= 0.3, f"{d:+.2f} points")
    if ov_peer and best.map50_95 is not None and ov_peer.map50_95 is not None:
        out[f"{label} mAP50-95 >= Ultralytics OpenVINO INT8"] = (
            best.map50_95 >= ov_peer.map50_95, f"{100 * best.map50_95:.2f} vs {100 * ov_peer.map50_95:.2f} points")
    return out
