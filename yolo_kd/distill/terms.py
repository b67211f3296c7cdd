"""The distillation term registry: every term is declared once, here.

A :class:`Term` names its results column, its weight key in ``cfg/kd_default.yaml`` and the pure loss it
computes. The model computes the enabled terms from this table, the config accepts their weight keys, the
trainer and results.csv show their columns, ``tools/compare.py --ablate`` trains each alone, and the docs
table is generated from it (``python -m yolo_kd.distill.terms``). Adding a term = one entry + its loss
function (+ its weight line in ``cfg/kd_default.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from .losses import (
    ANCHOR_WEIGHTINGS,
    CLASS_KL,
    FEATURE_LOSSES,
    DISTANCE_LOSSES,
    MGDGenerator,
    box_distillation_loss,
    class_distillation_loss,
    cwd_loss,
    distance_distillation_loss,
    score_weighted_mse_loss,
    side_distances,
)

if TYPE_CHECKING:
    from .config import KDConfig


@dataclass
class TermInputs:
    """What every term's loss may read for one batch (teacher tensors are detached, float32, finite).

    student / teacher: raw head outputs ``{"boxes": (B, 4*reg_max, A), "scores": (B, nc, A), "feats": [(B, C_i, H_i, W_i)]}``.
    confidence: (B, A) teacher confidence per anchor. reg_max / teacher_reg_max: DFL bins of each head (1: the head
    regresses side distances directly, as YOLO26's; teacher_reg_max 0 = same as reg_max).
    adapters / generators: the student-side modules of feature terms (None when not needed).
    one2one: the same inputs for the one-to-one branches of two end-to-end heads (YOLO26), else None.
    branch_gains: (one-to-many, one-to-one) shares of the per-branch terms when ``one2one`` is set: the student's
        detection loss's own shares (Ultralytics' ``E2ELoss``: 0.8 / 0.2 at the start, 0.1 / 0.9 at the end).
    """

    student: dict[str, Any]
    teacher: dict[str, Any]
    confidence: torch.Tensor
    config: "KDConfig"
    reg_max: int
    adapters: nn.ModuleList | None = None
    generators: nn.ModuleList | None = None
    teacher_reg_max: int = 0
    one2one: "TermInputs | None" = None
    branch_gains: tuple[float, float] = (1.0, 1.0)


def class_loss_kind(config: "KDConfig", nc: int) -> str:
    """The class loss used for ``nc`` classes: a softmax over a single class is identically 0, so one-class data
    (person, vehicle ...) always gets the per-class binary KL."""
    return "bkl" if nc == 1 else config.cls_loss


def _class_term(x: TermInputs) -> torch.Tensor:
    kind = class_loss_kind(x.config, x.student["scores"].shape[1])
    return class_distillation_loss(x.student["scores"], x.teacher["scores"], x.config.temperature, kind, x.confidence)


def box_form(student_reg_max: int, teacher_reg_max: int) -> str:
    """``dfl``: KL between DFL bins (both heads have the same bins); ``distance``: loss on side distances (a head
    without bins, e.g. YOLO26, or different bin counts; a DFL head's distance is its softmax-weighted bin index)."""
    return "dfl" if student_reg_max > 1 and student_reg_max == teacher_reg_max else "distance"


def _box_term(x: TermInputs) -> torch.Tensor:
    t_reg_max = x.teacher_reg_max or x.reg_max
    if box_form(x.reg_max, t_reg_max) == "dfl":
        return box_distillation_loss(x.student["boxes"], x.teacher["boxes"], x.reg_max, x.config.temperature, x.confidence)
    s, t = side_distances(x.student["boxes"], x.reg_max), side_distances(x.teacher["boxes"], t_reg_max)
    return distance_distillation_loss(s, t, x.confidence, x.config.box_loss)


def _feature_term(x: TermInputs) -> torch.Tensor:
    sizes = [f.shape[2] * f.shape[3] for f in x.teacher["feats"]]
    level_conf = x.confidence.split(sizes, dim=1)
    losses = []
    for i, (s, t) in enumerate(zip(x.student["feats"], x.teacher["feats"])):
        s = x.adapters[i](s)
        if x.config.feat_loss == "cwd":
            losses.append(cwd_loss(s, t, x.config.feat_temperature))
        elif x.config.feat_loss == "mse":
            losses.append(score_weighted_mse_loss(s, t, level_conf[i]))
        else:
            losses.append(x.generators[i](s, t))
    return torch.stack(losses).mean()


@dataclass(frozen=True)
class Term:
    """One distillation term.

    name: results.csv / progress-bar column. weight_key: its weight in the config (0 turns it off).
    loss: pure function of :class:`TermInputs` -> unweighted scalar. needs_adapters: trains student-side
    adapters (and MGD generators). unavailable: (student_head, teacher_head) -> reason the pair cannot use it, or None.
    per_branch: also computed on the one-to-one branches of two end-to-end heads, weighted by ``one2one``.
    """

    name: str
    weight_key: str
    loss: Callable[[TermInputs], torch.Tensor]
    description: str
    needs_adapters: bool = False
    unavailable: Callable[[nn.Module, nn.Module], str | None] | None = None
    per_branch: bool = False


TERMS: tuple[Term, ...] = (
    Term("kd_cls", "cls", _class_term, "class logits: KL between teacher and student class scores at each anchor "
         "(`cls_loss`: softmax over classes, or per-class binary), temperature `temperature`, teacher-confidence weighted; "
         "end-to-end pairs also on the one-to-one branch (`one2one`)", per_branch=True),
    Term("kd_box", "box", _box_term, "boxes: KL between the DFL bins of each box side (localization distillation, "
         "temperature `temperature`) when both heads have the same bins; otherwise (YOLO26, mixed pairs) `box_loss` on "
         "the side distances (L1 + GIoU); teacher-confidence weighted; end-to-end pairs also on the one-to-one branch",
         per_branch=True),
    Term("kd_feat", "feat", _feature_term, "neck features at the Detect inputs through learned 1x1 adapters "
         "(`feat_loss`: CWD, MGD or score-weighted MSE)", needs_adapters=True),
)
TERM_NAMES = tuple(t.name for t in TERMS)
#: config keys whose value is one of a fixed set of names
CHOICES = {"cls_loss": tuple(CLASS_KL), "box_loss": DISTANCE_LOSSES, "feat_loss": FEATURE_LOSSES}


def term_loss(term: Term, x: TermInputs) -> torch.Tensor:
    """Unweighted value of ``term`` on the one-to-many outputs; when both heads are end-to-end and the term is
    per-branch (class, box), split over the two branches as the detection loss splits itself:
    ``g_m * value(one2many) + one2one * g_o * value(one2one)`` with ``(g_m, g_o) = x.branch_gains`` (sum 1), so
    ``one2one=1`` distils an end-to-end pair with the weight a one-branch (YOLO11) pair gets."""
    value = term.loss(x)
    if term.per_branch and x.one2one is not None and x.config.one2one > 0:
        g_m, g_o = x.branch_gains
        value = g_m * value + x.config.one2one * g_o * term.loss(x.one2one)
    return value


def ablations() -> dict[str, dict[str, float]]:
    """``compare --ablate`` variants: each term alone (every other weight 0), e.g. ``{"kd-cls": {"box": 0, "feat": 0}}``."""
    return {f"kd-{t.weight_key}": {o.weight_key: 0 for o in TERMS if o is not t} for t in TERMS}


def markdown_table() -> str:
    """The docs table of the terms (docs/distillation.md embeds it; a test keeps the two equal)."""
    rows = [f"| `{t.name}` | `{t.weight_key}` | {t.description} |" for t in TERMS]
    return "| results column | weight key | what it distils |\n|---|---|---|\n" + "\n".join(rows) + "\n"


def adapter_modules(student_channels: list[int], teacher_channels: list[int], config: "KDConfig") -> tuple[nn.ModuleList, nn.ModuleList | None]:
    """Student-side adapters (and MGD generators) of the feature term, one per Detect input level."""
    from .adapters import ChannelAdapter

    adapters = nn.ModuleList(ChannelAdapter(s, t) for s, t in zip(student_channels, teacher_channels))
    generators = nn.ModuleList(MGDGenerator(t, config.mgd_mask_ratio) for t in teacher_channels) if config.feat_loss == "mgd" else None
    return adapters, generators


if __name__ == "__main__":
    print(markdown_table(), end="")
