"""Learned channel adapters that map student neck features to the teacher's channel count."""

from __future__ import annotations

from torch import nn


class ChannelAdapter(nn.Sequential):
    """1x1 convolution + BatchNorm: (B, C_student, H, W) -> (B, C_teacher, H, W).

    Trained with the student by the same optimizer, used only for the feature loss, and never saved
    into ``best.pt``.
    """

    def __init__(self, student_channels: int, teacher_channels: int):
        super().__init__(
            nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(teacher_channels),
        )
