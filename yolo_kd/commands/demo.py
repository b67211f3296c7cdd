"""``tools/demo.py`` / ``yolo-kd demo``: the whole pipeline on generated data (about 15 minutes on 2 CPU cores)."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Sequence

from ..evidence.demo import DemoSettings, run_demo


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="demo", description=__doc__)
    p.add_argument("--out", default="demo_out", help="output folder (reused: finished stages are not redone)")
    for f in fields(DemoSettings):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    a = p.parse_args(argv)
    run_demo(a.out, DemoSettings(**{f.name: getattr(a, f.name) for f in fields(DemoSettings)}))
    return 0
