"""compare end to end on the tiny set (1 epoch, 1 seed): table, JSON, plots; --runs mode; failures reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    assert runs["vanilla"]["delta_map"] == 0 and runs["kd"]["epoch_seconds"] > 0 and runs["kd"]["params"] > 0
    assert report["teacher"]["map"] >= 0
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


def test_failing_run_is_reported_and_others_finish(tiny_data, teacher_pt, tmp_path):
    args = {"epochs": 1, "imgsz": 64, "batch": 16, "device": "cpu", "workers": 0, "plots": False}
    good = cmp.RunSpec("vanilla", 0, "yolo11n.yaml", tiny_data, None, str(tmp_path), args)
    bad = cmp.RunSpec("kd", 0, "yolo11n.yaml", tiny_data, teacher_pt, str(tmp_path), args, kd={"feat_loss": "nope"})
    for spec in (bad, good):
        cmp.run_one(spec)
    results = [cmp.collect_run(s.run_dir, tiny_data, 64, 16, "cpu") for s in (good, bad)]
    assert results[0].status == "ok" and results[1].status == "failed" and "feat_loss" not in results[1].error or "unknown" in results[1].error
    rows = cmp.summarize(results, None)
    table = cmp.markdown_table(rows, None)
    assert "| kd | failed |" in table and "unknown feature distillation loss" in table
