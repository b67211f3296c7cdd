"""Structured channel pruning of Ultralytics YOLO26 / YOLO11 / YOLOv8 detection models on torch-pruning's MetaPruner
(:mod:`.plan`). YOLO26's two head branches (one-to-many and the NMS-free one-to-one) are pruned alike and both kept.

What is pruned: every group of coupled conv channels in the backbone, neck and the hidden layers of the Detect head
(convs, their BatchNorms, depthwise convs, residual adds, concatenations, SPPF, the C2f/C3k2 halves in lock-step).
What is left alone, and why:

- the Detect head's last 1x1 convs (of both branches in YOLO26) and the DFL: their outputs are the box/class maps,
  whose shapes must not change;
- attention (``Attention`` in C2PSA / C3k2-attn, ``AAttn``): its heads are carved out of ``qkv`` by a reshape the
  graph cannot see, so the whole residual stream through an attention block keeps its width (and, because the two
  halves of C2PSA are pruned together, C2PSA's ``cv1`` keeps its width too);
- any layer the caller lists in ``ignore``.

Channels kept in each pruned group are rounded to the nearest multiple of ``round_to`` (never below ``round_to``).
The result uses only stock Ultralytics classes, so it saves, reloads, trains, validates and exports like any model.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from ..core.errors import KDError
from ..core.files import atomic_path
from .plan import IMPORTANCES, PruningPlan, eval_mode, kept_channels, split_wrapped

__all__ = [
    "PruningPlan",
    "kept_channels",
    "save_pruned_checkpoint",
    "IMPORTANCES",
    "ALLOCATIONS",
    "check_prunable",
    "check_prune_args",
    "count_params",
    "model_gflops",
    "ignored_modules",
    "prune_by_ratio",
    "prune_model",
    "zeroed_channels",
]

#: blocks that split or chunk feature maps in ways this module does not rewrite (YOLOv9/v10 families)
_UNSUPPORTED = {"ADown", "RepNCSPELAN4", "ELAN1", "C2fAttn", "PSA", "C2", "CBLinear", "CBFuse", "RepConv", "ImagePoolingAttn"}
_ATTENTION = {"Attention", "AAttn"}
#: how a FLOPs target is shared among the groups -> the cost exponent of :meth:`PruningPlan.removed_below`:
#: ``uniform`` every group loses the same fraction; ``global`` the least important channels anywhere go first;
#: ``flops`` the least important channels per MAC they cost go first (the cut lands on high-resolution layers)
ALLOCATIONS = {"uniform": None, "global": 0.0, "flops": 1.0}


def check_prunable(model: nn.Module, what: str = "model") -> nn.Module:
    """Return the Detect head of ``model`` or raise one line: not a detection model, or unsupported blocks."""
    from ..core.checkpoints import detect_head

    head = detect_head(model)
    if head is None:
        task = getattr(model, "task", None) or type(model).__name__
        raise KDError(
            f"{what} has no Detect head (task: {task}): pass a YOLO detection model (e.g. a yolo11n/yolov8n detect checkpoint)"
        )
    bad = sorted({type(m).__name__ for m in model.modules()} & _UNSUPPORTED)
    if bad:
        raise KDError(f"{what} contains blocks that cannot be pruned yet ({', '.join(bad)}): prune a YOLO11 or YOLOv8 model")
    return head


def count_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def model_gflops(model: nn.Module, imgsz: int = 640) -> float:
    """GFLOPs of one ``imgsz`` x ``imgsz`` image, computed exactly as Ultralytics' ``model.info()`` reports them."""
    from ultralytics.utils.torch_utils import get_flops

    flops = get_flops(model, imgsz)
    if not flops:  # thop missing or failed: count MACs with torch-pruning instead (2 FLOPs per MAC)
        import torch_pruning as tp

        p = next(model.parameters())
        with eval_mode(model):
            macs, _ = tp.utils.count_ops_and_params(model, torch.zeros(1, 3, imgsz, imgsz, device=p.device, dtype=p.dtype))
        flops = 2 * macs / 1e9
    return float(flops)


