"""Untrained models whose outputs depend on the image, for tests that need realistic detections without training.

A freshly initialised YOLO's activations shrink to ~1e-7 by the head, so every anchor would score the same. Fitting
the BatchNorm statistics on a few shapes images restores unit-variance features; a lower class bias and sharper box
outputs then give spread scores (0.01-1.0) and boxes of many sizes.
"""

from __future__ import annotations

import numpy as np
import torch


def shapes_batch(n: int = 8, imgsz: int = 128) -> tuple[np.ndarray, torch.Tensor]:
    """``n`` generated shapes training images: (n, H, W, 3) uint8 BGR, and the (n, 3, H, W) RGB float tensor in [0, 1]."""
    from yolo_kd.data.synthetic import ShapesSpec, render_image

    imgs = np.stack([render_image(ShapesSpec(imgsz=imgsz), "train", i)[0] for i in range(n)])
    return imgs, torch.from_numpy(imgs[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255


def make_lively(model: torch.nn.Module) -> np.ndarray:
    """Fit ``model``'s BatchNorm statistics on shapes images and sharpen every head branch (one-to-many, and
    YOLO26's one-to-one where present), in place; leaves it in eval mode. Returns the images used (uint8 BGR)."""
    imgs, x = shapes_batch()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration pass
    model.train()
    with torch.no_grad():
        model(x)
    head = model.model[-1]
    branches = [(head.cv3, head.cv2)] + ([(head.one2one_cv3, head.one2one_cv2)] if hasattr(head, "one2one_cv3") else [])
    for cls, box in branches:
        for seq in cls:
            seq[-1].bias.data.fill_(-2.0)
        for seq in box:
            seq[-1].weight.data *= 3
    model.eval()
    return imgs
