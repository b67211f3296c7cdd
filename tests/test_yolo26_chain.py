"""The rest of the chain for YOLO26: a pruned student stays loadable, exportable and NMS-free; INT8 export keeps the
end-to-end top-k decode float (found from the graph) and runs INT8 kernels; QAT trains both head branches and exports
NMS-free; the torch-free runtime decodes the end-to-end output exactly as ``YOLO(onnx).predict``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

from yolo_kd.core.errors import KDError

from .lively import make_lively

NAMES = {0: "circle", 1: "square", 2: "triangle", 3: "star"}
IMGSZ = 64


def _lively_yolo26n() -> torch.nn.Module:
    """An untrained 4-class yolo26n whose outputs depend on the image (tests/lively.py), on both branches."""
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolo26n.yaml", nc=len(NAMES), verbose=False)
    model.names = dict(NAMES)
    make_lively(model)
    return model


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from yolo_kd.data.synthetic import make_shapes_dataset

    return make_shapes_dataset(tmp_path_factory.mktemp("data26") / "tiny", "tiny")


@pytest.fixture(scope="module")
def model_pt(tmp_path_factory) -> Path:
    from yolo_kd.prune.pruner import save_pruned_checkpoint

    return save_pruned_checkpoint(_lively_yolo26n(), tmp_path_factory.mktemp("m26") / "yolo26n.pt", {"imgsz": IMGSZ})


def _images() -> list[np.ndarray]:
    from yolo_kd.data.synthetic import ShapesSpec, render_image

    sizes = [(160, 100), (120, 200), (128, 128)]
    return [cv2.resize(render_image(ShapesSpec(imgsz=160), "val", i)[0], wh) for i, wh in enumerate(sizes)]


def test_pruned_yolo26_keeps_both_branches_loads_and_exports_nms_free(tmp_path):
    import onnxruntime as ort
    from ultralytics import YOLO

    from yolo_kd.prune.pruner import count_params, model_gflops, prune_model, save_pruned_checkpoint

    model = _lively_yolo26n()
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    before = model(x)[0].shape
    pruned = prune_model(model, target_flops=0.5, importance="l2", round_to=8, imgsz=IMGSZ)
    assert model_gflops(pruned, IMGSZ) <= 0.5 * model_gflops(_lively_yolo26n(), IMGSZ) + 1e-9
    head = pruned.model[-1]
    assert head.one2one_cv2 is not None and head.reg_max == 1 and pruned(x)[0].shape == before
    pt = save_pruned_checkpoint(pruned, tmp_path / "pruned.pt", {"imgsz": IMGSZ})
    y = YOLO(str(pt))
    assert count_params(y.model) == count_params(pruned)
    r = y.predict(np.zeros((IMGSZ, IMGSZ, 3), np.uint8), imgsz=IMGSZ, nms=False, conf=0.0, verbose=False)[0]
    assert len(r.boxes) == 84  # one-to-one top-k: all 8x8 + 4x4 + 2x2 anchors at 64 px, no NMS
    onnx_path = y.export(format="onnx", imgsz=IMGSZ, nms=False)
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: np.zeros((1, 3, IMGSZ, IMGSZ), np.float32)})[0]
    assert out.shape == (1, 84, 6)


def test_prune_loop_distils_a_yolo26_student_from_its_unpruned_self(model_pt, data, tmp_path):
    import csv

    from ultralytics import YOLO

    from yolo_kd.prune.loop import prune_iteratively

    r = prune_iteratively(model_pt, data, target_flops=0.6, steps=1, epochs_per_step=1, imgsz=IMGSZ, batch=16,
                          device="cpu", workers=0, seed=0, project=tmp_path, name="p", latency_imgsz=[IMGSZ],
                          latency_seconds=0.2, flops_imgsz=IMGSZ)
    base, step = r.steps
    assert step.gflops <= 0.6 * base.gflops + 1e-9
    row = next(csv.DictReader(open(tmp_path / "p" / "step1" / "results.csv")))
    assert float(row["train/kd_box"]) > 0 and float(row["train/kd_cls"]) > 0  # YOLO26 -> YOLO26 fine-tuning distils boxes
    head = YOLO(str(r.best)).model.model[-1]
    assert head.one2one_cv2 is not None and head.reg_max == 1


@pytest.fixture(scope="module")
def exported(model_pt, data, tmp_path_factory):
    from yolo_kd.quantize.ptq import export_int8

    return export_int8(model_pt, data, imgsz=IMGSZ, calib_images=8, out_dir=tmp_path_factory.mktemp("x26"),
                       method="minmax", backend="onnxruntime")


def test_int8_export_is_end_to_end_with_the_decode_float(exported):
    assert exported.end2end
    for path in (exported.fp32_onnx, exported.int8_onnx):
        out = onnx.load(str(path)).graph.output[0]
        assert [d.dim_value for d in out.type.tensor_type.shape.dim] == [1, 84, 6]
    groups = exported.float_nodes
    assert len(groups["head"]) == 6 and all("one2one_cv" in h for h in groups["head"])  # the NMS-free branch's convs
    assert {n.split("/")[-1].rstrip("_0123456789") for n in groups["dfl"]} >= {"TopK", "GatherElements", "Sigmoid"}
    assert not any("Softmax" in n for n in groups["dfl"])  # no DFL in a reg_max=1 head
    model = onnx.load(str(exported.int8_onnx))
    nodes = {n.name: n for n in model.graph.node}
    inits = {i.name: i for i in model.graph.initializer}
    for h in groups["head"]:
        assert inits[nodes[h].input[1]].data_type == TensorProto.FLOAT  # float weights, not dequantized INT8
    consumers_of_dq = {i for n in model.graph.node if n.op_type == "DequantizeLinear" for i in n.output}
    for name in groups["dfl"]:
        if name in nodes:  # onnxruntime may fold a shape op away; the rest reads no dequantized tensor
            assert not set(nodes[name].input) & consumers_of_dq, name
    assert exported.kernels["int8"] >= 0.9 * exported.kernels["convs"] and exported.kernels["int8_mac_share"] > 0.9


def test_qat_of_a_validated_yolo26_trains_both_branches_and_exports_nms_free(data, tmp_path):
    """A trained YOLO26 checkpoint has its head set to end-to-end inference (Ultralytics' validator does so), and
    Ultralytics' fuse then drops the one-to-many branch. QAT keeps both (the detection loss trains both), exports the
    one-to-one branch NMS-free as the PTQ path does, and runs every convolution outside the decode in INT8."""
    from yolo_kd.prune.pruner import save_pruned_checkpoint
    from yolo_kd.quantize.onnx_graph import kernel_share
    from yolo_kd.quantize.qat import run_qat

    model = _lively_yolo26n()
    model.end2end = True
    pt = save_pruned_checkpoint(model, tmp_path / "yolo26n.pt", {"imgsz": IMGSZ})
    res = run_qat(pt, data, teacher=pt, epochs=1, imgsz=IMGSZ, batch=16, device="cpu", calib_images=4,
                  backend="onnxruntime", save_dir=tmp_path / "qat", report=False, ptq=False, workers=0, fraction=0.25,
                  seed=0, verbose=False)
    head = torch.load(str(res.best), weights_only=False)["model"].model[-1]
    assert head.cv2 is not None and head.one2one_cv2 is not None
    out = onnx.load(str(res.int8_onnx)).graph.output[0]
    assert [d.dim_value for d in out.type.tensor_type.shape.dim] == [1, 84, 6]
    share = kernel_share(res.int8_onnx)
    assert share.n_int8 == share.n_conv - 6  # the one-to-one branch's six output convs stay float


def test_end2end_choice(model_pt, data, tmp_path):
    from yolo_kd.quantize.ptq import export_int8

    raw = export_int8(model_pt, data, imgsz=IMGSZ, calib_images=4, out_dir=tmp_path, method="minmax",
                      backend="onnxruntime", end2end=False)
    out = onnx.load(str(raw.int8_onnx)).graph.output[0]
    assert not raw.end2end and [d.dim_value for d in out.type.tensor_type.shape.dim] == [1, 8, 84]
    from ultralytics.nn.tasks import DetectionModel

    from yolo_kd.prune.pruner import save_pruned_checkpoint

    m = DetectionModel("yolo11n.yaml", nc=4, verbose=False)
    m.names = dict(NAMES)
    y11 = save_pruned_checkpoint(m, tmp_path / "y11.pt", {"imgsz": IMGSZ})
    with pytest.raises(KDError, match="no one-to-one") as e:
        export_int8(y11, data, imgsz=IMGSZ, calib_images=4, out_dir=tmp_path / "o", backend="onnxruntime", end2end=True)
    assert "\n" not in str(e.value) and not ((tmp_path / "o").exists() and any((tmp_path / "o").iterdir()))


@pytest.mark.parametrize("which", ["fp32_onnx", "int8_onnx"])
def test_runtime_matches_ultralytics_predict_on_end2end_exports(exported, which):
    from ultralytics import YOLO

    from yolo_kd.deploy.runtime import Detector

    path = getattr(exported, which)
    conf = 0.05
    det = Detector(path, conf=conf)
    assert det.end2end and det.names == NAMES
    reference = YOLO(str(path), task="detect")
    total = 0
    for image in _images():
        ours = det(image)
        ref = reference.predict(image, conf=conf, imgsz=IMGSZ, verbose=False)[0].boxes
        assert len(ours) == len(ref)
        np.testing.assert_allclose(ours.boxes, ref.xyxy.numpy(), atol=1e-3)
        np.testing.assert_allclose(ours.scores, ref.conf.numpy(), atol=1e-5)
        np.testing.assert_array_equal(ours.classes, ref.cls.numpy().astype(np.int64))
        total += len(ours)
    assert total >= 10  # the comparison is not vacuous
