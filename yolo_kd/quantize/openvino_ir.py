"""OpenVINO export: the FP32 ONNX as an OpenVINO IR, and its INT8 IR quantized by NNCF with the decode kept float.

Pipeline: the FP32 ONNX (the same file the onnxruntime path quantizes) -> ``openvino.convert_model`` -> FP32 IR;
the same model -> ``nncf.quantize`` (post-training, CPU target, calibrated on letterboxed images of the dataset's
*train* split, :mod:`yolo_kd.quantize.calibration`) with the detection decode in NNCF's ignored scope -> INT8 IR.
The decode is found from the graph's structure (:mod:`yolo_kd.quantize.graph_tail`), as on the ONNX path.

An IR is a folder ``<stem>_openvino_model/`` holding ``<stem>.xml``, ``<stem>.bin`` and ``metadata.yaml``, as
Ultralytics writes it, so ``YOLO("best_int8_openvino_model")`` validates and predicts it, and
:class:`yolo_kd.deploy.runtime.Detector` runs it. Ultralytics' metadata also goes into the IR's
``rt_info["framework"]`` (where OpenVINO's ONNX reader puts it), so the runtime needs no YAML reader.

:func:`yolo_kd.quantize.openvino_graph.runtime_share` reports which convolutions really run in INT8: it compiles the
IR for this CPU and reads each node's execution precision from ``compiled.get_runtime_model()``.

``openvino`` and ``nncf`` are optional (``pip install -e ".[openvino]"``); they are imported when used.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

from ..core.errors import KDError
from ..core.optional import installed
from .onnx_graph import parse_keep_float
from .openvino_graph import float_node_groups, runtime_share

INSTALL = 'pip install -e ".[openvino]" (or: pip install openvino nncf)'
PRESETS = ("mixed", "performance")
#: the OpenVINO path's float-kept decode: the class output convs, the DFL/anchor arithmetic/sigmoid and the box/score
#: Concat; the box output convs run INT8 (as accurate as keeping them float on a 1000-image test set, and faster)
OPENVINO_FLOAT_GROUPS = ("cls_head", "dfl", "concat")
#: what ``export_int8(backend=...)`` accepts; "auto" is both where OpenVINO and NNCF are installed on x86
EXPORT_BACKENDS = ("auto", "onnxruntime", "openvino", "both")


def require(nncf: bool = False):
    """``openvino`` (and ``nncf``), or one line saying how to install them."""
    try:
        import openvino
        if nncf:
            import nncf as _nncf  # noqa: F401
    except ImportError as e:
        what = "'openvino' and 'nncf'" if nncf else "'openvino'"
        raise KDError(f"the OpenVINO backend needs {what}, not installed here ({e}): {INSTALL}") from e
    return openvino


def ir_dir(out_dir: Path, stem: str) -> Path:
    """The IR folder name Ultralytics uses (``<stem>_openvino_model``): its loaders recognise OpenVINO by it."""
    return Path(out_dir) / f"{stem}_openvino_model"


def ir_xml(folder: Path) -> Path:
    """The one ``.xml`` of an IR folder (or the ``.xml`` itself)."""
    folder = Path(folder)
    if folder.suffix == ".xml":
        return folder
    found = sorted(folder.glob("*.xml"))
    if len(found) != 1:
        raise KDError(f"'{folder}' holds {len(found)} .xml files: pass an *_openvino_model folder with one model")
    return found[0]


def ir_size_mb(folder: Path) -> float:
    """Size of the IR's files (.xml + .bin + metadata), MB."""
    return round(sum(f.stat().st_size for f in Path(folder).iterdir() if f.is_file()) / 2**20, 2)


