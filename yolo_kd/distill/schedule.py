"""The overall distillation weight over training: a pure function of where training is.

The trainer evaluates it for every batch from (epoch, batch index) alone, so no callback count, OOM retry,
NaN re-run or resume can shift it.
"""

from __future__ import annotations

import dataclasses
import math

from .config import KDConfig, load_kd_config


def distill_multiplier(config: KDConfig, epoch: int, batch: int, batches_per_epoch: int, epochs: int, close_mosaic: int = 0) -> float:
    """Multiplier of every distillation weight at batch ``batch`` (0-based) of epoch ``epoch`` (0-based).

    - 0 once training progress reaches ``config.until`` (the share of epochs distilled, :func:`effective_until`; the
      teacher is not run then);
    - 0 on all but every ``config.every``-th batch of an epoch (the teacher is not run on the others);
    - 0 in the last ``close_mosaic`` epochs when ``off_close_mosaic`` is set and the run is at least twice that long;
    - otherwise ``constant`` 1, or ``linear``/``cosine`` decay from 1 to ``final_ratio`` over the distilled window.
    """
    progress = (epoch + batch / max(batches_per_epoch, 1)) / max(epochs, 1)  # in [0, 1)
    until = effective_until(config.until, epochs)
    if until < 1 and progress >= until:
        return 0.0
    if config.every > 1 and batch % int(config.every):
        return 0.0
    if config.off_close_mosaic and 0 < close_mosaic and epochs >= 2 * close_mosaic and epoch >= epochs - close_mosaic:
        return 0.0
    p = min(max(progress / until, 0.0), 1.0)
    if config.schedule == "linear":
        return 1.0 - (1.0 - config.final_ratio) * p
    if config.schedule == "cosine":
        return config.final_ratio + (1.0 - config.final_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))
    return 1.0


def distilled_epochs(config: KDConfig, epochs: int, close_mosaic: int = 0) -> int:
    """How many of ``epochs`` run the teacher at all (the others cost what vanilla epochs cost)."""
    return sum(distill_multiplier(config, e, 0, 1, epochs, close_mosaic) > 0 for e in range(epochs))


#: ``until: auto`` distils the first half of runs this long or longer, shorter runs throughout (docs/bench/pays.md)
LONG_SCHEDULE_EPOCHS = 60
#: the share ``until: auto`` distils on long runs
LONG_SCHEDULE_UNTIL = 0.5


def is_long_run(epochs: int | None) -> bool:
    """Whether the ``auto`` settings take their long-run values: runs of :data:`LONG_SCHEDULE_EPOCHS` or more, and
    runs of unknown length."""
    return epochs is None or epochs >= LONG_SCHEDULE_EPOCHS


def effective_until(until: float | str, epochs: int) -> float:
    """The share of the epochs distilled: ``until`` itself, or for ``auto`` 1.0 on runs shorter than
    :data:`LONG_SCHEDULE_EPOCHS` and :data:`LONG_SCHEDULE_UNTIL` on longer ones.

    Measured (docs/bench/pays.md): on long runs (60 epochs on bench, 100 on demo) distilling the first half scored as
    well as distilling throughout at equal epochs and better at equal compute (0.0 and +3.1 against plain training,
    where full distillation gave -3.0 and -0.5); on short runs (15 epochs) it gave about half the gain.
    """
    if until == "auto":
        return LONG_SCHEDULE_UNTIL if is_long_run(epochs) else 1.0
    return float(until)


#: ``temperature: auto`` on runs shorter than :data:`LONG_SCHEDULE_EPOCHS`, and on longer ones
SHORT_SCHEDULE_TEMPERATURE = 4.0
LONG_SCHEDULE_TEMPERATURE = 2.0


def effective_temperature(temperature: float | str, epochs: int | None) -> float:
    """The class and box distillation temperature: ``temperature`` itself, or for ``auto``
    :data:`SHORT_SCHEDULE_TEMPERATURE` on runs shorter than :data:`LONG_SCHEDULE_EPOCHS` and
    :data:`LONG_SCHEDULE_TEMPERATURE` on longer ones (and when the run length is not known).

    Measured (docs/bench/pays.md, yolo11s -> yolo11n, 3 seeds each): T = 4 beat T = 2 at 10 epochs (bench), 30
    (demo) and 40 (bench, Ultralytics' nbs=64: +2.9, ahead in every seed), and trailed it at 100 epochs (demo).
    """
    if temperature == "auto":
        return LONG_SCHEDULE_TEMPERATURE if is_long_run(epochs) else SHORT_SCHEDULE_TEMPERATURE
    return float(temperature)


#: ``box: auto`` on runs shorter than :data:`LONG_SCHEDULE_EPOCHS`, and on longer ones (DFL heads)
SHORT_SCHEDULE_BOX = 1.0
LONG_SCHEDULE_BOX = 4.0


