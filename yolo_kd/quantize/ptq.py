"""Calibrated static INT8 quantization of an Ultralytics detector's ONNX export with onnxruntime's own tooling.

Pipeline: Ultralytics exports FP32 ONNX -> ``quant_pre_process`` -> ``quantize_static`` (QDQ, per-channel signed
weights, unsigned activations) calibrated on letterboxed images from the dataset's *train* split. The detection
decode after the last convolutions (box/class output convs, DFL, box-score concat) stays float by default.

Why unsigned activations: onnxruntime's x86 kernels are u8 x s8. With signed activations, its QDQ fusion only
turns a Conv into QLinearConv after rewriting the Q/DQ pair to u8, which fails whenever a tensor feeds several
consumers (every C3k2/SPPF/Concat branch), so most convolutions run in float between Q/DQ pairs.
"""

from __future__ import annotations

import contextlib
import io
import platform
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import onnx

from ..core.checkpoints import export_copy, load_yolo
from ..core.errors import KDError
from ..core.files import atomic_path
from ..core.log import LOGGER
from .calibration import calibration_files, load_calibration, make_reader, minmax_fallback
from .onnx_graph import FLOAT_GROUPS, float_node_groups, kernel_share, parse_keep_float
from .openvino_ir import EXPORT_BACKENDS, OPENVINO_FLOAT_GROUPS, export_backends  # noqa: F401 (openvino: when used)

METHODS = ("minmax", "entropy", "percentile")


@dataclass
class QuantSettings:
    """onnxruntime ``quantize_static`` settings; the defaults are the ones measured fastest at equal accuracy.

    ``activation_type``: "u8" (x86 INT8 kernels take u8 activations) or "s8" (ORT's default).
    ``op_types``: None quantizes every op ORT can (Conv, Mul, Sigmoid, Add, Concat, MaxPool, Resize, ...), so
    activations stay INT8 between convolutions; ("Conv",) quantizes convolutions only.
    """

    activation_type: str = "u8"
    per_channel: bool = True
    reduce_range: bool = False
    op_types: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()  # extra nodes kept float: any node whose name contains one of these strings
    extra_options: dict = field(default_factory=dict)


@dataclass
class ExportResult:
    """What :func:`export_int8` wrote and how. ``int8_onnx`` is None when only OpenVINO was asked for, the
    ``openvino_*`` fields are None / empty when only onnxruntime was."""

    fp32_onnx: Path
    int8_onnx: Path | None
    imgsz: int
    calib_images: int
    calib_split: str
    method: str
    keep_float: tuple[str, ...]
    float_nodes: dict[str, list[str]]
    settings: dict
    warnings: list[str] = field(default_factory=list)
    kernels: dict = field(default_factory=dict)  # INT8 kernel share of the INT8 model, see onnx_graph.KernelShare
    quantize_seconds: float = 0.0  # pre-processing + calibration + quantization
    backends: tuple[str, ...] = ("onnxruntime",)
    openvino_fp32: Path | None = None  # IR folders
    openvino_int8: Path | None = None
    openvino_float_nodes: dict[str, list[str]] = field(default_factory=dict)
    openvino_kernels: dict = field(default_factory=dict)  # INT8 share in OpenVINO's runtime graph, openvino_ir.runtime_share
    openvino_seconds: float = 0.0  # NNCF calibration + quantization
    minmax_fallback: list[str] = field(default_factory=list)  # tensors calibrated with MinMax instead of ``method``
    end2end: bool = False  # NMS-free one-to-one export (YOLO26): output (1, K, 6) top-k rows, no NMS needed

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        d = asdict(self)
        for k in ("fp32_onnx", "int8_onnx", "openvino_fp32", "openvino_int8"):
            d[k] = None if d[k] is None else str(d[k])
        return d


