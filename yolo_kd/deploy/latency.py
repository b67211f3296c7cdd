"""Latency benchmark of detectors: the same preprocessing for every model, per-stage timing, round-robin rounds.

Every model (``.onnx`` through :class:`yolo_kd.deploy.runtime.Detector`, ``.pt`` through :class:`TorchModel`) goes through
the runtime's letterbox + blob preprocessing and its decode + NMS postprocessing, so only the network differs.
Rounds of ``chunk`` frames alternate between models until each has ``min_runs`` frames and ``min_seconds`` of
timed work, so machine noise hits every model alike. Torch, Ultralytics and matplotlib are imported only when a
``.pt`` model is timed or a plot is drawn, so ONNX models can be benchmarked on the edge box itself.
"""

from __future__ import annotations

import csv
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..core import tables
from ..core.errors import KDError
from ..core.files import atomic_path, write_json_atomic, write_text_atomic
from ..core.timing import summarize, time_callable
from .runtime import Detections, Detector, Letterbox, letterbox, postprocess_output, to_blob

STAGES = ("pre", "infer", "post")
QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul"}
MAP_COLUMN = "metrics/mAP50-95(B)"


class TorchModel:
    """A ``.pt`` Ultralytics detection checkpoint with the runtime's pre/postprocessing (square letterbox)."""

    kind = "pt"

    def __init__(self, path: str | Path, imgsz: int = 640, conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
                 device: str | None = None):
        import torch

        from ..core.checkpoints import load_yolo  # torch and Ultralytics: only when a .pt model is timed

        self.path = Path(path)
        yolo = load_yolo(self.path, "model", purpose="the latency benchmark")
        self.torch = torch
        self.device = torch.device(device or ("cuda:0" if torch.cuda.is_available() else "cpu"))
        self.model = yolo.model.fuse(verbose=False).eval().to(self.device)
        self.names = dict(yolo.names)
        self.end2end = bool(getattr(self.model, "end2end", False))
        self.stride = int(max(self.model.stride))
        if imgsz % self.stride:
            raise KDError(f"imgsz {imgsz} is not a multiple of the model stride {self.stride}: use e.g. "
                          f"{max(self.stride, round(imgsz / self.stride) * self.stride)}")
        self.imgsz, self.conf, self.iou, self.max_det = (imgsz, imgsz), conf, iou, max_det

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """BGR (H, W, 3) -> (blob (1, 3, imgsz, imgsz) float32, letterbox), exactly as a fixed-shape ONNX model."""
        img, lb = letterbox(image, self.imgsz, auto=False, stride=self.stride)
        return to_blob(img), lb

    def infer(self, blob: np.ndarray) -> np.ndarray:
        """Network only, including the host->device and device->host copies: (1, 4+nc, N) or (1, K, 6)."""
        with self.torch.inference_mode():
            out = self.model(self.torch.from_numpy(blob).to(self.device))
        out = out[0] if isinstance(out, (list, tuple)) else out
        return out.float().cpu().numpy()

    def postprocess(self, raw: np.ndarray, lb: Letterbox) -> Detections:
        return postprocess_output(raw, lb, self.conf, self.iou, self.max_det, self.end2end, len(self.names))


def load_model(path: str | Path, imgsz: int = 640, threads: int | None = None, conf: float = 0.25,
               device: str | None = None):
    """A ``.onnx`` file -> :class:`Detector`; a ``.pt`` file -> :class:`TorchModel`."""
    path = Path(path)
    if not path.is_file():
        raise KDError(f"model '{path}' not found: pass .pt or .onnx files, e.g. runs/detect/train/weights/best.pt")
    suffix = path.suffix.lower()
    if suffix == ".pt":
        return TorchModel(path, imgsz, conf=conf, device=device)
    if suffix == ".onnx":
        return Detector(path, conf=conf, imgsz=imgsz, threads=threads)
    raise KDError(f"'{path.name}' is not a .pt or .onnx model: the benchmark times PyTorch and ONNX models")


