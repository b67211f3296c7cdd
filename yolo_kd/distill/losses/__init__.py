"""Distillation losses: pure functions of student and teacher tensors (``logit_losses``, ``distance_losses``,
``feature_losses``).

Imports nothing else from yolo_kd; the term registry (``yolo_kd.distill.terms``) wires them to config keys.
"""

from .distance_losses import DISTANCE_LOSSES, distance_distillation_loss, side_distances
from .feature_losses import MGDGenerator, cwd_loss, score_weighted_mse_loss
from .logit_losses import ANCHOR_WEIGHTINGS, CLASS_KL, anchor_weight, box_distillation_loss, class_distillation_loss, teacher_confidence

#: feature loss names accepted in the config (``feat_loss``)
FEATURE_LOSSES = ("cwd", "mgd", "mse")
#: class loss names accepted in the config (``cls_loss``)
CLASS_LOSSES = tuple(CLASS_KL)

__all__ = [
    "CLASS_KL",
    "CLASS_LOSSES",
    "DISTANCE_LOSSES",
    "FEATURE_LOSSES",
    "MGDGenerator",
    "box_distillation_loss",
    "class_distillation_loss",
    "cwd_loss",
    "distance_distillation_loss",
    "score_weighted_mse_loss",
    "side_distances",
    "teacher_confidence",
    "anchor_weight",
    "ANCHOR_WEIGHTINGS",
]
