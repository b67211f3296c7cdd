"""``KDTrainer``: Ultralytics' DetectionTrainer with a frozen teacher distilling into the student.

Use it like any Ultralytics trainer::

    YOLO("yolo11n.yaml").train(trainer=KDTrainer, data="my.yaml", teacher="teacher.pt", kd_cls=1.0)

Distillation settings travel as ``teacher``, ``kd_cfg`` and ``kd_<key>`` overrides; they are taken
out before Ultralytics validates its own arguments, carried to DDP workers inside the callbacks
(which the launcher pickles), and stored in ``last.pt`` for ``resume``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import yaml
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import DEFAULT_CFG, LOGGER, RANK
from ultralytics.utils.torch_utils import unwrap_model

from ..core.errors import KDError
from ..core.files import write_text_atomic
from .config import KDConfig, load_kd_config
from .model import KD_TERMS, SCALE_KEY, KDModel
from .schedule import distill_multiplier, for_self_teacher
from .capacity import cost_note, gap_warning, pair_size
from .checkpointing import KDCheckpointing, kd_state_of, saved_kd_state
from .self_teacher import SELF, is_self, refresh_due, self_multiplier, snapshot_teacher
from .settings import KDSettings, find_settings, pop_kd_overrides
from .teacher import Teacher


def _report_nonfinite_terms(trainer: "KDTrainer") -> None:
    """on_train_batch_end: warn (once per run) when the batch's loss items show a non-finite distillation term."""
    trainer._warn_zeroed_terms()


class KDTrainer(KDCheckpointing, DetectionTrainer):
    """Detection trainer whose loss adds class-logit, DFL-box and neck-feature distillation from a teacher.

    Extra overrides (all optional except ``teacher`` for distillation): ``teacher`` (path to a trained
    ``.pt``; None trains without distillation), ``kd_cfg`` (YAML path or dict), ``kd_<key>`` (one
    setting of ``cfg/kd_default.yaml``).
    """

    def __init__(self, cfg=DEFAULT_CFG, overrides: dict | None = None, _callbacks: dict | None = None):
        overrides = dict(overrides or {})
        teacher, kd_cfg, kd = pop_kd_overrides(overrides)
        carried = find_settings(_callbacks)
        if carried is not None and teacher is None and kd_cfg is None and not kd:  # rebuilt in a DDP worker
            teacher, kd_cfg = carried.teacher, carried.config
        resume = overrides.get("resume")
        saved = saved_kd_state(resume) if isinstance(resume, (str, Path)) else {}
        teacher = teacher or saved.get("teacher")
        # validate everything we can before Ultralytics creates the run folder
        config = load_kd_config(kd_cfg if kd_cfg is not None else saved.get("config"), **kd)
        config = for_self_teacher(config) if is_self(teacher) else config
        # "self": a snapshot of the student, taken when it is wrapped (set_model_attributes) and refreshed from its EMA
        self.teacher = Teacher.load(teacher, config.teacher_precision) if teacher and not is_self(teacher) else None
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
        self.teacher_path = SELF if is_self(teacher) else str(Path(teacher).resolve()) if teacher else None
        self._self_snapshot_epoch = None  # epoch of the last self-teacher refresh
        if self.teacher_path == SELF and self.epochs <= config.self_refresh:
            LOGGER.warning(f"yolo_kd: teacher=self distils from epoch {config.self_refresh:.0f} on, but the run has {self.epochs} epochs: lower kd_self_refresh")
        self.kd_settings = KDSettings(self.teacher_path, config.to_dict())
        if find_settings(self.callbacks) is None:
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
        if isinstance(unwrap_model(self.model), KDModel):
            return
        if self.teacher_path == SELF and self.teacher is None:
            self.teacher = snapshot_teacher(self.model, self.kd_config.teacher_precision)
        if self.teacher is None:
            return
        if self.args.compile:
            LOGGER.warning("yolo_kd: 'compile' is not supported with distillation and is disabled")
            self.args.compile = False
        if not self.teacher.is_self and RANK in {-1, 0}:
            size = pair_size(self.model, self.teacher.model, self.args.imgsz)
            note = gap_warning(self.model, self.teacher.model, size=size)
            if note:  # a student larger than its teacher, or a capacity gap large enough to suggest a teacher assistant
                LOGGER.warning(note)
            cost = cost_note(size)
            if cost:
                LOGGER.info(cost)
        self.model = KDModel(self.model, self.teacher, self.kd_config, epochs=self.epochs)  # moves the teacher, sets its precision
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

    # ----- training step -----
    def _model_train(self):
        """Every (re)start of an epoch, also after an OOM retry or a NaN recovery, restarts the schedule's batch clock."""
        super()._model_train()
        self._batch_index = 0
        self._refresh_self_teacher()

    def _refresh_self_teacher(self) -> None:
        """Online self-distillation: at the start of every ``self_refresh``-th epoch the teacher becomes a new frozen
        snapshot of the student's EMA (each DDP rank from its own: the same weights, BatchNorm statistics per rank)."""
        model = unwrap_model(self.model)
        if self.teacher_path != SELF or self.ema is None or not isinstance(model, KDModel) or self._self_snapshot_epoch == self.epoch:
            return
        if refresh_due(self.epoch, self.start_epoch, int(self.kd_config.self_refresh)):
            self.teacher = snapshot_teacher(self.ema.ema.student_model, self.kd_config.teacher_precision)
            model.replace_teacher(self.teacher)
            self._self_snapshot_epoch = self.epoch
            if RANK in {-1, 0}:
                LOGGER.info(f"yolo_kd: self-teacher refreshed from the EMA at the start of epoch {self.epoch + 1}")

    def preprocess_batch(self, batch: dict) -> dict:
        """Ultralytics' preprocessing, plus this batch's distillation multiplier (``batch["kd_scale"]``).

        The multiplier is a pure function of (epoch, batch index in the epoch, epochs): see ``schedule.py``.
        """
        batch = super().preprocess_batch(batch)
        if self.teacher is not None:
            self.kd_scale = distill_multiplier(
                self.kd_config, self.epoch, self._batch_index, len(self.train_loader), self.epochs, self.args.close_mosaic
            )  # kept on the trainer for callbacks and loggers; the model reads it from the batch
            if self.teacher_path == SELF:  # no self-teacher before the first EMA snapshot
                self.kd_scale *= self_multiplier(self.epoch, int(self.kd_config.self_refresh))
            batch[SCALE_KEY] = self.kd_scale
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
