#!/usr/bin/env python
"""Thin wrapper: see yolo_kd/commands/make_data.py (also available as `yolo-kd`)."""
import sys

from yolo_kd.commands.make_data import main
from yolo_kd.core.errors import run_cli

if __name__ == "__main__":
    raise SystemExit(run_cli(main, sys.argv[1:]))
