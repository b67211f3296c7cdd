"""Quantization: calibrated static INT8 ONNX export (``ptq``), its calibration data (``calibration``), ONNX graph
analysis (``onnx_graph``: the float-kept decode tail, which convolutions run as INT8 kernels), the OpenVINO path
(``openvino_ir``: FP32 and NNCF INT8 IRs; ``openvino_graph``: the same decode tail and INT8 share on OpenVINO's
graphs; both walk the graph with ``graph_tail``), the side-by-side export report (``report``) and quantization-aware
training (``fake_quant``: where the fake quantizers go; ``qat``: fine-tuning through the distillation trainer, then
export and report).

May import ``yolo_kd.core`` and ``yolo_kd.data``, and ``yolo_kd.distill`` (``qat`` alone, through ``yolo_kd.api``);
never ``prune``, ``deploy`` or ``evidence``.

``yolo_kd.quantize`` was a single module in 0.1: its names still resolve here, lazily and with a
DeprecationWarning naming their new module, for one release (``from yolo_kd.quantize import export_int8``).
"""

from __future__ import annotations

import importlib
import warnings

#: 0.1 name -> (module that holds it now, its name there)
_OLD_NAMES = {
    **{n: ("yolo_kd.quantize.ptq", n) for n in ("METHODS", "QuantSettings", "ExportResult", "quantize_onnx", "export_fp32",
                                                "stride_multiple", "export_int8")},
    **{n: ("yolo_kd.quantize.calibration", n) for n in ("letterbox_tensor", "calibration_files", "load_calibration", "make_reader")},
    **{n: ("yolo_kd.quantize.onnx_graph", n) for n in ("FLOAT_GROUPS", "float_node_groups", "parse_keep_float", "kernel_share")},
    "resolve_dataset": ("yolo_kd.data.datasets", "load_dataset_yaml"),
    "split_images": ("yolo_kd.data.datasets", "split_images"),
    "load_detector": ("yolo_kd.core.checkpoints", "load_yolo"),
    "LOGGER": ("yolo_kd.core.log", "LOGGER"),
}


def __getattr__(name: str):
    if name in _OLD_NAMES:
        module, new = _OLD_NAMES[name]
        warnings.warn(f"'yolo_kd.quantize.{name}' moved to '{module}.{new}'; the old path goes away in the next release",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), new)
    raise AttributeError(f"module 'yolo_kd.quantize' has no attribute '{name}'")