def set_threads(threads: int | None) -> dict:
    """Use ``threads`` for OpenCV (and torch, if loaded) too; returns the thread settings to record."""
    info = {"requested": threads, "cpu_count": os.cpu_count()}
    if threads:
        cv2.setNumThreads(threads)
    info["opencv"] = cv2.getNumThreads()
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if threads:
            torch.set_num_threads(threads)
        info["torch"] = torch.get_num_threads()
    info["onnxruntime"] = threads or "default (one per physical core)"
    return info


def precision_of(path: Path) -> str:
    """'int8' (quantised ops), 'fp16' (half weights or input) or 'fp32'; 'fp32' for .pt, '?' if unreadable."""
    if path.suffix.lower() != ".onnx":
        return "fp32"
    try:
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # precision is informative only: never fail the benchmark on it
        return "?"
    if any(node.op_type in QUANT_OPS for node in graph.node):
        return "int8"
    half = onnx.TensorProto.FLOAT16
    if any(t.data_type == half for t in graph.initializer) or any(
            i.type.tensor_type.elem_type == half for i in graph.input):
        return "fp16"
    return "fp32"


@dataclass
class _Run:
    """One model's pipeline state and its per-stage samples (ms)."""

    model: object
    image: np.ndarray
    samples: dict = field(default_factory=lambda: {s: [] for s in STAGES})

    def pre(self):
        self.blob, self.lb = self.model.preprocess(self.image)

    def infer(self):
        self.raw = self.model.infer(self.blob)

    def post(self):
        self.dets = self.model.postprocess(self.raw, self.lb)

    def frame(self) -> None:
        """Time one frame stage by stage, each through the shared timing primitive (one run, no warm-up)."""
        for stage in STAGES:
            self.samples[stage].append(time_callable(getattr(self, stage), warmup=0, min_runs=1,
                                                     min_seconds=0.0)["min"])

    def timed_seconds(self) -> float:
        return sum(map(sum, self.samples.values())) / 1e3


def benchmark(models: Sequence, image: np.ndarray, warmup: int = 10, min_runs: int = 100, min_seconds: float = 10.0,
              chunk: int = 10, max_runs: int = 100_000) -> list[dict]:
    """Time every model on ``image`` in round-robin chunks; returns one result dict per model (input order).

    Each result holds per-stage and total (pre + infer + post per frame) statistics in ms, FPS from the total
    median, the input shape and the number of detections on ``image``.
    """
    runs = [_Run(m, image) for m in models]
    for run in runs:  # warm-up through the same primitive, then forget those samples
        time_callable(lambda r=run: (r.pre(), r.infer(), r.post()), warmup=warmup, min_runs=1, min_seconds=0.0)

    def done(r: _Run) -> bool:
        n = len(r.samples["infer"])
        return n >= max_runs or (n >= min_runs and r.timed_seconds() >= min_seconds)

    while not all(map(done, runs)):
        for run in runs:
            for _ in range(chunk if not done(run) else 0):
                run.frame()
    results = []
    for run in runs:
        total = np.sum([run.samples[s] for s in STAGES], axis=0)
        stats = {s: summarize(run.samples[s]) for s in STAGES}
        stats["total"] = summarize(total)
        results.append({**stats, "fps": 1e3 / stats["total"]["median"], "input": list(run.blob.shape),
                        "detections": len(run.dets)})
    return results


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
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "opencv": cv2.__version__, "numpy": np.__version__}
    if "torch" in sys.modules:
        info["torch"] = sys.modules["torch"].__version__
    return info


