"""``tools/prune.py`` / ``yolo-kd prune``: structured channel pruning with distillation fine-tuning.

    python tools/prune.py --model runs/kd/exp/weights/best.pt --teacher teacher.pt --data my.yaml \\
        --target-flops 0.5 --steps 4 --epochs-per-step 10

Writes ``<project>/<name>/weights/best.pt`` (loads in stock ``ultralytics.YOLO``), one fine-tuning run per step
(``stepK/``), ``prune_results.json``, ``prune_results.md`` and ``map_vs_gflops.png``; like Ultralytics, an existing
``<name>`` folder gives ``<name>-2``, ``<name>-3`` ... unless ``--exist-ok``. Every option is also a ``key=value``
(``model=best.pt target_flops=0.5 kd_cls=0.5``); other Ultralytics training arguments (lr0, optimizer, workers,
seed, ...) pass through to the fine-tuning as ``key=value`` or ``--key value``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..core.errors import KDError
from .args import ArgParser, parse_args

#: Ultralytics arguments this tool sets itself, and why
RESERVED = {"epochs": "use --epochs-per-step (epochs_per_step=) and --final-epochs (final_epochs=)"}


def build_parser() -> ArgParser:
    from ..distill.config import config_keys
    from ..prune.pruner import ALLOCATIONS, IMPORTANCES

    p = ArgParser(
        prog="prune",
        description="Iteratively prune a YOLO detector's channels to a FLOPs target, fine-tuning with distillation "
        "after each step. Other Ultralytics training arguments pass through as key=value or --key value.",
    )
    p.add_argument("--model", required=True, help="trained detection checkpoint to prune (.pt)")
    p.add_argument("--teacher", help="teacher .pt for the fine-tuning (default: the unpruned --model itself)")
    p.add_argument("--data", required=True, help="dataset YAML, or synthetic[:tiny|small|bench]")
    p.add_argument("--target-flops", type=float, default=0.5, help="fraction of the GFLOPs to keep, in (0, 1) (default 0.5)")
    p.add_argument("--steps", type=int, default=4, help="pruning steps to reach the target (default 4)")
    p.add_argument("--epochs-per-step", type=int, default=10, help="fine-tuning epochs after each step, 0 = none (default 10)")
    p.add_argument("--final-epochs", type=int, default=None,
                   help="fine-tuning epochs after the last step (default: --epochs-per-step); a longer final recovery")
    p.add_argument("--fade", type=float, default=0.0, metavar="SHARE",
                   help="train each step on the uncut model while its channels fade out over this share of its epochs, "
                   "then cut them exactly (0 = cut first, fine-tune after) (default 0)")
    p.add_argument("--importance", default="l2", choices=sorted(IMPORTANCES), help="channel importance criterion (default l2)")
    p.add_argument("--allocation", default="uniform", choices=list(ALLOCATIONS),
                   help="how the cut is shared: uniform (every layer alike), global (least important channels anywhere), "
                   "flops (least important per MAC) (default uniform)")
    p.add_argument("--round-to", type=int, default=8, help="kept channels are a multiple of this (default 8)")
    p.add_argument("--ignore", nargs="*", default=[], metavar="LAYER", help="layer indices or module names to leave unpruned")
    p.add_argument("--imgsz", type=int, default=640, help="fine-tuning and validation image size (default 640)")
    p.add_argument("--batch", type=int, default=16, help="fine-tuning batch size (default 16)")
    p.add_argument("--device", default=None, help="cpu, 0, 0,1 ... (default: Ultralytics' choice)")
    p.add_argument("--kd-cfg", help="distillation YAML for the fine-tuning (default cfg/kd_default.yaml)")
    p.add_argument("--project", default="runs/prune", help="output root (default runs/prune)")
    p.add_argument("--name", default="exp", help="run name (default exp; exp-2, exp-3 ... when it exists)")
    p.add_argument("--exist-ok", action="store_true", help="write into an existing <project>/<name> instead of a new <name>-2")
    for key in config_keys():
        p.add_argument(f"--kd-{key.replace('_', '-')}", dest=f"kd_{key}", default=None, metavar="V", help=f"distillation '{key}' of the fine-tuning")
    p.add_argument("--latency-imgsz", type=int, nargs="*", default=None, metavar="PX",
                   help="ONNX sizes to time (default: --imgsz; give no value to skip timing)")
    p.add_argument("--latency-seconds", type=float, default=6.0, help="timing budget per model and size (default 6)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default 2)")
    p.add_argument("--flops-imgsz", type=int, default=640, help="image size for GFLOPs (default 640, as Ultralytics)")
    p.add_argument("--max-map-drop", type=float, default=None, metavar="POINTS",
                   help="stop once a step loses more than this many mAP50-95 points (e.g. 1.0)")
    p.add_argument("--no-plot", action="store_true", help="do not write map_vs_gflops.png")
    p.add_argument("--no-distill", action="store_true",
                   help="fine-tune without a teacher (plain detection loss) instead of distilling from the unpruned model")
    p.add_argument("--control", action="store_true",
                   help="also fine-tune the unpruned model for steps x epochs-per-step epochs: the fair mAP reference")
    return p


def resolve(argv: Sequence[str] | None) -> tuple[Any, dict[str, Any]]:
    """The parsed options of ``argv`` (``name`` already incremented unless ``--exist-ok``) and the overrides passed
    to the fine-tuning (other Ultralytics arguments and ``kd_<key>`` settings). Nothing is created."""
    from ultralytics.utils.files import increment_path

    args, overrides, _ = parse_args(build_parser(), argv, passthrough=True, reserved=RESERVED)
    kd = {k: v for k, v in vars(args).items() if k.startswith("kd_") and k != "kd_cfg" and v is not None}
    if kd:
        from ..distill.config import load_kd_config

        load_kd_config(args.kd_cfg, **{k[3:]: v for k, v in kd.items()})  # a bad setting: one line now, not after step 1
    overrides.update(kd)
    if not args.exist_ok:
        args.name = increment_path(Path(args.project).resolve() / args.name).name
    return args, overrides


def main(argv: Sequence[str] | None = None) -> int:
    from ..prune.loop import prune_iteratively

    args, overrides = resolve(argv)
    if args.max_map_drop is not None and args.max_map_drop < 0:
        raise KDError(f"--max-map-drop {args.max_map_drop} is negative: pass the mAP50-95 points you accept to lose, e.g. 1.0")
    if args.threads < 1:
        raise KDError(f"--threads {args.threads} is invalid: pass 1 or more onnxruntime threads")
    result = prune_iteratively(
        args.model,
        args.data,
        teacher=args.teacher,
        target_flops=args.target_flops,
        steps=args.steps,
        epochs_per_step=args.epochs_per_step,
        final_epochs=args.final_epochs,
        fade=args.fade,
        importance=args.importance,
        round_to=args.round_to,
        allocation=args.allocation,
        ignore=args.ignore,
        imgsz=args.imgsz,
        batch=args.batch,
        device=args.device,
        kd_cfg=args.kd_cfg,
        project=args.project,
        name=args.name,
        latency_imgsz=args.latency_imgsz,
        latency_seconds=args.latency_seconds,
        threads=args.threads,
        flops_imgsz=args.flops_imgsz,
        max_map_drop=None if args.max_map_drop is None else args.max_map_drop / 100,
        plot=not args.no_plot,
        control=args.control,
        distill=not args.no_distill,
        **overrides,
    )
    print("\n" + result.table + "\n")
    if result.stopped_early:
        print("stopped early: the last step lost more mAP50-95 than --max-map-drop")
    print(f"best:  {result.best}\njson:  {result.json}")
    if result.png:
        print(f"plot:  {result.png}")
    return 0
