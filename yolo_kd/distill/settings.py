"""How distillation settings travel: ``teacher``/``kd_cfg``/``kd_<key>`` overrides, and the callback object that
carries them through Ultralytics' DDP launcher (it pickles the trainer's callbacks and rebuilds the trainer in
each worker from plain arguments)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ultralytics.utils import LOGGER, RANK
from ultralytics.utils.torch_utils import unwrap_model

from .schedule import box_note, temperature_note, until_note
from .self_teacher import SELF


@dataclass
class KDSettings:
    """Teacher path + resolved config. Registered as a callback so the DDP launcher carries it to workers."""

    teacher: str | None
    config: dict = field(default_factory=dict)

    def __call__(self, trainer) -> None:  # on_pretrain_routine_end: say what is being distilled
        if self.teacher and RANK in {-1, 0}:
            model = unwrap_model(trainer.model)
            terms = ", ".join(getattr(model, "terms", ())) or "none"
            LOGGER.info(f"yolo_kd: distilling from {self.teacher} (terms: {terms}; {self.config})")
            hint = until_note(int(trainer.epochs), self.config.get("until", 1.0), int(self.config.get("every", 1)))
            if hint and self.teacher != SELF:
                LOGGER.info(hint)
            for hint in (temperature_note(int(trainer.epochs), self.config.get("temperature", 2.0)),
                         box_note(int(trainer.epochs), self.config.get("box", 1.0), getattr(model, "box_form", "dfl"))):
                if hint:
                    LOGGER.info(hint)


def pop_kd_overrides(overrides: dict[str, Any]) -> tuple[str | None, Any, dict[str, Any]]:
    """Remove ``teacher``, ``kd_cfg`` and ``kd_<key>`` entries from ``overrides`` (in place)."""
    teacher = overrides.pop("teacher", None)
    kd_cfg = overrides.pop("kd_cfg", None)
    kd = {k[3:]: overrides.pop(k) for k in list(overrides) if k.startswith("kd_")}
    return (str(teacher) if teacher else None), kd_cfg, kd


def find_settings(callbacks: dict | None) -> KDSettings | None:
    for fns in (callbacks or {}).values():
        for fn in fns:
            if isinstance(fn, KDSettings):
                return fn
    return None
