"""The QAT ONNX completed for onnxruntime: every op PTQ quantizes runs in INT8, with the scales QAT trained.

QAT fake-quantizes convolutions only (:mod:`yolo_kd.quantize.fake_quant`), so its QDQ file runs SiLU (Sigmoid, Mul),
Add, Concat, MaxPool and Resize in float between Q/DQ pairs. onnxruntime then dequantizes and requantizes around
every activation, and the file ran slower than the FP32 model (41 against 28 ms for PTQ's all-ops file, 640 px).

:func:`complete_for_onnxruntime` keeps what QAT learned and lets onnxruntime's own quantizer do the rest:

1. :func:`strip_qdq` turns the QDQ file back into a float graph: each Q/DQ pair is removed, and the quantization it
   applied (scale, zero point; per output channel for weights) is recorded as a ``TensorQuantOverrides`` entry for the
   float tensor. Weights are stored at their dequantized int8 values, so requantizing them with the recorded scales
   gives back exactly QAT's integers.
2. The PTQ path's ``quantize_static`` (:func:`yolo_kd.quantize.ptq.quantize_onnx`: all op types, u8 activations, the
   decode kept float) quantizes that graph, calibrated on train images, with the overrides: every tensor QAT
   quantized keeps QAT's scale; only the tensors QAT left float (the Sigmoid outputs, Add and Concat results, ...)
   get calibrated ranges.

onnxruntime gives the output of a data-movement op (Split, Reshape, MaxPool, ...) its input's scale, so QAT's scale
for such an output (a C3k2 bottleneck reads a Split chunk) is moved to the op's input
(:func:`lift_through_shared_ops`). A tensor that QAT quantized twice (a convolution's output that is the next convolution's input, with no activation
between them; a neck feature read by two head branches) keeps the widest of its ranges. Those are counted.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import numpy_helper


@dataclass
class Completion:
    """What :func:`complete_for_onnxruntime` kept from QAT."""

    activations: int  # activation tensors whose QAT scale was kept
    weights: int  # weights requantized to QAT's integers (per channel)
    merged: int  # tensors QAT quantized more than once; the widest range was kept
    missing: list[str]  # recorded tensors that onnxruntime's pre-processing renamed away (calibrated instead)


def _qparams(dq: onnx.NodeProto, inits: dict) -> tuple[np.ndarray, np.ndarray, int]:
    """(scale, zero point, axis) of a DequantizeLinear whose parameters are initializers."""
    scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
    zp_name = dq.input[2] if len(dq.input) > 2 else ""
    zp = numpy_helper.to_array(inits[zp_name]) if zp_name else np.zeros(scale.shape, np.uint8)
    return scale, zp, next((a.i for a in dq.attribute if a.name == "axis"), 1)


def _broadcast(values: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """Per-channel ``values`` shaped to broadcast along ``axis`` of an ``ndim`` tensor (a scalar stays one)."""
    shape = [1] * ndim
    if values.size > 1:
        shape[axis] = values.size
    return values.reshape(shape)


def _override(scale: np.ndarray, zp: np.ndarray, axis: int | None) -> list[dict]:
    """onnxruntime's TensorQuantOverrides entry for a fixed (scale, zero point): one dict per channel when ``axis``
    is given (the first names the axis and type), else one dict."""
    from onnxruntime.quantization import QuantType

    qtype = {np.dtype(np.int8): QuantType.QInt8, np.dtype(np.uint8): QuantType.QUInt8}[zp.dtype]
    pairs = [{"scale": np.asarray(s, np.float32), "zero_point": np.asarray(z, zp.dtype)} for s, z in zip(scale.reshape(-1), zp.reshape(-1))]
    pairs[0] = {**pairs[0], "quant_type": qtype, **({"axis": axis} if axis is not None else {})}
    return pairs if axis is not None else pairs[:1]


def strip_qdq(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, list[dict]], int]:
    """(float graph, TensorQuantOverrides, tensors quantized more than once) of a QDQ ``model`` (changed in place).

    Weights come as ``Q(float W) -> DQ`` (PyTorch's export) or as ``int8 W -> DQ`` (folded); either way the float
    graph holds them at their dequantized values. Activations come as ``Q -> DQ`` pairs."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    rename: dict[str, str] = {}  # DQ output -> the float tensor it stands for
    overrides: dict[str, list[dict]] = {}
    merged: set[str] = set()
    drop_nodes = []

    def resolve(name: str) -> str:
        while name in rename:
            name = rename[name]
        return name

    for dq in [n for n in g.node if n.op_type == "DequantizeLinear"]:
        scale, zp, axis = _qparams(dq, inits)
        q = producer.get(dq.input[0])
        ints = None
        if q is not None and q.op_type == "QuantizeLinear":  # Q -> DQ: an activation, or a float weight
            x = resolve(q.input[0])
            drop_nodes += [q, dq]
            if x in inits:
                w = numpy_helper.to_array(inits[x]).astype(np.float32)
                info = np.iinfo(zp.dtype)
                zpb = _broadcast(zp, w.ndim, axis).astype(np.float32)
                ints = np.clip(np.rint(w / _broadcast(scale, w.ndim, axis)) + zpb, info.min, info.max)
        elif dq.input[0] in inits:  # a folded integer weight
            x = dq.output[0] + "_float"
            ints = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float32)
            drop_nodes.append(dq)
        else:
            continue  # a DQ of something else: left as it is
        rename[dq.output[0]] = x
        if ints is not None:
            w = (ints - _broadcast(zp, ints.ndim, axis).astype(np.float32)) * _broadcast(scale, ints.ndim, axis)
            tensor = numpy_helper.from_array(w.astype(np.float32), name=x)
            if x in inits:
                inits[x].CopyFrom(tensor)
            else:
                g.initializer.append(tensor)
                inits[x] = tensor
            overrides[x] = _override(scale, zp, axis if scale.size > 1 else None)
            continue
        new = _override(scale, zp, None)
        if x in overrides:
            merged.add(x)
            if float(new[0]["scale"]) <= float(overrides[x][0]["scale"]):
                continue  # keep the widest range (u8/s8 alike: range = 255 x scale)
        overrides[x] = new
    for n in drop_nodes:
        g.node.remove(n)
    for n in g.node:  # the consumers of every removed DQ read the float tensor instead
        for k, i in enumerate(n.input):
            if i in rename:
                n.input[k] = resolve(i)
    if any(o.name in rename for o in g.output):
        raise ValueError("a graph output is a DequantizeLinear output: not a QAT export")
    used = {i for n in g.node for i in n.input}
    for init in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(init)
    return model, overrides, len(merged)


