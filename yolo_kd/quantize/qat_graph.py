"""The QAT ONNX completed for onnxruntime: every op PTQ quantizes runs in INT8, with the scales QAT trained.

QAT fake-quantizes convolutions only (:mod:`yolo_kd.quantize.fake_quant`), so its QDQ file runs SiLU (Sigmoid, Mul),
Add, Concat, MaxPool and Resize in float between Q/DQ pairs. onnxruntime then dequantizes and requantizes around
every activation: the edge chain's pruned yolo11n ran in 41 ms at 640 px, against 30 ms as FP32 and 28 ms as PTQ's
all-ops file (docs/int8.md).

:func:`complete_for_onnxruntime` keeps what QAT learned and lets onnxruntime's own quantizer do the rest:

1. :func:`strip_qdq` turns the QDQ file back into a float graph: each Q/DQ pair is removed, and the quantization it
   applied (scale, zero point; per output channel for weights) is recorded as a ``TensorQuantOverrides`` entry for the
   float tensor. Weights are stored at their dequantized int8 values, so requantizing them with the recorded scales
   gives back exactly QAT's integers.
2. :func:`saturating_copy` is that float graph with every tensor QAT quantized clipped to its QAT range. A QAT
   network needs the clipping (its ranges were fixed while it trained; the plain float graph of a 5-epoch QAT run
   scored 0.03 mAP50-95 where its INT8 file scored 80.6), so the ranges of the tensors QAT left float (the Sigmoid
   outputs, Add and Concat results, ...) are calibrated on it (:func:`calibrate_ranges`, onnxruntime's calibrator,
   train images, the PTQ path's method).
3. The PTQ path's ``quantize_static`` (:func:`yolo_kd.quantize.ptq.quantize_onnx`: all op types, u8 activations,
   the decode kept float) quantizes the float graph with all of it as overrides: every weight gets QAT's integers,
   every tensor QAT quantized QAT's scale, every other tensor its range from step 2.

Where onnxruntime gives a data-movement op's output its input's scale (a Split chunk that a C3k2 bottleneck reads
through its own quantizer), that output keeps the scale of the tensor before the op, not QAT's: in yolo11n, 13 of the
81 convolution inputs. Keeping those ops float to requantize them gave the same mAP and cost time, so they are not.
A tensor that QAT quantized twice (a neck feature read by two head branches, when their scales differ) keeps the
widest of its ranges; those are counted.
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
    drop_nodes: dict[int, onnx.NodeProto] = {}  # by id: a Q read by two DQs is removed once

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
            drop_nodes.update({id(q): q, id(dq): dq})
            if x in inits:
                w = numpy_helper.to_array(inits[x]).astype(np.float32)
                info = np.iinfo(zp.dtype)
                zpb = _broadcast(zp, w.ndim, axis).astype(np.float32)
                ints = np.clip(np.rint(w / _broadcast(scale, w.ndim, axis)) + zpb, info.min, info.max)
        elif dq.input[0] in inits:  # a folded integer weight
            x = dq.output[0] + "_float"
            ints = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float32)
            drop_nodes[id(dq)] = dq
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
    for n in drop_nodes.values():
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


def _range_clip(g: onnx.GraphProto, x: str, out: str, scale: float, zp: np.ndarray, tag: str) -> onnx.NodeProto:
    """A Clip of tensor ``x`` into ``out`` to the range a quantizer (``scale``, zero point ``zp``: its dtype gives
    the integer bounds) represents; its two bounds are added to ``g`` as ``<tag>_lo`` / ``<tag>_hi``."""
    info, z = np.iinfo(np.asarray(zp).dtype), int(np.asarray(zp).reshape(-1)[0])
    lo, hi = f"{tag}_lo", f"{tag}_hi"
    g.initializer.extend([numpy_helper.from_array(np.array((info.min - z) * scale, np.float32), lo),
                          numpy_helper.from_array(np.array((info.max - z) * scale, np.float32), hi)])
    return onnx.helper.make_node("Clip", [x, lo, hi], [out], name=f"{tag}_clip")


def saturating_copy(model: onnx.ModelProto, overrides: dict[str, list[dict]]) -> onnx.ModelProto:
    """A copy of the float graph in which every activation QAT quantized saturates at its QAT range (a Clip).

    A network trained with fake quantization relies on it: the ranges were held fixed while it trained, and values
    beyond them were clipped with no gradient, so without the clipping its activations run away (the plain float
    graph of a QAT run scored 0.03 mAP50-95 where its INT8 file scored 80). The ranges of the tensors QAT left float
    are calibrated on this copy, which computes what the QAT network computes up to the rounding."""
    import copy

    m = copy.deepcopy(model)
    g = m.graph
    weights = {i.name for i in g.initializer}
    clips: dict[str, onnx.NodeProto] = {}  # tensor -> the Clip that saturates it
    for name, over in overrides.items():
        if name in weights:
            continue
        clips[name] = _range_clip(g, name, f"{name}_qat_clipped", float(over[0]["scale"]), over[0]["zero_point"],
                                  f"{name}_qat")
    # each Clip right after what produces its tensor (graph inputs: first), every reader moved to the clipped tensor
    order = [clips[i.name] for i in g.input if i.name in clips]
    for n in g.node:
        for k, i in enumerate(n.input):
            if i in clips:
                n.input[k] = clips[i].output[0]
        order += [n] + [clips[o] for o in n.output if o in clips]
    del g.node[:]
    g.node.extend(order)
    return m


def calibrate_ranges(model: onnx.ModelProto, files: Sequence[Path], imgsz: int, method: str = "percentile"
                     ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(rmin, rmax) of every tensor of ``model`` over ``files``, by onnxruntime's calibrator (``method`` as for PTQ;
    a tensor the histogram cannot bin falls back to MinMax)."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    from .calibration import make_reader, minmax_fallback

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory(prefix="yolo_kd_cal_") as tmp:
        path = Path(tmp) / "calib.onnx"
        onnx.save(model, str(path))
        calibrator = create_calibrator(path, None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=methods[method])
        with minmax_fallback(method):
            calibrator.collect_data(make_reader(files, imgsz, model.graph.input[0].name))
            data = calibrator.compute_data()
    return {name: tuple(np.asarray(v, np.float32) for v in d.range_value[:2]) for name, d in data.items()}


def complete_for_onnxruntime(qdq_onnx: str | Path, out: str | Path, files: Sequence[Path], imgsz: int,
                             method: str = "percentile") -> Completion:
    """Quantize every op of the QAT QDQ file ``qdq_onnx`` as the PTQ path does, keeping QAT's scales; write ``out``
    atomically (calibrated on ``files``, train images as for PTQ)."""
    from .onnx_graph import FLOAT_GROUPS
    from .ptq import QuantSettings, _copy_metadata, quantize_onnx

    model, overrides, merged = strip_qdq(onnx.load(str(qdq_onnx)))
    ranges = calibrate_ranges(saturating_copy(model, overrides), files, imgsz, method)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="yolo_kd_qatc_", dir=out.parent) as tmp:
        float_path = Path(tmp) / "qat_float.onnx"
        onnx.save(model, str(float_path))
        _copy_metadata(qdq_onnx, float_path)
        activations, weights = _tensor_names(float_path)
        present = activations | weights
        kept = {k: v for k, v in overrides.items() if k in present}
        # the tensors QAT left float: the ranges they have in the saturating copy, not in the runaway float graph
        calibrated = {k: [{"rmin": lo, "rmax": hi}] for k, (lo, hi) in ranges.items() if k in present and k not in kept}
        settings = QuantSettings(extra_options={"TensorQuantOverrides": {**calibrated, **kept}})
        # quantize_static calibrates once more, on the float graph; when every activation already has its range
        # from above, that pass is only a formality, so one image does
        covered = activations <= set(calibrated) | set(kept)
        quantize_onnx(float_path, out, files[:1] if covered else files, imgsz, method=method, keep_float=FLOAT_GROUPS,
                      settings=settings)
    n_w = sum(1 for k in kept if k in weights)
    return Completion(activations=len(kept) - n_w, weights=n_w, merged=merged,
                      missing=sorted(k for k in overrides if k not in present))


_SILU = frozenset({"Sigmoid", "Mul"})  # the ops of a SiLU as exported: x * Sigmoid(x)


def clip_conv_outputs(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """``model`` (a QAT QDQ file, changed in place) with each Q/DQ pair on a convolution's output that only its SiLU
    (Sigmoid, Mul) reads replaced by a Clip to the pair's range; returns (model, pairs replaced).

    The OpenVINO file. QAT fake-quantizes a convolution's output before its activation because onnxruntime's
    ``QLinearConv`` needs a quantized output. OpenVINO fuses the activation into the convolution and quantizes the
    activation's result where the next op reads it, so a FakeQuantize between a convolution and its SiLU is one more
    elementwise pass over every feature map. The network still needs the saturation it trained with
    (:func:`saturating_copy`), which a Clip keeps and OpenVINO fuses into the convolution; only the rounding of the
    pre-activation goes. Each Clip takes the Q node's place and the DQ's output name, so the order stays topological."""
    g = model.graph
    nodes = list(g.node)  # every node by position; ids below are of these objects, alive until the end
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in nodes for o in n.output}
    read_by: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for i in n.input:
            read_by.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in g.output}
    swap: dict[int, onnx.NodeProto] = {}  # id(Q) -> the Clip in its place; its DQ is dropped
    dropped: set[int] = set()
    for q in [n for n in nodes if n.op_type == "QuantizeLinear"]:
        src, dqs = producer.get(q.input[0]), read_by.get(q.output[0], [])
        if src is None or src.op_type != "Conv" or len(dqs) != 1 or dqs[0].op_type != "DequantizeLinear":
            continue
        dq = dqs[0]
        after = {n.op_type for n in read_by.get(dq.output[0], [])}
        if not after or not after <= _SILU or dq.output[0] in graph_outputs or q.output[0] in graph_outputs:
            continue
        scale, zp, _ = _qparams(dq, inits)
        if scale.size != 1:
            continue
        swap[id(q)] = _range_clip(g, q.input[0], dq.output[0], float(scale.reshape(-1)[0]), zp, q.name or q.output[0])
        dropped.add(id(dq))
    order = [swap.get(id(n), n) for n in nodes if id(n) not in dropped]
    del g.node[:]
    g.node.extend(order)
    used = {i for n in g.node for i in n.input}
    for init in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(init)
    return model, len(swap)


def trained_float_graph(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, list[dict]]]:
    """(float graph, QAT's quantization per tensor) of a QAT QDQ file ``model`` (changed in place): the network QAT
    trained, for a quantizer that places its own quantizers (NNCF for OpenVINO).

    Each convolution's pre-activation quantizer becomes the Clip to its range (:func:`clip_conv_outputs`: the
    saturation the network trained with, which OpenVINO fuses into the convolution), every other Q/DQ pair is taken
    out (:func:`strip_qdq`) and every weight stays at its QAT integer times its QAT scale. Without the Clips the
    activations run away (a 5-epoch QAT run's plain float graph scored 0.03 mAP50-95, :func:`saturating_copy`).
    A file without pre-activation quantizers (QAT's ``nncf`` placement: the quantizers sit after the activations)
    keeps the saturation of every activation it quantized instead."""
    model, clipped = clip_conv_outputs(model)
    model, overrides, _ = strip_qdq(model)
    if not clipped:
        model = saturating_copy(model, overrides)
    return model, overrides


def _tensor_names(path: Path) -> tuple[set[str], set[str]]:
    """(activation tensors: graph inputs and node outputs, initializers) that survive onnxruntime's quantization
    pre-processing of ``path``."""
    from onnxruntime.quantization import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="yolo_kd_pre_") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(path), str(pre), skip_symbolic_shape=True)
        m = onnx.load(str(pre))
    return ({i.name for i in m.graph.input} | {o for n in m.graph.node for o in n.output},
            {i.name for i in m.graph.initializer})


__all__ = ["Completion", "strip_qdq", "saturating_copy", "calibrate_ranges",
           "complete_for_onnxruntime", "clip_conv_outputs", "trained_float_graph"]