def effective_box(box: float | str, epochs: int | None, form: str = "dfl") -> float:
    """The box distillation weight: ``box`` itself, or for ``auto`` :data:`LONG_SCHEDULE_BOX` on runs of
    :data:`LONG_SCHEDULE_EPOCHS` or more (or of unknown length) whose box term is the KL between DFL bins (``form``
    ``dfl``, :func:`~yolo_kd.distill.terms.box_form`), else :data:`SHORT_SCHEDULE_BOX`. That KL is scaled by T^2, so
    with ``temperature: auto`` the term weighs 16 either way: 4^2 x 1 below 60 epochs, 2^2 x 4 from 60 on. The side
    distance loss of heads without bins (YOLO26) has no temperature, so ``auto`` keeps it at 1.

    Measured (docs/bench/pays.md, demo preset, Ultralytics' nbs=64, yolo11s -> yolo11n): at 239 epochs box = 4 beat
    box = 1 in every seed (+1.0, 3 seeds); at 40 epochs (bench) raising the weight at T = 2 gained nothing.
    """
    if box == "auto":
        return LONG_SCHEDULE_BOX if is_long_run(epochs) and form == "dfl" else SHORT_SCHEDULE_BOX
    return float(box)


def for_run(config: KDConfig, epochs: int | None, box_form: str = "dfl") -> KDConfig:
    """``config`` with its per-run ``auto`` values settled for an ``epochs``-epoch run whose box term has the form
    ``box_form`` (``until`` is settled by :func:`distill_multiplier` itself, which knows the run length at every
    batch)."""
    weights = {**config.weights, "box": effective_box(config.weights["box"], epochs, box_form)}
    return dataclasses.replace(config, temperature=effective_temperature(config.temperature, epochs), weights=weights)


def for_self_teacher(config: KDConfig) -> KDConfig:
    """``config`` with ``box: auto`` settled at :data:`SHORT_SCHEDULE_BOX` for online self-distillation: the long-run
    weight was measured with a separate, stronger teacher, and a self-teacher's boxes are the student's own."""
    if config.weights["box"] != "auto":
        return config
    return dataclasses.replace(config, weights={**config.weights, "box": SHORT_SCHEDULE_BOX})


def fine_tune_settings(kd_cfg, run: dict) -> dict:
    """The settings a fine-tune of a trained model (a pruning step, QAT) distils with where ``kd_cfg`` and ``run`` leave
    them ``auto``: ``{"kd_temperature": 2.0, "kd_box": 1.0}``. Those fine-tunes were measured with T = 2 and box = 1
    (docs/pruning.md, docs/int8.md); ``auto``'s values were measured for training from scratch and would otherwise
    be settled by the fine-tune's own length. A setting that ``kd_cfg`` or ``run`` names as a number is left out."""
    settings = {k[3:]: v for k, v in run.items() if k.startswith("kd_") and k != "kd_cfg"}
    config = load_kd_config(kd_cfg, **settings)
    measured = {"kd_temperature": (config.temperature, LONG_SCHEDULE_TEMPERATURE), "kd_box": (config.box, SHORT_SCHEDULE_BOX)}
    return {key: value for key, (setting, value) in measured.items() if setting == "auto"}


def temperature_note(epochs: int, temperature: float | str) -> str | None:
    """One line naming the temperature ``auto`` chose for an ``epochs``-epoch run, else None."""
    if temperature != "auto":
        return None
    t = effective_temperature(temperature, epochs)
    rule = (f"{SHORT_SCHEDULE_TEMPERATURE:g} below {LONG_SCHEDULE_EPOCHS} epochs, "
            f"{LONG_SCHEDULE_TEMPERATURE:g} from {LONG_SCHEDULE_EPOCHS} on")
    return f"yolo_kd: kd_temperature=auto uses T={t:g} for this {epochs}-epoch run ({rule}; docs/bench/pays.md)"


def box_note(epochs: int, box: float | str, form: str = "dfl") -> str | None:
    """One line naming the box weight ``auto`` chose for an ``epochs``-epoch run with a ``form`` box term, else None."""
    if box != "auto":
        return None
    rule = (f"{SHORT_SCHEDULE_BOX:g} below {LONG_SCHEDULE_EPOCHS} epochs, {LONG_SCHEDULE_BOX:g} from {LONG_SCHEDULE_EPOCHS} on"
            if form == "dfl" else f"{SHORT_SCHEDULE_BOX:g} for a box term on side distances")
    return (f"yolo_kd: kd_box=auto weighs box distillation {effective_box(box, epochs, form):g} in this {epochs}-epoch run "
            f"({rule}; docs/bench/pays.md)")


def until_note(epochs: int, until: float | str, every: int = 1) -> str | None:
    """One line saying how much of an ``epochs``-epoch run is distilled when that is a choice worth knowing, else None:
    ``auto`` cutting the teacher at half time, or a long run distilled throughout by an explicit ``until``."""
    if every > 1:
        return None
    if until == "auto" and is_long_run(epochs):
        return (f"yolo_kd: kd_until=auto distils the first {LONG_SCHEDULE_UNTIL:.0%} of this {epochs}-epoch run, then trains "
                f"without the teacher (on long runs that matched full distillation at equal epochs for less compute; "
                f"kd_until=1.0 distils throughout; docs/bench/pays.md)")
    if until != "auto" and float(until) >= 1 and is_long_run(epochs):
        return (f"yolo_kd: this {epochs}-epoch run distils throughout (kd_until=1.0); on long runs kd_until=auto (the teacher "
                f"in the first half only) matched that at equal epochs for ~15% less compute and beat plain training at "
                f"equal compute, where full distillation did not (docs/bench/pays.md)")
    return None