def markdown_table(results: list[dict]) -> str:
    """Markdown table: per-stage medians, total median / p90 / min, FPS, speed-up vs the first model, mAP."""
    head = ["model", "format", "input", "pre ms", "infer ms", "post ms", "total ms median / p90 / min", "FPS",
            "speed-up vs first", "mAP50-95"]
    rows = [[r["name"], f"{r['kind']} {r['precision']}", f"{r['input'][3]}x{r['input'][2]}", f"{r['pre']['median']:.2f}",
             f"{r['infer']['median']:.2f}", f"{r['post']['median']:.2f}",
             f"{r['total']['median']:.2f} / {r['total']['p90']:.2f} / {r['total']['min']:.2f}", f"{r['fps']:.1f}",
             f"{r['speedup']:.2f}x", "" if r.get("map50_95") is None else f"{r['map50_95']:.3f}"] for r in results]
    return tables.markdown_table(head, rows, align="lllrrrrrrr")


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
    """PNG of mAP50-95 vs median latency with the Pareto front; False (nothing written) if no mAP is known."""
    rows = [r for r in results if r.get("map50_95") is not None]
    if not rows:
        return False
    from matplotlib.figure import Figure

    pts = [(r["total"]["median"], r["map50_95"]) for r in rows]
    front = pareto_front(pts)
    fig = Figure(figsize=(7, 4.5), dpi=120)
    ax = fig.subplots()
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "--", color="tab:green", lw=1,
            label="Pareto front")
    for i, (r, (x, y)) in enumerate(zip(rows, pts)):
        ax.scatter([x], [y], s=40, color="tab:green" if i in front else "tab:gray", zorder=3)
        ax.annotate(f"{r['name']}\n{x:.1f} ms, {y:.3f}", (x, y), textcoords="offset points", xytext=(6, 4),
                    fontsize=8)
    ax.set_xlabel("latency per frame, ms (median: pre + infer + post, batch 1)")
    ax.set_ylabel("mAP50-95")
    ax.set_title("accuracy vs latency (up and to the left is better)" + (f"\n{subtitle}" if subtitle else ""),
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.margins(x=0.25, y=0.2)
    ax.set_xlim(left=0)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return True


# --- the whole benchmark --------------------------------------------------------------------------------------------
def run_benchmark(paths: Sequence[str | Path], image: np.ndarray, imgsz: int = 640, threads: int | None = None,
                  warmup: int = 10, min_runs: int = 100, min_seconds: float = 10.0, chunk: int = 10,
                  conf: float = 0.25, device: str | None = None, maps: dict[str, float] | None = None) -> dict:
    """Load and time every model on one BGR frame; returns ``{"machine", "settings", "models": [result, ...]}``.

    ``image`` is any camera-like frame, e.g. :func:`yolo_kd.data.synthetic.make_frame` (what ``yolo-kd bench``
    uses unless given ``--image``). Each result adds ``name``, ``path``, ``kind``,
    ``precision``, ``runtime``, ``latency_ratio`` / ``speedup`` relative to the first model and ``map50_95``.
    """
    if not paths:
        raise KDError("no model given: pass one or more .pt / .onnx files")
    if threads is not None and threads < 1:
        raise KDError(f"--threads {threads}: use a positive number of threads")
    check_map_names(paths, maps or {})
    models = [load_model(p, imgsz, threads, conf, device) for p in paths]
    thread_info = set_threads(threads)
    results = benchmark(models, image, warmup, min_runs, min_seconds, chunk)
    names = [Path(p).name for p in paths]
    for r, m, p, name in zip(results, models, paths, names):
        runtime = str(m.device) if m.kind == "pt" else m.session.get_providers()[0]
        r.update(name=name if names.count(name) == 1 else str(p), path=str(p), kind=m.kind,
                 precision=precision_of(Path(p)), runtime=runtime)
    first = results[0]["total"]["median"]
    for r in results:
        r["latency_ratio"] = r["total"]["median"] / first
        r["speedup"] = first / r["total"]["median"]
    attach_map(results, maps or {})
    settings = {"imgsz": imgsz, "batch": 1, "frame": [int(image.shape[1]), int(image.shape[0])], "threads": thread_info,
                "warmup": warmup, "min_runs": min_runs, "min_seconds": min_seconds, "chunk": chunk, "conf": conf,
                "order": "round-robin chunks of frames across models"}
    return {"machine": machine_info(), "settings": settings, "models": results}


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
            + (f", torch {m['torch']}" if "torch" in m else "")
            + f". Median of >= {s['min_runs']} frames and >= {s['min_seconds']:g} s per model, round-robin.")
