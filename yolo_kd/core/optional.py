"""Optional dependencies (openvino, nncf, onnxruntime): whether one is installed, without importing it."""

from __future__ import annotations

import importlib.util
import sys


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (a ``None`` in ``sys.modules`` blocks it, as tests do)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
