"""ONNX graph analysis for INT8 export: which nodes stay float, and which convolutions run as INT8 kernels.

:func:`float_node_groups` names the detection decode tail (head convs, DFL, box/score concat) by structure
(:mod:`yolo_kd.quantize.graph_tail`), so it can be kept in float. Did the quantization take? :func:`kernel_share` counts which convolutions run in INT8
kernels after onnxruntime's graph optimisation.

A QDQ model only says *where* tensors may be INT8. onnxruntime fuses ``DQ -> Conv -> Q`` into an INT8 kernel
(``QLinearConv``) only when its rules allow; an unfused Conv runs in float with the Q/DQ pairs as pure overhead.
:func:`kernel_share` asks onnxruntime for its optimised graph (``SessionOptions.optimized_model_filepath``) and
counts, per convolution of the original graph, what it became, weighted by multiply-accumulates (MACs).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import onnx

from ..core.errors import KDError
from ..core.log import LOGGER
from ..core.timing import onnx_session
from .graph_tail import GraphView, decode_tail_groups

#: keep-float groups: the detection decode after the backbone/neck, see :func:`float_node_groups`; the default of
#: the onnxruntime path and what "all" means
FLOAT_GROUPS = ("head", "dfl", "concat")
#: every group name: ``cls_head`` is the class half of ``head`` (the OpenVINO path's default keeps only it float)
GROUPS = ("head", "cls_head", "dfl", "concat")
#: op types that are an INT8 convolution kernel in onnxruntime (any domain, NCHW or NHWC variants)
INT8_CONV_OPS = {"QLinearConv", "ConvInteger", "NhwcQLinearConv"}
#: op types that are a float convolution (plain, activation-fused, NCHWc-blocked)
FLOAT_CONV_OPS = {"Conv", "FusedConv", "NhwcFusedConv"}


@dataclass
class ConvKernel:
    """One convolution of the original graph and the kernel it runs as."""

    name: str
    macs: int
    kind: str  # "int8" | "float_qdq" (float Conv between Q/DQ nodes) | "float"
    op: str  # op type in the optimised graph


@dataclass
class KernelShare:
    """INT8 share of a model's convolutions in onnxruntime's optimised graph."""

    convs: list[ConvKernel] = field(default_factory=list)
    op_counts: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        return sum(c.kind == kind for c in self.convs)

    def macs(self, kind: str) -> int:
        return sum(c.macs for c in self.convs if c.kind == kind)

    @property
    def n_conv(self) -> int:
        return len(self.convs)

    @property
    def n_int8(self) -> int:
        return self.count("int8")

    @property
    def int8_mac_share(self) -> float:
        """Share (0-1) of all convolution MACs that run in INT8 kernels."""
        total = sum(c.macs for c in self.convs)
        return self.macs("int8") / total if total else 0.0

    def summary(self) -> dict:
        """Counts and shares, JSON-ready."""
        return {
            "convs": self.n_conv,
            "int8": self.n_int8,
            "float_qdq": self.count("float_qdq"),
            "float": self.count("float"),
            "int8_mac_share": round(self.int8_mac_share, 4),
            "gmacs": round(sum(c.macs for c in self.convs) / 1e9, 3),
            "quantize_linear": self.op_counts.get("QuantizeLinear", 0),
            "dequantize_linear": self.op_counts.get("DequantizeLinear", 0),
        }

    def to_dict(self) -> dict:
        return {"summary": self.summary(), "op_counts": self.op_counts, "convs": [asdict(c) for c in self.convs]}


def conv_macs(model: onnx.ModelProto) -> dict[str, int]:
    """MACs of every Conv node by name: H_out * W_out * C_out * (C_in / group) * kH * kW, batch 1.

    Needs static shapes (a fixed-size export); weights may sit behind a DequantizeLinear (QDQ models).
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    out = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        w = node.input[1]
        while w not in inits and w in producer and producer[w].op_type in {"DequantizeLinear", "QuantizeLinear", "Identity"}:
            w = producer[w].input[0]
        wshape = inits.get(w) or shapes.get(w)
        oshape = shapes.get(node.output[0])
        if not wshape or not oshape or len(oshape) < 3 or 0 in oshape:
            out[node.name] = 0
            continue
        spatial = 1
        for d in oshape[2:]:
            spatial *= d
        k = 1
        for d in wshape[1:]:
            k *= d
        out[node.name] = int(spatial * wshape[0] * k)
    return out


def optimized_model(path: str | Path, level: str = "all", threads: int = 1) -> onnx.ModelProto:
    """The graph onnxruntime actually runs on this CPU, at optimisation ``level`` ("basic", "extended", "all")."""
    import onnxruntime as ort

    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    with tempfile.TemporaryDirectory(prefix="yolo_kd_opt_") as tmp:
        optimized = str(Path(tmp) / "optimized.onnx")
        # the "hardware specific optimizations" notice is expected here: onnx_session keeps it quiet
        onnx_session(path, threads, graph_optimization_level=levels[level], optimized_model_filepath=optimized)
        return onnx.load(optimized)


