"""``tools/demo.py`` / ``yolo-kd demo``: the whole pipeline on generated data, ending with the chain table (README: time)."""

from __future__ import annotations

from dataclasses import fields
from typing import Sequence

from ..evidence.demo import DemoSettings, run_demo
from .args import ArgParser, parse_args


def build_parser() -> ArgParser:
    p = ArgParser(prog="demo", description=__doc__ + " Options also as key=value (student_epochs=2).")
    p.add_argument("--out", default="demo_out", help="output folder (reused: finished stages are not redone)")
    for f in fields(DemoSettings):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(build_parser(), argv).args
    run_demo(a.out, DemoSettings(**{f.name: getattr(a, f.name) for f in fields(DemoSettings)}))
    return 0
