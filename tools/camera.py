"""Run an ONNX detector on a camera, video, image folder or stream (see yolo_kd/commands/camera.py)."""

import sys

from yolo_kd.commands.camera import main
from yolo_kd.core.errors import run_cli

raise SystemExit(run_cli(main, sys.argv[1:]))
