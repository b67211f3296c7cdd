"""Distillation chains: born-again generations and the teacher-assistant chain, from Python and the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ultralytics.nn.tasks import DetectionModel

import yolo_kd
from yolo_kd.chain import PREVIOUS, plan_stages
from yolo_kd.commands.train import resolve
from yolo_kd.core.checkpoints import load_checkpoint_dict
from yolo_kd.core.errors import KDError

from .conftest import TRAIN_ARGS

FAST = {**TRAIN_ARGS, "epochs": 1, "nbs": 16, "fraction": 0.34, "val": False}


def _plain_student(best: Path, cfg: str) -> None:
    """best.pt holds the bare student of ``cfg`` and nothing of the distillation."""
    ckpt = load_checkpoint_dict(best)
    assert ckpt.get("ema") is None and "yolo_kd" not in ckpt
    assert set(ckpt["model"].state_dict()) == set(DetectionModel(cfg, nc=4, verbose=False).state_dict())
    assert "yolo_kd_state" not in ckpt["model"].__dict__


def test_plan_and_bad_arguments():
    stages = plan_stages("n.yaml", "t.pt", "run", generations=3, assistant="m.yaml")
    assert [(s.role, s.student, s.teacher, s.name) for s in stages] == [
        ("assistant", "m.yaml", "t.pt", "run-assistant"),
        ("generation 1", "n.yaml", PREVIOUS, "run-gen1"),
        ("generation 2", "n.yaml", PREVIOUS, "run-gen2"),
        ("generation 3", "n.yaml", PREVIOUS, "run-gen3"),
    ]
    assert [s.teacher for s in plan_stages("n.yaml", "self", generations=2)] == ["self", PREVIOUS]
    for kwargs, words in [
        (dict(teacher="t.pt", generations=0), "generations must be a whole number >= 1"),
        (dict(teacher="self", assistant="m.yaml"), "not 'self'"),
        (dict(teacher=None, generations=2), "needs a teacher"),
    ]:
        with pytest.raises(KDError, match=words):
            plan_stages("n.yaml", **kwargs)
    with pytest.raises(KDError, match="resume continues one run"):
        yolo_kd.train("last.pt", teacher="t.pt", data="synthetic:tiny", generations=2, resume="last.pt")
    # the CLI passes both through, and refuses a non-number in one line
    kwargs, _ = resolve(["--teacher", "t.pt", "--generations", "2", "--assistant", "yolo11s.yaml", "epochs=3"])
    assert kwargs["generations"] == 2 and kwargs["assistant"] == "yolo11s.yaml" and kwargs["epochs"] == 3
    assert "generations" not in resolve(["--teacher", "t.pt"])[0]
    with pytest.raises(KDError, match="generations"):
        resolve(["--teacher", "t.pt", "--generations", "two"])


def test_born_again_two_generations(tiny_data, teacher_pt, tmp_path):
    trainer = yolo_kd.train("yolo11n.yaml", teacher=teacher_pt, data=tiny_data, generations=2, project=str(tmp_path), name="ba", **FAST)
    roles = [(role, run.name) for role, run, _ in trainer.chain]
    assert roles == [("generation 1", "ba-gen1"), ("generation 2", "ba-gen2")] and Path(trainer.save_dir).name == "ba-gen2"
    gen1_best = trainer.chain[0][2]
    assert yaml.safe_load((tmp_path / "ba-gen1" / "kd.yaml").read_text())["teacher"] == str(Path(teacher_pt).resolve())
    assert yaml.safe_load((tmp_path / "ba-gen2" / "kd.yaml").read_text())["teacher"] == str(gen1_best.resolve())
    for _, _, best in trainer.chain:
        _plain_student(best, "yolo11n.yaml")


def test_assistant_chain_gives_a_plain_student(tiny_data, teacher_pt, tmp_path):
    trainer = yolo_kd.train("yolo11n.yaml", teacher=teacher_pt, data=tiny_data, assistant="yolov8n.yaml", project=str(tmp_path), name="ta", **FAST)
    (role_a, run_a, best_a), (role_s, run_s, best_s) = trainer.chain
    assert (role_a, run_a.name, role_s, run_s.name) == ("assistant", "ta-assistant", "student", "ta")
    assert yaml.safe_load((run_a / "kd.yaml").read_text())["teacher"] == str(Path(teacher_pt).resolve())
    assert yaml.safe_load((run_s / "kd.yaml").read_text())["teacher"] == str(best_a.resolve())
    _plain_student(best_a, "yolov8n.yaml")
    _plain_student(best_s, "yolo11n.yaml")
    # stock Ultralytics, in a process that never imports yolo_kd, validates the final student
    code = (
        "import sys; from ultralytics import YOLO; "
        f"m = YOLO({str(best_s)!r}).val(data={tiny_data!r}, imgsz=64, batch=16, device='cpu', plots=False, verbose=False); "
        "assert 'yolo_kd' not in sys.modules; print('MAP', m.box.map)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0 and "MAP" in out.stdout, out.stderr[-2000:]


def test_compare_self_and_assistant_arms(tiny_data, teacher_pt, tmp_path, monkeypatch):
    """compare --self-distill / --assistant: the arms per seed (seed-major) and the training call each makes."""
    import yolo_kd.api
    from yolo_kd.commands.compare import with_chain_arms
    from yolo_kd.evidence import compare as cmp

    specs = cmp.plan_runs("yolo11n.yaml", teacher_pt, tiny_data, [0, 1], str(tmp_path), {"epochs": 1}, False, None, ["vanilla"])
    specs = with_chain_arms(specs, [0, 1], teacher_pt, True, "yolov8n.yaml")
    assert [(s.variant, s.seed, s.teacher, s.assistant) for s in specs] == [
        ("vanilla", 0, None, None), ("kd-self", 0, "self", None), ("kd-assistant", 0, teacher_pt, "yolov8n.yaml"),
        ("vanilla", 1, None, None), ("kd-self", 1, "self", None), ("kd-assistant", 1, teacher_pt, "yolov8n.yaml"),
    ]
    calls = []
    monkeypatch.setattr(yolo_kd.api, "train", lambda *a, **k: calls.append((a, k)))
    for spec in specs[1:3]:
        cmp._train(spec)
    (a_self, k_self), (a_ta, k_ta) = calls
    assert a_self == ("yolo11n.yaml",) and k_self["teacher"] == "self" and "assistant" not in k_self and k_self["seed"] == 0
    assert k_ta["teacher"] == teacher_pt and k_ta["assistant"] == "yolov8n.yaml" and k_ta["name"] == "kd-assistant-seed0"
    with pytest.raises(KDError, match="assistant: student model YAML 'nope.yaml' not found"):
        with_chain_arms(specs, [0], teacher_pt, False, "nope.yaml")


def test_capacity_gap_warning_quotes_the_measured_sizes():
    from yolo_kd.distill.capacity import gap_warning, model_gflops, num_params

    n, x, m = (DetectionModel(f"yolo11{s}.yaml", nc=4, verbose=False) for s in "nxm")
    note = gap_warning(n, x, imgsz=64)
    rp, rf = num_params(x) / num_params(n), model_gflops(x, 64) / model_gflops(n, 64)
    assert 20 < rp < 25 and 25 < rf < 35  # yolo11x vs yolo11n
    assert f"{rp:.1f}x the student's parameters ({num_params(x) / 1e6:.1f}M vs {num_params(n) / 1e6:.1f}M)" in note
    assert f"{rf:.1f}x its FLOPs" in note and "--assistant" in note and "docs/self_distillation.md" in note
    assert gap_warning(n, m, imgsz=64) is None  # 7.7x: below the threshold
    assert "is larger than the teacher" in gap_warning(m, n, imgsz=64)
    folded = DetectionModel("yolo11n.yaml", nc=4, verbose=False).fuse(verbose=False)  # the same architecture as a teacher
    assert num_params(folded) < num_params(n) and gap_warning(n, folded, imgsz=64) is None


def test_cost_note_names_what_the_teacher_adds_to_each_training_step():
    """A training step is ~3 student forwards; the teacher adds one of its own: s -> n about +110 %, n -> n +33 %."""
    from yolo_kd.distill.capacity import PairSize, cost_note, pair_size, step_arithmetic

    assert step_arithmetic(6.5, 21.5) == pytest.approx(1 + 21.5 / 19.5) and step_arithmetic(6.5, 6.5) == pytest.approx(4 / 3)
    n, s = (DetectionModel(f"yolo11{k}.yaml", nc=4, verbose=False) for k in "ns")
    size = pair_size(n, s, imgsz=64)
    share = 100 * size.teacher_gflops / (3 * size.student_gflops)
    assert 90 < share < 130  # yolo11s has ~3.3x yolo11n's FLOPs
    note = cost_note(size)
    assert f"adds {share:.0f}% to the arithmetic" in note and f"{size.teacher_gflops:.1f} vs {size.student_gflops:.1f} GFLOPs at 64" in note
    assert "adds 33%" in cost_note(pair_size(n, n, imgsz=64))
    assert cost_note(PairSize(1, 1, 0.0, 1.0, 64)) is None  # FLOPs not countable: no note
