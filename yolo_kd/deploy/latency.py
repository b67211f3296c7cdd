"""Latency benchmark of detectors: the same preprocessing for every model, per-stage timing, round-robin rounds.

Every model (``.onnx`` through :class:`yolo_kd.deploy.runtime.Detector`, ``.pt`` through :class:`TorchModel`) goes through
the runtime's letterbox + blob preprocessing and its decode + NMS postprocessing, so only the network differs.
Rounds of ``chunk`` frames alternate between models until each has ``min_runs`` frames and ``min_seconds`` of
timed work, so machine noise hits every model alike. Torch, Ultralytics and matplotlib are imported only when a
``.pt`` model is timed or a plot is drawn, so ONNX models can be benchmarked on the edge box itself. The mAP
columns, table, plot and files are :mod:`yolo_kd.deploy.latency_report`'s.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..core.errors import KDError
from ..core.timing import summarize, time_callable
from .latency_report import attach_map, check_map_names, machine_info
from .latency_report import (  # noqa: F401 (the report's names, importable from here as from 0.1's yolo_kd.latency)
    MAP_COLUMN, header, map_from_run, markdown_table, pareto_front, parse_map_pairs, plot_latency_vs_map, write_report)
from .backends import BACKENDS, is_ir
from .runtime import Detections, Detector, Letterbox, letterbox, postprocess_output, to_blob

STAGES = ("pre", "infer", "post")
QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul"}


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


def split_backend(spec: str | Path) -> tuple[Path, str | None]:
    """``"best.onnx@openvino"`` -> (Path("best.onnx"), "openvino"); a path without ``@<backend>`` -> (path, None)."""
    text = str(spec)
    path, sep, backend = text.rpartition("@")
    if sep and backend in BACKENDS and not Path(text).exists():
        return Path(path), backend
    return Path(text), None


def load_model(path: str | Path, imgsz: int = 640, threads: int | None = None, conf: float = 0.25,
               device: str | None = None, backend: str = "auto"):
    """A ``.onnx`` file or OpenVINO IR -> :class:`Detector` (on ``backend``, or the ``@backend`` the path ends
    with); a ``.pt`` file -> :class:`TorchModel`."""
    path, chosen = split_backend(path)
    if not path.exists():
        raise KDError(f"model '{path}' not found: pass .pt, .onnx or *_openvino_model paths, e.g. runs/detect/train/weights/best.pt")
    suffix = path.suffix.lower()
    if suffix == ".pt":
        return TorchModel(path, imgsz, conf=conf, device=device)
    if suffix == ".onnx" or is_ir(path):
        return Detector(path, conf=conf, imgsz=imgsz, threads=threads, backend=chosen or backend)
    raise KDError(f"'{path.name}' is not a .pt, .onnx or OpenVINO model: the benchmark times PyTorch, ONNX and OpenVINO models")


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
    path = split_backend(path)[0]
    if is_ir(path):
        return _ir_precision(path)
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


def _ir_precision(path: Path) -> str:
    """'int8' for an IR with FakeQuantize layers (NNCF) or int8 weights, else 'fp16'/'fp32' by its weights."""
    try:
        xml = next(path.glob("*.xml")) if path.is_dir() else path
        text = xml.read_text(errors="replace")
    except (OSError, StopIteration):
        return "?"
    if 'type="FakeQuantize"' in text or 'element_type="i8"' in text or 'element_type="u8"' in text:
        return "int8"
    return "fp16" if 'element_type="f16"' in text else "fp32"


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


# --- the whole benchmark --------------------------------------------------------------------------------------------
def run_benchmark(paths: Sequence[str | Path], image: np.ndarray, imgsz: int = 640, threads: int | None = None,
                  warmup: int = 10, min_runs: int = 100, min_seconds: float = 10.0, chunk: int = 10,
                  conf: float = 0.25, device: str | None = None, maps: dict[str, float] | None = None,
                  backend: str = "auto") -> dict:
    """Load and time every model on one BGR frame; returns ``{"machine", "settings", "models": [result, ...]}``.

    ``image`` is any camera-like frame, e.g. :func:`yolo_kd.data.synthetic.make_frame` (what ``yolo-kd bench``
    uses unless given ``--image``). Each result adds ``name``, ``path``, ``kind``,
    ``precision``, ``runtime``, ``latency_ratio`` / ``speedup`` relative to the first model and ``map50_95``.
    ``backend`` runs ONNX files on "auto", "onnxruntime" or "openvino"; ``path@backend`` picks one per model (so one
    run can time the same ``.onnx`` on both). OpenVINO IR folders always run on OpenVINO.
    """
    if not paths:
        raise KDError("no model given: pass one or more .pt / .onnx files")
    if threads is not None and threads < 1:
        raise KDError(f"--threads {threads}: use a positive number of threads")
    check_map_names(paths, maps or {})
    models = [load_model(p, imgsz, threads, conf, device, backend) for p in paths]
    thread_info = set_threads(threads)
    results = benchmark(models, image, warmup, min_runs, min_seconds, chunk)
    names = [Path(p).name for p in paths]
    for r, m, p, name in zip(results, models, paths, names):
        runtime = str(m.device) if m.kind == "pt" else m.runtime
        r.update(name=name if names.count(name) == 1 else str(p), path=str(split_backend(p)[0]), kind=m.kind,
                 precision=precision_of(Path(p)), runtime=runtime, backend=getattr(m, "backend", "torch"))
    first = results[0]["total"]["median"]
    for r in results:
        r["latency_ratio"] = r["total"]["median"] / first
        r["speedup"] = first / r["total"]["median"]
    attach_map(results, maps or {})
    settings = {"imgsz": imgsz, "batch": 1, "backend": backend, "frame": [int(image.shape[1]), int(image.shape[0])], "threads": thread_info,
                "warmup": warmup, "min_runs": min_runs, "min_seconds": min_seconds, "chunk": chunk, "conf": conf,
                "order": "round-robin chunks of frames across models"}
    return {"machine": machine_info(), "settings": settings, "models": results}
