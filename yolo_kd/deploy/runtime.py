"""Torch-free detection runtime for Ultralytics YOLO models: letterbox, onnxruntime or OpenVINO, decode, NMS.

Runs on an edge box that has only numpy, OpenCV and onnxruntime and/or OpenVINO: this module imports nothing else
(``yolo_kd.core.errors`` is plain Python; the backends are imported when a model is loaded, :mod:`.backends`). It
reproduces ``YOLO(model).predict(...)`` for detection models exported by Ultralytics or by this project, ONNX or
OpenVINO IR, FP32 or INT8, with a fixed or dynamic input, with raw ``(1, 4+nc, N)`` outputs or with NMS inside the
graph (``nms=True`` exports and end-to-end heads, ``(1, K, 6)``)::

    from yolo_kd.deploy.runtime import Detector

    det = Detector("best_int8.onnx")               # conf=0.25, iou=0.7, max_det=300 like Ultralytics predict
    det = Detector("best_int8_openvino_model")     # an OpenVINO IR; backend="auto" | "onnxruntime" | "openvino"
    out = det(cv2.imread("frame.jpg"))             # Detections: boxes (N, 4) xyxy pixels, scores (N,), classes (N,)
    for (x1, y1, x2, y2), s, c in zip(out.boxes, out.scores, out.classes):
        print(det.names[c], s, x1, y1, x2, y2)

``preprocess``, ``infer`` and ``postprocess`` are public so a benchmark can time each stage.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..core.errors import KDError
from ..core.log import LOGGER
from .backends import BACKENDS, is_ir, literal, load_backend

__all__ = ["BACKENDS", "Detections", "Detector", "Letterbox", "letterbox", "to_blob", "nms", "decode_raw", "decode_end2end",
           "scale_boxes", "postprocess_output"]

MAX_NMS = 30_000  # candidates kept (highest scores first) before NMS, as in Ultralytics


@dataclass
class Detections:
    """Detections of one image, in original-image pixels, sorted by descending score."""

    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2
    scores: np.ndarray  # (N,) float32
    classes: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def to_list(self, names: dict[int, str] | None = None, ndigits: int = 2) -> list[dict]:
        """JSON-ready list of ``{"cls", "name", "score", "box": [x1, y1, x2, y2]}``."""
        names = names or {}
        boxes = np.round(self.boxes.astype(np.float64), ndigits).tolist()
        scores = np.round(self.scores.astype(np.float64), 4).tolist()
        return [{"cls": c, "name": names.get(c, str(c)), "score": s, "box": b}
                for c, s, b in zip(self.classes.tolist(), scores, boxes)]


@dataclass(frozen=True)
class Letterbox:
    """How an image was letterboxed, to map boxes back: sizes are (h, w), ``gain`` (gx, gy), ``pad`` (left, top)."""

    orig_shape: tuple[int, int]
    input_shape: tuple[int, int]
    gain: tuple[float, float]
    pad: tuple[int, int]


def letterbox(image: np.ndarray, new_shape: tuple[int, int], auto: bool = False, stride: int = 32,
              pad_value: int = 114) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` (H, W, 3) keeping its aspect ratio and pad it to ``new_shape`` (h, w), centred.

    ``auto`` pads only to the next multiple of ``stride`` (minimum rectangle, for dynamic-shape models). Same
    rounding as Ultralytics ``LetterBox`` so the network sees identical pixels.
    """
    h, w = image.shape[:2]
    r = min(new_shape[0] / h, new_shape[1] / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = new_shape[1] - new_w, new_shape[0] - new_h
    if auto:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    top, bottom, left, right = round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1)
    if (new_w, new_h) != (w, h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    return image, Letterbox((h, w), image.shape[:2], (new_w / w, new_h / h), (left, top))


def to_blob(image: np.ndarray, dtype=np.float32) -> np.ndarray:
    """BGR uint8 (H, W, 3) -> RGB (1, 3, H, W) in [0, 1], contiguous, in one pass."""
    blob = np.empty((1, 3, *image.shape[:2]), dtype=dtype)
    np.divide(image.transpose(2, 0, 1)[::-1], np.float32(255), out=blob[0], dtype=dtype)
    return blob


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> np.ndarray:
    """Class-aware greedy NMS (OpenCV, in C++). ``boxes`` (N, 4) xyxy -> kept indices (K,), by descending score."""
    if not len(boxes):
        return np.zeros(0, np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).astype(np.float64)
    keep = cv2.dnn.NMSBoxesBatched(xywh, scores.astype(np.float32), classes.astype(np.int32), -np.inf, float(iou))
    return np.asarray(keep, np.int64).reshape(-1)


def decode_raw(pred: np.ndarray, conf: float, iou: float, max_det: int, nc: int | None = None):
    """Decode one raw Ultralytics output (4 + nc, N) of xywh boxes and class scores, then filter and NMS.

    Returns ``(boxes (K, 4) xyxy, scores (K,), classes (K,))`` in network-input pixels, best first.
    """
    nc = nc or pred.shape[0] - 4
    cls_scores = pred[4:4 + nc]  # (nc, N)
    cand = np.flatnonzero(cls_scores.max(0) > conf)
    cls = cls_scores[:, cand].argmax(0)
    scores = cls_scores[cls, cand]
    if len(cand) > MAX_NMS:
        top = np.argsort(-scores, kind="stable")[:MAX_NMS]
        cand, cls, scores = cand[top], cls[top], scores[top]
    xy, wh = pred[0:2, cand].T, pred[2:4, cand].T
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1)
    keep = nms(boxes, scores, cls, iou)[:max_det]
    return boxes[keep].astype(np.float32), scores[keep].astype(np.float32), cls[keep].astype(np.int64)


