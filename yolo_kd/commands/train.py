"""``tools/train_kd.py`` / ``yolo-kd train``: distill a teacher into a student.

    python tools/train_kd.py --teacher yolo11x.pt --student yolo11n.pt --data my.yaml --epochs 100 --imgsz 640 batch=16 device=0

Any Ultralytics training argument passes through, as ``--key value``, ``--key=value`` or ``key=value``.
Distillation settings: ``--kd-cfg FILE`` and ``--kd-<key> VALUE`` (keys of cfg/kd_default.yaml).
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

from ..distill.config import config_keys
from ..core.errors import KDError


def parse_overrides(tokens: Sequence[str]) -> dict[str, Any]:
    """Turn ``key=value``, ``--key value`` and ``--key=value`` tokens into Ultralytics overrides (validated keys)."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    out: dict[str, Any] = {}
    tokens = list(tokens)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("--"):
            key, eq, value = tok[2:].partition("=")
            if not eq:
                if i + 1 < len(tokens) and not tokens[i + 1].startswith("--") and "=" not in tokens[i + 1]:
                    value, i = tokens[i + 1], i + 1
                else:
                    value = "True"
        elif "=" in tok:
            key, _, value = tok.partition("=")
        else:
            raise KDError(f"unexpected argument '{tok}': use key=value or --key value")
        key = key.replace("-", "_")
        if key not in DEFAULT_CFG_DICT:
            raise KDError(f"unknown training argument '{key}': see 'yolo cfg' for Ultralytics arguments, --help for ours")
        out[key] = _smart(value)
        i += 1
    return out


def split_key_values(argv: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Separate Ultralytics-style ``key=value`` tokens from the rest (so ``nargs='+'`` options cannot swallow them)."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    kv = [t for t in argv if "=" in t and not t.startswith("-")]
    return [t for t in argv if t not in kv], kv


def _smart(value: str) -> Any:
    from ultralytics.cfg import smart_value

    return smart_value(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train_kd",
        description="Train a YOLO student with knowledge distillation from a frozen teacher. "
        "Other Ultralytics arguments pass through as key=value or --key value.",
    )
    p.add_argument("--student", default="yolo11n.yaml", help="student .pt (fine-tune) or model .yaml (from scratch)")
    p.add_argument("--teacher", help="trained teacher .pt (checkpoints are pickles: only load files you trust)")
    p.add_argument("--data", help="dataset YAML, or synthetic[:tiny|small|bench] for the generated shapes set")
    p.add_argument("--resume", nargs="?", const=True, default=None, help="resume from a last.pt (path)")
    p.add_argument("--kd-cfg", help="distillation YAML overriding cfg/kd_default.yaml")
    for key in config_keys():
        p.add_argument(f"--kd-{key.replace('_', '-')}", dest=f"kd_{key}", default=None, metavar="V", help=f"distillation '{key}'")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from ..api import train

    argv, kv = split_key_values(argv)
    args, rest = build_parser().parse_known_args(argv)
    overrides = parse_overrides(rest + kv)
    kd = {k: v for k, v in vars(args).items() if k.startswith("kd_") and k != "kd_cfg" and v is not None}
    if args.resume:
        if args.resume is True:
            raise KDError("--resume needs the path of the run's last.pt, e.g. --resume runs/kd/train/weights/last.pt")
        trainer = train(args.resume, data=args.data or _data_of(args.resume), resume=args.resume, **overrides)
    else:
        if args.teacher is None:
            raise KDError("no teacher given: pass --teacher path/to/teacher.pt (a trained checkpoint)")
        trainer = train(args.student, teacher=args.teacher, data=args.data, kd_cfg=args.kd_cfg, **kd, **overrides)
    print(f"\nbest: {trainer.best}\nlast: {trainer.last}\nrun:  {trainer.save_dir}")
    return 0


def _data_of(checkpoint: str) -> str:
    """The dataset a run was trained on, read from its checkpoint's train_args."""
    from ..core.checkpoints import load_checkpoint_dict

    try:
        return load_checkpoint_dict(checkpoint)["train_args"]["data"]
    except FileNotFoundError:
        raise KDError(f"resume checkpoint '{checkpoint}' not found: pass the run's weights/last.pt") from None
    except Exception as e:
        raise KDError(f"resume checkpoint '{checkpoint}' is unreadable ({type(e).__name__}): pass the run's weights/last.pt") from e
