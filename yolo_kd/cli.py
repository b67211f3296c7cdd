"""``yolo-kd`` console entry point: ``yolo-kd train|compare|prune|qat|export|bench|camera|data|demo [args]``.

Each subcommand runs exactly the same ``main`` as the matching script in ``tools/``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

from .core.errors import run_cli

#: subcommand -> (module under yolo_kd.commands, one-line help)
COMMANDS = {
    "train": ("train", "distill a teacher into a student (tools/train_kd.py)"),
    "compare": ("compare", "vanilla vs yolo_kd vs Ultralytics built-in distillation, side by side (tools/compare.py)"),
    "prune": ("prune", "structured pruning with distillation fine-tuning (tools/prune.py)"),
    "qat": ("qat", "quantization-aware training with distillation, INT8 export and report (tools/qat.py)"),
    "export": ("export_int8", "FP32 + calibrated INT8 ONNX export with an accuracy/latency report (tools/export_int8.py)"),
    "bench": ("bench_latency", "latency benchmark of .pt and .onnx models (tools/bench_latency.py)"),
    "camera": ("camera", "run an ONNX model on a camera, video, folder or stream (tools/camera.py)"),
    "data": ("make_data", "write the synthetic shapes dataset (tools/make_data.py)"),
    "demo": ("demo", "the whole pipeline on generated data, end to end (tools/demo.py)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``argv[0]`` to its command's ``main``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        width = max(map(len, COMMANDS))
        print("usage: yolo-kd COMMAND [ARGS]\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<{width}}  {text}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"yolo_kd: error: unknown command '{name}': choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"yolo_kd.commands.{COMMANDS[name][0]}")
    return run_cli(module.main, rest)


if __name__ == "__main__":
    raise SystemExit(main())
