"""Inference backends of the torch-free runtime: onnxruntime and OpenVINO behind one small interface.

:class:`OnnxRuntimeModel` runs an ``.onnx`` file; :class:`OpenVINOModel` runs an OpenVINO IR (an
``*_openvino_model`` folder or its ``.xml``, with the ``.bin`` beside it) or an ``.onnx`` file. Both expose the
same attributes (``input_name``, ``input_shape``, ``input_type``, ``output_shape``, ``metadata``, ``runtime``) and
``run(blob) -> first output``, so :class:`yolo_kd.deploy.runtime.Detector` letterboxes, decodes and runs NMS the
same way for both. OpenVINO is optional (``pip install -e ".[openvino]"``) and imported only when it is used.

``backend="auto"`` picks OpenVINO on x86 when it is installed (it runs the same FP32 ONNX file faster there), else
onnxruntime; an IR always runs on OpenVINO. A quantized (QDQ) ONNX file stays on onnxruntime under ``auto``: it was
quantized and checked for onnxruntime's kernels, and OpenVINO re-implements its Q/DQ pairs with its own INT8
kernels, whose results can differ (for OpenVINO, export an INT8 IR instead: ``tools/export_int8.py --backend
openvino``); ask for ``backend="openvino"`` to run it there anyway.
"""

from __future__ import annotations

import ast
import json
import platform
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.errors import KDError
from ..core.optional import installed

BACKENDS = ("auto", "onnxruntime", "openvino")
OPENVINO_INSTALL = 'pip install -e ".[openvino]" (or: pip install openvino)'
_X86 = {"x86_64", "amd64", "i386", "i686", "x86"}
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
_OV_TYPES = {"f32": np.float32, "f16": np.float16}


def openvino_installed() -> bool:
    """Whether the ``openvino`` package can be imported (without importing it)."""
    return installed("openvino")


def is_x86() -> bool:
    return platform.machine().lower() in _X86


def is_ir(path: Path) -> bool:
    """An OpenVINO IR: a folder (``*_openvino_model``) or an ``.xml`` file."""
    return path.is_dir() or path.suffix.lower() == ".xml"


def is_qdq(path: Path) -> bool:
    """Whether an ONNX file holds Q/DQ nodes (a statically quantized model), by its bytes: no onnx package needed."""
    try:
        with open(path, "rb") as f:
            return b"DequantizeLinear" in f.read()
    except OSError:
        return False


def import_openvino():
    """``openvino``, or one line saying how to install it."""
    try:
        import openvino
    except ImportError as e:
        raise KDError(f"backend 'openvino' is not installed ({e}): {OPENVINO_INSTALL}") from e
    return openvino


def resolve_backend(path: str | Path, backend: str = "auto") -> str:
    """'onnxruntime' or 'openvino' for ``path``: ``auto`` is OpenVINO for an IR, and for a float ONNX on x86 when
    installed; onnxruntime otherwise (and for QDQ INT8 ONNX files, see the module docstring)."""
    path = Path(path)
    if backend not in BACKENDS:
        raise KDError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if is_ir(path):
        if backend == "onnxruntime":
            raise KDError(f"'{path.name}' is an OpenVINO IR: run it with backend 'openvino' (or 'auto'), or pass the .onnx file")
        if not openvino_installed():
            raise KDError(f"'{path.name}' is an OpenVINO IR and backend 'openvino' is not installed: {OPENVINO_INSTALL}")
        return "openvino"
    if backend == "auto":
        if not installed("onnxruntime") and openvino_installed():
            return "openvino"
        return "openvino" if is_x86() and openvino_installed() and not is_qdq(path) else "onnxruntime"
    if backend == "openvino" and not openvino_installed():
        raise KDError(f"backend 'openvino' is not installed: {OPENVINO_INSTALL}")
    return backend


def ir_files(path: str | Path) -> tuple[Path, Path]:
    """(``.xml``, ``.bin``) of an IR folder or ``.xml`` file; one line when the folder has no model or no weights."""
    path = Path(path)
    xml = path
    if path.is_dir():
        found = sorted(path.glob("*.xml"))
        if len(found) != 1:
            what = "no OpenVINO model (.xml)" if not found else f"{len(found)} .xml files ({', '.join(f.name for f in found)})"
            raise KDError(f"folder '{path}' holds {what}: pass an *_openvino_model folder with one model, or its .xml file")
        xml = found[0]
    if not xml.is_file():
        raise KDError(f"model '{xml}' not found: pass an .onnx file or an *_openvino_model folder")
    weights = xml.with_suffix(".bin")
    if not weights.is_file():
        raise KDError(f"OpenVINO model '{xml.name}' has no weights file '{weights.name}' beside it: copy the whole "
                      f"*_openvino_model folder (.xml and .bin)")
    return xml, weights


def openvino_config(threads: int | None = None, precision: str = "f32") -> dict:
    """Compile settings: one latency stream, ``threads`` inference threads, ``precision`` for the float parts.

    OpenVINO's CPU plugin would otherwise run float layers in bf16 on CPUs with AVX512_BF16/AMX: faster, but the
    decode's box coordinates (up to the image size) lose their low bits. "f32" keeps the float parts exact; INT8
    layers of a quantized model run in INT8 either way.
    """
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": precision}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


