"""``tools/train_kd.py`` / ``yolo-kd train``: distill a teacher into a student.

    python tools/train_kd.py --teacher yolo11x.pt --student yolo11n.pt --data my.yaml --epochs 100 --imgsz 640 batch=16 device=0
    yolo-kd train teacher=yolo11x.pt model=yolo11n.pt data=my.yaml epochs=100 imgsz=640 kd_cls=0.5   # the same, Ultralytics-style

Every option is also a ``key=value`` (``model=`` is the student, as in ``yolo train``); any other Ultralytics
training argument passes through, as ``--key value``, ``--key=value`` or ``key=value``. Distillation settings:
``--kd-cfg FILE`` and ``--kd-<key> VALUE`` (keys of cfg/kd_default.yaml). A setting given twice with different
values is an error. ``--resume last.pt`` continues a run with its own settings; only ``--teacher``, ``--data``
and the arguments Ultralytics lets a resume change (batch, device, workers, ...) are used, the others are named
in one line as ignored.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

from ..core.errors import KDError
from ..distill.config import config_keys
from .args import ArgParser, parse_args

DEFAULT_STUDENT = "yolo11n.yaml"

#: training arguments a resumed run takes from the command line (Ultralytics' BaseTrainer.check_resume `allowed`,
#: which updates these and ignores every other argument in favour of the checkpoint's)
RESUME_ALLOWED = frozenset({
    "imgsz", "batch", "device", "close_mosaic", "augmentations", "save_period", "workers", "cache", "patience",
    "time", "freeze", "val", "plots", "channels_last",
})


def build_parser() -> ArgParser:
    p = ArgParser(
        prog="train_kd",
        description="Train a YOLO student with knowledge distillation from a frozen teacher. Every option is also "
        "key=value (model= is the student); other Ultralytics arguments pass through as key=value or --key value.",
    )
    p.add_argument("--student", "--model", dest="student", default=None,
                   help=f"student .pt (fine-tune) or model .yaml (from scratch); model= is the same (default {DEFAULT_STUDENT})")
    p.add_argument("--teacher", help="trained teacher .pt (checkpoints are pickles: only load files you trust), or self: "
                   "online self-distillation from a frozen EMA snapshot of the student")
    p.add_argument("--generations", type=int, default=None, metavar="N",
                   help="born-again: N runs, generation k distilled from generation k-1's best.pt into a fresh student")
    p.add_argument("--assistant", default=None, metavar="MODEL",
                   help="teacher assistant (.yaml or .pt): distil the teacher into it first, then it into the student")
    p.add_argument("--data", help="dataset YAML, or synthetic[:tiny|small|bench] for the generated shapes set")
    p.add_argument("--resume", nargs="?", const=True, default=None,
                   help="continue a run from its last.pt (path), with that run's settings")
    p.add_argument("--kd-cfg", help="distillation YAML overriding cfg/kd_default.yaml")
    for key in config_keys():
        p.add_argument(f"--kd-{key.replace('_', '-')}", dest=f"kd_{key}", default=None, metavar="V", help=f"distillation '{key}'")
    return p


def resolve(argv: Sequence[str] | None) -> tuple[dict[str, Any], str | None]:
    """The ``yolo_kd.train(**kwargs)`` call that ``argv`` asks for, and the one line to print first (or None).

    Nothing is trained or created; the resume checkpoint, if any, is read for its dataset.
    """
    parsed = parse_args(build_parser(), argv, passthrough=True)
    args, overrides, given = parsed
    kd = {k: v for k, v in vars(args).items() if k.startswith("kd_") and k != "kd_cfg" and v is not None}
    if not args.resume:
        if args.teacher is None:
            raise KDError("no teacher given: pass --teacher path/to/teacher.pt (or teacher=...), a trained checkpoint")
        kwargs = dict(student=args.student or DEFAULT_STUDENT, teacher=args.teacher, data=args.data, **kd, **overrides)
        if args.kd_cfg is not None:
            kwargs["kd_cfg"] = args.kd_cfg
        kwargs.update({k: v for k, v in (("generations", args.generations), ("assistant", args.assistant)) if v is not None})
        return kwargs, None

    last = args.resume
    if last is True:  # Ultralytics' habit: `resume model=path/to/last.pt`
        if not (args.student and str(args.student).endswith(".pt")):
            raise KDError("--resume needs the path of the run's last.pt, e.g. --resume runs/kd/train/weights/last.pt")
        last, used_as_checkpoint = args.student, "student"
    else:
        used_as_checkpoint = None
    used = {"resume", "teacher", "data"} | ({used_as_checkpoint} if used_as_checkpoint else set())
    kept = {k: v for k, v in overrides.items() if k in RESUME_ALLOWED}
    ignored = [spelled for key, spelled in given.items() if key not in used and key not in kept]
    kwargs = dict(student=str(last), data=args.data or _data_of(str(last)), resume=str(last), **kept)
    if args.teacher is not None:
        kwargs["teacher"] = args.teacher  # documented: --teacher overrides the path recorded in the run's kd.yaml
    note = None
    if ignored:
        note = f"yolo_kd: --resume continues {last} with its own settings; ignored: {', '.join(ignored)}"
    return kwargs, note


def main(argv: Sequence[str] | None = None) -> int:
    from ..api import train

    kwargs, note = resolve(argv)
    if note:
        print(note, file=sys.stderr)
    trainer = train(**kwargs)
    for role, run, best in getattr(trainer, "chain", [])[:-1]:
        print(f"\n{role}: {best}")
    print(f"\nbest: {trainer.best}\nlast: {trainer.last}\nrun:  {trainer.save_dir}")
    return 0


def _data_of(checkpoint: str) -> str:
    """The dataset a run was trained on, read from its checkpoint's train_args."""
    from ..core.checkpoints import load_checkpoint_dict

    if not Path(checkpoint).is_file():
        raise KDError(f"resume checkpoint '{checkpoint}' not found: pass the run's weights/last.pt")
    try:
        return load_checkpoint_dict(checkpoint)["train_args"]["data"]
    except Exception as e:
        raise KDError(f"resume checkpoint '{checkpoint}' is unreadable ({type(e).__name__}): pass the run's weights/last.pt") from e

