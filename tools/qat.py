#!/usr/bin/env python
"""Thin wrapper: see yolo_kd/commands/qat.py (also available as `yolo-kd`)."""
import sys

from yolo_kd.commands.qat import main
from yolo_kd.core.errors import run_cli

if __name__ == "__main__":
    raise SystemExit(run_cli(main, sys.argv[1:]))