def ignored_modules(model: nn.Module, ignore: Iterable[int | str | nn.Module] = ()) -> list[nn.Module]:
    """Modules whose output channels must stay: Detect's final convs and DFL, attention, plus ``ignore``.

    ``ignore`` items are layer indices into ``model.model`` (e.g. 22), module names (e.g. "model.22.cv2") or modules.
    """
    head = check_prunable(model)
    out: list[nn.Module] = [head.dfl]
    for name in ("cv2", "cv3", "cv4", "one2one_cv2", "one2one_cv3"):
        branches = getattr(head, name, None)
        if isinstance(branches, nn.ModuleList):
            out += [seq[-1] for seq in branches]
    out += [m for m in model.modules() if type(m).__name__ in _ATTENTION]
    names = dict(model.named_modules())
    for item in ignore:
        if isinstance(item, nn.Module):
            out.append(item)
        elif isinstance(item, int) or str(item).isdigit():
            i = int(item)
            if not 0 <= i < len(model.model):
                raise KDError(f"--ignore layer {i} does not exist: pass layer indices between 0 and {len(model.model) - 1}")
            out.append(model.model[i])
        elif str(item) in names:
            out.append(names[str(item)])
        else:
            raise KDError(f"--ignore '{item}' is neither a layer index nor a module name: use e.g. 22 or model.22.cv2")
    return out


def check_prune_args(target_flops: float | None = None, ratio: float | None = None, round_to: int = 8,
                     importance: str = "l2", allocation: str = "uniform") -> None:
    """The one check of the pruning settings (library and ``yolo-kd prune``): one KDError line per bad value."""
    if target_flops is not None and not 0.0 < target_flops < 1.0:
        raise KDError(
            f"--target-flops {target_flops} is out of range: pass the fraction of GFLOPs to keep, between 0 and 1 (0.5 halves them)"
        )
    if ratio is not None and not 0.0 <= ratio < 1.0:
        raise KDError(f"channel pruning ratio {ratio} is out of range: pass a value in [0, 1)")
    if not isinstance(round_to, int) or round_to < 1:
        raise KDError(f"--round-to {round_to} is invalid: pass a positive integer such as 8 (1 disables rounding)")
    if importance not in IMPORTANCES:
        raise KDError(f"unknown --importance '{importance}': choose one of {', '.join(IMPORTANCES)}")
    if allocation not in ALLOCATIONS:
        raise KDError(f"unknown --allocation '{allocation}': choose one of {', '.join(ALLOCATIONS)}")


def prune_by_ratio(
    model: nn.Module,
    ratio: float,
    importance: str = "l2",
    round_to: int = 8,
    ignore: Sequence[int | str | nn.Module] = (),
    trace_imgsz: int = 64,
) -> nn.Module:
    """In place: remove ``ratio`` of the channels of every prunable group (local, uniform), then fold to stock blocks.

    Args:
        model: a DetectionModel (float, any device).
        ratio: fraction of channels removed per group, in [0, 1); kept counts follow :func:`kept_channels`.
        importance: one of :data:`IMPORTANCES`.
        round_to: kept channels are a multiple of this.
        ignore: extra layers to keep whole (see :func:`ignored_modules`).
        trace_imgsz: side of the dummy image used to trace the graph (a multiple of the model's max stride).
    Returns:
        ``model`` itself, pruned, made of stock Ultralytics modules only.
    """
    check_prune_args(None, ratio, round_to, importance)
    ignored_modules(model, ignore)  # validate before touching the model
    if ratio > 0:
        with split_wrapped(model):
            plan = PruningPlan(model, importance, round_to, ignored_modules(model, ignore), trace_imgsz)
            plan.apply(plan.removed(ratio))
    return model


