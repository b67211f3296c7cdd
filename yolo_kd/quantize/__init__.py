"""Quantization: calibrated static INT8 ONNX export (``ptq``), its calibration data (``calibration``), ONNX graph
analysis (``onnx_graph``: the float-kept decode tail, which convolutions run as INT8 kernels) and the side-by-side
export report (``report``).

May import ``yolo_kd.core`` and ``yolo_kd.data``; never ``distill``, ``prune``, ``deploy`` or ``evidence``.

``yolo_kd.quantize`` was a single module in 0.1: its names still resolve here, lazily and with a
DeprecationWarning naming their new module, for one release (``from yolo_kd.quantize import export_int8``).
"""

from __future__ import annotations

import importlib
import warnings

#: 0.1 name -> module that holds it now
_OLD_NAMES = {
    name: "yolo_kd.quantize.ptq"
    for name in ("METHODS", "QuantSettings", "ExportResult", "quantize_onnx", "load_detector", "export_fp32",
                 "stride_multiple", "export_int8", "LOGGER")
} | {
    name: "yolo_kd.quantize.calibration"
    for name in ("letterbox_tensor", "resolve_dataset", "split_images", "calibration_files", "load_calibration",
                 "make_reader", "IMG_SUFFIXES")
} | {name: "yolo_kd.quantize.onnx_graph" for name in ("FLOAT_GROUPS", "float_node_groups", "parse_keep_float", "kernel_share")}


def __getattr__(name: str):
    if name in _OLD_NAMES:
        new = _OLD_NAMES[name]
        warnings.warn(f"'yolo_kd.quantize.{name}' moved to '{new}.{name}'; the old path goes away in the next release",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new), name)
    raise AttributeError(f"module 'yolo_kd.quantize' has no attribute '{name}'")
