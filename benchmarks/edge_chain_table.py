"""The edge chain's table and Pareto plot (issue 16), from the runs ``benchmarks/edge_chain.sh`` leaves in ``--out``.

Stages (per seed ``S``): ``vanilla-sS`` (yolo11n, the baseline), ``kd-sS`` (distilled), ``kdft-sS`` (the distilled
student fine-tuned with the teacher for as many epochs as pruning adds: pruning's reference), ``prune-sS`` (pruned in
steps with distillation fine-tuning), ``ft-sS`` (the pruned model fine-tuned FP32 with the teacher for the QAT
epochs: the equal-epochs reference), ``qat-sS`` (PTQ of the pruned model and QAT with the teacher: its
``parent_ptq_int8.onnx`` and ``qat_int8.onnx``), ``ptq_nncf`` (with ``--openvino``: the pruned model quantized by
OpenVINO's own path, NNCF on its FP32 IR, timed on OpenVINO only) and ``qat-plain-sS`` (QAT without teacher).

mAP50-95 of every stage is measured on ONNX files at the training size with Ultralytics' validator (every file
the same way); mean ± std over the seeds. Size, INT8 share and latency are measured once, on seed 0's files
exported at ``--lat-imgsz`` (default 640), all files taking turns in one process (``yolo_kd.quantize.report``).
Params and GFLOPs (at 640) come from the checkpoints; an INT8 file has its parent's.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

STAGES = [  # (key, label, run folder prefix, what: "pt" checkpoint or an ONNX file name in the QAT run)
    ("vanilla", "vanilla yolo11n, FP32 (baseline)", "vanilla", "pt"),
    ("kd", "distilled, FP32", "kd", "pt"),
    ("kdft", "distilled + FP32 fine-tune (pruning's epochs, teacher)", "kdft", "pt"),
    ("pruned", "distilled + pruned, FP32", "prune", "pt"),
    ("ft", "pruned + FP32 fine-tune (QAT epochs, teacher)", "ft", "pt"),
    ("ptq", "pruned, INT8 PTQ", "qat", "parent_ptq_int8.onnx"),
    ("ptq_nncf", "pruned, INT8 PTQ by NNCF (OpenVINO only)", "qat", "openvino"),
    ("qat_plain", "pruned, INT8 QAT without teacher", "qat-plain", "qat_int8.onnx"),
    ("qat_kd", "pruned, INT8 QAT with teacher", "qat", "qat_int8.onnx"),
]


def _checkpoint(out: Path, stage: tuple, seed: int) -> Path:
    key, _, prefix, what = stage
    run = out / f"{prefix}-s{seed}"
    return run / "weights" / "best.pt" if what == "pt" else run / "train" / "weights" / "best.pt"


def _onnx(out: Path, stage: tuple, seed: int, imgsz: int, data: str) -> Path:
    """The stage's ONNX file at ``imgsz`` (exported once, cached beside its run)."""
    from yolo_kd.quantize.ptq import export_fp32, export_int8
    from yolo_kd.quantize.qat import export_qat_int8
    from yolo_kd.core.checkpoints import load_yolo

    key, _, prefix, what = stage
    run = out / f"{prefix}-s{seed}"
    if what == "openvino":  # OpenVINO's own INT8 path: NNCF quantizes the pruned model's FP32 IR (an IR, not an ONNX)
        from yolo_kd.quantize.openvino_ir import ir_dir

        ir = ir_dir(run, f"chain_{key}_{imgsz}")
        if ir.is_dir():
            return ir
        parent = out / f"prune-s{seed}" / "weights" / "best.pt"
        return export_int8(parent, data, imgsz=imgsz, calib_images=128, out_dir=run, fp32_name=f"chain_parent_{imgsz}.onnx",
                           int8_name=f"chain_{key}_{imgsz}.onnx", backend="openvino").openvino_int8
    target = run / f"chain_{key}_{imgsz}.onnx"
    if target.is_file():
        return target
    if what == "pt":
        return export_fp32(load_yolo(_checkpoint(out, stage, seed)), target, imgsz)
    if key == "ptq":
        parent = out / f"prune-s{seed}" / "weights" / "best.pt"
        return export_int8(parent, data, imgsz=imgsz, calib_images=128, out_dir=run, fp32_name=f"chain_parent_{imgsz}.onnx",
                           int8_name=target.name, backend="onnxruntime").int8_onnx
    return export_qat_int8(run / "train" / "weights" / "best.pt", run, imgsz, data, 128, name=target.stem)[0]


