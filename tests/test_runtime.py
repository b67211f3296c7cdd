"""Torch-free runtime: imports without torch, matches Ultralytics predict, fails with one clear line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo_kd.core.errors import KDError

NAMES = {0: "circle", 1: "square", 2: "triangle", 3: "star"}


def build_models(root: Path) -> dict[str, Path]:
    """Write (once per test session) an untrained-but-lively 4-class yolo11n .pt and its ONNX exports under ``root``.

    No training fits the test budget (25 epochs on the tiny preset still score nothing), and a freshly initialised
    YOLO's activations shrink to ~1e-7 by the head, so every anchor would score the same. Fitting the BatchNorm
    statistics on a few shapes images restores unit-variance features; a lower class bias and sharper box logits then
    give spread scores (0.01-1.0) and boxes of many sizes: dozens to hundreds of overlapping candidates per image,
    which exercises filtering, class-aware NMS, max_det and rescaling hard.

    Returns paths: ``pt``; ``fixed`` (1, 8, N) 128x128; ``dynamic`` (dynamic=True); ``nms`` (nms=True, (1, 300, 6));
    ``int8`` (static QDQ INT8 of ``fixed``).
    """
    paths = {k: root / f"{k}.{'pt' if k == 'pt' else 'onnx'}" for k in ("pt", "fixed", "dynamic", "nms", "int8")}
    if all(p.exists() for p in paths.values()):
        return paths
    import torch
    import yaml
    import ultralytics
    from ultralytics import YOLO

    from .lively import make_lively

    root.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/models/11/yolo11.yaml").read_text())
    cfg["nc"] = len(NAMES)
    (root / "yolo11n-shapes.yaml").write_text(yaml.safe_dump(cfg))
    torch.manual_seed(0)
    yolo = YOLO(str(root / "yolo11n-shapes.yaml"))
    model = yolo.model
    model.names = dict(NAMES)
    imgs = make_lively(model)
    yolo.save(paths["pt"])
    for key, kw in (("fixed", {}), ("dynamic", {"dynamic": True}), ("nms", {"nms": True})):
        out = YOLO(paths["pt"]).export(format="onnx", imgsz=128, **kw)
        shutil.move(out, paths[key])
    _quantize(paths["fixed"], paths["int8"], imgs)
    return paths


def _quantize(src: Path, dst: Path, images: np.ndarray) -> None:
    """Static QDQ INT8 quantisation of ``src``'s convolutions, calibrated on ``images`` (B, 128, 128, 3) BGR.

    Only Conv is quantised: the head's final Concat holds pixel boxes and [0, 1] scores in one tensor, and one INT8
    scale for both rounds every score to 0. onnxruntime keeps the Ultralytics metadata (names, stride, imgsz).
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from yolo_kd.deploy.runtime import to_blob

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"images": to_blob(im)} for im in images])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"])


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return build_models(tmp_path_factory.getbasetemp() / "yolo_kd_runtime_models")


def _images() -> list[np.ndarray]:
    """Test frames: shapes images resized to odd, non-square sizes (exercises letterbox padding both ways)."""
    from yolo_kd.data.synthetic import ShapesSpec, render_image

    sizes = [(160, 100), (120, 200), (240, 160), (128, 128)]
    return [cv2.resize(render_image(ShapesSpec(imgsz=160), "val", i)[0], wh) for i, wh in enumerate(sizes)]


@pytest.mark.parametrize("key", ["fixed", "dynamic", "nms", "int8"])
def test_matches_ultralytics_predict(models, key):
    """Same boxes, classes and scores as YOLO(model.onnx).predict on the same images, for every export layout."""
    from ultralytics import YOLO

    from yolo_kd.deploy.runtime import Detector

    conf = 0.1  # 0.25 leaves few boxes on this untrained model (the nms export keeps its baked-in 0.25)
    det = Detector(models[key], conf=conf, imgsz=128 if key == "dynamic" else None)
    reference = YOLO(str(models[key]), task="detect")
    assert det.names == NAMES
    assert det.dynamic == (key == "dynamic") and det.end2end == (key == "nms")
    total = 0
    for image in _images():
        ours = det(image)
        ref = reference.predict(image, conf=conf, imgsz=128, verbose=False)[0].boxes
        assert len(ours) == len(ref)
        np.testing.assert_allclose(ours.boxes, ref.xyxy.numpy(), atol=1e-3)
        np.testing.assert_allclose(ours.scores, ref.conf.numpy(), atol=1e-5)
        np.testing.assert_array_equal(ours.classes, ref.cls.numpy().astype(np.int64))
        assert ours.boxes.dtype == np.float32 and ours.classes.dtype == np.int64
        h, w = image.shape[:2]
        assert (ours.boxes[:, [0, 2]] <= w).all() and (ours.boxes[:, [1, 3]] <= h).all() and (ours.boxes >= 0).all()
        total += len(ours)
    assert total >= 10  # the comparison is not vacuous


