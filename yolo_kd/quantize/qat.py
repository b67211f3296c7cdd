"""Quantization-aware training (QAT) with distillation, and the INT8 export of its result.

``run_qat`` fine-tunes a trained (distilled, possibly pruned) detector with fake-quantized convolutions
(:mod:`yolo_kd.quantize.fake_quant`) while a teacher distils into it, through the ordinary distillation trainer
(:func:`yolo_kd.train`: ``KDTrainer``, ``KDModel`` and its terms; no teacher = plain detection loss). Then:

1. the fake-quantized ``best.pt`` -> Ultralytics' ONNX exporter -> ``qat_int8_convs.onnx``: PyTorch writes every
   fake quantizer as a QuantizeLinear/DequantizeLinear pair with the scale learned in training, so the file computes
   what the trained network computed (convolutions INT8, SiLU/Add/Concat float between them);
2. ``qat_int8.onnx``, the file for onnxruntime (:mod:`yolo_kd.quantize.qat_graph`): the same graph with every other
   op PTQ quantizes (SiLU's Sigmoid and Mul, Add, Concat, MaxPool, Resize) quantized too, by onnxruntime's
   ``quantize_static`` calibrated on train images, while every tensor QAT quantized keeps QAT's scale and every
   weight QAT's integers; onnxruntime then runs it as fast as the PTQ file instead of converting around every
   activation. The decode (head output convs, DFL, concat) stays float, as on the PTQ path;
3. with OpenVINO installed, two IRs. ``qat_int8_openvino_model/``, the file for OpenVINO: the trained network (QAT's
   weights, the saturation of its pre-activations) quantized by NNCF with NNCF's own placement, which OpenVINO fuses
   into its INT8 convolutions, so it runs as fast as NNCF's PTQ IR (measured 0.99-1.03x; docs/int8.md).
   ``qat_int8_convs_openvino_model/``: ``qat_int8_convs.onnx`` itself (OpenVINO turns its Q/DQ pairs into
   FakeQuantize), every quantizer where QAT trained it: the most accurate (+0.32 mAP50-95 over 3 seeds) and about
   1.2x slower, because QAT quantizes where a convolution reads and OpenVINO fuses quantizers where one writes.
   A run trained with ``placement="nncf"`` has its quantizers where OpenVINO fuses them already: its
   ``qat_int8_convs.onnx`` is the IR ``qat_int8_openvino_model/`` as it is (measured 0.99-1.01x NNCF PTQ's latency);
4. the parent (the model QAT started from) as FP32 ONNX and as PTQ INT8 ONNX (:func:`yolo_kd.quantize.ptq.export_int8`),
   on the same calibration images, and the side-by-side report (:mod:`yolo_kd.quantize.report`: size, INT8
   share, latency, mAP50-95 of every file, validated the same way).

Layout of ``<project>/<name>/``: ``qat.yaml`` (settings), ``train/`` (the Ultralytics run: ``weights/best.pt``,
``last.pt``, ``results.csv``, ``kd.yaml``), the exported files, ``qat_report.json`` and ``qat_report.md``.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from ..core.checkpoints import checked_checkpoint_path, export_copy, has_one2one, load_checkpoint_model
from ..core.errors import KDError
from ..core.files import write_json_atomic, write_text_atomic
from ..core.log import LOGGER
from ..distill.schedule import fine_tune_settings
from .fake_quant import PLACEMENTS, insert_fake_quant, is_qat, set_fake_quant, set_observers
from .qat_graph import Completion, complete_for_onnxruntime

#: fine-tuning settings that differ from Ultralytics' defaults: the model is trained already, and a warm-up's high
#: bias learning rate would undo it (as for pruning's fine-tunes)
FINETUNE_DEFAULTS = {"warmup_epochs": 0}
BACKENDS = ("auto", "onnxruntime", "openvino", "both")


@dataclass
class QATResult:
    """What :func:`run_qat` wrote."""

    save_dir: Path
    best: Path  # fake-quantized checkpoint (loads in Ultralytics with yolo_kd importable)
    int8_onnx: Path  # every op PTQ quantizes in INT8, QAT's scales and integers kept: the file for onnxruntime
    int8_convs_onnx: Path | None = None  # convolutions only: exactly the trained network; the OpenVINO IR's source
    completion: Completion | None = None  # what the onnxruntime file kept from QAT
    openvino_int8: Path | None = None  # the IR for OpenVINO: QAT's network in NNCF's placement
    openvino_int8_convs: Path | None = None  # the IR of qat_int8_convs.onnx: QAT's own conv placement (None: nncf)
    parent_fp32: Path | None = None
    parent_ptq: Path | None = None
    rows: list = field(default_factory=list)
    table: str = ""
    json: Path | None = None


# ------------------------------------------------------------------------------------------------ preparation
def calibration_images(data: str, n: int, imgsz: int) -> list[Path]:
    """``n`` readable train images (never val): the PTQ path's calibration set (its notes logged)."""
    from .calibration import calibration_files, load_calibration

    files, notes = calibration_files(data, n, split="train")
    files, more = load_calibration(files, imgsz)
    for msg in notes + more:
        LOGGER.warning(msg)
    return files


