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
    CLASS_KL,
    FEATURE_LOSSES,
    MGDGenerator,
    box_distillation_loss,
    class_distillation_loss,
    cwd_loss,
    score_weighted_mse_loss,
)

if TYPE_CHECKING:
    from .config import KDConfig


@dataclass
class TermInputs:
    """What every term's loss may read for one batch (teacher tensors are detached, float32, finite).

    student / teacher: raw head outputs ``{"boxes": (B, 4*reg_max, A), "scores": (B, nc, A), "feats": [(B, C_i, H_i, W_i)]}``.
    confidence: (B, A) teacher confidence per anchor. reg_max: DFL bins of both heads.
    adapters / generators: the student-side modules of feature terms (None when not needed).
    """

    student: dict[str, Any]
    teacher: dict[str, Any]
    confidence: torch.Tensor
    config: "KDConfig"
    reg_max: int
    adapters: nn.ModuleList | None = None
    generators: nn.ModuleList | None = None


def class_loss_kind(config: "KDConfig", nc: int) -> str:
    """The class loss used for ``nc`` classes: a softmax over a single class is identically 0, so one-class data
    (person, vehicle ...) always gets the per-class binary KL."""
    return "bkl" if nc == 1 else config.cls_loss


def _class_term(x: TermInputs) -> torch.Tensor:
    kind = class_loss_kind(x.config, x.student["scores"].shape[1])
    return class_distillation_loss(x.student["scores"], x.teacher["scores"], x.config.temperature, kind, x.confidence)


def _box_term(x: TermInputs) -> torch.Tensor:
    return box_distillation_loss(x.student["boxes"], x.teacher["boxes"], x.reg_max, x.config.temperature, x.confidence)


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


def _box_unavailable(student_head: nn.Module, teacher_head: nn.Module) -> str | None:
    s, t = int(student_head.reg_max), int(teacher_head.reg_max)
    if s <= 1 or t <= 1:
        return f"the {'student' if s <= 1 else 'teacher'} has no DFL bins (reg_max=1)"
    if s != t:
        return f"teacher reg_max {t} != student {s}"
    return None


@dataclass(frozen=True)
class Term:
    """One distillation term.

    name: results.csv / progress-bar column. weight_key: its weight in the config (0 turns it off).
    loss: pure function of :class:`TermInputs` -> unweighted scalar. needs_adapters: trains student-side
    adapters (and MGD generators). unavailable: (student_head, teacher_head) -> reason the pair cannot use it, or None.
    """

    name: str
    weight_key: str
    loss: Callable[[TermInputs], torch.Tensor]
    description: str
    needs_adapters: bool = False
    unavailable: Callable[[nn.Module, nn.Module], str | None] | None = None


TERMS: tuple[Term, ...] = (
    Term("kd_cls", "cls", _class_term, "class logits: KL between teacher and student class scores at each anchor "
         "(`cls_loss`: softmax over classes, or per-class binary), temperature `temperature`, teacher-confidence weighted"),
    Term("kd_box", "box", _box_term, "box distributions: KL between the DFL bins of each box side (localization "
         "distillation), temperature `temperature`, teacher-confidence weighted", unavailable=_box_unavailable),
    Term("kd_feat", "feat", _feature_term, "neck features at the Detect inputs through learned 1x1 adapters "
         "(`feat_loss`: CWD, MGD or score-weighted MSE)", needs_adapters=True),
)
TERM_NAMES = tuple(t.name for t in TERMS)
#: config keys whose value is one of a fixed set of names
CHOICES = {"cls_loss": tuple(CLASS_KL), "feat_loss": FEATURE_LOSSES}


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
