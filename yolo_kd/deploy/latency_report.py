"""The latency benchmark's report: mAP50-95 per model (``--map`` pairs or the run's results.csv), the machine, the
markdown table, the accuracy-vs-latency plot with its Pareto front, and the files they are written to.

Torch-free like the rest of :mod:`yolo_kd.deploy`; matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import csv
import os
import platform
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..core import tables
from ..core.errors import KDError
from ..core.files import atomic_path, write_json_atomic, write_text_atomic

MAP_COLUMN = "metrics/mAP50-95(B)"


# --- mAP ------------------------------------------------------------------------------------------------------------
def parse_map_pairs(pairs: Sequence[str] | None) -> dict[str, float]:
    """``["best.onnx=0.61", ...]`` -> {"best.onnx": 0.61}; values in [0, 1] or percent (61.0)."""
    out = {}
    for pair in pairs or ():
        name, sep, value = pair.rpartition("=")
        try:
            v = float(value)
        except ValueError:
            v = None
        if not sep or not name or v is None or not 0 <= v <= 100:
            raise KDError(f"--map '{pair}' is not NAME=VALUE: write e.g. --map best_int8.onnx=0.512")
        out[name] = v / 100 if v > 1 else v
    return out


def map_from_run(path: Path) -> float | None:
    """mAP50-95 of ``runs/.../weights/{best,last}.{pt,onnx}`` from the run's results.csv (best epoch / last epoch)."""
    path = Path(path)
    csv_path = path.parent.parent / "results.csv"
    if path.parent.name != "weights" or path.stem not in {"best", "last"} or not csv_path.is_file():
        return None
    try:
        with open(csv_path, newline="") as f:
            rows = [{k.strip(): v for k, v in row.items() if k} for row in csv.DictReader(f)]
        values = [float(r[MAP_COLUMN]) for r in rows if r.get(MAP_COLUMN, "").strip()]
    except (OSError, ValueError, csv.Error):
        return None
    if not values:
        return None
    return max(values) if path.stem == "best" else values[-1]


def _map_keys(path: str | Path, name: str) -> tuple[str, ...]:
    """Names a ``--map`` pair may use for a model: shown name, file name, stem or path."""
    p = Path(path)
    return name, p.name, p.stem, str(p), str(path)


def check_map_names(paths: Sequence[str | Path], given: dict[str, float]) -> None:
    """Fail before any timing if a ``--map`` name matches no model."""
    known = {k for p in paths for k in _map_keys(p, Path(p).name)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise KDError(f"--map name '{unknown[0]}' matches no model: use a model's file name "
                      f"({Path(paths[0]).name}) or stem")


def attach_map(results: list[dict], given: dict[str, float]) -> None:
    """Set ``map50_95`` / ``map_source`` on each result from ``--map`` pairs, else from its run folder."""
    for r in results:
        key = next((k for k in _map_keys(r["path"], r["name"]) if k in given), None)
        if key is not None:
            r["map50_95"], r["map_source"] = given[key], "--map"
        elif r["precision"] in {"fp32", "fp16"} and (v := map_from_run(Path(r["path"]))) is not None:
            r["map50_95"], r["map_source"] = v, str(Path(r["path"]).parent.parent / "results.csv")
        else:
            r["map50_95"], r["map_source"] = None, None


# --- reporting ------------------------------------------------------------------------------------------------------
def machine_info() -> dict:
    """CPU model, core count and library versions, for the report header."""
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:  # an OpenVINO-only box
        ort_version = "not installed"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "onnxruntime": ort_version, "opencv": cv2.__version__, "numpy": np.__version__}
    if "torch" in sys.modules:
        info["torch"] = sys.modules["torch"].__version__
    if "openvino" in sys.modules:
        info["openvino"] = sys.modules["openvino"].__version__.split("-")[0]
    return info