def calibration_batches(data: str, n: int, imgsz: int) -> list[torch.Tensor]:
    """:func:`calibration_images` letterboxed as (1, 3, imgsz, imgsz) tensors."""
    import cv2

    from .calibration import letterbox_tensor

    return [torch.from_numpy(letterbox_tensor(cv2.imread(str(f)), imgsz)) for f in calibration_images(data, n, imgsz)]


def fold_batch_norm(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with batch norm folded into the convolutions (Ultralytics' ``fuse``, as the exported graph has it),
    every head branch kept: Ultralytics' fuse also drops the branch inference does not use, and an end-to-end head
    (YOLO26) trains both."""
    head = model.model[-1]
    head.fuse = lambda: None  # an instance attribute hides the head's own fuse for this call only
    try:
        model.fuse(verbose=False)
    finally:
        del head.fuse
    return model


def prepare_qat(model: torch.nn.Module, images: list[torch.Tensor], placement: str = "conv") -> torch.nn.Module:
    """A fake-quantized copy of ``model``: batch norm folded, every convolution outside the decode fake-quantized
    with the activation quantizers of ``placement`` (:data:`~yolo_kd.quantize.fake_quant.PLACEMENTS`), activation
    ranges calibrated on ``images`` (float forward passes) and then held fixed; weight scales keep following the
    weights while training."""
    if is_qat(model):
        raise KDError("the model is fake-quantized already (a QAT checkpoint): pass its FP32 parent, or --resume its run")
    model = fold_batch_norm(copy.deepcopy(model).float().eval())
    n_q, n_float = insert_fake_quant(model, placement)
    device = next(model.parameters()).device
    set_fake_quant(model, False)
    set_observers(model, activations=True, weights=True)
    with torch.no_grad():
        for x in images:
            model(x.to(device))
    set_fake_quant(model, True)
    set_observers(model, activations=False, weights=True)
    LOGGER.info(f"yolo_kd: QAT: {n_q} convolutions fake-quantized ({placement} placement), {n_float} decode convolutions "
                f"float, activation ranges from {len(images)} train images")
    return model.requires_grad_(True)


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Stop all range observation (export and evaluation use the learned scales as they are)."""
    set_observers(model, activations=False, weights=False)
    return model


# ------------------------------------------------------------------------------------------------ export
def export_qat_onnx(best: str | Path, out: str | Path, imgsz: int) -> Path:
    """The fake-quantized checkpoint ``best`` as a QDQ INT8 ONNX at ``out`` (Ultralytics' exporter, batch 1, static
    shape, onnxslim, metadata), observers frozen first so the file holds exactly the trained scales. A model with a
    one-to-one head (YOLO26) is exported NMS-free (top-k ``(1, K, 6)`` rows), as ``tools/export_int8.py`` does."""
    from ultralytics.nn.tasks import load_checkpoint  # noqa: F401 (the checkpoint holds yolo_kd's QAT modules)

    ckpt = torch.load(str(best), map_location="cpu", weights_only=False)
    model = (ckpt.get("ema") or ckpt["model"]).float()
    if not is_qat(model):
        raise KDError(f"'{best}' holds no fake-quantized model: pass a yolo_kd QAT checkpoint")
    end2end = has_one2one(model.model[-1])  # NMS-free, as the PTQ path exports YOLO26
    ckpt = {**ckpt, "model": freeze(model), "ema": None, "optimizer": None}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="yolo_kd_qat_", dir=out.parent) as tmp:
        frozen = Path(tmp) / "qat.pt"
        torch.save(ckpt, frozen)
        with warnings.catch_warnings():  # the fake quantizers' enabled-flags are constants of the trace, as meant
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            export_copy(frozen, out, format="onnx", imgsz=imgsz, simplify=True, dynamic=False, batch=1,
                        **({"nms": False} if end2end else {}))
    fold_weight_quantization(out)
    return out


def fold_weight_quantization(path: str | Path) -> int:
    """Store the weights of ``path`` as INT8: every QuantizeLinear of a constant (a weight) is computed once and
    replaced by its int8 result, which the DequantizeLinear reads directly (what onnxruntime's PTQ writes; PyTorch's
    exporter keeps the float weight and quantizes it at every run). Rounding is ONNX's (half to even), the same as
    PyTorch's fake quantization. Returns the number of folded weights; the file is rewritten atomically."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from ..core.files import atomic_path

    model = onnx.load(str(path))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consumers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    folded, drop = 0, []
    for node in list(g.node):
        if node.op_type != "QuantizeLinear" or not all(i in inits for i in node.input[:3]) or len(node.input) < 3:
            continue
        w, scale, zp = (numpy_helper.to_array(inits[i]) for i in node.input[:3])
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * w.ndim
        if scale.ndim == 1 and scale.size > 1:
            shape[axis] = scale.size
        info = np.iinfo(zp.dtype)
        q = np.clip(np.rint(w / scale.reshape(shape)) + zp.reshape(shape).astype(np.int64), info.min, info.max)
        g.initializer.append(numpy_helper.from_array(q.astype(zp.dtype), name=node.output[0]))
        g.node.remove(node)
        drop += [i for i in node.input[:1] if consumers.get(i) == 1]
        folded += 1
    for name in drop:
        g.initializer.remove(inits[name])
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return folded


def convs_file(int8_onnx: Path) -> Path:
    """Where :func:`export_qat_int8` puts the convolutions-only file beside ``<name>.onnx``."""
    return int8_onnx.with_name(f"{int8_onnx.stem}_convs.onnx")


def export_qat_int8(best: str | Path, out_dir: Path, imgsz: int, data: str, calib_images: int,
                    name: str = "qat_int8") -> tuple[Path, Path, Completion]:
    """The QAT checkpoint ``best`` as ``<name>_convs.onnx`` (:func:`export_qat_onnx`: exactly the trained network)
    and ``<name>.onnx`` (every op PTQ quantizes in INT8, QAT's scales kept: the onnxruntime file), calibrated on
    ``calib_images`` train images of ``data``. Returns (onnxruntime file, convolutions-only file, what was kept)."""
    int8 = Path(out_dir) / f"{name}.onnx"
    convs = export_qat_onnx(best, convs_file(int8), imgsz)
    done = complete_for_onnxruntime(convs, int8, calibration_images(data, calib_images, imgsz), imgsz)
    LOGGER.info(f"yolo_kd: QAT: {int8.name} keeps QAT's scales for {done.activations} activations and its integers for "
                f"{done.weights} weights; the ops QAT left float are quantized with ranges calibrated under QAT's clipping"
                + (f" ({done.merged} tensors QAT quantized twice keep their widest range)" if done.merged else "")
                + (f"; {len(done.missing)} recorded tensors were renamed by pre-processing and calibrated instead"
                   if done.missing else ""))
    return int8, convs, done


def export_qat_openvino(convs_onnx: Path, folder: Path) -> Path:
    """The convolutions-only QDQ file as an OpenVINO IR (OpenVINO maps the Q/DQ pairs to its FakeQuantize and runs
    INT8 kernels), each convolution's pre-activation quantizer replaced by the clipping it applied
    (:func:`~yolo_kd.quantize.qat_graph.clip_conv_outputs`: measured 0.96-0.98x the time and +0.17 mAP50-95, docs/int8.md)."""
    import onnx

    from .openvino_ir import onnx_to_ir
    from .qat_graph import clip_conv_outputs

    model, _ = clip_conv_outputs(onnx.load(str(convs_onnx)))
    with tempfile.TemporaryDirectory(prefix="yolo_kd_qat_ov_") as tmp:
        path = Path(tmp) / Path(convs_onnx).name
        onnx.save(model, str(path))
        return onnx_to_ir(path, folder)


def export_qat_openvino_nncf(convs_onnx: Path, folder: Path, files: list[Path], imgsz: int) -> Path:
    """The QAT network as an OpenVINO IR with NNCF's placement of the quantizers, calibrated on ``files``.

    OpenVINO fuses a FakeQuantize into the convolution that *writes* its tensor; QAT's own file quantizes where each
    convolution *reads* (two halves of a Split, a Concat, a residual Add), which leaves 61 FakeQuantize nodes that
    no convolution absorbs in yolo11n (docs/int8.md). Here NNCF quantizes the trained network
    (:func:`~yolo_kd.quantize.qat_graph.trained_float_graph`: QAT's weights, each pre-activation clipped to its QAT
    range) as it quantizes any FP32 model, with its fast bias correction off: that correction pulls the biases
    towards the unquantized graph, which QAT never trained for (measured 0.37 mAP50-95 lower with it). NNCF rounds the
    weights again with its own per-channel scales; putting QAT's integers back measured no difference."""
    import onnx

    from .openvino_ir import quantize_ir
    from .qat_graph import trained_float_graph

    model, _ = trained_float_graph(onnx.load(str(convs_onnx)))
    with tempfile.TemporaryDirectory(prefix="yolo_kd_qat_nncf_") as tmp:
        path = Path(tmp) / Path(convs_onnx).name
        onnx.save(model, str(path))
        quantize_ir(path, folder, files, imgsz, fast_bias_correction=False)
    return Path(folder)


# ------------------------------------------------------------------------------------------------ the whole run
def _holds_qat_model(path: str | Path) -> bool:
    """Whether a checkpoint pickles this package's QAT convolutions (read from the archive, nothing unpickled)."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        return any(b"QATConv2d" in z.read(n) for n in z.namelist() if n.endswith(".pkl"))


def settings_path(save_dir: Path) -> Path:
    return Path(save_dir) / "qat.yaml"


def run_qat(model: str | Path | None, data: str | Path | None, teacher: str | Path | None = None, epochs: int = 10,
            imgsz: int = 640, batch: int = 16, device: Any = None, calib_images: int = 128, backend: str = "auto",
            save_dir: str | Path = "runs/qat/exp", kd_cfg: str | Path | dict | None = None, resume: str | Path | None = None,
            report: bool = True, ptq: bool = True, threads: int = 2, latency_seconds: float = 6.0,
            placement: str = "conv", **train_overrides: Any) -> QATResult:
    """Fine-tune ``model`` with fake quantization (distilling from ``teacher`` when given), export INT8, report.

    ``resume``: the run's ``train/weights/last.pt``; training continues where it stopped (a finished run goes
    straight to the export) and every other setting comes from the run's ``qat.yaml``.
    ``placement``: where the activation quantizers train (:data:`~yolo_kd.quantize.fake_quant.PLACEMENTS`): ``conv``
    at every convolution's input and output, ``nncf`` where NNCF puts them for OpenVINO.
    ``**train_overrides``: other Ultralytics training arguments (lr0, optimizer, workers, seed, ...).
    """
    from ..api import train
    from ..data.datasets import resolve_data
    from .openvino_ir import export_backends
    from .ptq import stride_multiple

    if resume:
        last = Path(resume)
        if not last.is_file() or last.parent.name != "weights" or not settings_path(last.parents[2]).is_file():
            raise KDError(f"--resume '{resume}' is not the last.pt of a QAT run: pass <project>/<name>/train/weights/last.pt")
        save_dir = last.parents[2]
        saved = yaml.safe_load(settings_path(save_dir).read_text())
        model, data, teacher, imgsz, calib_images, backend = (saved[k] for k in ("model", "data", "teacher", "imgsz",
                                                                                 "calib_images", "backend"))
        report, ptq, placement = saved.get("report", report), saved.get("ptq", ptq), saved.get("placement", "conv")
    if model is None:
        raise KDError("no model given: pass --model best.pt (the trained FP32 model to fine-tune with QAT)")
    if not isinstance(epochs, int) or epochs < 1:
        raise KDError(f"--epochs {epochs} is invalid: pass 1 or more QAT fine-tuning epochs (e.g. 10)")
    if backend not in BACKENDS:
        raise KDError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if placement not in PLACEMENTS:
        raise KDError(f"unknown placement {placement!r}: choose one of {', '.join(PLACEMENTS)}")
    if not isinstance(calib_images, int) or calib_images < 1:
        raise KDError(f"--calib-images {calib_images} is invalid: pass 1 or more train images (e.g. 128)")
    backends = export_backends(backend)
    checked_checkpoint_path(model, "model", fix="pass the trained FP32 .pt to fine-tune with QAT")
    if _holds_qat_model(model):
        raise KDError(f"'{model}' is fake-quantized already (a QAT checkpoint): pass its FP32 parent, or --resume its run")
    parent, _ = load_checkpoint_model(model, "model")
    if teacher:
        load_checkpoint_model(teacher, "teacher")  # one line now, not after calibration
    data = resolve_data(data)
    imgsz = stride_multiple(imgsz)
    save_dir = Path(save_dir).resolve()
    run_dir = save_dir / "train"
    if resume:
        ck = torch.load(str(resume), map_location="cpu", weights_only=False)
        if ck.get("epoch", -1) >= 0:  # unfinished: continue it (a finished run's last.pt has epoch -1)
            train(str(resume), teacher=teacher, data=data, resume=str(resume), **train_overrides)
    else:
        save_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(settings_path(save_dir), yaml.safe_dump({
            "model": str(Path(model).resolve()), "teacher": str(Path(teacher).resolve()) if teacher else None,
            "data": data, "epochs": epochs, "imgsz": imgsz, "batch": batch, "calib_images": calib_images,
            "backend": backend, "report": report, "ptq": ptq, "placement": placement, **{k: v for k, v in train_overrides.items()
                                                                  if isinstance(v, (int, float, str, bool))}},
            sort_keys=False))
        qmodel = prepare_qat(parent, calibration_batches(data, calib_images, imgsz), placement)
        run = {"epochs": epochs, "imgsz": imgsz, "batch": batch, "device": device, "plots": False,
               "project": str(save_dir), "name": "train", "exist_ok": True, **FINETUNE_DEFAULTS, **train_overrides}
        run.update(fine_tune_settings(kd_cfg, run))
        train(qmodel, teacher=teacher, data=data, kd_cfg=kd_cfg, **run)
    best = run_dir / "weights" / "best.pt"
    if not best.is_file():
        raise KDError(f"the QAT run wrote no '{best}': check the training log above")
    return export_and_report(best, Path(model), data, imgsz, calib_images, backends, save_dir, report, ptq, threads,
                             latency_seconds, placement)


def export_and_report(best: Path, parent: Path, data: str, imgsz: int, calib_images: int, backends: tuple[str, ...],
                      save_dir: Path, report: bool = True, ptq: bool = True, threads: int = 2,
                      latency_seconds: float = 6.0, placement: str = "conv") -> QATResult:
    """QAT INT8 ONNX (+ IR), the parent's FP32 and PTQ INT8 files, and the report table/JSON. ``placement``: the
    run's (:data:`~yolo_kd.quantize.fake_quant.PLACEMENTS`); an ``nncf``-placed run's own quantizers are the IR."""
    from .openvino_ir import ir_dir
    from .ptq import export_int8

    int8, convs, done = export_qat_int8(best, save_dir, imgsz, data, calib_images)
    res = QATResult(save_dir, best, int8, convs, done)
    if "openvino" in backends and placement == "nncf":  # trained where OpenVINO fuses: the file is the network
        res.openvino_int8 = export_qat_openvino(convs, ir_dir(save_dir, int8.stem))
    elif "openvino" in backends:
        res.openvino_int8 = export_qat_openvino_nncf(convs, ir_dir(save_dir, int8.stem), calibration_images(
            data, calib_images, imgsz), imgsz)
        res.openvino_int8_convs = export_qat_openvino(convs, ir_dir(save_dir, convs.stem))
    models: dict[str, Path] = {}
    if ptq or report:
        exp = export_int8(parent, data, imgsz=imgsz, calib_images=calib_images, out_dir=save_dir,
                          fp32_name="parent_fp32.onnx", int8_name="parent_ptq_int8.onnx",
                          backend="onnxruntime" if not ptq else ("both" if "openvino" in backends else "onnxruntime"))
        res.parent_fp32 = exp.fp32_onnx
        res.parent_ptq = exp.int8_onnx if ptq else None
        models["FP32 ONNX (parent)"] = exp.fp32_onnx
        if ptq:
            models["PTQ INT8 ONNX (parent)"] = exp.int8_onnx
    models["QAT INT8 ONNX"] = res.int8_onnx
    models["QAT INT8 ONNX, convolutions only"] = convs
    if res.openvino_int8 is not None:
        if ptq and exp.openvino_int8 is not None:
            models["PTQ INT8 IR (parent)"] = exp.openvino_int8
        if res.openvino_int8_convs is None:
            models["QAT INT8 IR (trained in NNCF placement)"] = res.openvino_int8
        else:
            models["QAT INT8 IR (NNCF placement)"] = res.openvino_int8
            models["QAT INT8 IR, QAT placement (qat_int8_convs)"] = res.openvino_int8_convs
    if report:
        from .report import markdown_table, measure_all

        res.rows = measure_all(models, data, imgsz, threads=threads, latency_seconds=latency_seconds)
        res.table = markdown_table(res.rows)
        res.json = save_dir / "qat_report.json"
        write_json_atomic(res.json, {"best": str(best), "parent": str(parent), "data": data, "imgsz": imgsz,
                                     "calib_images": calib_images, "rows": [r.to_dict() for r in res.rows]})
        write_text_atomic(save_dir / "qat_report.md", res.table + "\n")
    return res


__all__ = ["QATResult", "fold_batch_norm", "prepare_qat", "calibration_images", "calibration_batches", "freeze", "export_qat_onnx", "export_qat_int8", "convs_file",
           "export_qat_openvino", "export_qat_openvino_nncf",
           "run_qat", "export_and_report"]
