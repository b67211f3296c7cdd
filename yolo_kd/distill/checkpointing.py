"""Checkpoints of a distillation run: ``last.pt``/``best.pt`` hold the bare student, written once per epoch and
atomically; resume and NaN recovery restore student, adapters, optimizer and EMA from them.

:class:`KDCheckpointing` is a mixin of :class:`~yolo_kd.distill.trainer.KDTrainer` overriding Ultralytics'
checkpoint methods (``save_model``, ``final_eval``, ``_load_checkpoint_state``, ``_handle_nan_recovery``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from ultralytics.utils import LOCAL_RANK, LOGGER, RANK
from ultralytics.utils.torch_utils import ModelEMA, strip_optimizer, torch_distributed_zero_first, unwrap_model

from ..core.checkpoints import load_checkpoint_dict
from ..core.errors import KDError
from ..core.files import atomic_path
from .model import KDModel


def saved_kd_state(checkpoint: str | Path) -> dict:
    """Distillation state stored in a run's ``last.pt`` (teacher path, config, adapter tensors)."""
    try:
        ckpt = load_checkpoint_dict(checkpoint)
    except Exception:
        return {}  # Ultralytics reports a missing/unreadable resume checkpoint itself
    return kd_state_of(ckpt)


#: attribute of the saved student that carries the distillation state in last.pt (removed from final checkpoints)
STATE_ATTR = "yolo_kd_state"


def kd_state_of(ckpt: dict) -> dict:
    """Distillation state (teacher path, config, adapter tensors) of a ``last.pt`` checkpoint dict, or {}."""
    model = ckpt.get("ema") or ckpt.get("model")
    return dict(getattr(model, STATE_ATTR, None) or ckpt.get("yolo_kd") or {})  # "yolo_kd": checkpoints of 0.1


