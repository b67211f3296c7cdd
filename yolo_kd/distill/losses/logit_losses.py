"""Logit distillation on the detection head: class scores and DFL box distributions.

Teacher and student share strides and input size, so their anchors (B, A) line up one to one.
Every loss is weighted per anchor by the teacher's confidence so the background anchors, which
are the vast majority, do not drown the signal from the objects. All are differentiable in the
student only and contain no host syncs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def teacher_confidence(teacher_scores: torch.Tensor) -> torch.Tensor:
    """Per-anchor teacher confidence ``max_c sigmoid(logit)``.

    Args:
        teacher_scores: (B, nc, A) class logits of the teacher.
    Returns:
        (B, A) weights in (0, 1).
    """
    return teacher_scores.detach().float().sigmoid().amax(1)


ANCHOR_WEIGHTINGS = ("teacher", "max")


def anchor_weight(teacher_scores: torch.Tensor, student_scores: torch.Tensor, kind: str = "teacher") -> torch.Tensor:
    """Per-anchor distillation weight.

    ``teacher``: the teacher's confidence (:func:`teacher_confidence`). ``max``: the larger of the teacher's and the
    (detached) student's confidence, so an anchor where the student fires on background that the teacher calls
    empty is weighted too and its false positive is pushed down.

    Args:
        teacher_scores, student_scores: (B, nc, A) class logits.
        kind: one of :data:`ANCHOR_WEIGHTINGS`.
    Returns:
        (B, A) weights in (0, 1), without gradient.
    """
    weight = teacher_confidence(teacher_scores)
    if kind == "max":
        weight = torch.maximum(weight, teacher_confidence(student_scores))
    return weight


def _weighted_mean(per_anchor: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Sum of ``per_anchor * weight`` over (B, A) divided by the weight mass (stays on device)."""
    return (per_anchor * weight).sum() / weight.sum().clamp(min=1e-6)


def binary_kl_per_anchor(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-class Bernoulli KL(teacher || student) at temperature T, summed over classes.

    YOLO's classifier is a set of independent sigmoids, so each class is its own two-way
    distribution; KL = BCE(student, p_t) - BCE(teacher, p_t), exactly 0 when the logits agree.

    Args:
        student_logits, teacher_logits: (B, nc, A) class logits.
    Returns:
        (B, A) KL summed over classes, scaled by T² (Hinton et al., 2015).
    """
    s = student_logits.float() / temperature
    t = teacher_logits.detach().float() / temperature
    p_t = t.sigmoid()
    kl = F.binary_cross_entropy_with_logits(s, p_t, reduction="none") - F.binary_cross_entropy_with_logits(
        t, p_t, reduction="none"
    )
    return kl.sum(1) * temperature**2


def softmax_kl_per_anchor(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) between softmax distributions over classes at each anchor.

    Args:
        student_logits, teacher_logits: (B, nc, A) class logits.
    Returns:
        (B, A) KL scaled by T².
    """
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach().float() / temperature, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(1) * temperature**2


CLASS_KL = {"bkl": binary_kl_per_anchor, "softmax_kl": softmax_kl_per_anchor}


def class_distillation_loss(
    student_scores: torch.Tensor,
    teacher_scores: torch.Tensor,
    temperature: float = 1.0,
    kind: str = "bkl",
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Teacher-confidence-weighted class-logit distillation.

    Args:
        student_scores, teacher_scores: (B, nc, A) class logits.
        temperature: T > 0; the loss is scaled by T² so its gradient size does not shrink with T.
        kind: "bkl" (per-class binary KL) or "softmax_kl".
        weight: (B, A) per-anchor weights; default :func:`teacher_confidence`.
    Returns:
        scalar loss, 0 when student equals teacher.
    """
    weight = teacher_confidence(teacher_scores) if weight is None else weight
    return _weighted_mean(CLASS_KL[kind](student_scores, teacher_scores, temperature), weight)


def box_distillation_loss(
    student_boxes: torch.Tensor,
    teacher_boxes: torch.Tensor,
    reg_max: int,
    temperature: float = 1.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Localization distillation (Zheng et al., 2022): KL between DFL bin distributions per box side.

    Args:
        student_boxes, teacher_boxes: (B, 4 * reg_max, A) DFL logits, sides (l, t, r, b) in blocks of reg_max.
        reg_max: bins per side (> 1).
        temperature: T > 0, loss scaled by T².
        weight: (B, A) per-anchor weights (normally the teacher confidence).
    Returns:
        scalar: weighted mean over anchors of the KL averaged over the 4 sides; 0 when equal.
    """
    b, _, a = student_boxes.shape
    log_p_s = F.log_softmax(student_boxes.float().view(b, 4, reg_max, a) / temperature, dim=2)
    log_p_t = F.log_softmax(teacher_boxes.detach().float().view(b, 4, reg_max, a) / temperature, dim=2)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(2).mean(1) * temperature**2  # (B, A)
    if weight is None:
        weight = torch.ones_like(kl)
    return _weighted_mean(kl, weight)