def _origin(name: str, keys: dict[str, str]) -> str | None:
    """The original Conv an optimised node came from. ORT derives new names from the original node name
    (``X_token_3``) or from its output tensor (``out_nchwc``); ``keys`` maps both to the node name. Longest match wins."""
    best = None
    for key in keys:
        if (name == key or name.startswith(key + "_")) and (best is None or len(key) > len(best)):
            best = key
    return keys[best] if best is not None else None


def kernel_share(path: str | Path, level: str = "all") -> KernelShare:
    """Classify every Conv of the model at ``path`` by the kernel it runs as after onnxruntime's optimisation.

    ``int8``: a QLinearConv/ConvInteger; ``float_qdq``: a float conv reading a DequantizeLinear output or feeding a
    QuantizeLinear (paying Q/DQ overhead with no INT8 gain); ``float``: a plain float conv.
    """
    original = onnx.load(str(path))
    macs = conv_macs(original)
    names = list(macs)  # graph order
    keys = {o: n.name for n in original.graph.node if n.op_type == "Conv" for o in n.output[:1]}
    keys.update({n: n for n in names})
    opt = optimized_model(path, level)
    producer = {o: n for n in opt.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in opt.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    op_counts: dict[str, int] = {}
    for n in opt.graph.node:
        op_counts[n.op_type] = op_counts.get(n.op_type, 0) + 1

    def near_qdq(node: onnx.NodeProto) -> bool:
        ins = [producer.get(i) for i in node.input[:1]]
        outs = [c for o in node.output for c in consumers.get(o, [])]
        hops = {"ReorderInput", "ReorderOutput", "Transpose"}  # layout nodes ORT inserts between Q/DQ and Conv
        ins = [producer.get(p.input[0]) if p is not None and p.op_type in hops else p for p in ins]
        outs = [d for c in outs for d in (consumers.get(c.output[0], []) if c.op_type in hops else [c])]
        return any(p is not None and p.op_type == "DequantizeLinear" for p in ins) or any(
            c.op_type == "QuantizeLinear" for c in outs
        )

    found: dict[str, ConvKernel] = {}
    for node in opt.graph.node:
        if node.op_type in INT8_CONV_OPS:
            kind = "int8"
        elif node.op_type in FLOAT_CONV_OPS:
            kind = "float_qdq" if near_qdq(node) else "float"
        else:
            continue
        origin = _origin(node.name, keys) or node.name
        found[origin] = ConvKernel(origin, macs.get(origin, 0), kind, node.op_type)
    convs = [found.get(n) or ConvKernel(n, macs[n], "float", "not found") for n in names]
    convs += [c for n, c in found.items() if n not in macs]
    return KernelShare(convs, dict(sorted(op_counts.items())))


# ---------------------------------------------------------------------------------------------- float-kept nodes
def float_node_groups(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Name the accuracy-sensitive nodes of a detection graph, by structure (not by layer index).

    The *decode tail* is everything between the last feature convolutions and the outputs (see
    :mod:`yolo_kd.quantize.graph_tail`, shared with the OpenVINO path). Groups: ``head`` (box and class output
    convolutions; ``cls_head``: the class ones alone), ``dfl`` (the rest of the decode) and ``concat`` (the Concat of
    pixel boxes and 0-1 scores).
    """
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    view = GraphView(
        nodes=list(graph.node),
        outputs=[producer[o.name] for o in graph.output if o.name in producer],
        name=lambda n: n.name,
        op=lambda n: n.op_type,
        inputs=lambda n: [producer.get(i) for i in n.input],
    )
    return decode_tail_groups(view)


def parse_keep_float(keep_float: Iterable[str] | str | None, onnxruntime: bool = True) -> tuple[str, ...]:
    """Normalise ``keep_float`` ("head,dfl", ["head"], "none", None) to a tuple of known group names.

    For onnxruntime a float head needs a float DFL after it: ``head`` alone adds ``dfl`` (with a warning; the
    OpenVINO path, which has no such need, passes ``onnxruntime=False`` and gets the groups as asked).
    """
    if keep_float is None:
        return ()
    items = keep_float.split(",") if isinstance(keep_float, str) else list(keep_float)
    items = [s.strip().lower() for s in items if s.strip() and s.strip().lower() != "none"]
    if "all" in items:
        return FLOAT_GROUPS
    bad = [s for s in items if s not in GROUPS]
    if bad:
        raise KDError(f"unknown keep-float group {bad[0]!r}: choose from {', '.join(GROUPS)}, 'all' or 'none'")
    if "head" in items and "cls_head" in items:
        items.remove("cls_head")  # a part of head
    if ("head" in items or "cls_head" in items) and "dfl" not in items and onnxruntime:
        # A float Conv between a DequantizeLinear and a QuantizeLinear is re-quantized by onnxruntime at load time
        # (QDQ propagation moves the decode's Q up through Reshape, then its weights are quantized): a float head
        # needs a float decode after it.
        LOGGER.warning("keep-float 'head' needs 'dfl' too (onnxruntime would quantize the head convs at load): adding 'dfl'")
        items.append("dfl")
    return tuple(g for g in GROUPS if g in items)
