"""Distillation chains: born-again generations and the teacher-assistant chain, each stage an ordinary yolo_kd run.

- **Born-again** (``generations=N``, Furlanello et al., ICML 2018): generation 1 distils ``teacher`` (typically a
  finished run of the same model) into a fresh student; generation k distils generation k-1's ``best.pt`` into
  another fresh student. Runs ``<name>-gen1`` ... ``<name>-genN``.
- **Teacher assistant** (``assistant=m.yaml``, Mirzadeh et al., AAAI 2020): ``teacher`` is first distilled into the
  assistant (run ``<name>-assistant``), then the assistant's ``best.pt`` into the student (run ``<name>``, or the
  generations above).

Every stage goes through the same trainer, losses, settings and checkpoints as a single run (``yolo_kd.train``), so
each ``best.pt`` is a plain student. A failed stage stops the chain with its own one-line error.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .core.errors import KDError

#: teacher placeholder of a stage that distils from the previous stage's best.pt
PREVIOUS = "<previous best.pt>"


@dataclass
class Stage:
    """One run of a chain: ``student`` distilled from ``teacher`` (or from the previous stage's best.pt) into run ``name``."""

    role: str  # "assistant" | "generation k" | "student"
    student: Any
    teacher: str
    name: str


def plan_stages(student: Any, teacher: str | None, name: str = "train", generations: int = 1, assistant: str | Path | None = None) -> list[Stage]:
    """The runs of a chain, in order (nothing is trained or checked beyond the arguments)."""
    from .distill.self_teacher import is_self

    if not isinstance(generations, int) or isinstance(generations, bool) or generations < 1:
        raise KDError(f"generations must be a whole number >= 1, got {generations!r}")
    if teacher is None:
        raise KDError("a chain needs a teacher: pass --teacher path/to/teacher.pt (or self for generation 1)")
    if assistant is not None and is_self(teacher):
        raise KDError("--assistant needs a trained --teacher .pt to distil into the assistant, not 'self'")
    stages = []
    if assistant is not None:
        stages.append(Stage("assistant", str(assistant), str(teacher), f"{name}-assistant"))
    for k in range(1, generations + 1):
        first = not stages
        role = f"generation {k}" if generations > 1 else "student"
        stages.append(Stage(role, student, str(teacher) if first else PREVIOUS, f"{name}-gen{k}" if generations > 1 else name))
    return stages


def run_chain(stages: list[Stage], train, **kwargs: Any):
    """Train ``stages`` in order with ``train`` (``yolo_kd.train``); returns the last stage's trainer, whose ``chain``
    attribute lists every stage's ``(role, run folder, best.pt)``."""
    from ultralytics.utils import LOGGER

    done: list[tuple[str, Path, Path]] = []
    trainer = None
    for i, stage in enumerate(stages, 1):
        teacher = str(done[-1][2]) if stage.teacher == PREVIOUS else stage.teacher
        student = deepcopy(stage.student) if isinstance(stage.student, nn.Module) else stage.student  # a fresh copy each time
        LOGGER.info(f"yolo_kd: chain stage {i}/{len(stages)} ({stage.role}): {_label(student)} <- {teacher}")
        trainer = train(student, teacher=teacher, **{**kwargs, "name": stage.name})
        best = Path(trainer.best)
        if not best.exists():
            raise KDError(f"chain stage '{stage.role}' ({trainer.save_dir}) wrote no best.pt: the next stage has no teacher")
        done.append((stage.role, Path(trainer.save_dir), best))
    trainer.chain = done
    return trainer


def _label(student: Any) -> str:
    return student if isinstance(student, str) else f"a {type(student).__name__}"
