"""The teacher-student pair's sizes and the one-line notes ``train_kd`` gives about them: the capacity gap, the cost.

A student far smaller than its teacher often learns less from it than from a mid-sized one (Mirzadeh et al., "Improved
Knowledge Distillation via Teacher Assistant", AAAI 2020). :func:`gap_warning` names the measured sizes of the pair
when the teacher has :data:`GAP_RATIO` times the student's parameters (FLOPs quoted beside) and points to the teacher-assistant
chain (``--assistant``, docs/self_distillation.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

#: teacher/student parameter ratio from which the gap warning is given. For YOLO11 students of size n: x (22x params,
#: 30x FLOPs) and l (9.8x, 14x) are above it, m (7.7x, 11x) and s (3.6x, 3.3x) below. A rule of thumb, not measured here.
GAP_RATIO = 8.0
#: a student counts as larger than its teacher from this parameter ratio on: a teacher of the student's own
#: architecture, BN-folded, counts about 0.3% fewer parameters and is the cheap teacher docs/bench/pays.md recommends
LARGER_RATIO = 1.05


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_gflops(model: nn.Module, imgsz: int) -> float:
    """GFLOPs at ``imgsz`` (Ultralytics' THOP count; 0.0 when it cannot be measured)."""
    from ultralytics.utils.torch_utils import get_flops

    return float(get_flops(model, imgsz))


@dataclass(frozen=True)
class PairSize:
    """Parameters and GFLOPs (at ``imgsz``; 0.0 when they cannot be counted) of a student and its teacher."""

    student_params: int
    teacher_params: int
    student_gflops: float
    teacher_gflops: float
    imgsz: int


def pair_size(student: nn.Module, teacher: nn.Module, imgsz: int = 640) -> PairSize:
    """Count both models once (a BN-folded teacher counts a few thousand parameters fewer)."""
    return PairSize(num_params(student), num_params(teacher), model_gflops(student, imgsz), model_gflops(teacher, imgsz), imgsz)


def step_arithmetic(student_gflops: float, teacher_gflops: float) -> float:
    """Arithmetic of a distilled training step over a plain one, per image: a training step is about three forward
    passes of the student (forward and backward), and the teacher adds one forward pass of its own.

    On this project's CPU (docs/bench/pays.md; bfloat16 teacher, data loading and validation counted) yolo11s -> yolo11n
    counts 2.1 and measured 1.33-1.37x per epoch; yolo11n -> yolo11n counts 1.33 and measured 1.16x per epoch. On a GPU
    (docs/bench/gpu.md; H200, 640, AMP, float16 teacher) yolo11s -> yolo11n measured 1.15x per step at batch 16 and 1.26x
    at batch 64: an upper bound, then, as the student's optimizer, assigner and loss are not counted.
    """
    return 1.0 + teacher_gflops / (3.0 * student_gflops)


def cost_note(size: PairSize) -> str | None:
    """One line naming what the teacher adds to every training step, or None when FLOPs could not be counted."""
    if size.student_gflops <= 0 or size.teacher_gflops <= 0:
        return None
    r = step_arithmetic(size.student_gflops, size.teacher_gflops)
    return (f"yolo_kd: the teacher adds {100 * (r - 1):.0f}% to the arithmetic of each training step ({size.teacher_gflops:.1f} "
            f"vs {size.student_gflops:.1f} GFLOPs at {size.imgsz}); at equal compute distillation pays only when it is worth "
            "that many more epochs, and a smaller teacher of similar accuracy costs less (docs/bench/pays.md)")


def gap_warning(student: nn.Module, teacher: nn.Module, imgsz: int = 640, size: PairSize | None = None) -> str | None:
    """One line when the teacher is far larger than the student (or smaller than it), else None.

    Args:
        student, teacher: the two DetectionModels (a BN-folded teacher counts a few thousand parameters fewer).
        imgsz: image size of the FLOPs count.
        size: the pair's counts when already made (:func:`pair_size`).
    """
    size = size or pair_size(student, teacher, imgsz)
    ps, pt, fs, ft = size.student_params, size.teacher_params, size.student_gflops, size.teacher_gflops
    if ps > LARGER_RATIO * pt:
        return f"yolo_kd: the student ({ps:,} params) is larger than the teacher ({pt:,})"
    rp = pt / max(ps, 1)
    rf = ft / fs if fs > 0 and ft > 0 else 0.0
    if rp < GAP_RATIO:
        return None
    flops = f" and {rf:.1f}x its FLOPs ({ft:.1f} vs {fs:.1f} GFLOPs at {imgsz})" if rf else ""
    return (
        f"yolo_kd: the teacher has {rp:.1f}x the student's parameters ({pt / 1e6:.1f}M vs {ps / 1e6:.1f}M){flops}: a "
        "student this much smaller often learns less from it; consider a teacher assistant (--assistant yolo11m.yaml "
        "or a mid-sized .pt) or a smaller teacher, see docs/self_distillation.md"
    )
