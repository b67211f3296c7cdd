"""Side-by-side report for exported models: size, INT8 kernel share, CPU latency and mAP, measured in one run.

Rows are ONNX files on onnxruntime, and OpenVINO IRs (or ONNX files) on OpenVINO. Every model is validated the same
way (``YOLO(model).val(split="val", batch=1)`` at the export size; OpenVINO models with f32 float layers, as
:class:`yolo_kd.deploy.runtime.Detector` runs them), so FP32, our INT8 models and Ultralytics' INT8 exports are
compared like for like, never against the ``.pt``. Latency is timed with all models taking turns in one process.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..core import tables
from ..core.checkpoints import export_copy
from ..core.errors import KDError
from ..core.timing import onnx_session, time_in_turns, time_onnx_models
from .onnx_graph import kernel_share

onnx_latency = time_onnx_models  # 0.1 name of the shared ONNX timer


@dataclass
class ModelRow:
    """One line of the report. ``error`` is set (and the numbers None) when the model could not be produced.

    ``role`` says what the row is, for the targets: fp32_ort, fp32_ov, int8_ort, int8_ov, peer_ort (Ultralytics'
    ONNX quantize=8), peer_ov (its OpenVINO INT8, train-calibrated), peer_ov_val (the same at its default, val).
    """

    name: str
    path: str | None = None
    size_mb: float | None = None
    convs: int | None = None
    int8_convs: int | None = None
    int8_mac_share: float | None = None
    latency_ms: float | None = None
    p90_ms: float | None = None
    map50: float | None = None
    map50_95: float | None = None
    error: str | None = None
    kernels: dict = field(default_factory=dict)
    backend: str = "onnxruntime"
    role: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Entry:
    """A model to measure: ``path`` (``.onnx`` or IR folder) on ``backend``, with its report ``role``."""

    path: Path
    backend: str = "onnxruntime"
    role: str = ""


def _is_ir(path: Path) -> bool:
    return path.is_dir() or path.suffix == ".xml"


def onnx_map(path: str | Path, data: str | Path, imgsz: int, split: str = "val", device: str = "cpu") -> tuple[float, float]:
    """(mAP50, mAP50-95) of an ONNX, OpenVINO or ``.pt`` detector on ``split`` with Ultralytics' validator at its fixed size.

    Every format sees the same letterboxed ``imgsz`` square at batch 1 (``rect=False``): ``YOLO(pt).val()`` would
    otherwise use rectangular batches padded by half a stride (96 px images become 128 px), so a ``.pt`` and its own
    ONNX export would be measured on different inputs.

    ``device`` defaults to "cpu": on a CUDA machine Ultralytics would otherwise demand onnxruntime-gpu. An OpenVINO IR
    is validated with f32 float layers (:func:`yolo_kd.quantize.openvino_ir.f32_inference`).
    """
    from ultralytics import YOLO

    precision = contextlib.nullcontext()
    if _is_ir(Path(path)):
        from .openvino_ir import f32_inference

        precision = f32_inference()
    with tempfile.TemporaryDirectory(prefix="yolo_kd_val_") as tmp, precision:
        metrics = YOLO(str(path), task="detect").val(
            data=str(data), imgsz=imgsz, split=split, batch=1, rect=False, device=device, workers=0, plots=False,
            verbose=False, project=tmp, name="val", exist_ok=True,
        )
    return float(metrics.box.map50), float(metrics.box.map)


def _with_reason(fn: Callable[[], Path]) -> Path:
    """Run an Ultralytics export; KDError("unavailable: <why>") when it cannot produce the model here."""
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    ul_logger = logging.getLogger("ultralytics")
    ul_logger.addHandler(handler)
    try:
        return fn()
    except KDError as e:  # no file
        raise KDError(f"unavailable: {_reason(None, log.getvalue())}") from e
    except (Exception, SystemExit) as e:  # e.g. a requirement Ultralytics wants to install
        raise KDError(f"unavailable: {_reason(e, log.getvalue())}") from e
    finally:
        ul_logger.removeHandler(handler)


def ultralytics_int8(model: str | Path, data: str | Path, imgsz: int, out: str | Path, end2end: bool = False) -> Path:
    """Ultralytics' own ``export(format="onnx", quantize=8)`` (its defaults: calibrates on the val split), moved to ``out``;
    ``end2end``: its NMS-free export (``nms=False``), as ours of a YOLO26 model.

    Raises KDError with the reason when Ultralytics cannot produce it here (e.g. a package it wants to install).
    """
    extra = {"nms": False} if end2end else {}
    return _with_reason(lambda: export_copy(model, out, format="onnx", quantize=8, data=str(data), imgsz=imgsz, batch=1,
                                            **extra))


def ultralytics_openvino_int8(model: str | Path, data: str | Path, imgsz: int, out: str | Path, split: str = "val",
                              end2end: bool = False) -> Path:
    """Ultralytics' ``export(format="openvino", int8=True)`` (NNCF, its own ignored scope) calibrated on ``split``
    ("val" is its default: ``split=None`` falls back to val), as the IR folder ``out``."""
    from ultralytics import YOLO

    from .openvino_ir import quiet_nncf, require, write_dir

    require(nncf=True)
    out = Path(out)

    def export() -> Path:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="yolo_kd_x_", dir=out.parent) as tmp:
            src = Path(tmp) / f"{out.name.removesuffix('_openvino_model')}.pt"
            shutil.copyfile(model, src)
            with quiet_nncf():
                f = YOLO(str(src)).export(format="openvino", quantize=8, data=str(data), imgsz=imgsz, batch=1,
                                          split=split, verbose=False, **({"nms": False} if end2end else {}))
            if not f or not Path(f).is_dir():
                raise KDError("Ultralytics export produced no folder")
            return write_dir(Path(f), out)

    return _with_reason(export)


def _reason(err: BaseException | None, log: str) -> str:
    """One line saying why Ultralytics' export failed (a missing requirement if it said so)."""
    for line in log.splitlines():
        if "requirement" in line.lower() and ("not found" in line.lower() or "failed" in line.lower()):
            return line.strip()[:200]
    if err is not None:
        return f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}"
    return "Ultralytics export returned no file"


