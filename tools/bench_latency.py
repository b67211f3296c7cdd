"""Latency benchmark of .pt and .onnx detectors (see yolo_kd/commands/bench_latency.py)."""

import sys

from yolo_kd.commands.bench_latency import main
from yolo_kd.core.errors import run_cli

raise SystemExit(run_cli(main, sys.argv[1:]))
