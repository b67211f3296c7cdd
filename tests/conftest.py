"""Shared, session-scoped fixtures: a tiny generated dataset and a teacher trained on it.

Everything runs offline on the CPU: models are built from YAML, data comes from yolo_kd.data.synthetic.
"""

from __future__ import annotations

import logging
import os

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")

TRAIN_ARGS = dict(imgsz=64, batch=16, device="cpu", workers=0, plots=False, exist_ok=True, seed=0, verbose=False)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """data.yaml of the 'tiny' shapes preset (48 train / 16 val images, 4 classes)."""
    from yolo_kd.data.synthetic import make_shapes_dataset

    return str(make_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes-tiny", "tiny"))


@pytest.fixture(scope="session")
def teacher_pt(tiny_data, tmp_path_factory):
    """best.pt of a yolo11n teacher trained 1 epoch on the tiny set by plain Ultralytics."""
    from ultralytics import YOLO

    project = tmp_path_factory.mktemp("teacher_runs")
    YOLO("yolo11n.yaml").train(data=tiny_data, epochs=1, project=str(project), name="teacher", **TRAIN_ARGS)
    return str(project / "teacher" / "weights" / "best.pt")


class _Warnings(logging.Handler):
    """Collects the warnings Ultralytics' (non-propagating) logger emits."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_seen():
    """Messages of the warnings Ultralytics' logger (which yolo_kd's training code uses) emits during the test."""
    from ultralytics.utils import LOGGER

    handler = _Warnings()
    LOGGER.addHandler(handler)
    yield handler.messages
    LOGGER.removeHandler(handler)


def detection_model(cfg: str = "yolo11n.yaml", nc: int = 4, seed: int = 0):
    """A randomly initialised Ultralytics DetectionModel built from ``cfg``, with the args its loss needs (64 px)."""
    import torch
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    m = DetectionModel(cfg, nc=nc, verbose=False)
    m.args = get_cfg(overrides={"imgsz": 64})
    return m


def toy_batch(n: int = 2, size: int = 64) -> dict:
    """A training batch of ``n`` random images with two labelled boxes (on images 0 and 1)."""
    import torch

    g = torch.Generator().manual_seed(0)
    return {
        "img": torch.rand(n, 3, size, size, generator=g),
        "batch_idx": torch.tensor([0.0, 1.0]),
        "cls": torch.tensor([[1.0], [2.0]]),
        "bboxes": torch.tensor([[0.5, 0.5, 0.3, 0.3], [0.4, 0.6, 0.2, 0.4]]),
    }
