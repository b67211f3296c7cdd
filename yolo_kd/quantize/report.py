"""Side-by-side report for exported ONNX models: size, INT8 kernel share, CPU latency and mAP, measured in one run.

Every model is validated the same way (``YOLO(onnx).val(split="val", batch=1)`` at the export size), so FP32, our
INT8 and Ultralytics' ``quantize=8`` output are compared like for like, never against the ``.pt``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..core import tables
from ..core.checkpoints import export_copy
from ..core.errors import KDError
from ..core.timing import time_onnx_models
from .onnx_graph import kernel_share


onnx_latency = time_onnx_models  # 0.1 name of the shared ONNX timer


@dataclass
class ModelRow:
    """One line of the report. ``error`` is set (and the numbers None) when the model could not be produced."""

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

    def to_dict(self) -> dict:
        return asdict(self)


def onnx_map(path: str | Path, data: str | Path, imgsz: int, split: str = "val", device: str = "cpu") -> tuple[float, float]:
    """(mAP50, mAP50-95) of an ONNX detector on ``split`` with Ultralytics' validator at its fixed input size.

    ``device`` defaults to "cpu": on a CUDA machine Ultralytics would otherwise demand onnxruntime-gpu.
    """
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory(prefix="yolo_kd_val_") as tmp:
        metrics = YOLO(str(path), task="detect").val(
            data=str(data), imgsz=imgsz, split=split, batch=1, device=device, workers=0, plots=False,
            verbose=False, project=tmp, name="val", exist_ok=True,
        )
    return float(metrics.box.map50), float(metrics.box.map)


def ultralytics_int8(model: str | Path, data: str | Path, imgsz: int, out: str | Path) -> Path:
    """Ultralytics' own ``export(format="onnx", quantize=8)`` (its defaults: calibrates on the val split), moved to ``out``.

    Raises KDError with the reason when Ultralytics cannot produce it here (e.g. a package it wants to install).
    """
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    ul_logger = logging.getLogger("ultralytics")
    ul_logger.addHandler(handler)
    try:
        return export_copy(model, out, format="onnx", quantize=8, data=str(data), imgsz=imgsz, batch=1)
    except KDError as e:  # no file
        raise KDError(f"unavailable: {_reason(None, log.getvalue())}") from e
    except (Exception, SystemExit) as e:  # e.g. a requirement Ultralytics wants to install
        raise KDError(f"unavailable: {_reason(e, log.getvalue())}") from e
    finally:
        ul_logger.removeHandler(handler)


def _reason(err: BaseException | None, log: str) -> str:
    """One line saying why Ultralytics' export failed (a missing requirement if it said so)."""
    for line in log.splitlines():
        if "requirement" in line.lower() and ("not found" in line.lower() or "failed" in line.lower()):
            return line.strip()[:200]
    if err is not None:
        return f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}"
    return "Ultralytics export returned no file"


def measure_all(models: dict[str, str | Path], data: str | Path, imgsz: int, threads: int = 2,
                latency_seconds: float = 10.0, with_map: bool = True, device: str = "cpu") -> list[ModelRow]:
    """Size, INT8 kernel share, interleaved latency and mAP of each ``{name: onnx_path}``, in one run."""
    paths = {n: Path(p) for n, p in models.items()}
    lats = time_onnx_models(list(paths.values()), imgsz, threads=threads, seconds=latency_seconds * len(paths))
    rows = []
    for (name, path), lat in zip(paths.items(), lats):
        s = kernel_share(path).summary()
        m50 = m = None
        if with_map:
            with contextlib.redirect_stdout(io.StringIO()):
                m50, m = onnx_map(path, data, imgsz, device=device)
        rows.append(ModelRow(name, str(path), round(path.stat().st_size / 2**20, 2), s["convs"], s["int8"],
                             s["int8_mac_share"], round(lat["median"], 2), round(lat["p90"], 2), m50, m, kernels=s))
    return rows


def markdown_table(rows: list[ModelRow], baseline: str | None = None) -> str:
    """The report table; latency ratio is against ``baseline`` (default: the first row)."""
    base = next((r for r in rows if r.name == baseline), rows[0] if rows else None)
    fmt = lambda v, p=4: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    cells = []
    for r in rows:
        if r.error:
            cells.append([r.name, r.error])
            continue
        ratio = f"{r.latency_ms / base.latency_ms:.2f}x" if base and base.latency_ms else "-"
        cells.append([r.name, f"{r.size_mb:.2f}", f"{r.int8_convs}/{r.convs}", f"{100 * r.int8_mac_share:.0f}%",
                      f"{r.latency_ms:.1f} / {r.p90_ms:.1f}", ratio, fmt(r.map50), fmt(r.map50_95)])
    head = ["model", "size MB", "INT8 convs", "INT8 MAC share", "latency ms (median / p90)", "x FP32", "mAP50", "mAP50-95"]
    return tables.markdown_table(head, cells)