def verdicts(results: list[dict]) -> list[str]:
    """The issue's targets, read off the table's rows (``stage``, ``mean`` and ``std`` over the seeds, ``gflops``,
    ``x_baseline``, and ``x_baseline_openvino`` where OpenVINO timed them): one line each, "met" or "not met" with the
    numbers; the final model's line once per runtime, each against the baseline on that runtime. Stages that were not
    run are skipped."""
    by = {r["stage"]: r for r in results}
    pts = lambda r: 100 * r["mean"]  # noqa: E731
    lines = []
    int8 = [by[k] for k in ("ptq", "ptq_nncf", "qat_plain", "qat_kd") if k in by]
    for runtime, key in (("onnxruntime", "x_baseline"), ("OpenVINO", "x_baseline_openvino")):
        timed = [r for r in int8 if r.get(key) is not None]
        if timed and "vanilla" in by:  # the camera model: the fastest INT8 file, against the baseline on one runtime
            final = min(timed, key=lambda r: r[key])
            d, x = pts(final) - pts(by["vanilla"]), final[key]
            lines.append(f"final model on {runtime} (fastest INT8 file: {final['stage']}): {x:.2f}x the baseline's latency "
                         f"(target <= 0.25x), mAP50-95 {d:+.1f} against it (target >= 0): {'met' if x <= 0.25 and d >= 0 else 'not met'}")
    ref = by.get("kdft") or by.get("kd")
    if ref and "pruned" in by:
        g, d = by["pruned"]["gflops"] / ref["gflops"], pts(by["pruned"]) - pts(ref)
        lines.append(f"pruning: {g:.2f}x the GFLOPs, mAP50-95 {d:+.1f} against the unpruned student "
                     f"({'given the same extra epochs' if ref['stage'] == 'kdft' else 'WITHOUT the extra epochs'}; target "
                     f">= -1.0 at <= 0.5x): {'met' if g <= 0.5 and d >= -1.0 else 'not met'}")
    if "qat_kd" in by and "ft" in by:
        q, loss = by["qat_kd"], pts(by["qat_kd"]) - pts(by["ft"])
        line = f"QAT with teacher: {loss:+.1f} against its FP32 fine-tune (target >= -0.1)"
        ok = loss >= -0.1
        if "ptq" in by:
            gain, noise = pts(q) - pts(by["ptq"]), 100 * max(q["std"], by["ptq"]["std"])
            line += f", {gain:+.1f} against PTQ (seed spread {noise:.1f}; target: more than the spread)"
            ok = ok and gain > noise
        lines.append(f"{line}: {'met' if ok else 'not met'}")
    return lines


