"""Neck-feature distillation losses, each comparing adapted student features with teacher features.

All take ``student`` and ``teacher`` maps of the same shape (B, C, H, W) — the student side has
already passed through its channel adapter — and return a scalar that is 0 when they are equal
(MGD: when the generator reproduces the teacher).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cwd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Channel-wise distillation (Shu et al., ICCV 2021).

    Each channel is turned into a distribution over the H*W locations with a softmax at temperature
    T, and the student matches the teacher's per-channel distribution by KL, scaled by T².

    Args:
        student, teacher: (B, C, H, W).
    Returns:
        scalar, KL summed over locations and averaged over B*C channels.
    """
    b, c, h, w = student.shape
    log_p_s = F.log_softmax(student.float().reshape(b * c, h * w) / temperature, dim=1)
    log_p_t = F.log_softmax(teacher.detach().float().reshape(b * c, h * w) / temperature, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(1).mean() * temperature**2


def _standardize(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-sample, per-channel standardization over H, W: (B, C, H, W) -> same shape."""
    return F.instance_norm(x.float(), eps=eps)


def score_weighted_mse_loss(student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """MSE between standardized features, weighted by the teacher's confidence at each location.

    Standardizing both maps removes the scale gap between two networks so the loss measures
    the pattern, not the magnitude (the raw-feature L2 of the built-in distiller outweighs every
    detection loss).

    Args:
        student, teacher: (B, C, H, W).
        weight: (B, H*W) teacher confidence per location.
    Returns:
        scalar, squared error averaged over channels and the weighted locations.
    """
    err = (_standardize(student) - _standardize(teacher.detach())).pow(2).mean(1).flatten(1)  # (B, H*W)
    return (err * weight).sum() / weight.sum().clamp(min=1e-6)


class MGDGenerator(nn.Module):
    """Masked generative distillation (Yang et al., ECCV 2022): restore teacher features from masked student ones.

    A random spatial mask (same for all channels) drops ``mask_ratio`` of the student's locations;
    a small conv generator must produce the teacher's full map from what is left. The generator is
    trained with the student and discarded afterwards.
    """

    def __init__(self, channels: int, mask_ratio: float = 0.65):
        super().__init__()
        self.mask_ratio = mask_ratio
        self.generator = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 3, padding=1)
        )

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """student, teacher: (B, C, H, W) -> scalar MSE between standardized generated and teacher maps."""
        b, _, h, w = student.shape
        keep = (torch.rand(b, 1, h, w, device=student.device) >= self.mask_ratio).to(student.dtype)
        generated = self.generator(student * keep)
        return F.mse_loss(_standardize(generated), _standardize(teacher.detach()))