class OnnxRuntimeModel:
    """An ``.onnx`` file on onnxruntime (CUDA when this build has it and ``providers`` is not given, else CPU)."""

    name = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None, providers: Sequence[str] | None = None):
        import onnxruntime as ort

        from ..core.timing import onnx_session

        if not providers:
            available = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available] or available
        try:  # quiet session: onnxruntime's notices stay off the camera's stdout/stderr
            self.session = onnx_session(path, threads, list(providers))
        except Exception as e:  # onnxruntime raises a family of pybind exceptions for bad files
            raise KDError(f"cannot load '{path}' as an ONNX model ({_reason(e)}): re-export it, "
                          f"e.g. yolo export model=best.pt format=onnx") from e
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        inputs = self.session.get_inputs()
        self.n_inputs = len(inputs)
        inp, out = inputs[0], self.session.get_outputs()[0]
        self.input_name = inp.name
        self.input_shape = [d if isinstance(d, int) else None for d in inp.shape]
        self.input_type, self.input_dtype = inp.type, _ORT_TYPES.get(inp.type)
        self.output_name = out.name
        self.output_shape = [d if isinstance(d, int) else None for d in out.shape]
        self.runtime = self.session.get_providers()[0]

    def run(self, blob: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: blob})[0]


class OpenVINOModel:
    """An OpenVINO IR (folder or ``.xml``) or an ``.onnx`` file on OpenVINO's CPU plugin, compiled for latency."""

    name = "openvino"

    def __init__(self, path: Path, threads: int | None = None, precision: str = "f32", device: str = "CPU"):
        ov = import_openvino()
        source = ir_files(path)[0] if is_ir(path) else path
        core = ov.Core()
        try:
            model = core.read_model(str(source))
            self.compiled = core.compile_model(model, device, openvino_config(threads, precision))
        except Exception as e:  # OpenVINO raises RuntimeError subclasses for bad files
            fix = "re-export it (tools/export_int8.py --backend openvino)" if is_ir(path) else "re-export it, e.g. yolo export model=best.pt format=onnx"
            raise KDError(f"cannot load '{source}' with OpenVINO ({_reason(e)}): {fix}") from e
        self.metadata = _ov_metadata(model, source)
        self.n_inputs = len(model.inputs)
        inp, out = model.inputs[0], model.outputs[0]
        self.input_name = _port_name(inp, "images")
        self.input_shape = _dims(inp.get_partial_shape())
        self.input_type = inp.get_element_type().get_type_name()
        self.input_dtype = _OV_TYPES.get(self.input_type)
        self.output_name = _port_name(out, "output0")  # torch-traced IRs (Ultralytics') leave outputs unnamed
        self.output_shape = _dims(out.get_partial_shape())
        self.request = self.compiled.create_infer_request()
        self.runtime = f"OpenVINO {device}"

    def run(self, blob: np.ndarray) -> np.ndarray:
        self.request.infer({0: blob}, share_inputs=True)
        return self.request.get_output_tensor(0).data.copy()


def load_backend(path: str | Path, backend: str = "auto", threads: int | None = None,
                 providers: Sequence[str] | None = None, precision: str = "f32"):
    """The model at ``path`` on the backend ``backend`` resolves to (see :func:`resolve_backend`)."""
    path = Path(path)
    chosen = resolve_backend(path, backend)
    if chosen == "openvino":
        return OpenVINOModel(path, threads, precision)
    return OnnxRuntimeModel(path, threads, providers)


def _reason(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:160] if text else type(e).__name__


def _port_name(port, default: str) -> str:
    names = port.get_names()
    return sorted(names)[0] if names else default


def _dims(shape) -> list[int | None]:
    return [d.get_length() if d.is_static else None for d in shape] if shape.rank.is_static else []


def _ov_metadata(model, source: Path) -> dict[str, str]:
    """Ultralytics' export metadata as strings (like ONNX ``metadata_props``).

    From the model's ``rt_info["framework"]`` (OpenVINO's ONNX reader puts the ONNX metadata there; yolo_kd's IRs
    keep it), else from the ``metadata.yaml`` Ultralytics writes beside an IR (read with PyYAML when present), else
    from the class labels Ultralytics stores in ``rt_info["model_info"]``.
    """
    meta: dict[str, str] = {}
    if model.has_rt_info(["framework"]):
        meta = {k: v.astype(str) for k, v in model.get_rt_info(["framework"]).astype(dict).items()}
    if "names" in meta:
        return meta
    yaml_file = source.parent / "metadata.yaml"
    if yaml_file.is_file():
        try:
            import yaml

            data = yaml.safe_load(yaml_file.read_text())
        except ImportError:  # the edge box may not have PyYAML: JSON is YAML, and yolo_kd writes JSON
            try:
                data = json.loads(yaml_file.read_text())
            except ValueError:
                data = None
        except Exception:  # a broken sidecar is no reason to refuse the model
            data = None
        if isinstance(data, dict):
            return {k: v if isinstance(v, str) else repr(v) for k, v in data.items()}
    if model.has_rt_info(["model_info", "labels"]):
        labels = str(model.get_rt_info(["model_info", "labels"])).split()
        meta["names"] = repr(dict(enumerate(labels)))
    return meta


def literal(value, default):
    """Parse a metadata value Ultralytics stored with ``str()``; ``default`` when absent or unparsable."""
    try:
        return ast.literal_eval(value) if isinstance(value, str) else default
    except (ValueError, SyntaxError):
        return default
