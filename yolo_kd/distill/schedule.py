"""The overall distillation weight over training: a pure function of where training is.

The trainer evaluates it for every batch from (epoch, batch index) alone, so no callback count, OOM retry,
NaN re-run or resume can shift it.
"""

from __future__ import annotations

import math

from .config import KDConfig


def distill_multiplier(config: KDConfig, epoch: int, batch: int, batches_per_epoch: int, epochs: int, close_mosaic: int = 0) -> float:
    """Multiplier of every distillation weight at batch ``batch`` (0-based) of epoch ``epoch`` (0-based).

    - 0 once training progress reaches ``config.until`` (the share of epochs distilled; the teacher is not run then);
    - 0 on all but every ``config.every``-th batch of an epoch (the teacher is not run on the others);
    - 0 in the last ``close_mosaic`` epochs when ``off_close_mosaic`` is set and the run is at least twice that long;
    - otherwise ``constant`` 1, or ``linear``/``cosine`` decay from 1 to ``final_ratio`` over the distilled window.
    """
    progress = (epoch + batch / max(batches_per_epoch, 1)) / max(epochs, 1)  # in [0, 1)
    if config.until < 1 and progress >= config.until:
        return 0.0
    if config.every > 1 and batch % int(config.every):
        return 0.0
    if config.off_close_mosaic and 0 < close_mosaic and epochs >= 2 * close_mosaic and epoch >= epochs - close_mosaic:
        return 0.0
    p = min(max(progress / config.until, 0.0), 1.0)
    if config.schedule == "linear":
        return 1.0 - (1.0 - config.final_ratio) * p
    if config.schedule == "cosine":
        return config.final_ratio + (1.0 - config.final_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))
    return 1.0


def distilled_epochs(config: KDConfig, epochs: int, close_mosaic: int = 0) -> int:
    """How many of ``epochs`` run the teacher at all (the others cost what vanilla epochs cost)."""
    return sum(distill_multiplier(config, e, 0, 1, epochs, close_mosaic) > 0 for e in range(epochs))


#: the shortest schedule at which distilling only the first half was measured to pay (docs/bench/pays.md)
LONG_SCHEDULE_EPOCHS = 60


def long_schedule_hint(epochs: int, until: float, every: int = 1) -> str | None:
    """A one-line hint for a long run distilled from start to end, else None.

    Measured (docs/bench/pays.md): at 60 and 100 epochs ``until=0.5`` scored as well as full distillation at equal
    epochs and better at equal compute (0.0 and +3.1 against vanilla, where full distillation gave -3.0 and -0.5);
    at 15 epochs it gave much less (full distillation is the right choice there, hence no hint).
    """
    if epochs < LONG_SCHEDULE_EPOCHS or until < 1 or every > 1:
        return None
    return (f"yolo_kd: a {epochs}-epoch run distils throughout; on long schedules kd_until=0.5 (the teacher in the first "
            f"half only) matched that at equal epochs for ~15% less compute and beat plain training at equal compute, "
            f"where full distillation did not (docs/bench/pays.md)")
