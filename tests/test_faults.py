"""Faults and bad input during distillation training: each one named in one line, nothing corrupted, nothing silent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import yolo_kd
from yolo_kd.core.errors import KDError

from .conftest import TRAIN_ARGS

ROOT = Path(__file__).resolve().parents[1]


def _no_weights(project: Path) -> bool:
    return not project.exists() or not any(project.rglob("*.pt"))


def _teacher_checkpoint(cfg: str, names: dict, path: Path) -> str:
    """A stock-format checkpoint of an untrained ``cfg`` model with the given class names."""
    from ultralytics.nn.tasks import DetectionModel

    from yolo_kd.prune.pruner import save_pruned_checkpoint

    model = DetectionModel(cfg, nc=len(names), verbose=False)
    model.names = names
    return str(save_pruned_checkpoint(model, path))


def _names(data_yaml: str) -> dict:
    names = yaml.safe_load(Path(data_yaml).read_text())["names"]
    return dict(enumerate(names)) if isinstance(names, list) else {int(k): v for k, v in names.items()}


def test_non_finite_distillation_term_is_zeroed_and_warned_once(tiny_data, teacher_pt, tmp_path, monkeypatch, warnings_seen):
    """A NaN class-distillation term (as an fp16 overflow gives) on the first batches never reaches the weights."""
    import yolo_kd.distill.terms as dm

    real, calls = dm.class_distillation_loss, {"n": 0}

    def overflowing(*args, **kwargs):
        calls["n"] += 1
        out = real(*args, **kwargs)
        return out * float("nan") if calls["n"] <= 2 else out

    monkeypatch.setattr(dm, "class_distillation_loss", overflowing)
    tr = yolo_kd.train("yolo11n.yaml", teacher=teacher_pt, data=tiny_data, epochs=1, project=str(tmp_path), name="nan", **TRAIN_ARGS)
    hits = [m for m in warnings_seen if "non-finite distillation term" in m]
    assert len(hits) == 1 and "kd_cls" in hits[0] and "warned once" in hits[0]
    assert tr._zeroed_terms >= 1 and tr._skipped_steps == 0  # the term was dropped; no step had to be skipped
    best = torch.load(tr.best, map_location="cpu", weights_only=False)["model"]
    assert all(torch.isfinite(p).all() for p in best.parameters())


def test_empty_label_and_all_background_batches_stay_finite():
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    from yolo_kd.distill.config import load_kd_config
    from yolo_kd.distill.model import KDModel

    def model(cfg, seed):
        torch.manual_seed(seed)
        m = DetectionModel(cfg, nc=4, verbose=False)
        m.args = get_cfg(overrides={"imgsz": 64})
        return m

    teacher = model("yolo11s.yaml", 1)
    for conv in teacher.model[-1].cv3:  # a teacher that sees only background: every class logit about -30
        torch.nn.init.zeros_(conv[-1].weight)
        torch.nn.init.constant_(conv[-1].bias, -30.0)
    kd = KDModel(model("yolo11n.yaml", 0), teacher, load_kd_config()).train()
    empty = {"img": torch.rand(2, 3, 64, 64), "batch_idx": torch.zeros(0), "cls": torch.zeros(0, 1), "bboxes": torch.zeros(0, 4)}
    loss, items = kd.loss(empty)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and all(torch.isfinite(v).all() for v in items.values())
    assert all(torch.isfinite(p.grad).all() for p in kd.parameters() if p.grad is not None)


def test_larger_student_and_odd_image_size_warn_and_train(tiny_data, teacher_pt, tmp_path, warnings_seen):
    """Student larger than the teacher: a warning, not an error. imgsz 70 is rounded up to a multiple of stride 32."""
    tr = yolo_kd.train("yolo11s.yaml", teacher=teacher_pt, data=tiny_data, epochs=1, project=str(tmp_path), name="big",
                       **{**TRAIN_ARGS, "imgsz": 70})
    assert any("is larger than the teacher" in m for m in warnings_seen)
    assert any("must be multiple of max stride 32, updating to [96]" in m for m in warnings_seen)
    assert tr.args.imgsz == 96 and Path(tr.best).exists()


def test_teacher_with_other_strides_refused_without_leftovers(tiny_data, tmp_path):
    teacher = _teacher_checkpoint("yolov8n-p2.yaml", _names(tiny_data), tmp_path / "p2.pt")  # strides 4..32
    with pytest.raises(KDError, match=r"teacher strides \[4, 8, 16, 32\] differ from student strides \[8, 16, 32\]"):
        yolo_kd.train("yolo11n.yaml", teacher=teacher, data=tiny_data, epochs=1, project=str(tmp_path / "runs"), name="s", **TRAIN_ARGS)
    assert not (tmp_path / "runs" / "s").exists()  # the run folder of a run that never started is removed


def test_teacher_with_other_class_names_or_task_refused(tiny_data, tmp_path):
    from ultralytics.nn.tasks import SegmentationModel

    from yolo_kd.prune.pruner import save_pruned_checkpoint

    names = _names(tiny_data)
    renamed = _teacher_checkpoint("yolo11n.yaml", {**names, 1: "giraffe"}, tmp_path / "renamed.pt")
    seg = SegmentationModel("yolo11n-seg.yaml", nc=len(names), verbose=False)
    seg.names = names
    seg = str(save_pruned_checkpoint(seg, tmp_path / "seg.pt"))
    for teacher, words in ((renamed, "teacher class names differ from the dataset's"), (seg, "not a detection model")):
        with pytest.raises(KDError, match=words):
            yolo_kd.train("yolo11n.yaml", teacher=teacher, data=tiny_data, epochs=1, project=str(tmp_path / "runs"), name="t", **TRAIN_ARGS)
    assert _no_weights(tmp_path / "runs")


def test_unwritable_run_folder_is_one_line(tiny_data, teacher_pt, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the run folder should go")
    with pytest.raises(KDError, match="cannot write the run folder .*choose a writable project"):
        yolo_kd.train("yolo11n.yaml", teacher=teacher_pt, data=tiny_data, epochs=1, project=str(blocker / "runs"), name="w", **TRAIN_ARGS)
    cmd = [sys.executable, str(ROOT / "tools" / "train_kd.py"), "--teacher", teacher_pt, "--data", tiny_data, f"project={blocker}/runs"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("yolo_kd: error: cannot write the run folder")
    assert blocker.read_text() == "a file where the run folder should go"
