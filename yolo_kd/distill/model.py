"""The trainable distillation model: the student plus its adapters, with a frozen :class:`Teacher` beside it.

``KDModel`` is what the Ultralytics trainer optimises. Its parameters are the student's and the adapters'
(and MGD generators'), so the optimizer, EMA, DDP and resume all see them. The teacher is held by reference
*outside* the module tree, and deep copies / pickles (EMA, checkpoints, the DDP launcher) drop it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.checkpoints import detect_head, has_one2one
from .config import KDConfig
from .losses import anchor_weight
from .schedule import for_run
from .teacher import Teacher, freeze_teacher  # noqa: F401  (freeze_teacher: public here since 0.1)
from .terms import TERM_NAMES, TERMS, TermInputs, box_form, class_loss_kind, term_loss

#: loss columns the distillation terms add to results.csv and the progress bar (from the registry)
KD_TERMS = TERM_NAMES
#: key of the batch dict that carries the schedule multiplier (set by the trainer for every batch)
SCALE_KEY = "kd_scale"
#: attributes the trainer sets on "the model" that really belong to the student
_STUDENT_ATTRS = frozenset({"nc", "names", "args", "stride", "yaml", "class_weights", "criterion", "end2end"})


def student_outputs(output) -> dict[str, torch.Tensor]:
    """The dense training outputs of a Detect head: ``{"boxes", "scores", "feats"}`` (one-to-many branch)."""
    preds = output[1] if isinstance(output, (tuple, list)) else output
    return preds.get("one2many", preds)


def student_one2one(output) -> dict[str, torch.Tensor] | None:
    """The one-to-one (NMS-free) branch's training outputs of an end-to-end head (YOLO26), else None."""
    preds = output[1] if isinstance(output, (tuple, list)) else output
    return preds.get("one2one") if "one2many" in preds else None


def distilled_count(batch_size: int, share: float) -> int:
    """How many of a batch's images are distilled at ``share`` (at least one): the first ``ceil(share * B)``.

    Ultralytics' training loader shuffles, so the first images of a batch are a random subset of the data set.
    """
    return min(batch_size, max(1, math.ceil(batch_size * share - 1e-9)))


def first_images(outputs: dict, n: int) -> dict:
    """``outputs`` of a head (tensors with the batch first, lists of them, nested branch dicts) cut to the first ``n``
    images; other values are kept as they are."""
    def cut(v):
        if isinstance(v, torch.Tensor):
            return v[:n]
        if isinstance(v, (list, tuple)):
            return type(v)(cut(x) for x in v)
        return first_images(v, n) if isinstance(v, dict) else v

    return {k: cut(v) for k, v in outputs.items()}


def branch_gains(model: nn.Module) -> tuple[float, float]:
    """(one-to-many, one-to-one) shares of an end-to-end model's detection loss at this point of training, read from
    its criterion (Ultralytics' ``E2ELoss`` moves them from 0.8 / 0.2 to 0.1 / 0.9 over the run); (1, 1) otherwise."""
    crit = getattr(model, "criterion", None)
    o2m, o2o = getattr(crit, "o2m", None), getattr(crit, "o2o", None)
    return (float(o2m), float(o2o)) if o2m is not None and o2o is not None else (1.0, 1.0)


def _probe_channels(model: nn.Module, size: int) -> list[int]:
    """Channels of the Detect head's inputs, from a blank image, without touching BN statistics."""
    was_training = model.training
    p = next(model.parameters())
    model.eval()
    with torch.no_grad():
        out = student_outputs(model(torch.zeros(1, 3, size, size, device=p.device, dtype=p.dtype)))
    model.train(was_training)
    return [f.shape[1] for f in out["feats"]]


