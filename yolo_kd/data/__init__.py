"""Data: ``--data`` resolution and checks (``datasets``) and the deterministic synthetic shapes generator (``synthetic``).

May import ``yolo_kd.core`` only.
"""

from .datasets import SYNTHETIC_ROOT, check_dataset, resolve_data
from .synthetic import PRESETS, ShapesSpec, make_shapes_dataset

__all__ = ["PRESETS", "SYNTHETIC_ROOT", "ShapesSpec", "check_dataset", "make_shapes_dataset", "resolve_data"]