def decode_end2end(pred: np.ndarray, conf: float, max_det: int):
    """Decode one NMS-included output (K, 6+) of ``x1, y1, x2, y2, score, class`` rows (already sorted)."""
    keep = np.flatnonzero(pred[:, 4] > conf)[:max_det]
    rows = pred[keep]
    return rows[:, :4].astype(np.float32), rows[:, 4].astype(np.float32), rows[:, 5].astype(np.int64)


def scale_boxes(boxes: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Map xyxy boxes (N, 4) from network-input pixels back to the original image, clipped to it."""
    (gx, gy), (px, py), (h, w) = lb.gain, lb.pad, lb.orig_shape
    boxes = (boxes - np.array([px, py, px, py], np.float32)) / np.array([gx, gy, gx, gy], np.float32)
    np.clip(boxes, 0, np.array([w, h, w, h], np.float32), out=boxes)
    return boxes


def postprocess_output(raw: np.ndarray, lb: Letterbox, conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
                       end2end: bool = False, nc: int | None = None) -> Detections:
    """Model output of a batch-1 image ((1, 4+nc, N) raw or (1, K, 6) end-to-end) -> :class:`Detections`."""
    pred = raw[0]
    boxes, scores, classes = decode_end2end(pred, conf, max_det) if end2end else decode_raw(pred, conf, iou, max_det, nc)
    return Detections(scale_boxes(boxes, lb), scores, classes)


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """Accept BGR (H, W, 3), BGRA (H, W, 4) or grey (H, W) / (H, W, 1) uint8 images; return BGR (H, W, 3)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = f"dtype {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise KDError(f"image is {kind}: pass a uint8 BGR array (H, W, 3) as returned by cv2.imread")
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise KDError(f"image has shape {image.shape}: pass a BGR image (H, W, 3) as returned by cv2.imread")


class Detector:
    """Ultralytics YOLO detection model (ONNX or OpenVINO IR) on onnxruntime or OpenVINO, without torch.

    Args:
        model_path: exported ``.onnx`` file (FP32, FP16 or INT8 QDQ), or an OpenVINO IR: an ``*_openvino_model``
            folder or its ``.xml`` (with the ``.bin`` beside it).
        conf, iou, max_det: thresholds, defaults as Ultralytics predict (class-aware NMS).
        imgsz: network input size for dynamic-shape models (int or (h, w)); default 640 as in Ultralytics.
        threads: inference threads (None: the backend's default, one per physical core).
        providers: ONNX Runtime execution providers (default CUDA when available, else CPU).
        backend: "auto" (OpenVINO for an IR, and for ONNX on x86 when installed; else onnxruntime), "onnxruntime"
            or "openvino" (``pip install -e ".[openvino]"``).

    Attributes: ``names`` {class index: name}, ``imgsz`` (h, w) letterbox target, ``dynamic``, ``end2end``,
    ``metadata`` (the Ultralytics export metadata as strings), ``backend`` ("onnxruntime" / "openvino"),
    ``runtime`` (e.g. "CPUExecutionProvider", "OpenVINO CPU"), ``session`` (onnxruntime only).
    """

    kind = "onnx"

    def __init__(self, model_path: str | Path, conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
                 imgsz: int | Sequence[int] | None = None, threads: int | None = None,
                 providers: Sequence[str] | None = None, backend: str = "auto"):
        path = Path(model_path)
        if not path.exists():
            raise KDError(f"model '{path}' not found: pass the path of an exported .onnx file or *_openvino_model folder")
        if path.suffix.lower() in {".pt", ".pth"}:
            raise KDError(f"'{path}' is a PyTorch checkpoint: export it first, e.g. yolo export model={path} format=onnx")
        if not (0 <= conf <= 1 and 0 <= iou <= 1):
            raise KDError(f"conf={conf}, iou={iou}: both thresholds must be between 0 and 1")
        self.model = load_backend(path, backend, threads, providers)
        self.backend, self.runtime = self.model.name, self.model.runtime
        self.session = getattr(self.model, "session", None)
        self.kind = "openvino" if is_ir(path) else "onnx"
        self.path, self.conf, self.iou, self.max_det, self.threads = path, conf, iou, max_det, threads
        self.metadata: dict[str, str] = self.model.metadata
        task = self.metadata.get("task", "detect")
        if task != "detect":
            raise KDError(f"'{path.name}' is a '{task}' model: this runtime runs detection models; export a detect model")
        self._read_io(path, imgsz)

    def _read_io(self, path: Path, imgsz) -> None:
        """Check the model's input/output layout and set ``imgsz``, ``dynamic``, ``end2end``, ``names``."""
        m = self.model
        if m.n_inputs != 1:
            raise KDError(f"'{path.name}' has {m.n_inputs} inputs: export a detection model with one image input")
        shape, out_shape = m.input_shape, m.output_shape
        if len(shape) != 4:
            raise KDError(f"'{path.name}' input '{m.input_name}' has shape {shape}: expected a 4-D image input "
                          f"(batch, 3, height, width); export a detection model with format=onnx")
        if shape[1] is not None and shape[1] != 3:
            raise KDError(f"'{path.name}' expects {shape[1]}-channel input {shape}: this runtime feeds 3-channel "
                          f"BGR->RGB images; export a 3-channel model")
        if shape[0] is not None and shape[0] != 1:
            raise KDError(f"'{path.name}' was exported with batch={shape[0]}: re-export with batch=1 or dynamic=True")
        if m.input_dtype is None:
            raise KDError(f"'{path.name}' input type is {m.input_type}: export with float input (the default)")
        if len(out_shape) != 3:
            raise KDError(f"'{path.name}' output '{m.output_name}' has shape {out_shape}: expected a detection output "
                          f"(1, 4+classes, anchors) or (1, detections, 6)")
        self.input_name, self.input_dtype = m.input_name, m.input_dtype
        self.stride = int(self.metadata.get("stride", 32))
        names = literal(self.metadata.get("names"), None)
        self.dynamic = any(d is None for d in shape[2:])
        meta_args = literal(self.metadata.get("args"), {}) or {}
        self.end2end = bool(literal(self.metadata.get("end2end"), False) or meta_args.get("nms"))
        if not self.metadata and out_shape[2] == 6:  # third-party export: (1, K, 6) means NMS is in the graph
            self.end2end = True
        nc = out_shape[1] - 4 if out_shape[1] is not None and not self.end2end else None
        self.names: dict[int, str] = names if isinstance(names, dict) else {i: str(i) for i in range(nc or 0)}
        self.nc = len(self.names) if names else nc
        self.imgsz = self._input_size(path, shape, imgsz)
        self.input_shape = (1, 3, *self.imgsz)

    def _input_size(self, path: Path, shape: list, imgsz) -> tuple[int, int]:
        """(h, w) letterbox target: the fixed input, else ``imgsz``, else 640."""
        want = None if imgsz is None else (int(imgsz), int(imgsz)) if np.isscalar(imgsz) else tuple(map(int, imgsz))
        if not self.dynamic:
            fixed = (int(shape[2]), int(shape[3]))
            if want is not None and want != fixed:
                raise KDError(f"imgsz {want[0]}x{want[1]} does not match the fixed input {fixed[0]}x{fixed[1]} of "
                              f"'{path.name}': use imgsz={fixed[0]} or re-export with imgsz={want[0]} (or dynamic=True)")
            return fixed
        want = want or (640, 640)  # like Ultralytics predict, which ignores the export size of dynamic models
        if any(v <= 0 for v in want):
            raise KDError(f"imgsz {want} must be positive: use e.g. imgsz=640")
        rounded = tuple(-(-v // self.stride) * self.stride for v in want)
        if rounded != want:  # as Ultralytics' check_imgsz, which this torch-free module cannot import
            LOGGER.warning(f"imgsz {list(want)} must be a multiple of the model stride {self.stride}, updating to {list(rounded)}")
        return rounded

    # --- the three stages -------------------------------------------------------------------------------------
    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """BGR image (H, W, 3) uint8 -> (blob (1, 3, h, w) float, letterbox info to map boxes back)."""
        img, lb = letterbox(_as_bgr(image), self.imgsz, auto=self.dynamic, stride=self.stride)
        return to_blob(img, self.input_dtype), lb

    def infer(self, blob: np.ndarray) -> np.ndarray:
        """Run the network on ``blob`` (1, 3, h, w); returns its first output, (1, 4+nc, N) or (1, K, 6)."""
        if blob.ndim != 4 or blob.shape[:2] != (1, 3) or (not self.dynamic and blob.shape != self.input_shape):
            raise KDError(f"input tensor {tuple(blob.shape)} does not fit '{self.path.name}' "
                          f"(expects {self.input_shape}): build it with Detector.preprocess")
        return self.model.run(blob)

    def postprocess(self, raw: np.ndarray, lb: Letterbox) -> Detections:
        """Network output -> :class:`Detections` in original-image pixels (filter, class-aware NMS, rescale)."""
        return postprocess_output(raw, lb, self.conf, self.iou, self.max_det, self.end2end, self.nc)

    def __call__(self, image: np.ndarray) -> Detections:
        """Detect objects in one BGR image."""
        blob, lb = self.preprocess(image)
        return self.postprocess(self.infer(blob), lb)

    def __repr__(self) -> str:
        kind = "end-to-end" if self.end2end else "raw"
        return (f"Detector('{self.path.name}', imgsz={self.imgsz}, dynamic={self.dynamic}, output={kind}, "
                f"classes={len(self.names)}, backend={self.backend}, runtime={self.runtime!r})")
