"""Torch-free runtime: imports without torch, matches Ultralytics predict, fails with one clear line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo_kd.errors import KDError

NAMES = {0: "circle", 1: "square", 2: "triangle", 3: "star"}


def _random_detector(seed: int = 0):
    """Untrained 4-class yolo11n whose outputs vary like a trained one's (no training fits the time budget).

    A freshly initialised YOLO's activations shrink to ~1e-7 by the head, so every anchor scores the same. Fitting
    the BatchNorm statistics on a few shapes images restores unit-variance features; a lower class bias and sharper
    box-distribution logits then give spread scores (0.01-0.98) and boxes of many sizes: dozens of overlapping
    candidates per image, which exercises filtering, class-aware NMS and rescaling hard.
    """
    import torch
    import yaml
    import ultralytics
    from ultralytics import YOLO

    from yolo_kd.synthetic import ShapesSpec, render_image

    cfg = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/models/11/yolo11.yaml").read_text())
    cfg["nc"] = len(NAMES)
    torch.manual_seed(seed)
    yolo = YOLO(cfg, task="detect") if False else None  # placeholder, replaced below
    return cfg


def build_models(root: Path) -> dict[str, Path]:
    """Write (once per test session) a random-but-lively yolo11n .pt and its ONNX exports under ``root``.

    Returns paths: ``pt``; ``fixed`` (1, 8, N) 128x128; ``dynamic`` (dynamic=True); ``nms`` (nms=True, (1, 300, 6));
    ``int8`` (static QDQ INT8 of ``fixed``).
    """
    paths = {k: root / f"{k}.{'pt' if k == 'pt' else 'onnx'}" for k in ("pt", "fixed", "dynamic", "nms", "int8")}
    if all(p.exists() for p in paths.values()):
        return paths
    import torch
    import yaml
    import ultralytics
    from ultralytics import YOLO

    from yolo_kd.synthetic import ShapesSpec, render_image

    root.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/models/11/yolo11.yaml").read_text())
    cfg["nc"] = len(NAMES)
    (root / "yolo11n-shapes.yaml").write_text(yaml.safe_dump(cfg))
    torch.manual_seed(0)
    yolo = YOLO(str(root / "yolo11n-shapes.yaml"))
    model = yolo.model
    model.names = dict(NAMES)
    imgs = np.stack([render_image(ShapesSpec(imgsz=128), "train", i)[0] for i in range(8)])
    x = torch.from_numpy(imgs[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration pass
    model.train()
    with torch.no_grad():
        model(x)
    head = model.model[-1]
    for seq in head.cv3:
        seq[-1].bias.data.fill_(-2.0)
    for seq in head.cv2:
        seq[-1].weight.data *= 3
    model.eval()
    yolo.save(paths["pt"])
    for key, kw in (("fixed", {}), ("dynamic", {"dynamic": True}), ("nms", {"nms": True})):
        out = YOLO(paths["pt"]).export(format="onnx", imgsz=128, **kw)
        shutil.move(out, paths[key])
    _quantize(paths["fixed"], paths["int8"], imgs)
    return paths


def _quantize(src: Path, dst: Path, images: np.ndarray) -> None:
    """Static QDQ INT8 quantisation of ``src`` calibrated on ``images`` (B, 128, 128, 3) BGR; keeps metadata."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from yolo_kd.runtime import to_blob

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"images": to_blob(im)} for im in images])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"])
    meta = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    q = onnx.load(str(dst))
    if not q.metadata_props:
        for k, v in meta.items():
            q.metadata_props.add(key=k, value=v)
        onnx.save(q, str(dst))