#: ops whose INT8 output onnxruntime's quantizer gives the scale of their input (they move data, not values)
SHARED_SCALE_OPS = ("Split", "Reshape", "Transpose", "Slice", "Squeeze", "Unsqueeze", "Flatten", "Gather", "MaxPool",
                    "Resize")


def lift_through_shared_ops(model: onnx.ModelProto, overrides: dict[str, list[dict]]) -> int:
    """Move the overrides of a data-movement op's outputs (:data:`SHARED_SCALE_OPS`) to its input, in place.

    onnxruntime quantizes such an output with its input's scale, so an override on the output would be dropped:
    QAT's scale for a C3k2 bottleneck's input (a Split chunk) is applied to the tensor before the Split instead
    (the widest when several chunks have one). Returns the number of inputs that received an override."""
    moved = 0
    for node in reversed(model.graph.node):  # consumers first, so chains (Reshape -> Split) carry through
        if node.op_type not in SHARED_SCALE_OPS or node.input[0] in overrides:
            continue
        found = [overrides[o] for o in node.output if o in overrides and "axis" not in overrides[o][0]]
        if found:
            overrides[node.input[0]] = max(found, key=lambda o: float(o[0]["scale"]))
            moved += 1
    return moved


def complete_for_onnxruntime(qdq_onnx: str | Path, out: str | Path, files: Sequence[Path], imgsz: int,
                             method: str = "percentile") -> Completion:
    """Quantize every op of the QAT QDQ file ``qdq_onnx`` as the PTQ path does, keeping QAT's scales; write ``out``
    atomically (calibrated on ``files``, train images as for PTQ)."""
    from .onnx_graph import FLOAT_GROUPS
    from .ptq import QuantSettings, _copy_metadata, quantize_onnx

    model, overrides, merged = strip_qdq(onnx.load(str(qdq_onnx)))
    lift_through_shared_ops(model, overrides)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="yolo_kd_qatc_", dir=out.parent) as tmp:
        float_path = Path(tmp) / "qat_float.onnx"
        onnx.save(model, str(float_path))
        _copy_metadata(qdq_onnx, float_path)
        present = _tensor_names(float_path)
        kept = {k: v for k, v in overrides.items() if k in present}
        settings = QuantSettings(extra_options={"TensorQuantOverrides": kept})
        quantize_onnx(float_path, out, files, imgsz, method=method, keep_float=FLOAT_GROUPS, settings=settings)
    weights = {i.name for i in model.graph.initializer}
    n_w = sum(1 for k in kept if k in weights)
    return Completion(activations=len(kept) - n_w, weights=n_w, merged=merged,
                      missing=sorted(k for k in overrides if k not in present))


def _tensor_names(path: Path) -> set[str]:
    """Tensor names that survive onnxruntime's quantization pre-processing of ``path``."""
    from onnxruntime.quantization import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="yolo_kd_pre_") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(path), str(pre), skip_symbolic_shape=True)
        m = onnx.load(str(pre))
    return ({i.name for i in m.graph.input} | {i.name for i in m.graph.initializer}
            | {o for n in m.graph.node for o in n.output})


__all__ = ["Completion", "SHARED_SCALE_OPS", "strip_qdq", "lift_through_shared_ops", "complete_for_onnxruntime"]