# ---------------------------------------------------------------------------------------------------- quantization
def _stride(n: int, cap: int) -> int:
    """Largest divisor of ``n`` not above ``cap`` (ORT's strided calibration needs n % stride == 0)."""
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def quantize_onnx(
    fp32_onnx: str | Path,
    int8_onnx: str | Path,
    files: Sequence[Path],
    imgsz: int,
    method: str = "percentile",
    keep_float: Iterable[str] | str | None = FLOAT_GROUPS,
    settings: QuantSettings | None = None,
    fallback: list[str] | None = None,
) -> dict[str, list[str]]:
    """Quantize ``fp32_onnx`` to a QDQ INT8 model at ``int8_onnx`` (written atomically), calibrated on ``files``.

    Returns the float-kept node names per group. A tensor whose range the histogram methods cannot bin is
    calibrated with MinMax (:func:`~yolo_kd.quantize.calibration.minmax_fallback`); its name goes to ``fallback``.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    if method not in METHODS:
        raise KDError(f"unknown calibration method {method!r}: choose one of {', '.join(METHODS)}")
    settings = settings or QuantSettings()
    if settings.activation_type not in ("u8", "s8"):
        raise KDError(f"activation type {settings.activation_type!r} unknown: choose u8 or s8")
    groups = parse_keep_float(keep_float)
    with tempfile.TemporaryDirectory(prefix="yolo_kd_q_") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_onnx), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
        input_name = model.graph.input[0].name
        all_groups = float_node_groups(model)
        float_nodes = {g: all_groups[g] for g in groups}
        exclude = {n for g in groups for n in all_groups[g]}
        exclude |= {n.name for n in model.graph.node if any(k in n.name for k in settings.exclude)}
        exclude = sorted(exclude)
        del model
        stride = _stride(len(files), max(1, int(8 * (640 / max(imgsz, 32)) ** 2)))
        extra = {"CalibStridedMinMax": stride, **settings.extra_options}
        act = QuantType.QUInt8 if settings.activation_type == "u8" else QuantType.QInt8
        with atomic_path(int8_onnx) as tmp_out, minmax_fallback(method) as fallen:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # ORT prints per chunk
                warnings.simplefilter("ignore")
                quantize_static(
                    str(pre),
                    str(tmp_out),
                    make_reader(files, imgsz, input_name),
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(settings.op_types) if settings.op_types else None,
                    per_channel=settings.per_channel,
                    reduce_range=settings.reduce_range,
                    activation_type=act,
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=exclude,
                    calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                                      "percentile": CalibrationMethod.Percentile}[method],
                    extra_options=extra,
                )
            _copy_metadata(fp32_onnx, tmp_out)
    if fallback is not None:
        fallback.extend(fallen)
    return float_nodes


def _copy_metadata(src: str | Path, dst: str | Path) -> None:
    """Carry Ultralytics' metadata (names, stride, imgsz, task) over so ``YOLO('x_int8.onnx')`` works."""
    meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    model = onnx.load(str(dst))
    have = {p.key for p in model.metadata_props}
    for k, v in meta.items():
        if k not in have:
            model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(dst))


# ------------------------------------------------------------------------------------------------------ public API
def export_fp32(yolo, out: str | Path, imgsz: int, opset: int | None = None, end2end: bool = False) -> Path:
    """Ultralytics' ONNX export (batch 1, static shape, onnxslim) of ``yolo``'s checkpoint, moved atomically to ``out``.

    ``end2end``: export the NMS-free one-to-one branch (``nms=False``: top-k ``(1, K, 6)`` rows) of a model that has one.
    """
    extra = {"nms": False} if end2end else {}
    return export_copy(yolo.ckpt_path, out, format="onnx", imgsz=imgsz, opset=opset, simplify=True, dynamic=False, batch=1,
                       **extra)


def has_one2one(yolo) -> bool:
    """Whether the model's head has an NMS-free one-to-one branch (YOLO26, YOLOv10)."""
    from ..core.checkpoints import has_one2one as head_has_one2one

    return head_has_one2one(yolo.model.model[-1])


