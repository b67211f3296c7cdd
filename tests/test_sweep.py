"""compare --sweep: one kd arm per value (same seeds), finished runs reused, the sweep table and plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from yolo_kd.core.errors import KDError
from yolo_kd.evidence.sweep import parse_sweep, sweep_arms, sweep_rows, sweep_table

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--epochs", "1", "--imgsz", "64", "--batch", "16", "--device", "cpu", "--seeds", "0", "workers=0", "plots=False",
        "fraction=0.34", "nbs=16"]


def test_parse_sweep_and_grid_arms():
    sweep = parse_sweep(["kd_temperature=1,2,4", "kd-cls=0.5,1"])
    assert sweep == [("temperature", ["1", "2", "4"]), ("cls", ["0.5", "1"])]
    arms = sweep_arms(sweep)
    assert list(arms)[:2] == ["kd-temperature-1-cls-0.5", "kd-temperature-1-cls-1"] and len(arms) == 6
    assert arms["kd-temperature-4-cls-1"] == {"temperature": "4", "cls": "1"}
    for items, words in [
        (["temperature"], "must be kd_<key>=v1,v2"),
        (["kd_nope=1,2"], "unknown distillation setting 'nope'"),
        (["kd_temperature=1,-2"], "must be > 0"),
        (["kd_temperature=1,1"], "repeats a value"),
        (["kd_cls=1", "kd_box=1", "kd_feat=1"], "one key, or two"),
        (["kd_cls=1", "kd_cls=2"], "twice"),
    ]:
        with pytest.raises(KDError, match=words):
            parse_sweep(items)
    # the table: one row per value, the failed arm says so, vanilla and teacher for reference
    rows = [{"run": "kd-cls-0", "seeds": [0, 1], "failed": [], "map": 0.2, "map_std": 0.01, "map50": 0.4, "map50_std": 0.02, "delta_map": 0.05},
            {"run": "kd-cls-1", "seeds": [], "failed": ["seed 0: boom"]}]
    table = sweep_table(sweep_rows(rows, sweep_arms([("cls", ["0", "1"])])), {**rows[0], "seeds": [0, 1], "map": 0.15}, None)
    assert "| 0 | 2 | 20.0 ± 1.0 | 40.0 ± 2.0 | +5.0 |" in table and "| 1 | failed | seed 0: boom |" in table and "| vanilla | 2 | 15.0" in table


def test_sweep_of_two_values_end_to_end_and_reused(tiny_data, teacher_pt, tmp_path, monkeypatch, capsys):
    cmd = [sys.executable, str(ROOT / "tools" / "compare.py"), "--teacher", teacher_pt, "--data", tiny_data, "--project", str(tmp_path),
           "--sweep", "kd_temperature=1,3", *ARGS]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "compare.json").read_text())
    assert [r["run"] for r in report["summary"]] == ["vanilla", "kd-temperature-1", "kd-temperature-3"]  # no default kd/builtin arm
    assert [(r["temperature"], r["seeds"]) for r in report["sweep"]] == [("1", [0]), ("3", [0])]
    for value in ("1", "3"):  # each arm trained with its own value, the same seed
        run = tmp_path / f"kd-temperature-{value}-seed0"
        assert yaml.safe_load((run / "kd.yaml").read_text())["temperature"] == float(value)
        assert yaml.safe_load((run / "args.yaml").read_text())["seed"] == 0
    summary = {r["run"]: r for r in report["summary"]}
    table = (tmp_path / "compare.md").read_text()
    for value in ("1", "3"):
        r = summary[f"kd-temperature-{value}"]
        assert f"| {value} | 1 | {100 * r['map']:.1f} ± 0.0 |" in table
    assert "| vanilla | 1 |" in table and "| teacher |" in table
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG" and str(tmp_path / "sweep.png") in report["plots"]

    # a repeated sweep finds every run finished and trains none (the same run names, the same seeds)
    from yolo_kd.commands.compare import _train_all
    from yolo_kd.evidence import compare as cmp

    first = json.loads((tmp_path / "vanilla-seed0" / "run_spec.json").read_text())  # the command's own settings
    specs = cmp.plan_runs("yolo11n.yaml", str(Path(teacher_pt).resolve()), first["data"], [0], str(tmp_path), first["train_args"], False,
                          None, ["vanilla"], sweep_arms(parse_sweep(["kd_temperature=1,3"])))
    monkeypatch.setattr(cmp, "run_one", lambda spec: pytest.fail(f"{spec.name} trained again"))
    _train_all(specs)
    assert capsys.readouterr().out.count("finished earlier, reusing") == 3
