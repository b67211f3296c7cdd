"""OpenVINO backend of the torch-free runtime: same detections as onnxruntime and as Ultralytics, backend choice,
one-line errors, no torch; the latency benchmark and the camera tool on both backends."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.test_runtime import BLOCKER, NAMES, _images, _one_line, build_models
from yolo_kd.core.errors import KDError

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """test_runtime's models, plus the fixed one as an OpenVINO IR folder (``ir``) and a dynamic IR (``ir_dynamic``)."""
    from yolo_kd.quantize.openvino_ir import ir_dir, onnx_to_ir

    paths = dict(build_models(tmp_path_factory.getbasetemp() / "yolo_kd_runtime_models"))
    root = tmp_path_factory.mktemp("ir")
    paths["ir"] = onnx_to_ir(paths["fixed"], ir_dir(root, "fixed"))
    paths["ir_dynamic"] = onnx_to_ir(paths["dynamic"], ir_dir(root, "dynamic"))
    return paths


@pytest.fixture(scope="module")
def ultralytics_ir(models, tmp_path_factory) -> Path:
    """Stock ``YOLO(pt).export(format="openvino")``: a torch-traced IR, unnamed output, metadata.yaml only."""
    from ultralytics import YOLO

    root = tmp_path_factory.mktemp("ul_ir")
    shutil.copy(models["pt"], root / "ul.pt")
    return Path(YOLO(str(root / "ul.pt")).export(format="openvino", imgsz=128, verbose=False))


def _same(a, b, atol=1e-3, score_atol=1e-4) -> None:
    assert len(a) == len(b)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=atol)
    np.testing.assert_allclose(a.scores, b.scores, atol=score_atol)
    np.testing.assert_array_equal(a.classes, b.classes)


@pytest.mark.parametrize("key", ["fixed", "dynamic", "nms"])
def test_openvino_matches_onnxruntime(models, key):
    """The same ONNX file on both backends, and the same model as an IR: the same detections."""
    from yolo_kd.deploy.runtime import Detector

    kw = {"conf": 0.1, "imgsz": 128 if key == "dynamic" else None}
    ort, ov = Detector(models[key], backend="onnxruntime", **kw), Detector(models[key], backend="openvino", **kw)
    assert (ort.backend, ov.backend) == ("onnxruntime", "openvino") and ov.runtime == "OpenVINO CPU"
    assert ov.names == ort.names == NAMES and (ov.dynamic, ov.end2end) == (ort.dynamic, ort.end2end)
    dets = []
    if key in ("fixed", "dynamic"):
        dets.append(Detector(models["ir" if key == "fixed" else "ir_dynamic"], **kw))
    total = 0
    for image in _images():
        ref = ort(image)
        _same(ov(image), ref)
        for d in dets:
            _same(d(image), ref)
        total += len(ref)
    assert total >= 10


def test_ir_matches_ultralytics_predict(models):
    """Detector on an IR folder (and its .xml) == YOLO(folder).predict, both with f32 float layers."""
    from ultralytics import YOLO

    from yolo_kd.deploy.runtime import Detector
    from yolo_kd.quantize.openvino_ir import f32_inference

    xml = next(models["ir"].glob("*.xml"))
    ours, by_xml = Detector(models["ir"], conf=0.1), Detector(xml, conf=0.1)
    assert ours.kind == "openvino" and ours.names == NAMES and ours.imgsz == (128, 128)
    with f32_inference():
        reference = YOLO(str(models["ir"]), task="detect")
        for image in _images():
            ref = reference.predict(image, conf=0.1, imgsz=128, verbose=False)[0].boxes
            out = ours(image)
            assert len(out) == len(ref)
            np.testing.assert_allclose(out.boxes, ref.xyxy.numpy(), atol=1e-3)
            np.testing.assert_allclose(out.scores, ref.conf.numpy(), atol=1e-5)
            np.testing.assert_array_equal(out.classes, ref.cls.numpy().astype(np.int64))
            _same(by_xml(image), out, atol=0, score_atol=0)


def test_ultralytics_openvino_export(models, ultralytics_ir):
    """Ultralytics' own IR runs too (names from its metadata.yaml), with the detections of the same ONNX model."""
    from yolo_kd.deploy.runtime import Detector

    det, ref = Detector(ultralytics_ir, conf=0.1), Detector(models["fixed"], conf=0.1, backend="onnxruntime")
    assert det.names == NAMES and det.imgsz == (128, 128) and det.backend == "openvino"
    for image in _images():
        _same(det(image), ref(image), atol=1e-2, score_atol=1e-3)  # traced from torch, not converted from the ONNX