def resolve_end2end(yolo, end2end: bool | None, model: str | Path = "model") -> bool:
    """``None``: NMS-free export exactly when the model has a one-to-one head; ``True`` on a model without one: KDError."""
    if end2end is None:
        return has_one2one(yolo)
    if end2end and not has_one2one(yolo):
        raise KDError(f"'{model}' has no one-to-one (NMS-free) head: an end-to-end export needs a YOLO26/YOLOv10 model; "
                      "drop end2end to export the raw output for NMS")
    return bool(end2end)


def stride_multiple(imgsz: int, stride: int = 32) -> int:
    """``imgsz`` rounded up to a multiple of ``stride`` by Ultralytics' ``check_imgsz`` (which warns when it changes);
    one-line KDError for a size below 1, which ``check_imgsz`` would let through."""
    if imgsz < 1:
        raise KDError(f"--imgsz {imgsz} must be a positive image size: pass e.g. --imgsz 640")
    from ultralytics.utils.checks import check_imgsz

    return int(check_imgsz(int(imgsz), stride=stride))


def export_int8(
    model: str | Path,
    data: str | Path,
    imgsz: int = 640,
    calib_images: int = 256,
    method: str = "percentile",
    keep_float: Iterable[str] | str | None = FLOAT_GROUPS,
    out_dir: str | Path | None = None,
    fp32_name: str | None = None,
    int8_name: str | None = None,
    settings: QuantSettings | None = None,
    calib_split: str = "train",
    opset: int | None = None,
    backend: str = "onnxruntime",
    preset: str = "mixed",
    openvino_keep_float: Iterable[str] | str | None = OPENVINO_FLOAT_GROUPS,
    end2end: bool | None = None,
) -> ExportResult:
    """``best.pt`` -> ``<stem>_fp32.onnx`` (Ultralytics exporter) and, per ``backend``, ``<stem>_int8.onnx``
    (onnxruntime: calibrated static QDQ) and ``<stem>_fp32_openvino_model/`` + ``<stem>_int8_openvino_model/``
    (OpenVINO IRs, the INT8 one by NNCF with NNCF ``preset``).

    Calibration uses ``calib_images`` letterboxed images of the ``calib_split`` split (never "val"); both INT8 models
    see the same images. ``keep_float`` names the decode groups onnxruntime's model keeps in float,
    ``openvino_keep_float`` those of the OpenVINO IR (default: the class output convs, DFL and concat). Outputs go to ``out_dir``
    (default: the model's folder); every file is written under a temporary name and renamed, and when any step
    fails the files this call wrote are removed again.

    ``end2end``: None (default) exports a model with a one-to-one head (YOLO26) NMS-free, its top-k ``(1, K, 6)``
    output decoded in the graph (kept float); False exports the one-to-many raw output for NMS, as other families.
    """
    settings = settings or QuantSettings()
    groups = parse_keep_float(keep_float)
    ov_groups = parse_keep_float(openvino_keep_float, onnxruntime=False)
    if method not in METHODS:
        raise KDError(f"unknown calibration method {method!r}: choose one of {', '.join(METHODS)}")
    backends = export_backends(backend)  # fails before any work when OpenVINO is asked for and missing
    imgsz = stride_multiple(imgsz)
    yolo = load_yolo(model, "model", purpose="INT8 export")
    end2end = resolve_end2end(yolo, end2end, model)
    files, notes = calibration_files(data, calib_images, split=calib_split)
    files, more = load_calibration(files, imgsz)
    notes += more
    out_dir = Path(out_dir) if out_dir else Path(model).parent
    stem = Path(model).stem
    fp32 = out_dir / (fp32_name or f"{stem}_fp32.onnx")
    int8 = out_dir / (int8_name or f"{stem}_int8.onnx") if "onnxruntime" in backends else None
    ov_fp32 = ov_int8 = None
    if "openvino" in backends:
        from .openvino_ir import ir_dir

        ov_fp32, ov_int8 = ir_dir(out_dir, fp32.stem), ir_dir(out_dir, (int8_name and Path(int8_name).stem) or f"{stem}_int8")
    _check_writable(*(p for p in (fp32, int8) if p is not None))
    for msg in notes:
        LOGGER.warning(msg)
    written: list[Path] = []
    try:
        res = _export(yolo, fp32, int8, ov_fp32, ov_int8, files, imgsz, method, groups, settings, opset, preset, written,
                      ov_groups, end2end)
    except BaseException:
        _remove(written)
        raise
    res.warnings = notes + res.warnings
    res.calib_split, res.backends = calib_split, backends
    return res


