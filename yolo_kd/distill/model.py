"""The trainable distillation model: the student plus its adapters, with a frozen teacher beside it.

``KDModel`` is what the Ultralytics trainer optimises. Its parameters are the student's and the
adapters' (and MGD generators'), so the optimizer, EMA, DDP and resume all see them. The teacher is
held by reference *outside* the module tree: it is not in ``parameters()``, ``state_dict()``,
``.to()``, ``.train()`` or DDP, and deep copies / pickles (EMA, checkpoints) drop it.
"""

from __future__ import annotations

import torch
from torch import nn

from .adapters import ChannelAdapter
from ..core.checkpoints import detect_head
from .config import KDConfig
from ..core.errors import KDError
from .hooks import HeadTap, raw_head_outputs
from .losses import MGDGenerator, box_distillation_loss, class_distillation_loss, cwd_loss, score_weighted_mse_loss
from .losses import teacher_confidence

#: loss columns the distillation terms add to results.csv and the progress bar
KD_TERMS = ("kd_cls", "kd_box", "kd_feat")
#: attributes the trainer sets on "the model" that really belong to the student
_STUDENT_ATTRS = frozenset({"nc", "names", "args", "stride", "yaml", "class_weights", "criterion", "end2end"})


def _probe(model: nn.Module, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Raw head outputs of ``model`` on a blank (1, 3, size, size) image, without touching BN statistics."""
    was_training = model.training
    model.eval()
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        out = raw_head_outputs(model(torch.zeros(1, 3, size, size, device=device, dtype=dtype)))
    model.train(was_training)
    return out


def freeze_teacher(teacher: nn.Module) -> nn.Module:
    """Freeze ``teacher`` in place for fast inference-only use: eval mode, no grads, BN folded, channels-last.

    Folding each ``Conv``'s BatchNorm into its convolution is exact for a frozen eval-mode model
    and, with the channels-last layout, cuts the teacher's forward time by about 10-20% on CPU.
    The Detect head itself is left as trained (its dense one-to-many outputs are what is distilled).
    """
    from ultralytics.nn.modules import Conv, Conv2
    from ultralytics.utils.torch_utils import fuse_conv_and_bn

    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    for m in teacher.modules():
        if isinstance(m, Conv) and not isinstance(m, Conv2) and hasattr(m, "bn"):  # Conv2 has a second branch
            m.conv = fuse_conv_and_bn(m.conv, m.bn).requires_grad_(False)
            delattr(m, "bn")
            m.forward = m.forward_fuse
    return teacher.to(memory_format=torch.channels_last)


class KDModel(nn.Module):
    """Student + adapters, computing detection loss plus weighted distillation terms in one forward.

    Args:
        student: Ultralytics DetectionModel being trained.
        teacher: frozen DetectionModel with the same strides and classes (moved to the student's device).
        config: resolved :class:`KDConfig`.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, config: KDConfig):
        super().__init__()
        self.student_model = student
        self.kd_config = config
        self.kd_scale = 1.0  # schedule multiplier, set by the trainer every batch
        device = next(student.parameters()).device
        s_head, t_head = detect_head(student), detect_head(teacher)
        if not torch.equal(student.stride.cpu().float(), teacher.stride.cpu().float()):
            raise KDError(
                f"teacher strides {teacher.stride.int().tolist()} differ from student strides "
                f"{student.stride.int().tolist()}: anchors cannot be matched, use a teacher with the same strides"
            )
        if s_head.nc != t_head.nc:
            raise KDError(f"teacher has {t_head.nc} classes but the student has {s_head.nc}: use a teacher trained on the same classes")
        self._set_teacher(teacher.to(device))

        size = int(student.stride.max()) * 2
        s_out, t_out = _probe(student, size, device), _probe(self.teacher, size, device)
        self.reg_max = int(s_head.reg_max)
        self.terms = tuple(
            name
            for name, on in zip(KD_TERMS, (config.cls > 0, config.box > 0 and self._box_possible(t_head), config.feat > 0))
            if on
        )
        s_ch = [f.shape[1] for f in s_out["feats"]]
        t_ch = [f.shape[1] for f in t_out["feats"]]
        self.adapters = nn.ModuleList(ChannelAdapter(s, t) for s, t in zip(s_ch, t_ch)) if "kd_feat" in self.terms else None
        use_mgd = "kd_feat" in self.terms and config.feat_loss == "mgd"
        self.generators = nn.ModuleList(MGDGenerator(t, config.mgd_mask_ratio) for t in t_ch) if use_mgd else None
        self.to(device)

    def _box_possible(self, t_head: nn.Module) -> bool:
        from ultralytics.utils import LOGGER

        if self.reg_max <= 1 or int(t_head.reg_max) <= 1:
            who = "student" if self.reg_max <= 1 else "teacher"
            LOGGER.warning(f"yolo_kd: box distillation skipped: the {who} has no DFL bins (reg_max=1)")
            return False
        if int(t_head.reg_max) != self.reg_max:
            LOGGER.warning(f"yolo_kd: box distillation skipped: teacher reg_max {int(t_head.reg_max)} != student {self.reg_max}")
            return False
        return True

    # ----- teacher handling: a plain reference, hooked, frozen, never copied -----
    def _set_teacher(self, teacher: nn.Module | None) -> None:
        self.__dict__["teacher"] = teacher
        self.__dict__["_tap"] = HeadTap()
        self.__dict__["_handles"] = []
        if teacher is not None:
            freeze_teacher(teacher)
            self._handles.append(detect_head(teacher).register_forward_hook(self._tap))

    def pop_nonfinite_terms(self) -> set[str]:
        """Names of the terms that were non-finite (and cut out) in any batch since the last call."""
        return self.__dict__.pop("_nonfinite", set())

    def remove_hooks(self) -> None:
        """Remove the teacher hook (e.g. before discarding the wrapper)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for k in ("teacher", "_tap", "_handles", "_nonfinite"):
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._set_teacher(None)

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

        Returns ``(loss vector (3 + n_terms,), items)``; like Ultralytics' criterion, the vector is scaled
        by batch size and ``items`` holds detached per-image values. Outside training (validation, or
        a copy without teacher) it is the student's own loss.
        """
        if not self.training or self.teacher is None:
            return self.student_model.loss(batch, preds)
        img = batch["img"]
        with torch.no_grad():
            t_img = img.to(next(self.teacher.parameters()).dtype)  # float16 teacher on CUDA if configured
            self.teacher(t_img.contiguous(memory_format=torch.channels_last))
            teacher_raw, teacher_feats = self._tap.raw, self._tap.feats
            self._tap.clear()
        preds = self.student_model(img) if preds is None else preds
        det_loss, items = self.student_model.loss(batch, preds)
        kd = self.distillation_terms(raw_head_outputs(preds), teacher_raw, teacher_feats)
        weights = {"kd_cls": self.kd_config.cls, "kd_box": self.kd_config.box, "kd_feat": self.kd_config.feat}
        terms = [kd[t] * (weights[t] * self.kd_scale) for t in self.terms]
        finite = torch.isfinite(torch.stack([v.detach() for v in terms])) if terms else torch.ones(0, dtype=torch.bool)
        if not bool(finite.all()):  # one host sync per step (Ultralytics' progress bar syncs every batch anyway)
            # a non-finite term (fp16 overflow, degenerate batch) is cut out of the graph, so neither its value nor
            # its NaN gradient reaches the weights; the detection loss and the other terms still train this step
            ok = finite.tolist()
            terms = [v if good else torch.zeros_like(v.detach()) for v, good in zip(terms, ok)]
            bad = self.__dict__.setdefault("_nonfinite", set())  # read (and reset) by pop_nonfinite_terms()
            bad.update(t for t, good in zip(self.terms, ok) if not good)
        kd_vec = torch.stack(terms) if terms else det_loss[:0]
        items.update({t: v for t, v in zip(self.terms, kd_vec.detach())})
        return torch.cat([det_loss, kd_vec.to(det_loss.dtype) * img.shape[0]]), items

    def distillation_terms(
        self, student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor], teacher_feats: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Unweighted distillation terms for the enabled names in ``self.terms``.

        Args:
            student: raw student head outputs (boxes (B, 4R, A), scores (B, nc, A), feats).
            teacher: raw teacher head outputs, same anchors.
            teacher_feats: teacher neck features [(B, C_t, H_i, W_i)] captured by the hook.
        """
        cfg = self.kd_config
        # sanitise the teacher (detached): an fp16 overflow must not turn into NaN gradients
        t_scores = torch.nan_to_num(teacher["scores"].float(), nan=0.0).clamp(-50, 50)
        confidence = teacher_confidence(t_scores)  # (B, A)
        out = {}
        if "kd_cls" in self.terms:
            out["kd_cls"] = class_distillation_loss(student["scores"], t_scores, cfg.temperature, cfg.cls_loss, confidence)
        if "kd_box" in self.terms:
            t_boxes = torch.nan_to_num(teacher["boxes"].float(), nan=0.0).clamp(-50, 50)
            out["kd_box"] = box_distillation_loss(student["boxes"], t_boxes, self.reg_max, cfg.temperature, confidence)
        if "kd_feat" in self.terms:
            sizes = [f.shape[2] * f.shape[3] for f in teacher_feats]
            level_conf = confidence.split(sizes, dim=1)
            losses = []
            for i, (s, t) in enumerate(zip(student["feats"], teacher_feats)):
                s = self.adapters[i](s)
                t = torch.nan_to_num(t.float(), nan=0.0, posinf=0.0, neginf=0.0)
                if cfg.feat_loss == "cwd":
                    losses.append(cwd_loss(s, t, cfg.feat_temperature))
                elif cfg.feat_loss == "mse":
                    losses.append(score_weighted_mse_loss(s, t, level_conf[i]))
                else:
                    losses.append(self.generators[i](s, t))
            out["kd_feat"] = torch.stack(losses).mean()
        return out
