"""Online self-distillation (``teacher="self"``): the teacher is a frozen snapshot of the student's own EMA.

The snapshot is an ordinary :class:`~yolo_kd.distill.teacher.Teacher` (frozen, BatchNorm folded, outside the
module tree, never saved), built from a deep copy of the bare student, so nothing of it reaches the optimizer,
the EMA, DDP or a checkpoint. Teacher and student have the same architecture, so the feature term compares the two
directly (identity adapters, nothing learned): every term is 0 when the two are the same function.

Timeline (``self_refresh`` = N epochs): the trainer takes a first snapshot when it wraps the student (the starting
weights, which the EMA also starts from). A copy of the starting point teaches nothing, so the first N epochs
train without distillation (multiplier 0, the teacher is not run: the terms are exactly 0). At the start of epoch
N, 2N, ... the teacher becomes a new snapshot of the EMA. A resumed run re-creates the teacher from the resumed EMA.
"""

from __future__ import annotations

from copy import deepcopy

from torch import nn

from .teacher import Teacher

#: the ``teacher`` value that asks for online self-distillation
SELF = "self"


def is_self(teacher) -> bool:
    """True when ``teacher`` asks for online self-distillation (``"self"``, any case)."""
    return isinstance(teacher, str) and teacher.strip().lower() == SELF


def snapshot_teacher(student: nn.Module, precision: str = "auto") -> Teacher:
    """A frozen :class:`Teacher` from a deep copy of ``student`` (the bare DetectionModel; it is left untouched)."""
    copy = deepcopy(student).float()
    copy.__dict__.pop("yolo_kd_state", None)
    teacher = Teacher(copy, precision, SELF)
    teacher.is_self = True
    return teacher


def refresh_due(epoch: int, start_epoch: int, every: int) -> bool:
    """Whether the self-teacher is replaced by a new EMA snapshot at the start of ``epoch`` (0-based).

    Every ``every``-th epoch (epochs ``every``, ``2 * every`` ...), except the run's first epoch, whose teacher was
    just taken from the starting weights (a fresh run's, or the resumed EMA).
    """
    return epoch > start_epoch and epoch % max(int(every), 1) == 0


def self_multiplier(epoch: int, every: int) -> float:
    """0 before the first EMA snapshot (epochs ``0 .. every-1``), else 1: multiplies the schedule's value."""
    return 0.0 if epoch < max(int(every), 1) else 1.0
