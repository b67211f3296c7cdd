"""Forward hook that records a Detect head's inputs (neck features) and raw outputs."""

from __future__ import annotations

import torch
from torch import nn


def raw_head_outputs(output) -> dict[str, torch.Tensor]:
    """The dense training outputs of a Detect head in any mode.

    Training mode returns the dict itself; eval mode returns ``(decoded, dict)``; end-to-end heads
    nest ``{"one2many": ..., "one2one": ...}`` and the one-to-many branch (dense supervision) is used.
    Returns ``{"boxes": (B, 4*reg_max, A), "scores": (B, nc, A), "feats": [(B, C_i, H_i, W_i)]}``.
    """
    preds = output[1] if isinstance(output, (tuple, list)) else output
    return preds.get("one2many", preds)


class HeadTap:
    """Picklable forward hook on a Detect head. ``feats``/``raw`` hold the last call's tensors until ``clear()``."""

    def __init__(self) -> None:
        self.feats: list[torch.Tensor] | None = None
        self.raw: dict[str, torch.Tensor] | None = None

    def __call__(self, module: nn.Module, inputs: tuple, output) -> None:
        self.feats = list(inputs[0])
        self.raw = raw_head_outputs(output)

    def clear(self) -> None:
        """Drop the captured tensors (call every step so no graph or memory is kept alive)."""
        self.feats = self.raw = None

    def __getstate__(self) -> dict:
        return {}  # never pickle or deep-copy captured tensors

    def __setstate__(self, state: dict) -> None:
        self.clear()