def export_backends(backend: str) -> tuple[str, ...]:
    """The runtimes to export for: ``auto`` is both where ``openvino`` and ``nncf`` are installed on x86, else
    onnxruntime alone; asking for OpenVINO where it is not installed is one line saying how to install it."""
    import platform

    if backend not in EXPORT_BACKENDS:
        raise KDError(f"unknown backend {backend!r}: choose one of {', '.join(EXPORT_BACKENDS)}")
    if backend == "auto":
        have = all(installed(m) for m in ("openvino", "nncf"))
        return ("onnxruntime", "openvino") if have and platform.machine().lower() in {"x86_64", "amd64"} else ("onnxruntime",)
    if backend != "onnxruntime":
        require(nncf=True)
    return {"onnxruntime": ("onnxruntime",), "openvino": ("openvino",), "both": ("onnxruntime", "openvino")}[backend]


def export_openvino(fp32_onnx: Path, fp32_dir: Path, int8_dir: Path, files: Sequence[Path], imgsz: int,
                    keep_float: Iterable[str] | str | None, preset: str, written: list[Path],
                    activation_range: str = "mean_minmax"):
    """FP32 IR and NNCF INT8 IR of ``fp32_onnx``; each folder is added to ``written`` once complete.
    Returns (float-kept node names per group, NNCF seconds, :func:`runtime_share` of the INT8 IR)."""
    import time

    onnx_to_ir(fp32_onnx, fp32_dir)
    written.append(fp32_dir)
    t0 = time.perf_counter()
    float_nodes = quantize_ir(fp32_onnx, int8_dir, files, imgsz, keep_float=keep_float, preset=preset,
                              activation_range=activation_range)
    written.append(int8_dir)
    return float_nodes, round(time.perf_counter() - t0, 1), runtime_share(int8_dir)


# --------------------------------------------------------------------------------------------------- writing IRs
def _onnx_metadata(onnx_path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}


def write_ir(model, folder: Path, metadata: dict[str, str]) -> Path:
    """Save ``model`` as ``folder/<stem>.xml`` + ``.bin`` + ``metadata.yaml`` (stem: the folder name without
    ``_openvino_model``), FP32 weights, through a temporary folder (:func:`write_dir`)."""
    ov = require()
    folder = Path(folder)
    stem = folder.name.removesuffix("_openvino_model") or "model"
    for key, value in metadata.items():
        model.set_rt_info(str(value), ["framework", key])

    def fill(tmp: Path) -> None:
        ov.save_model(model, str(tmp / f"{stem}.xml"), compress_to_fp16=False)
        # JSON is YAML: Ultralytics' loader reads it, and so does a runtime without PyYAML
        (tmp / "metadata.yaml").write_text(json.dumps(metadata, indent=1) + "\n")

    return write_dir(fill, folder)


def write_dir(source, folder: Path) -> Path:
    """Put a folder in place at ``folder`` without ever leaving a half-written one: ``source`` is a folder to move
    there, or a function that fills a fresh temporary folder beside ``folder``. An existing ``folder`` is replaced
    only once the new one is complete."""
    folder = Path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError as e:
        raise KDError(f"cannot write to '{folder.parent}' ({e.strerror}): choose a writable output folder") from e
    old = None
    try:
        if callable(source):
            source(tmp)
        else:
            for f in Path(source).iterdir():
                shutil.move(str(f), tmp / f.name)
        os.chmod(tmp, 0o755)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            folder.rename(old)
        tmp.rename(folder)
    except OSError as e:
        if old is not None and not folder.exists():
            old.rename(folder)
            old = None
        raise KDError(f"could not write '{folder}' ({e.strerror or e}): free disk space or choose another output folder") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def onnx_to_ir(fp32_onnx: str | Path, folder: str | Path) -> Path:
    """The FP32 ONNX as an FP32 OpenVINO IR folder (Ultralytics' metadata kept)."""
    ov = require()
    model = ov.convert_model(str(fp32_onnx))
    return write_ir(model, Path(folder), _onnx_metadata(Path(fp32_onnx)))


