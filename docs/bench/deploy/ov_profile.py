"""Per-layer time of OpenVINO models on this CPU (``PERF_COUNT``), summed by executed layer type and precision.

    python docs/bench/deploy/ov_profile.py best_fp32_openvino_model best_int8_openvino_model \
        best_ultralytics_int8_openvino_model --threads 2 --runs 50 --out ov_profile.json

Each model is compiled as ``yolo_kd.deploy`` compiles it (one latency stream, f32 float layers, ``--threads``) with
``PERF_COUNT`` on, run on one letterboxed synthetic frame; the models are run in turns, one inference each, so
background load hits all of them alike. Each executed node's time is its smallest ``real_time`` over the runs after a
warm-up (on a shared CPU a preempted run inflates random nodes; the minimum is the undisturbed time), summed by
category.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from yolo_kd.data.synthetic import make_frame
from yolo_kd.quantize.calibration import letterbox_tensor
from yolo_kd.quantize.openvino_ir import ir_xml


def category(node_type: str, exec_type: str) -> str:
    precision = "int8" if any(t in exec_type.upper() for t in ("I8", "U8")) else "float"
    kind = {"Convolution": "Convolution", "GroupConvolution": "Convolution", "Reorder": "Reorder",
            "Concatenation": "Concat", "Subgraph": "Eltwise/Subgraph", "Eltwise": "Eltwise/Subgraph",
            "Pooling": "MaxPool", "Interpolate": "Resize", "SoftMax": "Softmax", "Softmax": "Softmax",
            "MatMul": "MatMul", "FullyConnected": "MatMul"}.get(node_type, "other")
    return f"{kind} ({precision})"


def main() -> None:
    import openvino as ov

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32",
              "INFERENCE_NUM_THREADS": a.threads, "PERF_COUNT": True}
    blob = letterbox_tensor(make_frame(), a.imgsz)
    requests = {}
    for m in a.models:
        path = Path(m)
        compiled = core.compile_model(core.read_model(str(ir_xml(path) if path.is_dir() else path)), "CPU", config)
        requests[m] = compiled.create_infer_request()
    samples = {m: defaultdict(list) for m in a.models}
    for i in range(a.warmup + a.runs):
        for m, req in requests.items():
            req.infer({0: blob})
            if i < a.warmup:
                continue
            for info in req.get_profiling_info():
                if info.status != info.Status.EXECUTED:
                    continue
                key = (info.node_name, category(info.node_type, info.exec_type), f"{info.node_type}, {info.exec_type}")
                samples[m][key].append(info.real_time.total_seconds() * 1e3)
    totals = {m: defaultdict(float) for m in a.models}
    nodes = {m: {} for m in a.models}
    for m in a.models:
        for (name, cat, kind), ms in samples[m].items():
            med = min(ms)
            totals[m][cat] += med
            nodes[m][f"{name} [{kind}]"] = med
    result = {"settings": vars(a), "openvino": ov.__version__, "models": {}}
    for m in a.models:
        total = sum(totals[m].values())
        top = sorted(nodes[m].items(), key=lambda kv: -kv[1])[:15]
        result["models"][m] = {
            "sum_ms": round(total, 2),
            "by_category": {k: {"ms": round(v, 2), "share": round(v / total, 3)}
                            for k, v in sorted(totals[m].items(), key=lambda kv: -kv[1])},
            "top_nodes": {k: round(v, 3) for k, v in top},
        }
    text = json.dumps(result, indent=1)
    if a.out:
        Path(a.out).write_text(text)
    cats = sorted({c for m in a.models for c in totals[m]}, key=lambda c: -max(totals[m].get(c, 0) for m in a.models))
    print("| layer type (precision) | " + " | ".join(Path(m).name for m in a.models) + " |")
    print("|---|" + "--:|" * len(a.models))
    for c in cats:
        cells = [f"{totals[m].get(c, 0):.2f} ms ({totals[m].get(c, 0) / sum(totals[m].values()):.0%})" for m in a.models]
        print(f"| {c} | " + " | ".join(cells) + " |")
    print("| sum of layer times | " + " | ".join(f"{sum(totals[m].values()):.2f} ms" for m in a.models) + " |")


if __name__ == "__main__":
    main()