def test_dynamic_model_uses_minimum_rectangle_and_max_det(models):
    """A dynamic model letterboxes to a stride-multiple rectangle; max_det caps the detections."""
    from yolo_kd.deploy.runtime import Detector

    det = Detector(models["dynamic"], imgsz=128, conf=0.0, max_det=7)
    image = _images()[0]  # 100x160 -> 80x128 -> padded to 96x128
    blob, lb = det.preprocess(image)
    assert blob.shape == (1, 3, 96, 128) and blob.dtype == np.float32
    assert lb.pad == (0, 8) and lb.gain == (0.8, 0.8)
    assert len(det(image)) == 7
    assert Detector(models["dynamic"]).imgsz == (640, 640)  # Ultralytics predict's default, not the export size


def test_letterbox_matches_ultralytics():
    from ultralytics.data.augment import LetterBox

    from yolo_kd.deploy.runtime import letterbox

    rng = np.random.default_rng(0)
    for h, w, auto in [(100, 160, False), (100, 160, True), (333, 97, False), (720, 1280, True), (64, 64, False)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ours, _ = letterbox(image, (128, 128), auto=auto)
        np.testing.assert_array_equal(ours, LetterBox((128, 128), auto=auto, stride=32)(image=image))


def test_nms_matches_torchvision():
    """Class-aware NMS keeps exactly torchvision's batched_nms boxes, in the same order."""
    import torch
    from torchvision.ops import batched_nms

    from yolo_kd.deploy.runtime import nms

    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, (600, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (600, 2))], 1).astype(np.float32)
    scores = rng.permutation(np.linspace(0.01, 1.0, 600)).astype(np.float32)  # distinct: no tie ambiguity
    classes = rng.integers(0, 5, 600)
    for iou in (0.3, 0.5, 0.7):
        ref = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), iou)
        np.testing.assert_array_equal(nms(boxes, scores, classes, iou), ref.numpy())
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int), 0.7).shape == (0,)


BLOCKER = """
import sys, json
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "torchvision", "ultralytics"}:
            raise ImportError(f"{name} is not available on the edge box")
sys.meta_path.insert(0, Block())
import cv2
from yolo_kd.deploy.runtime import Detector
from yolo_kd.deploy import video
from yolo_kd.commands import camera
det = Detector(sys.argv[1], conf=0.1)
out = det(cv2.imread(sys.argv[2]))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "torchvision", "ultralytics"})
print(json.dumps({"n": len(out), "names": det.names, "heavy": heavy}))
"""


def test_runtime_imports_without_torch(models, tmp_path):
    """runtime, video_io and the camera command run where importing torch or ultralytics raises."""
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), _images()[3])
    proc = subprocess.run([sys.executable, "-c", BLOCKER, str(models["fixed"]), str(image)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["heavy"] == [] and out["n"] > 0
    assert out["names"] == {str(k): v for k, v in NAMES.items()}


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and ": " in message  # names the problem, then the fix
    return message


def _onnx_with_input(path: Path, shape: list) -> Path:
    """A one-node ONNX model (Identity) whose input has ``shape``."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["output0"])], "g",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, shape)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


def test_bad_inputs_give_one_clear_line(models, tmp_path):
    from yolo_kd.deploy.runtime import Detector

    with pytest.raises(KDError) as e:
        Detector(tmp_path / "missing.onnx")
    assert "not found" in _one_line(e)
    garbage = tmp_path / "broken.onnx"
    garbage.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(KDError) as e:
        Detector(garbage)
    assert "cannot load" in _one_line(e) and "export" in str(e.value)
    with pytest.raises(KDError) as e:
        Detector(models["pt"])
    assert "format=onnx" in _one_line(e)
    with pytest.raises(KDError) as e:
        Detector(models["fixed"], imgsz=320)
    assert "fixed input 128x128" in _one_line(e)
    assert Detector(models["dynamic"], imgsz=100).imgsz == (128, 128)  # rounded up with a warning, like Ultralytics
    with pytest.raises(KDError) as e:
        Detector(models["dynamic"], imgsz=0)
    assert "must be positive" in _one_line(e)
    with pytest.raises(KDError) as e:
        Detector(_onnx_with_input(tmp_path / "flat.onnx", [1, 3, 128]))
    assert "4-D" in _one_line(e)
    with pytest.raises(KDError) as e:
        Detector(_onnx_with_input(tmp_path / "grey.onnx", [1, 1, 64, 64]))
    assert "1-channel" in _one_line(e)

    det = Detector(models["fixed"])
    with pytest.raises(KDError) as e:
        det.infer(np.zeros((1, 3, 96, 128), np.float32))  # a blob of the wrong size for this fixed model
    assert "(1, 3, 128, 128)" in _one_line(e)
    with pytest.raises(KDError) as e:
        det(np.zeros((64, 64, 3), np.float32))
    assert "uint8" in _one_line(e)
    grey = cv2.cvtColor(_images()[3], cv2.COLOR_BGR2GRAY)  # grey frames are accepted, like Ultralytics
    assert len(det(grey)) == len(det(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)))