class KDCheckpointing:
    """Checkpoint behaviour of the distillation trainer (student-only files, adapter state for resume)."""

    def _load_checkpoint_state(self, ckpt: dict) -> None:
        """Resume: the checkpoint's EMA is the bare student; rebuild the wrapped EMA around it."""
        model = unwrap_model(self.model)
        if not isinstance(model, KDModel) or ckpt.get("ema") is None:
            return super()._load_checkpoint_state(ckpt)
        super()._load_checkpoint_state({**ckpt, "ema": None})
        self.ema = ModelEMA(self.model)
        self.ema.ema.student_model.load_state_dict(ckpt["ema"].float().state_dict())  # state_dict: no yolo_kd_state
        for name in ("adapters", "generators"):
            state = kd_state_of(ckpt).get(name)
            if state is not None and getattr(self.ema.ema, name) is not None:
                getattr(self.ema.ema, name).load_state_dict(state)
        self.ema.updates = ckpt["updates"]

    def _handle_nan_recovery(self, epoch):
        """Ultralytics' NaN recovery for a distillation run: reload the student, adapters, optimizer and EMA from
        ``last.pt`` and redo the epoch (the schedule restarts with it).

        The decision is Ultralytics' (loss or fitness not finite, never in the first epoch, at most 3 attempts); its
        own restore addresses the built-in distiller's attributes, which a KDModel and its student-only ``last.pt``
        do not have, so the restore is done here.
        """
        model = unwrap_model(self.model)
        if not isinstance(model, KDModel):
            return super()._handle_nan_recovery(epoch)
        loss_nan = self.loss is not None and not self.loss.isfinite()
        fitness_nan = self.fitness is not None and not np.isfinite(self.fitness)
        corrupted = RANK in {-1, 0} and bool(loss_nan or fitness_nan)
        reason = "Loss NaN/Inf" if loss_nan else "Fitness NaN/Inf"
        if RANK != -1:  # DDP: rank 0 decides for all
            flag = [corrupted if RANK == 0 else None]
            torch.distributed.broadcast_object_list(flag, 0)
            corrupted = flag[0]
        if not corrupted:
            return False
        if epoch == self.start_epoch:
            LOGGER.warning(f"{reason} detected but can not recover from last.pt...")
            return False
        if not self.last.exists():
            raise RuntimeError(f"{reason} detected but no valid last.pt is available for recovery")
        self.nan_recovery_attempts += 1
        if self.nan_recovery_attempts > 3:
            raise RuntimeError(f"Training failed: NaN persisted for {self.nan_recovery_attempts} epochs")
        LOGGER.warning(f"{reason} detected (attempt {self.nan_recovery_attempts}/3), recovering from last.pt...")
        self._model_train()
        ckpt = load_checkpoint_dict(self.last)
        student = ckpt["ema"].float().state_dict()
        if not all(torch.isfinite(v).all() for v in student.values() if isinstance(v, torch.Tensor)):
            raise RuntimeError(f"Checkpoint {self.last} is corrupted with NaN/Inf weights")
        model.student_model.load_state_dict(student)
        for name in ("adapters", "generators"):
            state = kd_state_of(ckpt).get(name)
            if state is not None and getattr(model, name) is not None:
                getattr(model, name).load_state_dict(state)
        self._load_checkpoint_state(ckpt)
        self.scheduler.last_epoch = epoch - 1
        return True

    def save_model(self):
        """Save ``last.pt``/``best.pt`` once per epoch, atomically, holding the bare student.

        Ultralytics serialises the EMA; for the save the EMA is the student itself, carrying the distillation state
        (teacher path, config, adapter tensors) as one attribute for resume, which ``final_eval`` strips.
        """
        wrapper = self.ema.ema
        kd = isinstance(wrapper, KDModel)
        targets = {"last": self.last, "best": self.best}
        temps = {k: v.with_name(f".{v.name}.tmp") for k, v in targets.items()}
        if kd:
            self.ema.ema = wrapper.student_model
            state = {"teacher": self.teacher_path, "config": self.kd_config.to_dict()}
            state.update({n: getattr(wrapper, n).state_dict() for n in ("adapters", "generators") if getattr(wrapper, n) is not None})
            setattr(wrapper.student_model, STATE_ATTR, state)
        self.last, self.best = temps["last"], temps["best"]
        try:
            saved = super().save_model()
            for k in ("best", "last"):  # best first: last.pt is the resume point and is replaced last
                if temps[k].exists():
                    os.replace(temps[k], targets[k])
        except OSError as e:
            raise KDError(
                f"could not write checkpoints to '{targets['last'].parent}' ({e.strerror or e}): free disk space or "
                "choose another --project; the previous last.pt/best.pt are intact"
            ) from e
        finally:
            if kd:
                wrapper.student_model.__dict__.pop(STATE_ATTR, None)
            self.ema.ema = wrapper
            self.last, self.best = targets["last"], targets["best"]
            for t in temps.values():
                t.unlink(missing_ok=True)
        return saved

    def final_eval(self):
        """Strip optimizer and distillation state from ``last.pt``/``best.pt`` atomically, then validate ``best.pt``."""
        with torch_distributed_zero_first(LOCAL_RANK):
            if RANK in {-1, 0}:
                ckpt = self._strip(self.last) if self.last.exists() else {}
                if self.best.exists():
                    self._strip(self.best, {"train_results": ckpt.get("train_results")})
        if self.best.exists():
            LOGGER.info(f"\nValidating {self.best}...")
            self.validator.args.plots = self.args.plots
            self.validator.args.compile = False
            self.metrics = self.validator(model=self.best)
            self.metrics.pop("fitness", None)
            self.epoch += 1
            self.run_callbacks("on_fit_epoch_end")
            self.epoch -= 1

    @staticmethod
    def _strip(path: Path, updates: dict | None = None) -> dict:
        with atomic_path(path) as tmp:
            ckpt = strip_optimizer(path, str(tmp), updates)
            if not ckpt:
                raise KDError(f"checkpoint '{path}' could not be finalised: it is unreadable")
            model = ckpt.get("model")
            if "yolo_kd" in ckpt or (model is not None and STATE_ATTR in model.__dict__):
                ckpt.pop("yolo_kd", None)
                if model is not None:
                    model.__dict__.pop(STATE_ATTR, None)
                torch.save(ckpt, tmp)
        return ckpt
