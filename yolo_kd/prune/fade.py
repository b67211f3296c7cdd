"""Fading channels out while training, so that a pruning step removes channels that are already silent.

An abrupt pruning step removes channels the network still uses and spends the fine-tuning on recovering from the
cut. :class:`ChannelFade` instead silences the channels a step will remove *gradually* during that step's training:
after every batch it sets the BatchNorm scale and shift of those channels to their starting values times a factor
that falls linearly from 1 to 0 over the first ``share`` of the run, and holds them at 0 afterwards, in the model and
in its EMA. The rest of the network trains around them. At the end the channels output exactly 0 (SiLU(0) = 0), so
cutting them (:func:`yolo_kd.prune.pruner.prune_model` with ``importance="bn"``) changes no output: the cut costs
nothing and the step's training is spent on the smaller network it leaves.

This is gradual pruning (Zhu & Gupta, "To prune, or not to prune", 2017) made structured: the channels are chosen
once, at the step's start, by the usual importance and allocation (:func:`yolo_kd.prune.pruner.prune_model`
``zero=True`` marks them); their weights are overwritten, not regularised, so it works alike with SGD and AdamW.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

__all__ = ["ChannelFade", "fade_factor"]


def fade_factor(progress: float, share: float) -> float:
    """Multiplier of the fading channels at ``progress`` (share of the run done, 0..1): 1 -> 0 linearly over the first
    ``share`` of the run, 0 afterwards."""
    return min(1.0, max(0.0, 1.0 - progress / share))


def _student(model: nn.Module) -> nn.Module:
    """The network whose BatchNorm names the masks use: unwrapped from DDP and from the distillation wrapper."""
    from ultralytics.utils.torch_utils import unwrap_model

    model = unwrap_model(model)
    return getattr(model, "student_model", model)


class ChannelFade:
    """``on_train_batch_end`` callback fading ``channels`` (``{BatchNorm name: indices}``) of the trained model out.

    Picklable (plain lists and tensors), so it survives Ultralytics' DDP launcher; every rank applies the same values.

    Args:
        channels: ``{name of a BatchNorm2d in the student: channel indices}``, e.g. from
            :func:`yolo_kd.prune.pruner.zeroed_channels` of a ``prune_model(..., zero=True)`` copy.
        start: ``{name: (scale, shift)}``: the values to fade from, taken from the model to be trained.
        share: share of the run over which the channels fade, in (0, 1].
    """

    def __init__(self, channels: Mapping[str, Sequence[int]], start: Mapping[str, tuple[torch.Tensor, torch.Tensor]], share: float):
        if not 0.0 < share <= 1.0:
            raise ValueError(f"fade share {share} must be in (0, 1]")
        self.channels = {k: list(v) for k, v in channels.items()}
        self.start = {k: (w.detach().float().cpu().clone(), b.detach().float().cpu().clone()) for k, (w, b) in start.items()}
        self.share = float(share)
        self._epoch, self._batches = None, 0

    @classmethod
    def of(cls, model: nn.Module, channels: Mapping[str, Sequence[int]], share: float) -> "ChannelFade":
        """The fade of ``channels`` of ``model`` (a DetectionModel), starting from its current BatchNorm values."""
        bns = dict(model.named_modules())
        start = {k: (bns[k].weight[list(v)], bns[k].bias[list(v)]) for k, v in channels.items()}
        return cls(channels, start, share)

    def _on(self, device: torch.device) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``{name: (indices, start scale, start shift)}`` on ``device``, copied there once, not every batch."""
        cache = self.__dict__.setdefault("_device_copies", {})
        if device not in cache:
            cache[device] = {k: (torch.tensor(idx, device=device), *(t.to(device) for t in self.start[k]))
                             for k, idx in self.channels.items()}
        return cache[device]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_device_copies", None)  # device tensors stay with the process that made them
        return state

    def apply(self, model: nn.Module, factor: float) -> None:
        """Set the fading channels of ``model`` (a DetectionModel, possibly wrapped) to ``factor`` x their start."""
        student = _student(model)
        with torch.no_grad():
            for name, (idx, w0, b0) in self._on(next(student.parameters()).device).items():
                bn = student.get_submodule(name)
                bn.weight.index_copy_(0, idx, (w0 * factor).to(bn.weight.dtype))
                bn.bias.index_copy_(0, idx, (b0 * factor).to(bn.bias.dtype))

    def __call__(self, trainer) -> None:
        if trainer.epoch != self._epoch:  # a new epoch: restart the batch count
            self._epoch, self._batches = trainer.epoch, 0
        self._batches += 1
        per_epoch = max(len(trainer.train_loader), 1)
        progress = (trainer.epoch + min(self._batches / per_epoch, 1.0)) / max(trainer.epochs, 1)
        factor = fade_factor(progress, self.share)
        self.apply(trainer.model, factor)
        if getattr(trainer, "ema", None) is not None:
            self.apply(trainer.ema.ema, factor)
