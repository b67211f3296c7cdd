"""yolo_kd: knowledge distillation, structured pruning and INT8 ONNX export for Ultralytics YOLO.

Imports are lazy so that ``yolo_kd.runtime`` (the edge runtime) can be used without torch installed.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "train": "yolo_kd.api",
    "KDTrainer": "yolo_kd.trainer",
    "KDModel": "yolo_kd.distill_model",
    "KDConfig": "yolo_kd.config",
    "load_kd_config": "yolo_kd.config",
    "KDError": "yolo_kd.errors",
    "make_shapes_dataset": "yolo_kd.synthetic",
    "export_int8": "yolo_kd.quantize",
    "QuantSettings": "yolo_kd.quantize",
    "ExportResult": "yolo_kd.quantize",
    "prune_model": "yolo_kd.pruning",
    "prune_iteratively": "yolo_kd.prune_loop",
    "Detector": "yolo_kd.runtime",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'yolo_kd' has no attribute '{name}'")
