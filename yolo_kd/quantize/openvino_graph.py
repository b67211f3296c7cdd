"""OpenVINO graph analysis: the detection decode tail of an ``openvino.Model`` (the same structural walk as the ONNX
path, :mod:`yolo_kd.quantize.graph_tail`), and which convolutions really run in INT8 on this CPU.

:func:`runtime_share` compiles the model for this CPU and reads each executed node's precision from
``compiled.get_runtime_model()``, the OpenVINO counterpart of :func:`yolo_kd.quantize.onnx_graph.kernel_share`.
"""

from __future__ import annotations

from pathlib import Path

from .graph_tail import GraphView, decode_tail_groups
from .onnx_graph import ConvKernel, KernelShare

_CONV = {"Convolution": "Conv", "GroupConvolution": "Conv"}
_NOT_NODES = {"Constant", "Parameter", "Result"}


def graph_view(model) -> GraphView:
    """An ``openvino.Model`` as :class:`GraphView` (convolutions named "Conv" like ONNX's; constants left out)."""
    def producers(node) -> list:
        out = []
        for port in node.inputs():
            src = port.get_source_output().get_node()
            out.append(None if src.get_type_name() in _NOT_NODES else src)
        return out

    ops = [n for n in model.get_ordered_ops() if n.get_type_name() not in _NOT_NODES]
    outputs = [r.input_value(0).get_node() for r in model.get_results()]
    return GraphView(nodes=ops, outputs=outputs, name=lambda n: n.get_friendly_name(),
                     op=lambda n: _CONV.get(n.get_type_name(), n.get_type_name()), inputs=producers,
                     key=lambda n: n.get_friendly_name())


def float_node_groups(model) -> dict[str, list[str]]:
    """The decode tail of an OpenVINO model in the ONNX path's groups: ``head``, ``dfl``, ``concat``."""
    return decode_tail_groups(graph_view(model))


# ------------------------------------------------------------------------------------------------ what runs INT8
def conv_macs(model) -> dict[str, int]:
    """MACs of every convolution of an ``openvino.Model`` by friendly name (static shapes, batch 1)."""
    out = {}
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in _CONV:
            continue
        w = list(op.get_input_partial_shape(1).get_shape())
        o = list(op.get_output_partial_shape(0).get_shape())
        spatial = 1
        for d in o[2:]:
            spatial *= d
        if kind == "GroupConvolution":  # weights (groups, out/groups, in/groups, kh, kw)
            k = w[0] * w[1]
            for d in w[2:]:
                k *= d
        else:  # (out, in, kh, kw)
            k = 1
            for d in w:
                k *= d
        out[op.get_friendly_name()] = int(spatial * k)
    return out


def runtime_share(path: str | Path, threads: int | None = 1) -> KernelShare:
    """Classify every convolution of an IR (or ONNX) by the precision it executes in on this CPU.

    OpenVINO's CPU plugin fuses layers and picks kernels at compile time; ``compiled.get_runtime_model()`` lists the
    executed nodes with ``runtimePrecision`` (u8/i8 for INT8 kernels) and ``originalLayersNames`` (the model's
    layers fused into the node). ``int8``: an INT8 kernel; ``float``: anything else. Weighted by MACs.
    """
    from .openvino_ir import compile_for_cpu

    compiled, model = compile_for_cpu(path, threads)
    macs = conv_macs(model)
    found: dict[str, ConvKernel] = {}
    op_counts: dict[str, int] = {}
    for node in compiled.get_runtime_model().get_ordered_ops():
        info = node.get_rt_info()
        layer = info["layerType"].astype(str)
        precision = info["runtimePrecision"].astype(str)
        op_counts[f"{layer}:{precision}"] = op_counts.get(f"{layer}:{precision}", 0) + 1
        kernel = info["primitiveType"].astype(str)
        for name in info["originalLayersNames"].astype(str).split(","):
            if name in macs:
                found[name] = ConvKernel(name, macs[name], "int8" if precision in {"u8", "i8"} else "float", kernel)
    convs = [found.get(n) or ConvKernel(n, m, "float", "not found") for n, m in macs.items()]
    return KernelShare(convs, dict(sorted(op_counts.items())))
