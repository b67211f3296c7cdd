"""Box distillation on side distances, for heads without matching DFL bins (YOLO26's ``reg_max=1``, mixed pairs).

A YOLO26 head regresses each anchor's box directly as four side distances (l, t, r, b) from the anchor point,
in grid cells of its level; a DFL head (YOLOv8/YOLO11) predicts a distribution over ``reg_max`` bins per side
whose expectation is that distance. Both reduce to the same (B, 4, A) distances, and teacher and student
anchors line up one to one (same strides), so every pair of families can be compared side by side.

The loss per anchor is a scale-free L1 between the distances plus 1 - GIoU between the two boxes, averaged
with the teacher's confidence as weight: the IoU-based localization distillation of BCKD (Yang et al.,
"Bridging Cross-task Protocol Inconsistency for Distillation in Dense Object Detection", ICCV 2023), with
GIoU (Rezatofighi et al., CVPR 2019) and an L1 part as Ultralytics' own reg_max=1 box loss has one.
"""

from __future__ import annotations

import torch

#: box distance loss names accepted in the config (``box_loss``)
DISTANCE_LOSSES = ("l1_giou", "l1", "giou")


def side_distances(boxes: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Side distances (l, t, r, b) in grid cells from raw box outputs.

    Args:
        boxes: (B, 4 * reg_max, A) raw head output: distances themselves when ``reg_max`` is 1, else DFL logits
            with the sides in blocks of ``reg_max`` bins.
        reg_max: bins per side.
    Returns:
        (B, 4, A) float32: the distances, or the expected distance (softmax-weighted bin index) of a DFL head.
    """
    b, _, a = boxes.shape
    if reg_max <= 1:
        return boxes.float().view(b, 4, a)
    bins = torch.arange(reg_max, device=boxes.device, dtype=torch.float32).view(1, 1, reg_max, 1)
    return (boxes.float().view(b, 4, reg_max, a).softmax(2) * bins).sum(2)


def l1_per_anchor(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Sum of |student - teacher| over the 4 sides divided by the teacher box's width + height (at least 1 cell).

    Args:
        student, teacher: (B, 4, A) side distances.
    Returns:
        (B, A), scale-free: a side off by 10% of a box's size costs the same for a small and a large box.
    """
    t = teacher.detach()
    size = (t[:, 0] + t[:, 2] + t[:, 1] + t[:, 3]).clamp(min=1.0)
    return (student - t).abs().sum(1) / size


def giou_loss_per_anchor(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """1 - GIoU between the boxes two sets of side distances describe around the same anchor point.

    Args:
        student, teacher: (B, 4, A) side distances (l, t, r, b).
    Returns:
        (B, A) in [0, 2]; 0 where the boxes are equal. Anchors whose teacher box is empty (width or height <= 0,
        possible for an untrained reg_max=1 head) give 0: there is no box to match there.
    """
    t = teacher.detach()
    # boxes relative to the anchor: x1 = -l, y1 = -t, x2 = r, y2 = b
    sw, sh = (student[:, 0] + student[:, 2]).clamp(min=0), (student[:, 1] + student[:, 3]).clamp(min=0)
    tw, th = t[:, 0] + t[:, 2], t[:, 1] + t[:, 3]
    valid = (tw > 0) & (th > 0)
    tw, th = tw.clamp(min=0), th.clamp(min=0)
    iw = (torch.minimum(student[:, 0], t[:, 0]) + torch.minimum(student[:, 2], t[:, 2])).clamp(min=0)
    ih = (torch.minimum(student[:, 1], t[:, 1]) + torch.minimum(student[:, 3], t[:, 3])).clamp(min=0)
    inter = iw * ih
    union = sw * sh + tw * th - inter + eps
    cw = torch.maximum(student[:, 0], t[:, 0]) + torch.maximum(student[:, 2], t[:, 2])
    ch = torch.maximum(student[:, 1], t[:, 1]) + torch.maximum(student[:, 3], t[:, 3])
    enclose = cw.clamp(min=0) * ch.clamp(min=0) + eps
    giou = inter / union - (enclose - union) / enclose
    return (1.0 - giou) * valid


def distance_distillation_loss(
    student_dist: torch.Tensor, teacher_dist: torch.Tensor, weight: torch.Tensor | None = None, kind: str = "l1_giou"
) -> torch.Tensor:
    """Teacher-confidence-weighted box distillation on side distances.

    Args:
        student_dist, teacher_dist: (B, 4, A) side distances (see :func:`side_distances`).
        weight: (B, A) per-anchor weights (normally the teacher confidence); default uniform.
        kind: ``l1_giou`` (sum of both), ``l1`` or ``giou``.
    Returns:
        scalar: weighted mean over anchors; 0 when the distances are equal, growing with their difference.
        Gradients reach ``student_dist`` only.
    """
    if kind not in DISTANCE_LOSSES:
        raise ValueError(f"unknown box distance loss '{kind}': choose one of {', '.join(DISTANCE_LOSSES)}")
    per_anchor = 0
    if kind in ("l1_giou", "l1"):
        per_anchor = per_anchor + l1_per_anchor(student_dist.float(), teacher_dist.float())
    if kind in ("l1_giou", "giou"):
        per_anchor = per_anchor + giou_loss_per_anchor(student_dist.float(), teacher_dist.float())
    if weight is None:
        weight = torch.ones_like(per_anchor)
    return (per_anchor * weight).sum() / weight.sum().clamp(min=1e-6)