def _export(yolo, fp32, int8, ov_fp32, ov_int8, files, imgsz, method, groups, settings, opset, preset,
            written: list[Path], ov_groups: tuple[str, ...] = (), end2end: bool = False) -> ExportResult:
    """The export steps of :func:`export_int8`; every output is added to ``written`` as soon as it exists."""
    notes: list[str] = []
    export_fp32(yolo, fp32, imgsz, opset=opset, end2end=end2end)
    written.append(fp32)
    res = ExportResult(fp32, int8, imgsz, len(files), "train", method, groups, {},
                       asdict(settings) | {"platform": platform.machine(), "openvino_preset": preset,
                                           "openvino_keep_float": list(ov_groups)})
    res.end2end = end2end
    if int8 is not None:
        t0 = time.perf_counter()
        res.float_nodes = quantize_onnx(fp32, int8, files, imgsz, method=method, keep_float=groups, settings=settings,
                                        fallback=res.minmax_fallback)
        written.append(int8)
        res.quantize_seconds = round(time.perf_counter() - t0, 1)
        if res.minmax_fallback:
            notes.append(f"{len(res.minmax_fallback)} tensors have a degenerate range (e.g. '{res.minmax_fallback[0]}'): "
                         f"calibrated with minmax instead of {method}")
        share = kernel_share(int8)
        kinds = {c.name: c.kind for c in share.convs}
        requantized = [n for n in res.float_nodes.get("head", []) if kinds.get(n) == "int8"]
        if requantized:
            notes.append(f"{len(requantized)} float-kept head convs run as INT8 after onnxruntime's optimisation")
        if share.n_int8 < share.n_conv // 2:
            notes.append(f"only {share.n_int8}/{share.n_conv} convs run in INT8 kernels: u8 activations fuse best on x86")
        res.kernels = share.summary()
    if ov_int8 is not None:
        from .openvino_ir import export_openvino

        # minmax: ranges over all calibration images, as onnxruntime's; otherwise NNCF's default (per-image min/max
        # averaged), which measured more accurate on a trained model (docs/deploy.md)
        res.openvino_float_nodes, res.openvino_seconds, share = export_openvino(
            fp32, ov_fp32, ov_int8, files, imgsz, ov_groups, preset, written,
            activation_range="minmax" if method == "minmax" else "mean_minmax")
        res.openvino_fp32, res.openvino_int8, res.openvino_kernels = ov_fp32, ov_int8, share.summary()
        if share.n_int8 < share.n_conv // 2:
            notes.append(f"only {share.n_int8}/{share.n_conv} convs run in INT8 in OpenVINO's runtime graph")
    for msg in notes:
        LOGGER.warning(msg)
    res.warnings = notes
    return res


def _remove(paths: list[Path]) -> None:
    """Delete what a failed export wrote (files or IR folders)."""
    import shutil

    for p in paths:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _check_writable(*targets: Path) -> None:
    """Fail before any work if an output folder cannot be created or written."""
    for t in targets:
        if t.exists() and t.is_dir():
            raise KDError(f"output '{t}' is a folder: pass a file name ending in .onnx")
        try:
            t.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=t.parent, prefix=".yolo_kd_probe_"):
                pass
        except OSError as e:
            raise KDError(f"cannot write to '{t.parent}' ({e.strerror}): choose a writable --out-dir") from e
