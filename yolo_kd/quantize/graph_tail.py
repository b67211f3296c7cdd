"""The detection decode tail of a graph, found by structure: one walk shared by ONNX graphs and OpenVINO models.

A YOLO detection graph ends in a *decode*: the box and class output convolutions, then DFL (reshape, softmax, a
1x1 conv), anchor/stride arithmetic, a class sigmoid and the Concat that puts pixel boxes next to 0-1 scores. That
decode is what INT8 hurts most for the least time, so both INT8 paths keep it float. It is found by walking back
from the graph outputs and stopping at convolutions (the DFL conv, fed by a Softmax, is walked through), never by
layer numbers, so pruned models and other YOLO families work too.

The walk sees a graph only through :class:`GraphView` (a node's name, op type and producers), so
:func:`yolo_kd.quantize.onnx_graph.float_node_groups` and :func:`yolo_kd.quantize.openvino_ir.float_node_groups` give
the same groups for the same network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable, Sequence

SHAPE_OPS = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze"}


@dataclass
class GraphView:
    """How :func:`decode_tail_groups` sees a graph.

    ``nodes``: every compute node (no constants, no graph inputs); ``outputs``: the nodes that produce the graph
    outputs; ``name(node)``, ``op(node)`` (ONNX op names: a convolution is "Conv"), ``inputs(node)``: the producer
    of each input in input order, None for a graph input or a constant; ``key(node)``: a hashable identity.
    """

    nodes: Sequence
    outputs: Sequence
    name: Callable[[object], str]
    op: Callable[[object], str]
    inputs: Callable[[object], list]
    key: Callable[[object], Hashable] = id


def decode_tail_groups(g: GraphView) -> dict[str, list[str]]:
    """Name the decode tail's nodes in three groups (sorted names each):

    - ``head``: the box and class output convolutions (the tail's entry convs);
    - ``cls_head``: the class output convolutions alone (a subset of ``head``: the convs whose output reaches the
      class sigmoid);
    - ``dfl``: the rest of the decode: DFL reshape/softmax/conv, anchor/stride arithmetic, class sigmoid;
    - ``concat``: Concats that join the box branch and the class branch (pixel boxes next to 0-1 scores).
    """

    def fed_by_softmax(node) -> bool:
        ins = g.inputs(node)
        src = ins[0] if ins else None
        while src is not None and g.op(src) in SHAPE_OPS:
            ins = g.inputs(src)
            src = ins[0] if ins else None
        return src is not None and g.op(src) == "Softmax"

    tail, heads, seen = [], [], set()
    stack = list(g.outputs)
    while stack:
        node = stack.pop()
        if g.key(node) in seen:
            continue
        seen.add(g.key(node))
        if g.op(node) == "Conv" and not fed_by_softmax(node):
            heads.append(node)
            continue
        tail.append(node)
        stack.extend(p for p in g.inputs(node) if p is not None)

    tail_keys = {g.key(n) for n in tail}
    consumers: dict[Hashable, list] = {}
    for node in g.nodes:
        for p in g.inputs(node):
            if p is not None:
                consumers.setdefault(g.key(p), []).append(node)

    def downstream(node) -> set:
        """keys of tail nodes reachable from ``node``."""
        found, todo = set(), [node]
        while todo:
            for c in consumers.get(g.key(todo.pop()), []):
                if g.key(c) in tail_keys and g.key(c) not in found:
                    found.add(g.key(c))
                    todo.append(c)
        return found

    by_key = {g.key(n): n for n in tail}
    reach = {g.key(h): downstream(h) for h in heads}
    # class convs lead to a Sigmoid inside the tail; box convs do not (their path goes through the DFL)
    is_cls = {k: any(g.op(by_key[i]) == "Sigmoid" for i in r) for k, r in reach.items()}
    cls_reach = set().union(*(r for k, r in reach.items() if is_cls[k]))
    box_reach = set().union(*(r for k, r in reach.items() if not is_cls[k]))
    both = cls_reach & box_reach
    concat = [n for n in tail if g.op(n) == "Concat" and g.key(n) in both
              and not any(p is not None and g.key(p) in both for p in g.inputs(n))]
    concat_keys = {g.key(n) for n in concat}
    rest = [n for n in tail if g.key(n) not in concat_keys]
    return {"head": sorted(g.name(h) for h in heads), "cls_head": sorted(g.name(h) for h in heads if is_cls[g.key(h)]),
            "dfl": sorted(g.name(n) for n in rest), "concat": sorted(g.name(n) for n in concat)}
