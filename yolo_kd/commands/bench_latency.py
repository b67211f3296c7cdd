"""``tools/bench_latency.py`` / ``yolo-kd bench``: latency of .pt, .onnx and OpenVINO detectors, side by side.

    python tools/bench_latency.py best.pt best_fp32.onnx best_int8.onnx --imgsz 640 --threads 2
    python tools/bench_latency.py best_fp32.onnx@onnxruntime best_fp32.onnx@openvino best_int8_openvino_model threads=2

Batch 1, the same letterbox preprocessing and NMS postprocessing for every model, stages timed separately,
models interleaved round-robin. Prints a markdown table and writes ``latency.json``, ``latency.md`` and, when mAP
values are known (``--map`` or the run folder's results.csv), ``latency_vs_map.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import cv2

from ..core.errors import KDError
from ..data.synthetic import make_frame
from ..deploy.backends import BACKENDS
from ..deploy.latency import run_benchmark
from ..deploy.latency_report import header, markdown_table, parse_map_pairs, write_report
from .args import ArgParser
from .args import parse_args as parse_tool_args


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgParser(prog="bench_latency", formatter_class=argparse.RawDescriptionHelpFormatter,
                  description="Latency of .pt, .onnx and OpenVINO detectors, side by side (batch 1, per stage). "
                              "Every option also works as key=value (model=a.onnx,b.onnx imgsz=640 threads=2).",
                  epilog="examples:\n" + __doc__.split("\n\n")[1])
    p.add_argument("models", nargs="*", help=".pt, .onnx files and/or *_openvino_model folders; the first is the "
                   "reference for speed-ups; 'x.onnx@openvino' / 'x.onnx@onnxruntime' picks the runtime of one model")
    p.add_argument("--model", nargs="+", default=[], dest="more_models", help="more models (also model=a,b)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="runtime of .onnx models: auto (OpenVINO on x86 when installed), onnxruntime or openvino")
    p.add_argument("--imgsz", type=int, default=640, help="network input size (default 640; fixed ONNX must match)")
    p.add_argument("--threads", type=int, help="CPU threads for onnxruntime, torch and OpenCV (default: libraries')")
    p.add_argument("--device", help="torch device for .pt models (default: cuda:0 if available, else cpu)")
    p.add_argument("--warmup", type=int, default=10, help="warm-up frames per model (default 10)")
    p.add_argument("--min-runs", type=int, default=100, help="timed frames per model, at least (default 100)")
    p.add_argument("--min-seconds", type=float, default=10.0, help="timed seconds per model, at least (default 10)")
    p.add_argument("--chunk", type=int, default=10, help="frames per model per round-robin round (default 10)")
    p.add_argument("--frame", default="1280x720", help="size WxH of the synthetic camera frame (default 1280x720)")
    p.add_argument("--image", help="time on this image instead of a synthetic frame")
    p.add_argument("--conf", type=float, default=0.25, help="confidence threshold used by postprocessing")
    p.add_argument("--map", action="append", metavar="NAME=VALUE", help="mAP50-95 of a model, e.g. best.onnx=0.61")
    p.add_argument("--out", default="runs/latency", help="output folder (default runs/latency)")
    args = parse_tool_args(p, argv).args
    args.models = list(args.models) + list(args.more_models)
    if not args.models:
        raise KDError("no model given: pass one or more .pt / .onnx files or *_openvino_model folders (see bench_latency --help)")
    return args


def _frame(args: argparse.Namespace):
    """The frame every model is timed on."""
    if args.image:
        image = cv2.imread(args.image)
        if image is None:
            raise KDError(f"cannot read image '{args.image}': pass a .jpg/.png file or drop --image")
        return image
    try:
        w, h = (int(v) for v in args.frame.lower().split("x"))
        assert w > 0 and h > 0
    except (ValueError, AssertionError):
        raise KDError(f"--frame '{args.frame}' is not WIDTHxHEIGHT: write e.g. --frame 1280x720") from None
    return make_frame(w, h)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if min(args.warmup, args.chunk - 1, args.min_runs - 1) < 0 or args.min_seconds < 0:
        raise KDError("--warmup, --min-seconds must be >= 0 and --min-runs, --chunk >= 1: fix the value")
    maps = parse_map_pairs(args.map)
    print(f"timing {len(args.models)} model(s), batch 1, imgsz {args.imgsz}: {args.warmup} warm-up frames, then "
          f">= {args.min_runs} frames and >= {args.min_seconds:g} s each, round-robin...", file=sys.stderr)
    report = run_benchmark(args.models, _frame(args), args.imgsz, args.threads, args.warmup, args.min_runs,
                           args.min_seconds, args.chunk, args.conf, args.device, maps, backend=args.backend)
    paths = write_report(report, args.out)
    print(header(report) + "\n\n" + markdown_table(report["models"]) + "\n")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
