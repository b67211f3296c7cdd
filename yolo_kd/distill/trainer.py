"""``KDTrainer``: Ultralytics' DetectionTrainer with a frozen teacher distilling into the student.

Use it like any Ultralytics trainer::

    YOLO("yolo11n.yaml").train(trainer=KDTrainer, data="my.yaml", teacher="teacher.pt", kd_cls=1.0)

Distillation settings travel as ``teacher``, ``kd_cfg`` and ``kd_<key>`` overrides; they are taken
out before Ultralytics validates its own arguments, carried to DDP workers inside the callbacks
(which the launcher pickles), and stored in ``last.pt`` for ``resume``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import DEFAULT_CFG, LOCAL_RANK, LOGGER, RANK
from ultralytics.utils.torch_utils import ModelEMA, strip_optimizer, torch_distributed_zero_first, unwrap_model

from ..core.checkpoints import load_checkpoint_dict
from ..core.errors import KDError
from ..core.files import atomic_path, write_text_atomic
from .config import KDConfig, load_kd_config
from .model import KD_TERMS, SCALE_KEY, KDModel
from .schedule import distill_multiplier
from .teacher import Teacher


@dataclass
class KDSettings:
    """Teacher path + resolved config. Registered as a callback so the DDP launcher carries it to workers."""

    teacher: str | None
    config: dict = field(default_factory=dict)

    def __call__(self, trainer) -> None:  # on_pretrain_routine_end: say what is being distilled
        if self.teacher and RANK in {-1, 0}:
            terms = ", ".join(getattr(unwrap_model(trainer.model), "terms", ())) or "none"
            LOGGER.info(f"yolo_kd: distilling from {self.teacher} (terms: {terms}; {self.config})")


def pop_kd_overrides(overrides: dict[str, Any]) -> tuple[str | None, Any, dict[str, Any]]:
    """Remove ``teacher``, ``kd_cfg`` and ``kd_<key>`` entries from ``overrides`` (in place)."""
    teacher = overrides.pop("teacher", None)
    kd_cfg = overrides.pop("kd_cfg", None)
    kd = {k[3:]: overrides.pop(k) for k in list(overrides) if k.startswith("kd_")}
    return (str(teacher) if teacher else None), kd_cfg, kd


def _find_settings(callbacks: dict | None) -> KDSettings | None:
    for fns in (callbacks or {}).values():
        for fn in fns:
            if isinstance(fn, KDSettings):
                return fn
    return None


def _saved_kd_state(checkpoint: str | Path) -> dict:
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


def _report_nonfinite_terms(trainer: "KDTrainer") -> None:
    """on_train_batch_end: warn (once per run) when the batch's loss items show a non-finite distillation term."""
    trainer._warn_zeroed_terms()


