"""The teacher-student capacity gap: sizes of the pair and the one-line warnings ``train_kd`` gives about it.

A student far smaller than its teacher often learns less from it than from a mid-sized one (Mirzadeh et al., "Improved
Knowledge Distillation via Teacher Assistant", AAAI 2020). :func:`gap_warning` names the measured sizes of the pair
when the teacher has :data:`GAP_RATIO` times the student's parameters (FLOPs quoted beside) and points to the teacher-assistant
chain (``--assistant``, docs/self_distillation.md).
"""

from __future__ import annotations

from torch import nn

#: teacher/student parameter ratio from which the gap warning is given. For YOLO11 students of size n: x (22x params,
#: 30x FLOPs) and l (9.8x, 14x) are above it, m (7.7x, 11x) and s (3.6x, 3.3x) below. A rule of thumb, not measured here.
GAP_RATIO = 8.0


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_gflops(model: nn.Module, imgsz: int) -> float:
    """GFLOPs at ``imgsz`` (Ultralytics' THOP count; 0.0 when it cannot be measured)."""
    from ultralytics.utils.torch_utils import get_flops

    return float(get_flops(model, imgsz))


def gap_warning(student: nn.Module, teacher: nn.Module, imgsz: int = 640) -> str | None:
    """One line when the teacher is far larger than the student (or smaller than it), else None.

    Args:
        student, teacher: the two DetectionModels (a BN-folded teacher counts a few thousand parameters fewer).
        imgsz: image size of the FLOPs count.
    """
    ps, pt = num_params(student), num_params(teacher)
    fs, ft = model_gflops(student, imgsz), model_gflops(teacher, imgsz)
    if ps > pt:
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