class KDModel(nn.Module):
    """Student + adapters, computing detection loss plus weighted distillation terms in one forward.

    Args:
        student: Ultralytics DetectionModel being trained.
        teacher: :class:`Teacher` (or a DetectionModel, wrapped) with the same strides and classes.
        config: resolved :class:`KDConfig`.
        epochs: the run's length, which settles the ``auto`` settings (:func:`~yolo_kd.distill.schedule.for_run`;
            None: the long-run values).
    """

    def __init__(self, student: nn.Module, teacher: Teacher | nn.Module, config: KDConfig, epochs: int | None = None):
        super().__init__()
        teacher = teacher if isinstance(teacher, Teacher) else Teacher(teacher, config.teacher_precision)
        teacher.check_student(student)
        s_head, t_head = detect_head(student), teacher.head
        self.reg_max, self.teacher_reg_max = int(s_head.reg_max), int(t_head.reg_max)
        #: ``dfl`` (KL between DFL bins) or ``distance`` (side distances): how the box term compares the two heads
        self.box_form = box_form(self.reg_max, self.teacher_reg_max)
        config = for_run(config, epochs, self.box_form)
        self.student_model = student
        self.kd_config = config
        device = next(student.parameters()).device
        self.__dict__["teacher"] = teacher.to(device)
        #: class and box terms also run on the one-to-one branch (both heads end-to-end and ``one2one`` > 0)
        self.distil_one2one = has_one2one(s_head) and has_one2one(t_head) and config.one2one > 0
        self.skipped = {}
        enabled = []
        for term in TERMS:
            if config.weight(term) <= 0:
                continue
            reason = term.unavailable(s_head, t_head) if term.unavailable else None
            if reason:
                self.skipped[term.name] = reason
                from ultralytics.utils import LOGGER

                LOGGER.warning(f"yolo_kd: {term.weight_key} distillation ({term.name}) skipped: {reason}")
            else:
                enabled.append(term)
        self.terms = tuple(t.name for t in enabled)
        if "kd_cls" in self.terms and class_loss_kind(config, s_head.nc) != config.cls_loss:
            from ultralytics.utils import LOGGER

            LOGGER.info(f"yolo_kd: one-class data: class distillation uses binary KL (a {config.cls_loss} over one class is 0)")
        self._log_pair(s_head, t_head)
        self.adapters = self.generators = None
        if any(t.needs_adapters for t in enabled):
            from .terms import adapter_modules

            size = int(student.stride.max()) * 2
            with torch.no_grad():
                t_ch = [f.shape[1] for f in teacher(torch.zeros(1, 3, size, size, device=device))["feats"]]
            self.adapters, self.generators = adapter_modules(_probe_channels(student, size), t_ch, config)
            if teacher.is_self:  # same network: features compare directly, so equal models give 0
                self.adapters = nn.ModuleList(nn.Identity() for _ in t_ch)
        self.to(device)

    def _log_pair(self, s_head: nn.Module, t_head: nn.Module) -> None:
        """Say how the box term and the one-to-one branch are distilled when the pair is not two DFL heads."""
        from ultralytics.utils import LOGGER

        if "kd_box" in self.terms and self.box_form == "distance":
            dfl = " (a DFL head's distance is its expected bin)" if max(self.reg_max, self.teacher_reg_max) > 1 else ""
            LOGGER.info(f"yolo_kd: box distillation on side distances ({self.kd_config.box_loss}): teacher reg_max "
                        f"{self.teacher_reg_max}, student reg_max {self.reg_max}{dfl}")
        if has_one2one(s_head) and not self.distil_one2one:
            why = "one2one is 0" if has_one2one(t_head) else "the teacher has no one-to-one branch"
            LOGGER.info(f"yolo_kd: the student's one-to-one (NMS-free) branch learns from the labels only ({why})")

    @property
    def teacher_network(self) -> nn.Module | None:
        """The teacher's network (None in copies)."""
        t = self.__dict__.get("teacher")
        return t.model if t is not None else None

    def replace_teacher(self, teacher: Teacher) -> None:
        """Swap in another teacher of the same shapes (a refreshed self-distillation snapshot), on this model's device."""
        teacher.check_student(self.student_model)
        self.__dict__["teacher"] = teacher.to(next(self.student_model.parameters()).device)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("teacher", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__dict__["teacher"] = None

    # ----- transparent student attributes (names, stride, args, criterion, predict, fuse, ...) -----
    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            modules = self.__dict__.get("_modules")
            if name.startswith("__") or not modules or "student_model" not in modules:
                raise
            return getattr(modules["student_model"], name)

    def __setattr__(self, name: str, value) -> None:
        if name in _STUDENT_ATTRS and "student_model" in self.__dict__.get("_modules", {}):
            setattr(self.student_model, name, value)
        else:
            super().__setattr__(name, value)

    # ----- forward / loss -----
    def forward(self, x, *args, **kwargs):
        """A batch dict -> ``loss(batch)``; an image tensor -> the student's prediction."""
        if isinstance(x, dict):
            return self.loss(x, *args, **kwargs)
        return self.student_model(x, *args, **kwargs)

    def loss(self, batch: dict, preds=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Detection loss of the student plus the weighted distillation terms.

        ``batch[SCALE_KEY]`` (default 1) is the schedule multiplier; at 0 the teacher is not run at all. With
        ``share`` < 1 the teacher runs on the batch's first images only and the terms are their means over those
        images (the same weight on fewer images: a term's size does not depend on the share).
        Returns ``(loss vector (3 + n_terms,), items)``; like Ultralytics' criterion the vector is scaled by
        batch size and ``items`` holds detached per-image values, one per enabled term. A non-finite term (fp16
        overflow, degenerate batch) is cut out of the graph, so neither its value nor its NaN gradient reaches the
        weights, and its item keeps the non-finite value so the trainer reports it. Outside training (validation,
        or a copy without teacher) it is the student's own loss.
        """
        teacher = self.__dict__.get("teacher")
        if not self.training or teacher is None:
            return self.student_model.loss(batch, preds)
        img = batch["img"]
        scale = float(batch.get(SCALE_KEY, 1.0))
        preds = self.student_model(img) if preds is None else preds
        det_loss, items = self.student_model.loss(batch, preds)
        if scale <= 0 or not self.terms:
            zeros = det_loss.new_zeros(len(self.terms))
            items.update({t: z for t, z in zip(self.terms, zeros)})
            return torch.cat([det_loss, zeros]), items
        n = distilled_count(img.shape[0], self.kd_config.share)  # the teacher sees (and the terms use) these images
        t_out = teacher(img[:n])
        one2one = None
        if self.distil_one2one:
            t_o2o = t_out["one2one"]
            s_o2o = first_images(student_one2one(preds), n)
            weight = anchor_weight(t_o2o["scores"], s_o2o["scores"], self.kd_config.weighting)
            one2one = TermInputs(s_o2o, t_o2o, weight, self.kd_config, self.reg_max, teacher_reg_max=self.teacher_reg_max)
        s_out = first_images(student_outputs(preds), n)
        weight = anchor_weight(t_out["scores"], s_out["scores"], self.kd_config.weighting)
        inputs = TermInputs(
            s_out, t_out, weight, self.kd_config, self.reg_max, self.adapters, self.generators,
            teacher_reg_max=self.teacher_reg_max, one2one=one2one,
            branch_gains=branch_gains(self.student_model) if one2one is not None else (1.0, 1.0),
        )
        by_name = {t.name: t for t in TERMS}
        terms = [term_loss(by_name[n], inputs) * (self.kd_config.weight(by_name[n]) * scale) for n in self.terms]
        values = torch.stack([v.detach() for v in terms])
        finite = torch.isfinite(values)
        if not bool(finite.all()):  # one host sync per step (Ultralytics' progress bar syncs every batch anyway)
            # cut (not masked: a masked NaN still sends NaN gradients back through its own graph)
            terms = [v if ok else torch.zeros_like(v.detach()) for v, ok in zip(terms, finite.tolist())]
        items.update({n: v for n, v in zip(self.terms, values)})
        return torch.cat([det_loss, torch.stack(terms).to(det_loss.dtype) * img.shape[0]]), items