def prune_model(
    model: nn.Module,
    target_flops: float = 0.5,
    importance: str = "l2",
    round_to: int = 8,
    ignore: Sequence[int | str | nn.Module] = (),
    imgsz: int = 640,
    max_ratio: float = 0.9,
    trace_imgsz: int = 64,
    allocation: str = "uniform",
    zero: bool = False,
) -> nn.Module:
    """Prune a copy of ``model`` to at most ``target_flops`` x its GFLOPs, keeping as many channels as possible.

    With ``allocation="uniform"`` every group loses the same fraction of its channels (rounded to ``round_to``): the
    smallest fraction whose predicted FLOPs meet the target is found by bisection (no trial pruning). The other
    allocations bisect an importance threshold instead (:meth:`PruningPlan.removed_below`). Groups whose rounding tips over at that
    fraction then get their channels back, most-pruned first, while the target still holds; finally the FLOPs are
    checked with Ultralytics' counter (and the fraction nudged up in the rare case the prediction was optimistic).

    Args:
        model: a DetectionModel; it is not modified.
        target_flops: fraction of the input model's GFLOPs to keep, in (0, 1); 0.5 halves the FLOPs.
        importance, round_to, ignore, trace_imgsz: see :func:`prune_by_ratio`.
        imgsz: image side used to count FLOPs.
        max_ratio: largest fraction of its channels any group may lose.
        allocation: how the cut is shared among groups, one of :data:`ALLOCATIONS` (``uniform``: every group loses
            the same fraction; ``global``: the least important channels anywhere; ``flops``: the least important
            per MAC they cost).
        zero: keep the copy's shape and silence the channels the cut would remove instead (their BatchNorm scale and
            shift set to 0, see :meth:`PruningPlan.apply`); :func:`zeroed_channels` lists them.
    Returns:
        The pruned copy (stock modules): the largest found at or under the target or, if the target is out of reach
        (e.g. too many layers ignored), the copy pruned at ``max_ratio``; :func:`model_gflops` tells which.
    """
    check_prune_args(target_flops, None, round_to, importance, allocation)
    ignored_modules(model, ignore)  # validate
    base = model_gflops(model, imgsz)
    goal = target_flops * base
    lo = 0.0
    for _ in range(3):  # almost always once; again only if the measured FLOPs miss the goal
        out = copy.deepcopy(model)
        with split_wrapped(out):
            plan = PruningPlan(out, importance, round_to, ignored_modules(out, ignore), trace_imgsz)
            other = base - 2e-9 * plan.conv_macs(plan.removed(0.0), imgsz)  # attention, DFL, ...: kept whole

            def fits(removed: list[int]) -> bool:
                return other + 2e-9 * plan.conv_macs(removed, imgsz) <= goal

            alpha = ALLOCATIONS[allocation]
            if alpha is None:  # x: the ratio every group loses
                cut, hi = plan.removed, max_ratio
            else:  # x: the importance-per-cost threshold under which channels go, in any group
                cut, hi = (lambda x: plan.removed_below(x, alpha, max_ratio)), plan.max_key(alpha)
            a, b = lo * hi, hi
            if fits(cut(b)):
                for _ in range(40):  # the smallest cut whose predicted FLOPs meet the goal
                    mid = (a + b) / 2
                    a, b = (a, mid) if fits(cut(mid)) else (mid, b)
            removed, lighter = cut(b), cut(a)
            tipped = [i for i in range(len(removed)) if lighter[i] < removed[i]]
            for i in sorted(tipped, key=lambda i: -removed[i] / plan.groups[i]["channels"]):
                trial = removed[:i] + [lighter[i]] + removed[i + 1:]
                if fits(trial):
                    removed = trial
            plan.apply(removed, zero=zero)
        if zero or model_gflops(out, imgsz) <= goal * (1 + 1e-6) or b >= hi:
            return out
        lo = b / hi + 1e-3  # as a fraction of the search range
    return out


def zeroed_channels(model: nn.Module) -> dict[str, list[int]]:
    """``{BatchNorm name: channel indices}`` of the channels whose BatchNorm scale and shift are both exactly 0: the
    channels a ``prune_model(..., zero=True)`` copy silenced (a trained BatchNorm has no such channel otherwise)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            idx = torch.nonzero((m.weight.detach() == 0) & (m.bias.detach() == 0)).flatten().tolist()
            if idx:
                out[name] = idx
    return out


def save_pruned_checkpoint(model: nn.Module, path: str | Path, train_args: dict | None = None, meta: dict | None = None) -> Path:
    """Write ``model`` atomically as a stock Ultralytics checkpoint (FP16 weights, like a trainer's ``best.pt``).

    ``train_args`` (e.g. the source checkpoint's) lets ``YOLO(path)`` reuse the original settings; ``meta`` (plain
    values) is stored under ``"yolo_kd_pruning"``. Returns ``path``.
    """
    from datetime import datetime

    from ultralytics import __version__

    m = copy.deepcopy(model).float()
    if hasattr(m, "criterion"):
        m.criterion = None  # training-only state
    ckpt = {
        "date": datetime.now().isoformat(),
        "version": __version__,
        "epoch": -1,
        "best_fitness": None,
        "model": m.half(),
        "ema": None,
        "updates": None,
        "optimizer": None,
        "train_args": dict(train_args or {}),
        "train_metrics": None,
        "yolo_kd_pruning": dict(meta or {}),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return path