class KDTrainer(DetectionTrainer):
    """Detection trainer whose loss adds class-logit, DFL-box and neck-feature distillation from a teacher.

    Extra overrides (all optional except ``teacher`` for distillation): ``teacher`` (path to a trained
    ``.pt``; None trains without distillation), ``kd_cfg`` (YAML path or dict), ``kd_<key>`` (one
    setting of ``cfg/kd_default.yaml``).
    """

    def __init__(self, cfg=DEFAULT_CFG, overrides: dict | None = None, _callbacks: dict | None = None):
        overrides = dict(overrides or {})
        teacher, kd_cfg, kd = pop_kd_overrides(overrides)
        carried = _find_settings(_callbacks)
        if carried is not None and teacher is None and kd_cfg is None and not kd:  # rebuilt in a DDP worker
            teacher, kd_cfg = carried.teacher, carried.config
        resume = overrides.get("resume")
        saved = _saved_kd_state(resume) if isinstance(resume, (str, Path)) else {}
        teacher = teacher or saved.get("teacher")
        # validate everything we can before Ultralytics creates the run folder
        config = load_kd_config(kd_cfg if kd_cfg is not None else saved.get("config"), **kd)
        self.teacher = Teacher.load(teacher, config.teacher_precision) if teacher else None
        try:
            super().__init__(cfg, overrides, _callbacks)
        except OSError as e:  # the run folder (or a file in it) cannot be created
            where = e.filename or overrides.get("project") or "the run folder"
            raise KDError(f"cannot write the run folder '{where}' ({e.strerror or e}): choose a writable project=/--project") from e
        try:
            if self.teacher is not None:
                self.teacher.check_classes(list(self.data["names"].values()))
        except KDError:
            self._remove_empty_run()
            raise
        self.kd_config: KDConfig = config
        self.teacher_path = str(Path(teacher).resolve()) if teacher else None
        self.kd_settings = KDSettings(self.teacher_path, config.to_dict())
        if _find_settings(self.callbacks) is None:
            self.add_callback("on_pretrain_routine_end", self.kd_settings)
        self._batch_index = 0  # index of the next batch in this epoch: the schedule's clock
        if _report_nonfinite_terms not in self.callbacks["on_train_batch_end"]:  # the DDP launcher carries it over
            self.add_callback("on_train_batch_end", _report_nonfinite_terms)
        self._skipped_steps = 0
        self._zeroed_terms = 0
        if RANK in {-1, 0}:
            kd_yaml = yaml.safe_dump({"teacher": self.teacher_path, **config.to_dict()}, sort_keys=False)
            write_text_atomic(self.save_dir / "kd.yaml", kd_yaml)

    # ----- set-up -----
    def _remove_empty_run(self) -> None:
        """Delete the run folder of a run that failed before training: it holds no weights and no results."""
        if RANK in {-1, 0} and not self.resume and self.save_dir.is_dir():
            files = [p for p in self.save_dir.rglob("*") if p.is_file()]
            if not any(p.suffix == ".pt" or p.name == "results.csv" for p in files):
                shutil.rmtree(self.save_dir, ignore_errors=True)

    def _setup_train(self):
        """Ultralytics' set-up; a KDError found there (e.g. teacher/student stride mismatch) leaves no empty run folder."""
        try:
            super()._setup_train()
        except KDError:
            self._remove_empty_run()
            raise

    def get_model(self, cfg=None, weights=None, verbose: bool = True):
        """Build the student. A module whose shapes differ from its YAML (e.g. pruned) is used as it is."""
        model = super().get_model(cfg=cfg, weights=None, verbose=verbose)
        if weights is None:
            return model
        fresh = model.state_dict()
        head = f"model.{len(model.model) - 1}."  # class-count dependent: differs when fine-tuning to new classes
        if any(k not in fresh or fresh[k].shape != v.shape for k, v in weights.state_dict().items() if not k.startswith(head)):
            if int(weights.model[-1].nc) != int(self.data["nc"]):
                raise KDError(f"student has {weights.model[-1].nc} classes but the dataset has {self.data['nc']}")
            LOGGER.info("yolo_kd: student shapes differ from its YAML (pruned?): training the given module as is")
            return weights.float().train()
        model.load(weights)
        return model

    def setup_model(self):
        ckpt = super().setup_model()
        self._resume_kd = kd_state_of(ckpt or {})
        return ckpt

    def set_model_attributes(self):
        """Attach dataset attributes to the student, then wrap it with the teacher and adapters."""
        super().set_model_attributes()
        if self.teacher is None or isinstance(unwrap_model(self.model), KDModel):
            return
        if self.args.compile:
            LOGGER.warning("yolo_kd: 'compile' is not supported with distillation and is disabled")
            self.args.compile = False
        n_student = sum(p.numel() for p in self.model.parameters())
        if n_student > self.teacher.num_params():
            LOGGER.warning(f"yolo_kd: the student ({n_student:,} params) is larger than the teacher ({self.teacher.num_params():,})")
        self.model = KDModel(self.model, self.teacher, self.kd_config)  # moves the teacher and sets its precision
        for name in ("adapters", "generators"):
            state = getattr(self, "_resume_kd", {}).get(name)
            if state is not None and getattr(self.model, name) is not None:
                getattr(self.model, name).load_state_dict(state)

    def resume_training(self, ckpt) -> None:
        """Ultralytics' resume, with a one-line error for a finished run and results.csv trimmed to the checkpoint.

        A run killed between writing an epoch's results.csv row and its last.pt repeats that epoch on
        resume; the stale row is dropped so results.csv holds each epoch once.
        """
        if ckpt is not None and self.resume and not 0 < ckpt.get("epoch", -1) + 1 < self.epochs:
            raise KDError(f"'{self.args.model}' has finished its {self.epochs} epochs, nothing to resume: start a new run without resume")
        super().resume_training(ckpt)
        if self.resume and RANK in {-1, 0} and self.csv.exists():
            lines = self.csv.read_text().splitlines(keepends=True)
            kept = lines[:1] + [ln for ln in lines[1:] if int(float(ln.split(",", 1)[0])) <= self.start_epoch]
            if len(kept) != len(lines):
                write_text_atomic(self.csv, "".join(kept))

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

    # ----- training step -----
    def _model_train(self):
        """Every (re)start of an epoch, also after an OOM retry or a NaN recovery, restarts the schedule's batch clock."""
        super()._model_train()
        self._batch_index = 0

    def preprocess_batch(self, batch: dict) -> dict:
        """Ultralytics' preprocessing, plus this batch's distillation multiplier (``batch["kd_scale"]``).

        The multiplier is a pure function of (epoch, batch index in the epoch, epochs): see ``schedule.py``.
        """
        batch = super().preprocess_batch(batch)
        if self.teacher is not None:
            batch[SCALE_KEY] = distill_multiplier(
                self.kd_config, self.epoch, self._batch_index, len(self.train_loader), self.epochs, self.args.close_mosaic
            )
            self._batch_index += 1
        return batch

    def optimizer_step(self):
        """Ultralytics' step with gradient clipping. Without a GradScaler, a step whose gradients are not finite is
        skipped (warned once); with one (AMP), overflow steps are the scaler's normal business and it skips them."""
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=10.0)
        if not torch.isfinite(norm) and not self.scaler.is_enabled():
            self._skipped_steps += 1
            if self._skipped_steps == 1:
                LOGGER.warning("yolo_kd: non-finite gradients, skipping this optimizer step (warned once)")
            self.optimizer.zero_grad()
            self.scaler.update()
            return
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad()
        if self.ema:
            self.ema.update(self.model)

    def _warn_zeroed_terms(self) -> None:
        """Warn once when a distillation term of the last batch was non-finite (and cut out), as its loss item shows."""
        items = self.loss_items if isinstance(self.loss_items, dict) else {}
        bad = {k for k in KD_TERMS if k in items and not bool(torch.isfinite(items[k]))}
        if not bad:
            return
        self._zeroed_terms += 1
        if self._zeroed_terms == 1:
            LOGGER.warning(
                f"yolo_kd: non-finite distillation term ({', '.join(sorted(bad))}; e.g. fp16 overflow) was set to 0 "
                "for this batch, training continues (warned once)"
            )

    def label_loss_items(self, loss_items=None, prefix="train"):
        """Validation has no teacher, so its loss columns leave out the distillation terms."""
        if prefix == "val":
            if loss_items is None:
                return [f"val/{x}" for x in self.loss_names if x not in KD_TERMS]
            loss_items = {k: v for k, v in loss_items.items() if k not in KD_TERMS}
        return super().label_loss_items(loss_items, prefix)

    # ----- checkpoints: student only, written atomically -----
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
