"""The whole pipeline on generated data, end to end, with small settings: the README's main job.

Every stage runs the real tool (the same ``main`` as ``tools/*.py``), only with fewer images,
epochs and seconds: generate data -> train a teacher -> compare vanilla / yolo_kd / built-in
distillation -> prune the distilled student -> export FP32 + INT8 ONNX -> benchmark latency ->
one summary table. The numbers are real measurements of these tiny runs, not product claims.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import tables
from ..core.files import write_json_atomic, write_text_atomic


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo; the defaults fit in about 15 minutes on 2 CPU cores."""

    preset: str = "small"
    imgsz: int = 128
    batch: int = 16
    teacher_model: str = "yolo11s.yaml"
    teacher_epochs: int = 8
    student_epochs: int = 5
    prune_target: float = 0.6
    prune_steps: int = 2
    prune_epochs: int = 1
    calib_images: int = 64
    device: str = "cpu"
    threads: int = 2
    # a few hundred images give Ultralytics' default nominal batch (nbs=64) only ~6 optimizer steps per epoch;
    # nbs=16 and a 1-epoch warm-up let the short demo runs learn something at the same compute
    nbs: int = 16
    warmup_epochs: float = 1.0


@contextlib.contextmanager
def _stage(name: str, timings: dict[str, float]):
    """Print a banner for a stage and record its wall time in ``timings``."""
    print(f"\n{'=' * 24} demo: {name} {'=' * 24}", flush=True)
    t0 = time.time()
    yield
    timings[name] = time.time() - t0


def _size_mb(path: str | Path) -> float:
    return Path(path).stat().st_size / 1e6


def run_demo(out: str | Path = "demo_out", s: DemoSettings = DemoSettings()) -> dict[str, Any]:
    """Run every stage into ``out`` and return the summary (also written as summary.json / summary.md)."""
    from ultralytics import YOLO

    from ..commands import bench_latency, compare, export_int8, prune
    from ..data.synthetic import make_shapes_dataset

    out = Path(out).resolve()
    t: dict[str, float] = {}
    common = ["--device", s.device, "workers=0", "plots=False", f"nbs={s.nbs}", f"warmup_epochs={s.warmup_epochs}"]

    with _stage("1/7 synthetic dataset", t):
        data = str(make_shapes_dataset(out / "data", s.preset))
    with _stage("2/7 teacher", t):
        teacher = out / "teacher" / "weights" / "best.pt"
        if not teacher.exists():
            YOLO(s.teacher_model).train(
                data=data, epochs=s.teacher_epochs, imgsz=s.imgsz, batch=s.batch, device=s.device, workers=0,
                plots=False, seed=0, project=str(out), name="teacher", exist_ok=True, nbs=s.nbs, warmup_epochs=s.warmup_epochs,
            )
    with _stage("3/7 compare: vanilla vs yolo_kd vs Ultralytics built-in", t):
        compare.main(["--teacher", str(teacher), "--student", "yolo11n.yaml", "--data", data, "--epochs", str(s.student_epochs),
                      "--imgsz", str(s.imgsz), "--batch", str(s.batch), "--seeds", "0", "--project", str(out / "compare"), *common])
    cmp = json.loads((out / "compare" / "compare.json").read_text())
    kd_best = out / "compare" / "kd-seed0" / "weights" / "best.pt"
    with _stage("4/7 prune the distilled student", t):
        prune.main(["--model", str(kd_best), "--teacher", str(teacher), "--data", data, "--target-flops", str(s.prune_target),
                    "--steps", str(s.prune_steps), "--epochs-per-step", str(s.prune_epochs), "--imgsz", str(s.imgsz),
                    "--batch", str(s.batch), "--project", str(out), "--name", "prune", "--exist-ok", "--latency-imgsz", str(s.imgsz),
                    "--latency-seconds", "2", "--threads", str(s.threads), "--flops-imgsz", str(s.imgsz), *common])
    pr = json.loads((out / "prune" / "prune_results.json").read_text())
    pruned = Path(pr["best"])
    with _stage("5/7 export FP32 + INT8 ONNX", t):
        export_int8.main(["--model", str(pruned), "--data", data, "--imgsz", str(s.imgsz), "--calib-images", str(s.calib_images),
                          "--out-dir", str(out / "export"), "--threads", str(s.threads), "--latency-seconds", "3", "--device", s.device])
    ex = json.loads((out / "export" / f"{pruned.stem}_int8_report.json").read_text())
    rows = {r["name"]: r for r in ex["rows"]}
    fp32, int8 = ex["export"]["fp32_onnx"], ex["export"]["int8_onnx"]
    with _stage("6/7 latency benchmark", t):
        maps = [f"{p}={v}" for p, v in ((fp32, rows["FP32 ONNX"].get("map50_95")), (int8, rows["yolo_kd INT8"].get("map50_95"))) if v is not None]
        bench_latency.main([str(kd_best), fp32, int8, "--imgsz", str(s.imgsz), "--threads", str(s.threads), "--min-runs", "50",
                            "--min-seconds", "3", "--out", str(out / "latency"), *sum((["--map", m] for m in maps), [])])
    lat = json.loads((out / "latency" / "latency.json").read_text())
    with _stage("7/7 summary", t):
        summary = _summary(cmp, pr, ex, lat, kd_best, pruned, fp32, int8, teacher)
        summary["stage_seconds"] = t
        pngs = ("compare/map_per_epoch.png", "compare/final_map.png", "prune/map_vs_gflops.png", "latency/latency_vs_map.png")
        summary["plots"] = [str(out / p) for p in pngs if (out / p).exists()]
        table = _summary_table(summary)
        write_json_atomic(out / "summary.json", summary)
        write_text_atomic(out / "summary.md", table)
    print("\n" + table)
    print("plots:\n  " + "\n  ".join(summary["plots"]))
    print(f"summary: {out / 'summary.md'} (and summary.json)")
    return summary