def test_auto_backend(models, monkeypatch):
    import yolo_kd.deploy.backends as backends
    from yolo_kd.deploy.runtime import Detector

    monkeypatch.setattr(backends, "is_x86", lambda: True)
    assert Detector(models["fixed"]).backend == "openvino"  # auto: OpenVINO on x86 when installed
    assert Detector(models["ir"], backend="auto").backend == "openvino"
    assert Detector(models["int8"]).backend == "onnxruntime"  # a QDQ ONNX stays on the runtime it was made for
    assert Detector(models["int8"], backend="openvino").backend == "openvino"  # unless asked
    monkeypatch.setattr(backends, "is_x86", lambda: False)
    assert Detector(models["fixed"]).backend == "onnxruntime"  # elsewhere onnxruntime
    assert Detector(models["ir"]).backend == "openvino"  # an IR runs on OpenVINO anywhere
    monkeypatch.setattr(backends, "is_x86", lambda: True)
    monkeypatch.setitem(sys.modules, "openvino", None)  # not installed
    assert Detector(models["fixed"]).backend == "onnxruntime"


def test_bad_inputs_give_one_clear_line(models, tmp_path, monkeypatch):
    from yolo_kd.deploy.runtime import Detector

    no_bin = tmp_path / "nobin_openvino_model"
    shutil.copytree(models["ir"], no_bin)
    next(no_bin.glob("*.bin")).unlink()
    with pytest.raises(KDError) as e:
        Detector(no_bin)
    assert "no weights file 'fixed.bin'" in _one_line(e) and "copy the whole" in str(e.value)
    empty = tmp_path / "empty_openvino_model"
    empty.mkdir()
    with pytest.raises(KDError) as e:
        Detector(empty)
    assert "no OpenVINO model (.xml)" in _one_line(e)
    with pytest.raises(KDError) as e:
        Detector(models["ir"], imgsz=320)  # the IR's fixed input is 128
    assert "fixed input 128x128" in _one_line(e)
    with pytest.raises(KDError) as e:
        Detector(models["ir"], backend="onnxruntime")
    assert "is an OpenVINO IR" in _one_line(e)
    with pytest.raises(KDError) as e:
        Detector(models["fixed"], backend="tensorrt")
    assert "unknown backend" in _one_line(e)
    broken = tmp_path / "broken_openvino_model"
    shutil.copytree(models["ir"], broken)
    next(broken.glob("*.xml")).write_text("<net>not a model")
    with pytest.raises(KDError) as e:
        Detector(broken)
    assert "cannot load" in _one_line(e) and "OpenVINO" in str(e.value)
    monkeypatch.setitem(sys.modules, "openvino", None)  # OpenVINO not installed
    for path, backend in ((models["fixed"], "openvino"), (models["ir"], "auto")):
        with pytest.raises(KDError) as e:
            Detector(path, backend=backend)
        assert "not installed" in _one_line(e) and 'pip install -e ".[openvino]"' in str(e.value)


def test_runtime_on_openvino_imports_without_torch(models, tmp_path):
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), _images()[3])
    proc = subprocess.run([sys.executable, "-c", BLOCKER, str(models["ir"]), str(image)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["heavy"] == [] and out["n"] > 0 and out["names"] == {str(k): v for k, v in NAMES.items()}


def test_bench_times_both_backends_in_one_run(models, tmp_path, capsys):
    from yolo_kd.commands.bench_latency import main

    fast = ["imgsz=128", "threads=1", "warmup=1", "min_runs=4", "min_seconds=0", "chunk=2", "frame=320x240"]
    argv = [f"{models['fixed']}@onnxruntime", f"{models['fixed']}@openvino", str(models["ir"]), *fast, "--out", str(tmp_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| model | format | runtime | input |")
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["fixed.onnx@onnxruntime", "fixed.onnx@openvino",
                                                           "fixed_openvino_model"]
    report = json.loads((tmp_path / "latency.json").read_text())
    res = report["models"]
    assert [(r["kind"], r["backend"], r["runtime"]) for r in res] == [
        ("onnx", "onnxruntime", "CPUExecutionProvider"), ("onnx", "openvino", "OpenVINO CPU"),
        ("openvino", "openvino", "OpenVINO CPU")]
    assert [r["precision"] for r in res] == ["fp32"] * 3 and res[0]["path"] == res[1]["path"] == str(models["fixed"])
    assert len({r["detections"] for r in res}) == 1  # the same detections on the timing frame
    assert "OpenVINO" in printed


def test_camera_runs_an_ir(models, tmp_path, capsys):
    from yolo_kd.commands.camera import main

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, image in enumerate(_images()):
        cv2.imwrite(str(folder / f"{i}.png"), image)
    assert main([f"model={models['ir']}", f"source={folder}", "--headless", "backend=openvino", "conf=0.1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 4 and sum(len(r["detections"]) for r in lines) >= 10
    with pytest.raises(KDError, match="both set --backend"):
        main([f"model={models['ir']}", f"source={folder}", "--headless", "backend=openvino", "--backend", "onnxruntime"])
