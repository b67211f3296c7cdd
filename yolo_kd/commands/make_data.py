"""``tools/make_data.py`` / ``yolo-kd data``: write the synthetic shapes detection dataset in YOLO format.

Every option is also a ``key=value``: ``yolo-kd data preset=bench out=datasets/bench`` == ``--preset bench --out datasets/bench``.
"""

from __future__ import annotations

from typing import Sequence

from ..data.synthetic import PRESETS, make_shapes_dataset
from .args import ArgParser, parse_args


def build_parser() -> ArgParser:
    p = ArgParser(prog="make_data", description="Generate the deterministic synthetic shapes dataset (options also as key=value).")
    p.add_argument("--out", default=None, help="output folder (default: datasets/shapes-<preset>)")
    p.add_argument("--preset", default="small", choices=list(PRESETS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-val", type=int, default=None)
    p.add_argument("--imgsz", type=int, default=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(build_parser(), argv).args
    extra = {k: v for k, v in {"n_train": a.n_train, "n_val": a.n_val, "imgsz": a.imgsz, "seed": a.seed}.items() if v is not None}
    path = make_shapes_dataset(a.out or f"datasets/shapes-{a.preset}", a.preset, **extra)
    print(path)
    return 0