def _summary(cmp, pr, ex, lat, kd_best, pruned, fp32, int8, teacher) -> dict[str, Any]:
    """One row per artefact: mAP50-95 (points), params, GFLOPs, latency (ms, batch 1), size (MB)."""
    runs = {r["run"]: r for r in cmp["summary"]}
    latency = {Path(m["path"]).resolve(): m["total"]["median"] for m in lat["models"]}
    final = next(r for r in pr["results"] if r["weights"] == pr["best"] or r["step"] == pr["final_step"])
    ex_rows = {r["name"]: r for r in ex["rows"]}
    pct = lambda v: None if v is None else round(100 * v, 1)  # noqa: E731
    rows = [
        {"stage": "teacher", "model": str(teacher), "map": pct(cmp["teacher"]["map"]), "params": cmp["teacher"]["params"], "gflops": cmp["teacher"]["gflops"], "size_mb": _size_mb(teacher)},
    ]
    for name in ("vanilla", "builtin", "kd"):
        r = runs.get(name)
        if r and r["seeds"]:
            path = Path(cmp["runs"][[x["variant"] for x in cmp["runs"]].index(name)]["run_dir"]) / "weights" / "best.pt"
            rows.append({"stage": f"student {name}", "model": str(path), "map": pct(r["map"]), "params": r["params"], "gflops": r["gflops"],
                         "latency_ms": latency.get(path.resolve()), "size_mb": _size_mb(path)})
    rows.append({"stage": "pruned + KD fine-tune", "model": str(pruned), "map": pct(final["map_finetuned"]), "params": final["params"],
                 "gflops": final["gflops"], "size_mb": _size_mb(pruned)})
    for name, path in (("FP32 ONNX", fp32), ("yolo_kd INT8", int8), ("Ultralytics quantize=8", ex_rows.get("Ultralytics quantize=8", {}).get("path"))):
        r = ex_rows.get(name, {})
        if not path or r.get("error"):
            rows.append({"stage": f"ONNX {name}", "model": r.get("error", "not produced")})
            continue
        rows.append({"stage": f"ONNX {name}", "model": str(path), "map": pct(r.get("map50_95")), "params": final["params"], "gflops": final["gflops"],
                     "latency_ms": latency.get(Path(path).resolve(), r.get("latency_ms")), "size_mb": r.get("size_mb")})
    return {"rows": rows}


def _summary_table(summary: dict[str, Any]) -> str:
    fmt = lambda v, f: "" if v is None else format(v, f)  # noqa: E731
    rows = [[r["stage"], fmt(r.get("map"), ".1f"), f"{r['params'] / 1e6:.2f}M" if r.get("params") else "",
             fmt(r.get("gflops"), ".2f"), fmt(r.get("latency_ms"), ".1f"), fmt(r.get("size_mb"), ".1f"), r["model"]]
            for r in summary["rows"]]
    table = tables.markdown_table(["stage", "mAP50-95", "params", "GFLOPs", "latency ms", "size MB", "model"], rows)
    secs = summary.get("stage_seconds", {})
    return table + "\n\nstage times (s): " + ", ".join(f"{k.split(' ', 1)[1]}: {v:.0f}" for k, v in secs.items()) + "\n"