# ---------------------------------------------------------------------------------------------------- measuring
def _runner(entry: Entry, imgsz: int, threads: int) -> Callable[[], object]:
    """One inference call of ``entry`` on a fixed random input (the same input for every model)."""
    x = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    if entry.backend == "openvino":
        from .openvino_ir import compile_for_cpu

        request = compile_for_cpu(entry.path, threads)[0].create_infer_request()
        return lambda: request.infer({0: x}, share_inputs=True)
    session = onnx_session(entry.path, threads)
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: x})


def time_models(calls: Sequence[Callable[[], object]], seconds: float = 10.0, rounds: int | None = None,
                warmup: int = 5) -> list[dict[str, float]]:
    """Latency (ms) of several inference calls of any backend, timed in turns (:func:`yolo_kd.core.timing.time_in_turns`).
    ``rounds`` defaults to one slice per 2 s (at least 5): on a machine whose load changes within minutes, long
    slices let one model meet a quiet minute and the next a busy one."""
    return time_in_turns(calls, seconds, rounds or max(5, round(seconds / 2)), warmup)


def measure_all(models: dict[str, str | Path | Entry], data: str | Path, imgsz: int, threads: int = 2,
                latency_seconds: float = 10.0, with_map: bool = True, device: str = "cpu") -> list[ModelRow]:
    """Size, INT8 kernel share, interleaved latency and mAP of each ``{name: model}``, in one run.

    A model is an ``.onnx`` path (onnxruntime), an IR folder (OpenVINO) or an :class:`Entry` (any path, backend).
    """
    entries = {n: m if isinstance(m, Entry) else Entry(Path(m), "openvino" if _is_ir(Path(m)) else "onnxruntime")
               for n, m in models.items()}
    calls = [_runner(e, imgsz, threads) for e in entries.values()]
    lats = time_models(calls, seconds=latency_seconds)  # the budget is per model (the CLIs say so)
    rows = []
    for (name, e), lat in zip(entries.items(), lats):
        if e.backend == "openvino":
            from .openvino_graph import runtime_share
            from .openvino_ir import ir_size_mb

            s = runtime_share(e.path).summary()
            size = ir_size_mb(e.path) if e.path.is_dir() else round(e.path.stat().st_size / 2**20, 2)
        else:
            s, size = kernel_share(e.path).summary(), round(e.path.stat().st_size / 2**20, 2)
        m50 = m = None
        if with_map:
            with contextlib.redirect_stdout(io.StringIO()):
                m50, m = onnx_map(e.path, data, imgsz, device=device)
        rows.append(ModelRow(name, str(e.path), size, s["convs"], s["int8"], s["int8_mac_share"], round(lat["median"], 2),
                             round(lat["p90"], 2), m50, m, kernels=s, backend=e.backend, role=e.role))
    return rows


def markdown_table(rows: list[ModelRow], baseline: str | None = None) -> str:
    """The report table; the "x FP32" latency ratio is against ``baseline`` (default: the first row, FP32 ONNX on
    onnxruntime in the export command)."""
    base = next((r for r in rows if r.name == baseline), rows[0] if rows else None)
    pts = lambda v: "-" if v is None else f"{100 * v:.2f}"  # noqa: E731  (mAP in points, as every report)
    cells = []
    for r in rows:
        if r.error:
            cells.append([r.name, r.backend, r.error])
            continue
        ratio = f"{r.latency_ms / base.latency_ms:.2f}x" if base and base.latency_ms else "-"
        cells.append([r.name, r.backend, f"{r.size_mb:.2f}", f"{r.int8_convs}/{r.convs}", f"{100 * r.int8_mac_share:.0f}%",
                      f"{r.latency_ms:.1f} / {r.p90_ms:.1f}", ratio, pts(r.map50), pts(r.map50_95)])
    head = ["model", "runtime", "size MB", "INT8 convs", "INT8 MAC share", "latency ms (median / p90)",
            "x FP32", "mAP50 (points)", "mAP50-95 (points)"]
    return tables.markdown_table(head, cells)
