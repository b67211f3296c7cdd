"""FP32 + calibrated INT8 ONNX export of a YOLO detector with an accuracy/latency report (see docs/int8.md)."""

import sys

from yolo_kd.commands.export_int8 import main
from yolo_kd.core.errors import run_cli

raise SystemExit(run_cli(main, sys.argv[1:]))