def plot(results: list[dict], path: Path, lat_imgsz: int, threads: int) -> Path:
    """mAP50-95 (mean ± std over seeds) against latency for every stage: filled markers on onnxruntime, hollow ones
    on OpenVINO where measured, and the Pareto front (the stages no other file beats in both) joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(lat, 100 * r["mean"]) for r in results for lat in (r["latency_ms"], r.get("openvino_latency_ms")) if lat]
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, r in enumerate(results):
        colour = f"C{i % 10}"
        if r["latency_ms"]:
            ax.errorbar(r["latency_ms"], 100 * r["mean"], yerr=100 * r["std"], fmt="o", capsize=3, color=colour, label=r["stage"])
        if r.get("openvino_latency_ms"):
            ax.errorbar(r["openvino_latency_ms"], 100 * r["mean"], yerr=100 * r["std"], fmt="o", mfc="none", capsize=3,
                        color=colour, label=None if r["latency_ms"] else r["stage"])
    front, best = [], float("-inf")
    for lat, m in sorted(points):
        if m > best:
            front.append((lat, m))
            best = m
    ax.plot(*zip(*front), "k--", lw=0.8, alpha=0.6, label="Pareto front")
    ax.set_xlabel(f"latency ms ({lat_imgsz} px, {threads} threads): filled = onnxruntime, hollow = OpenVINO")
    ax.set_ylabel("mAP50-95")
    ax.set_title("edge chain: mAP vs latency, every stage")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--imgsz", type=int, required=True, help="training size: mAP is measured here")
    p.add_argument("--lat-imgsz", type=int, default=640)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--latency-seconds", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--openvino", action="store_true", help="also time every file as an OpenVINO IR (in the same turns)")
    p.add_argument("--plot-only", action="store_true", help="redraw edge_chain.png from --out's edge_chain.json, nothing timed")
    a = p.parse_args()
    if a.plot_only:
        saved = json.loads((Path(a.out) / "edge_chain.json").read_text())
        print(plot(saved["rows"], Path(a.out) / "edge_chain.png", saved["lat_imgsz"], a.threads))
        return
    from yolo_kd.core.checkpoints import load_checkpoint_model
    from yolo_kd.core.files import write_json_atomic, write_text_atomic
    from yolo_kd.core.tables import markdown_table
    from yolo_kd.prune.pruner import count_params, model_gflops
    from yolo_kd.quantize.report import measure_all, onnx_map

    out = Path(a.out)
    stages = [s for s in STAGES if _checkpoint(out, s, a.seeds[0]).is_file() and (a.openvino or s[3] != "openvino")]
    maps = {s[0]: [onnx_map(_onnx(out, s, seed, a.imgsz, a.data), a.data, a.imgsz)[1] for seed in a.seeds]
            for s in stages}
    files = {s[0]: _onnx(out, s, a.seeds[0], a.lat_imgsz, a.data) for s in stages if s[3] != "openvino"}
    if a.openvino:  # the same ONNX files as IRs (OpenVINO maps their Q/DQ to FakeQuantize and runs INT8; for QAT the
        # trained network quantized in NNCF's placement, as tools/qat.py converts it), and NNCF's IR
        from yolo_kd.quantize.openvino_ir import ir_dir, onnx_to_ir
        from yolo_kd.quantize.qat import calibration_images, convs_file, export_qat_openvino_nncf

        def to_ir(key: str, f: Path) -> Path:
            folder = ir_dir(f.parent, f.stem)
            if folder.is_dir():
                return folder
            if key.startswith("qat"):  # as tools/qat.py converts it: the trained network in NNCF's placement
                return export_qat_openvino_nncf(convs_file(f), folder, calibration_images(a.data, 32, a.lat_imgsz),
                                                a.lat_imgsz)
            return onnx_to_ir(f, folder)

        files |= {f"{k}_ov": to_ir(k, f) for k, f in files.items()}
        files |= {f"{s[0]}_ov": _onnx(out, s, a.seeds[0], a.lat_imgsz, a.data) for s in stages if s[3] == "openvino"}
    measured = {r.name: r for r in measure_all(files, a.data, a.lat_imgsz, threads=a.threads,
                                               latency_seconds=a.latency_seconds, with_map=False)}
    ov = {n[:-3]: r for n, r in measured.items() if n.endswith("_ov")}
    base = measured[stages[0][0]].latency_ms
    results, cells = [], []
    for s in stages:
        r = measured.get(s[0]) or ov[s[0]]  # size and INT8 convs: of the ONNX file, or of the IR for OpenVINO-only stages
        ort_ms = measured[s[0]].latency_ms if s[0] in measured else None
        src = s if s[3] == "pt" else next(x for x in STAGES if x[0] == "pruned")  # an INT8 file has its parent's
        model, _ = load_checkpoint_model(_checkpoint(out, src, a.seeds[0]))
        m = maps[s[0]]
        mean, std = statistics.mean(m), (statistics.stdev(m) if len(m) > 1 else 0.0)
        res = {"stage": s[0], "label": s[1], "map50_95": m, "mean": mean, "std": std, "params": count_params(model),
               "gflops": round(model_gflops(model, 640), 2), "size_mb": r.size_mb, "int8_convs": f"{r.int8_convs}/{r.convs}",
               "latency_ms": ort_ms, "x_baseline": round(ort_ms / base, 3) if ort_ms else None,
               "openvino_latency_ms": ov[s[0]].latency_ms if s[0] in ov else None,
               "x_baseline_openvino": round(ov[s[0]].latency_ms / ov[stages[0][0]].latency_ms, 3) if s[0] in ov else None}
        results.append(res)
        cells.append([s[1], f"{100 * mean:.1f} ± {100 * std:.1f}", f"{res['params'] / 1e6:.2f}M", f"{res['gflops']:.1f}",
                      f"{r.size_mb:.2f}", res["int8_convs"], f"{ort_ms:.1f}" if ort_ms else "-",
                      f"{res['x_baseline']:.2f}x" if ort_ms else "-"]
                     + ([f"{ov[s[0]].latency_ms:.1f} ({res['x_baseline_openvino']:.2f}x)"] if ov else []))
    head = ["stage", f"mAP50-95 ({len(a.seeds)} seed{'s' * (len(a.seeds) > 1)})", "params", "GFLOPs (640)", "size MB", "INT8 convs",
            f"latency ms ({a.lat_imgsz} px, ORT)", "x baseline"] + ([f"OpenVINO ms ({a.lat_imgsz} px, x baseline on OpenVINO)"] if ov else [])
    table = markdown_table(head, cells)
    verdict = verdicts(results)
    write_text_atomic(out / "edge_chain.md", table + "\n\n" + "".join(f"- {v}\n" for v in verdict))
    write_json_atomic(out / "edge_chain.json", {"imgsz": a.imgsz, "lat_imgsz": a.lat_imgsz, "seeds": a.seeds, "rows": results,
                                                "verdicts": verdict})
    plot(results, out / "edge_chain.png", a.lat_imgsz, a.threads)
    print(table + "\n\n" + "\n".join(verdict))
    print(json.dumps({"table": str(out / "edge_chain.md"), "plot": str(out / "edge_chain.png")}))


if __name__ == "__main__":
    main()
