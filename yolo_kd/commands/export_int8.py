"""``tools/export_int8.py`` / ``yolo-kd export``: best.pt -> FP32 + calibrated INT8 ONNX, and a side-by-side report.

    python tools/export_int8.py --model best.pt --data my.yaml --imgsz 640 --calib-images 256
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from ..core.errors import KDError
from ..core.files import write_json_atomic
from ..quantize.report import ModelRow, markdown_table, measure_all, ultralytics_int8
from ..quantize.ptq import FLOAT_GROUPS, METHODS, QuantSettings, export_int8, stride_multiple

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="export_int8", description="best.pt -> FP32 ONNX (Ultralytics exporter) + calibrated INT8 ONNX (onnxruntime static QDQ), "
                                "with size, INT8 kernel share, latency and mAP side by side. See docs/int8.md.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="trained detection checkpoint (best.pt)")
    p.add_argument("--data", required=True, help="dataset YAML: calibration reads its train split, mAP its val split")
    p.add_argument("--imgsz", type=int, default=640, help="fixed ONNX input size (rounded up to a multiple of 32)")
    p.add_argument("--calib-images", type=int, default=256, help="number of train images for calibration")
    p.add_argument("--method", choices=METHODS, default="percentile",
                   help="calibration method (percentile measured most accurate, minmax fastest to calibrate)")
    p.add_argument("--keep-float", default=",".join(FLOAT_GROUPS),
                   help=f"comma list of parts kept in float: {', '.join(FLOAT_GROUPS)}, 'all' or 'none'")
    p.add_argument("--act-type", choices=("u8", "s8"), default="u8",
                   help="activation type: u8 fuses into INT8 kernels on x86; s8 is onnxruntime's default")
    p.add_argument("--op-types", default="all", help="op types to quantize: 'all' or a comma list such as Conv")
    p.add_argument("--exclude", default="", help="extra nodes kept float: comma list of node-name parts, e.g. /attn/")
    p.add_argument("--no-per-channel", action="store_true", help="per-tensor weight scales (less accurate)")
    p.add_argument("--reduce-range", action="store_true", help="7-bit weights (for CPUs without VNNI)")
    p.add_argument("--out-dir", default=None, help="output folder (default: the model's folder)")
    p.add_argument("--fp32-name", default=None, help="FP32 file name (default <stem>_fp32.onnx)")
    p.add_argument("--int8-name", default=None, help="INT8 file name (default <stem>_int8.onnx)")
    p.add_argument("--json", default=None, help="report JSON path (default <out-dir>/<stem>_int8_report.json)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads for the latency test")
    p.add_argument("--latency-seconds", type=float, default=10.0, help="minimum timing duration per model")
    p.add_argument("--no-peer", action="store_true", help="skip Ultralytics' export(format='onnx', quantize=8) (slow)")
    p.add_argument("--no-map", action="store_true", help="skip mAP validation")
    p.add_argument("--device", default="cpu", help="device for Ultralytics' validation of the ONNX files")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
                      int8_name=args.int8_name, settings=settings)
    out_dir = res.int8_onnx.parent
    models = {"FP32 ONNX": res.fp32_onnx, "yolo_kd INT8": res.int8_onnx}
    peer_error = None
    if not args.no_peer:
        try:
            models["Ultralytics quantize=8"] = ultralytics_int8(
                args.model, args.data, args.imgsz, out_dir / f"{Path(args.model).stem}_ultralytics_int8.onnx")
        except KDError as e:
            peer_error = str(e)
    rows = measure_all(models, args.data, args.imgsz, threads=args.threads, latency_seconds=args.latency_seconds,
                       with_map=not args.no_map, device=args.device)
    if peer_error:
        rows.append(ModelRow("Ultralytics quantize=8", error=peer_error))
    table = markdown_table(rows)
    verdict = targets(rows)
    report = {"export": res.to_dict(), "threads": args.threads, "rows": [r.to_dict() for r in rows], "targets": verdict}
    json_path = Path(args.json) if args.json else out_dir / f"{Path(args.model).stem}_int8_report.json"
    write_json_atomic(json_path, report)
    print(f"\nINT8 export of {args.model} at {args.imgsz}px, {res.calib_images} '{res.calib_split}' calibration images "
          f"({res.method}, {res.quantize_seconds:.0f} s), float-kept: {', '.join(res.keep_float) or 'none'}, "
          f"{args.threads} threads\n")
    print(table)
    print()
    for name, (ok, text) in verdict.items():
        print(f"- {'met' if ok else 'NOT met' if ok is False else 'n/a'}: {name}: {text}")
    for w in res.warnings:
        print(f"- warning: {w}")
    print(f"\nwrote {res.fp32_onnx}\nwrote {res.int8_onnx}\nwrote {json_path}")
    return 0


def targets(rows: list[ModelRow]) -> dict[str, tuple[bool | None, str]]:
    """The issue's targets: INT8 <= 0.5x FP32 latency, mAP50-95 drop <= 0.5 points, better than Ultralytics'."""
    by = {r.name: r for r in rows if not r.error}
    fp, q, peer = by.get("FP32 ONNX"), by.get("yolo_kd INT8"), by.get("Ultralytics quantize=8")
    out: dict[str, tuple[bool | None, str]] = {}
    if fp and q:
        ratio = q.latency_ms / fp.latency_ms
        out["latency <= 0.5x FP32"] = (ratio <= 0.5, f"{ratio:.2f}x")
        if fp.map50_95 is not None and q.map50_95 is not None:
            drop = 100 * (fp.map50_95 - q.map50_95)
            out["mAP50-95 drop <= 0.5 points"] = (drop <= 0.5, f"{drop:+.2f} points")
    if q and peer:
        faster = q.latency_ms < peer.latency_ms
        text = f"latency {q.latency_ms:.1f} vs {peer.latency_ms:.1f} ms"
        if q.map50_95 is not None and peer.map50_95 is not None:
            text += f", mAP50-95 {q.map50_95:.4f} vs {peer.map50_95:.4f}"
            faster = faster and q.map50_95 >= peer.map50_95
        out["better than Ultralytics quantize=8"] = (faster, text)
    return out