def markdown_table(results: list[dict]) -> str:
    """Markdown table: per-stage medians, total median / p90 / min, FPS, speed-up vs the first model, mAP50-95 in points."""
    head = ["model", "format", "runtime", "input", "pre ms", "infer ms", "post ms", "total ms median / p90 / min", "FPS",
            "speed-up vs first", "mAP50-95 (points)"]
    rows = [[r["name"], f"{r['kind']} {r['precision']}", r.get("runtime", ""), f"{r['input'][3]}x{r['input'][2]}", f"{r['pre']['median']:.2f}",
             f"{r['infer']['median']:.2f}", f"{r['post']['median']:.2f}",
             f"{r['total']['median']:.2f} / {r['total']['p90']:.2f} / {r['total']['min']:.2f}", f"{r['fps']:.1f}",
             f"{r['speedup']:.2f}x", "" if r.get("map50_95") is None else f"{100 * r['map50_95']:.1f}"] for r in results]
    return tables.markdown_table(head, rows, align="llllrrrrrrr")


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of (latency, mAP) points not beaten by a point both faster and at least as accurate, fastest first."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_latency_vs_map(results: list[dict], path: Path, subtitle: str = "") -> bool:
    """PNG of mAP50-95 (points) vs median latency with the Pareto front; False (nothing written) if no mAP is known.

    The front is drawn as the staircase of the best mAP reachable within each latency (a single model on the front
    still gets its step), its points ringed; labels never overlap (:func:`yolo_kd.core.plot_labels.place_labels`).
    """
    rows = [r for r in results if r.get("map50_95") is not None]
    if not rows:
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..core.plot_labels import place_labels

    pts = [(r["total"]["median"], 100 * r["map50_95"]) for r in rows]
    front = pareto_front(pts)
    fig = Figure(figsize=(7.5, 4.8), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.scatter([x for x, _ in pts], [y for _, y in pts], s=40, color="tab:gray", zorder=3, label="model")
    fx, fy = [pts[i][0] for i in front], [pts[i][1] for i in front]
    ax.scatter(fx, fy, s=110, facecolors="none", edgecolors="tab:green", lw=1.5, zorder=4)
    xmax = max(x for x, _ in pts) * 1.35
    ax.step([*fx, xmax], [*fy, fy[-1]], where="post", color="tab:green", lw=1.2, ls="--", zorder=2,
            label="Pareto front (ringed: no model is both faster and more accurate)")
    ax.set_xlabel("latency per frame, ms (median: pre + infer + post, batch 1)")
    ax.set_ylabel("mAP50-95 (points)")
    ax.set_title("accuracy vs latency (up and to the left is better)" + (f"\n{subtitle}" if subtitle else ""),
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    lo, hi = min(y for _, y in pts), max(y for _, y in pts)
    pad = max(hi - lo, 1.0) * 0.35
    ax.set_xlim(0, xmax)
    ax.set_ylim(lo - pad, hi + pad)
    fig.tight_layout()
    place_labels(ax, [x for x, _ in pts], [y for _, y in pts], [f"{r['name']}  {x:.1f} ms, {y:.1f}" for r, (x, y) in zip(rows, pts)])
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return True


def write_report(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``latency.json``, ``latency.md`` and (when any mAP is known) ``latency_vs_map.png`` atomically."""
    out = Path(out_dir)
    paths = {"json": out / "latency.json", "md": out / "latency.md"}
    write_json_atomic(paths["json"], report)
    write_text_atomic(paths["md"], header(report) + "\n\n" + markdown_table(report["models"]) + "\n")
    if plot_latency_vs_map(report["models"], out / "latency_vs_map.png", subtitle=header(report, short=True)):
        paths["png"] = out / "latency_vs_map.png"
    return paths


def header(report: dict, short: bool = False) -> str:
    """One line describing machine and settings (``short`` for the plot subtitle)."""
    m, s = report["machine"], report["settings"]
    threads = s["threads"]["requested"] or "default"
    if short:
        return f"{m['cpu']}, {threads} threads, imgsz {s['imgsz']}"
    return (f"Latency, batch 1, imgsz {s['imgsz']}, {s['frame'][0]}x{s['frame'][1]} frame, {threads} threads, "
            f"{m['cpu']} ({m['cores']} cores), onnxruntime {m['onnxruntime']}"
            + (f", OpenVINO {m['openvino']}" if "openvino" in m else "")
            + (f", torch {m['torch']}" if "torch" in m else "")
            + f". Median of >= {s['min_runs']} frames and >= {s['min_seconds']:g} s per model, round-robin.")