def quantize_ir(fp32_onnx: str | Path, folder: str | Path, files: Sequence[Path], imgsz: int,
                keep_float: Iterable[str] | str | None = OPENVINO_FLOAT_GROUPS, preset: str = "mixed",
                fast_bias_correction: bool = True, activation_range: str = "mean_minmax",
                extra_ignored: Sequence[str] = ()) -> dict[str, list[str]]:
    """NNCF post-training INT8 of ``fp32_onnx`` into the IR ``folder``, calibrated on ``files``; returns the float-kept
    node names per group (the decode tail, found by structure, goes into NNCF's ignored scope).

    ``preset``: "mixed" (symmetric weights, asymmetric activations: NNCF's recommendation for models with
    non-ReLU activations such as SiLU) or "performance" (symmetric both). ``activation_range``: "mean_minmax"
    (NNCF's default: per-image min/max averaged over the calibration images) or "minmax" (over all of them).
    """
    ov = require(nncf=True)
    import cv2
    import nncf

    from .calibration import letterbox_tensor

    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    if preset not in PRESETS:
        raise KDError(f"unknown NNCF preset {preset!r}: choose one of {', '.join(PRESETS)}")
    if activation_range not in ("mean_minmax", "minmax"):
        raise KDError(f"unknown activation range {activation_range!r}: choose mean_minmax or minmax")
    # NNCF's default is left alone (passing MEAN_MINMAX explicitly is not the same: the default keeps MINMAX where
    # activations are per-channel, and measured 0.35 mAP50-95 points better on model B)
    advanced = None if activation_range == "mean_minmax" else AdvancedQuantizationParameters(
        activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)
    groups = parse_keep_float(keep_float, onnxruntime=False)
    model = ov.convert_model(str(fp32_onnx))
    all_groups = float_node_groups(model)
    float_nodes = {g: all_groups[g] for g in groups}
    ignored = sorted({n for g in groups for n in all_groups[g]} | set(extra_ignored))

    def transform(path: Path):
        image = cv2.imread(str(path))
        return letterbox_tensor(image, imgsz)

    dataset = nncf.Dataset([str(f) for f in files], transform)
    with quiet_nncf():
        quantized = nncf.quantize(
            model, dataset,
            preset=nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
            target_device=nncf.TargetDevice.CPU,
            subset_size=len(files),
            fast_bias_correction=fast_bias_correction,
            ignored_scope=nncf.IgnoredScope(names=ignored) if ignored else None,
            advanced_parameters=advanced,
        )
    write_ir(quantized, Path(folder), _onnx_metadata(Path(fp32_onnx)))
    return float_nodes


@contextlib.contextmanager
def quiet_nncf():
    """NNCF logs every node it leaves unquantized and draws progress bars: keep its log to warnings, and its prints
    (it prints its ignored-scope matches) off stdout."""
    import io
    import logging

    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def compile_for_cpu(path: str | Path, threads: int | None = None):
    """A compiled model of an IR folder / .xml / .onnx, with the runtime's settings (one latency stream, f32
    float parts; mirrors :func:`yolo_kd.deploy.backends.openvino_config`, which ``quantize`` may not import)."""
    ov = require()
    path = Path(path)
    source = ir_xml(path) if path.is_dir() else path
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    core = ov.Core()
    model = core.read_model(str(source))
    return core.compile_model(model, "CPU", config), model


@contextlib.contextmanager
def f32_inference():
    """While open, every ``openvino.Core`` compiles float layers in f32, as yolo_kd's runtime does.

    Ultralytics' OpenVINO backend leaves the CPU plugin's default, which is bf16 on CPUs with AVX512_BF16/AMX; the
    report validates OpenVINO models through Ultralytics, and their mAP should be that of the deployed precision.
    """
    ov = require()
    original = ov.Core

    class F32Core(original):
        def compile_model(self, model, device_name=None, config=None, **kw):
            config = {**(config or {}), "INFERENCE_PRECISION_HINT": "f32"}
            if device_name is None:
                return super().compile_model(model, config=config, **kw)
            return super().compile_model(model, device_name, config, **kw)

    ov.Core = F32Core
    try:
        yield
    finally:
        ov.Core = original
