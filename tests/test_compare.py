"""compare end to end on the tiny set (1 epoch, 1 seed): table, JSON, plots; --runs mode; failures reported."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ultralytics import YOLO

from yolo_kd.evidence import compare as cmp

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--epochs", "1", "--imgsz", "64", "--batch", "16", "--device", "cpu", "--seeds", "0", "workers=0", "plots=False"]


def test_compare_end_to_end_and_runs_mode(tiny_data, teacher_pt, tmp_path):
    cmd = [sys.executable, str(ROOT / "tools" / "compare.py"), "--teacher", teacher_pt, "--data", tiny_data, "--project", str(tmp_path)]
    out = subprocess.run(cmd + ARGS, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "compare.json").read_text())
    runs = {r["run"]: r for r in report["summary"]}
    assert set(runs) == {"vanilla", "kd", "builtin"} and all(r["seeds"] == [0] for r in runs.values())
    _check_summary(runs, report["teacher"], tiny_data, tmp_path)
    # the teacher's row is its own validation on the same split, and its real parameter count
    teacher = YOLO(teacher_pt)
    val = teacher.val(data=tiny_data, imgsz=64, batch=16, device="cpu", plots=False, verbose=False, split="val", project=str(tmp_path / "tval"))
    assert report["teacher"]["map"] == pytest.approx(float(val.box.map), abs=1e-9)
    assert report["teacher"]["map50"] == pytest.approx(float(val.box.map50), abs=1e-9)
    assert report["teacher"]["params"] == sum(p.numel() for p in teacher.model.parameters())
    table = (tmp_path / "compare.md").read_text()
    assert "| kd | 1 |" in table and "| teacher |" in table
    for png in ("map_per_epoch.png", "final_map.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"

    # --runs: read the finished runs instead of training
    again = tmp_path / "again"
    dirs = [str(tmp_path / f"{v}-seed0") for v in ("vanilla", "kd", "builtin")]
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "compare.py"), "--runs", *dirs, "--data", tiny_data, "--project", str(again), "--imgsz", "64", "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert {r["run"] for r in json.loads((again / "compare.json").read_text())["summary"]} == {"vanilla", "kd", "builtin"}


def _check_summary(runs: dict, teacher: dict, data: str, project: Path) -> None:
    """Relations every summary row must satisfy (1 epoch, 1 seed), each of which a wrong summary breaks."""
    from ultralytics.nn.tasks import DetectionModel

    nc = len(yaml.safe_load(Path(data).read_text())["names"])
    student_params = sum(p.numel() for p in DetectionModel("yolo11n.yaml", nc=nc, verbose=False).parameters())
    base = runs["vanilla"]
    for name, r in runs.items():
        assert all(math.isfinite(r[k]) for k in ("map", "map50", "epoch_seconds", "train_seconds", "gflops")), (name, r)
        assert 0 <= r["map"] <= r["map50"] <= 1, name  # mAP50-95 never exceeds mAP50
        assert r["params"] == student_params, name  # the bare student: no teacher, adapters or projector in best.pt
        assert r["gflops"] == pytest.approx(base["gflops"], rel=1e-6) and r["epochs"] == 1, name
        times = [float(row["time"]) for row in csv.DictReader(open(project / f"{name}-seed0" / "results.csv"))]
        assert r["epoch_seconds"] == r["train_seconds"] == pytest.approx(times[-1]) and len(times) == 1, name
        assert r["delta_map"] == pytest.approx(r["map"] - base["map"], abs=1e-12), name
        assert r["time_vs_vanilla"] == pytest.approx(r["train_seconds"] / base["train_seconds"]), name
        assert r["time_vs_builtin"] == pytest.approx(r["train_seconds"] / runs["builtin"]["train_seconds"]), name
        gap = teacher["map"] - base["map"]
        assert (r["gap_closed"] == pytest.approx(r["delta_map"] / gap)) if gap > 0 else math.isnan(r["gap_closed"]), name
    assert base["delta_map"] == 0.0 and base["time_vs_vanilla"] == 1.0 and runs["builtin"]["time_vs_builtin"] == 1.0
    assert 0 <= teacher["map"] <= teacher["map50"] <= 1 and teacher["gflops"] > 0


def test_failing_run_is_reported_and_others_finish(tiny_data, teacher_pt, tmp_path):
    args = {"epochs": 1, "imgsz": 64, "batch": 16, "device": "cpu", "workers": 0, "plots": False}
    good = cmp.RunSpec("vanilla", 0, "yolo11n.yaml", tiny_data, None, str(tmp_path), args)
    bad = cmp.RunSpec("kd", 0, "yolo11n.yaml", tiny_data, teacher_pt, str(tmp_path), args, kd={"feat_loss": "nope"})
    for spec in (bad, good):
        cmp.run_one(spec)
    results = [cmp.collect_run(s.run_dir, tiny_data, 64, 16, "cpu") for s in (good, bad)]
    assert results[0].status == "ok" and math.isfinite(results[0].map) and results[0].epochs == 1
    assert results[1].status == "failed"
    assert results[1].error == "KDError: unknown feature distillation loss 'nope': choose one of cwd, mgd, mse", results[1].error
    assert math.isnan(results[1].map) and not (bad.run_dir / "weights" / "best.pt").exists()
    rows = cmp.summarize(results, None)
    table = cmp.markdown_table(rows, None)
    assert "| kd | failed |" in table and "unknown feature distillation loss" in table


def test_runs_side_by_side_match_runs_one_at_a_time(tiny_data, teacher_pt, tmp_path):
    """--jobs 2: each run in its own process with its output in train.log; a failing neighbour does not disturb the
    other, whose metrics equal the same run trained alone (deterministic training, same threads)."""
    from yolo_kd.commands.compare import _train_all

    args = {"epochs": 1, "imgsz": 64, "batch": 16, "device": "cpu", "workers": 0, "plots": False}
    alone = cmp.RunSpec("vanilla", 0, "yolo11n.yaml", tiny_data, None, str(tmp_path / "alone"), args)
    pair = [cmp.RunSpec("kd", 0, "yolo11n.yaml", tiny_data, teacher_pt, str(tmp_path / "pair"), args, kd={"feat_loss": "nope"}),
            cmp.RunSpec("vanilla", 0, "yolo11n.yaml", tiny_data, None, str(tmp_path / "pair"), args)]
    _train_all([alone])
    _train_all(pair, jobs=2)
    bad, good = (cmp.collect_run(s.run_dir, tiny_data, 64, 16, "cpu") for s in pair)
    assert bad.status == "failed" and "unknown feature distillation loss 'nope'" in bad.error
    assert good.status == "ok" and (pair[1].run_dir / "train.log").stat().st_size > 0
    rows = [list(csv.DictReader(open(s.run_dir / "results.csv")))[-1] for s in (alone, pair[1])]
    for key in ("train/box_loss", "train/cls_loss", "metrics/mAP50(B)", "metrics/mAP50-95(B)"):
        assert float(rows[0][key]) == float(rows[1][key]), key


def test_equal_time_side_by_side_needs_a_time_ratio(tiny_data, teacher_pt, tmp_path):
    from yolo_kd.commands.compare import main
    from yolo_kd.core.errors import KDError

    with pytest.raises(KDError, match=r"--equal-time with --jobs > 1: .* pass --time-ratio"):
        main(["--teacher", teacher_pt, "--data", tiny_data, "--project", str(tmp_path), "--jobs", "2", "--equal-time", *ARGS])
    with pytest.raises(KDError, match=r"--jobs 0: give 1"):
        main(["--teacher", teacher_pt, "--data", tiny_data, "--project", str(tmp_path), "jobs=0", *ARGS])


def test_vanilla_alone_needs_no_teacher_and_a_kd_run_does(tiny_data, tmp_path):
    from yolo_kd.commands.compare import main
    from yolo_kd.core.errors import KDError

    with pytest.raises(KDError, match=r"compare needs --teacher .* with --variants vanilla alone it may be left out"):
        main(["--data", tiny_data, "--project", str(tmp_path / "kd"), "--variants", "kd", *ARGS])
    assert not (tmp_path / "kd").exists()  # refused before anything was written
    assert main(["--data", tiny_data, "--project", str(tmp_path / "v"), "--variants", "vanilla", *ARGS]) == 0
    report = json.loads((tmp_path / "v" / "compare.json").read_text())
    assert report["teacher"] is None
    assert [(r["variant"], r["status"]) for r in report["runs"]] == [("vanilla", "ok")]


def test_a_finished_run_is_reused_only_with_the_same_settings(tmp_path):
    from dataclasses import asdict

    from yolo_kd.commands.compare import _finished
    from yolo_kd.core.errors import KDError

    spec = cmp.RunSpec("vanilla", 0, "yolo11n.yaml", "data.yaml", None, str(tmp_path), {"epochs": 6, "imgsz": 96})
    assert not _finished(spec)  # nothing there yet
    (spec.run_dir / "weights").mkdir(parents=True)
    (spec.run_dir / "weights" / "best.pt").write_bytes(b"x")
    (spec.run_dir / "run_result.json").write_text(json.dumps({"status": "ok"}))
    (spec.run_dir / "run_spec.json").write_text(json.dumps(asdict(spec)))
    assert _finished(spec)
    longer = cmp.RunSpec("vanilla", 0, "yolo11n.yaml", "data.yaml", None, str(tmp_path), {"epochs": 8, "imgsz": 96})
    with pytest.raises(KDError, match=r"vanilla-seed0 finished with other settings \(train_args.epochs was 6, now 8\): pass another --project"):
        _finished(longer)


def test_table_without_a_vanilla_run_leaves_its_comparisons_blank():
    """A report over distilled runs only (e.g. one teacher's runs of a capacity study) has no reference: the Δ and
    ×vanilla cells are blank, not 'nan', as is a figure the runs did not record (peak memory here)."""
    runs = [cmp.RunResult("kd", s, f"kd-seed{s}", map50=m + 0.2, map=m, epoch_seconds=10.0, train_seconds=300.0, epochs=30,
                          params=2_590_000, gflops=0.14) for s, m in enumerate([0.60, 0.40])]
    rows = cmp.summarize(runs, None)
    assert rows[0]["map"] == pytest.approx(0.50) and rows[0]["map_std"] == pytest.approx(0.1414, abs=1e-4)
    line = next(x for x in cmp.markdown_table(rows, None).splitlines() if x.startswith("| kd |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[4] == "50.0 ± 14.1" and cells[5] == "" and cells[12] == "" and "nan" not in line
