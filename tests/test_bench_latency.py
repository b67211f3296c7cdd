"""Latency benchmark: table + JSON + Pareto plot on tiny models, round-robin timing, mAP discovery, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.test_runtime import build_models
from yolo_kd.commands.bench_latency import main
from yolo_kd.core.errors import KDError
from yolo_kd.deploy.latency import benchmark
from yolo_kd.deploy.latency_report import map_from_run, pareto_front, parse_map_pairs
from yolo_kd.deploy.runtime import Detections

FAST = ["--imgsz", "128", "--threads", "1", "--warmup", "1", "--min-runs", "4", "--min-seconds", "0", "--chunk", "2",
        "--frame", "320x240"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return build_models(tmp_path_factory.getbasetemp() / "yolo_kd_runtime_models")


def _run_folder(root: Path, pt: Path, maps: list[float]) -> Path:
    """A fake Ultralytics run: runs/detect/train/{weights/best.pt, results.csv} with the given mAP50-95 per epoch."""
    weights = root / "runs" / "detect" / "train" / "weights"
    weights.mkdir(parents=True)
    shutil.copy(pt, weights / "best.pt")
    rows = ["  epoch,  metrics/mAP50(B),  metrics/mAP50-95(B)"]  # Ultralytics pads its csv headers
    rows += [f"{i + 1},{m + 0.1},{m}" for i, m in enumerate(maps)]
    (weights.parent / "results.csv").write_text("\n".join(rows) + "\n")
    return weights / "best.pt"


def test_benchmark_writes_table_json_and_pareto_plot(models, tmp_path, capsys):
    best = _run_folder(tmp_path, models["pt"], [0.2, 0.45, 0.4])
    out = tmp_path / "bench"
    argv = [str(best), str(models["fixed"]), str(models["int8"]), *FAST, "--out", str(out),
            "--map", "fixed.onnx=0.44", "--map", "int8=41.5"]
    assert main(argv) == 0

    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| model | format | runtime | input | pre ms | infer ms | post ms")
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["best.pt", "fixed.onnx", "int8.onnx"]
    assert "1 threads" in printed and "1.00x" in rows[1]

    report = json.loads((out / "latency.json").read_text())
    assert report["settings"]["threads"]["requested"] == 1 and report["settings"]["frame"] == [320, 240]
    res = report["models"]
    assert [(r["kind"], r["precision"]) for r in res] == [("pt", "fp32"), ("onnx", "fp32"), ("onnx", "int8")]
    for r in res:
        assert r["input"] == [1, 3, 128, 128]
        assert {r[s]["runs"] for s in ("pre", "infer", "post", "total")} == {r["total"]["runs"]} and r["total"]["runs"] >= 4
        for s in ("pre", "infer", "post", "total"):
            assert 0 < r[s]["min"] <= r[s]["median"] <= r[s]["p90"]
        # the total is the per-frame sum of the stages, so its minimum cannot undercut the stage minima
        assert r["total"]["min"] >= r["pre"]["min"] + r["infer"]["min"] + r["post"]["min"] - 1e-9
        assert r["fps"] == pytest.approx(1e3 / r["total"]["median"])
        assert r["speedup"] == pytest.approx(res[0]["total"]["median"] / r["total"]["median"])
    assert res[0]["speedup"] == 1.0
    assert [r["map50_95"] for r in res] == [0.45, 0.44, 0.415]  # best epoch of results.csv, then --map
    assert res[0]["map_source"].endswith("results.csv") and res[1]["map_source"] == "--map"
    assert (out / "latency.md").read_text().count("\n| ") == 4

    png = cv2.imread(str(out / "latency_vs_map.png"))
    assert png is not None and png.shape[0] > 200 and png.shape[1] > 300


def test_no_map_no_plot(models, tmp_path, capsys):
    assert main([str(models["dynamic"]), *FAST, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "latency.json").read_text())
    assert report["models"][0]["input"] == [1, 3, 96, 128]  # dynamic model: minimum rectangle of a 4:3 frame
    assert report["models"][0]["map50_95"] is None and not (tmp_path / "latency_vs_map.png").exists()


class _Fake:
    """A model whose stages only log their calls."""

    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    def preprocess(self, image):
        self.log.append(self.name)
        return np.zeros((1, 3, 8, 8), np.float32), None

    def infer(self, blob):
        return blob

    def postprocess(self, raw, lb):
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def test_models_are_timed_round_robin():
    log: list[str] = []
    results = benchmark([_Fake("a", log), _Fake("b", log)], np.zeros((4, 4, 3), np.uint8), warmup=2, min_runs=6,
                        min_seconds=0, chunk=3)
    timed = log[6:]  # after 3 warm-up passes (2 + 1 primed run) per model
    assert timed == list("aaabbbaaabbb")
    assert [r["total"]["runs"] for r in results] == [6, 6]


def test_map_sources():
    assert parse_map_pairs(["a.onnx=0.5", "b=61", "dir/c.pt=0"]) == {"a.onnx": 0.5, "b": 0.61, "dir/c.pt": 0.0}
    for bad in ("a.onnx", "a=x", "=0.5", "a=-1"):
        with pytest.raises(KDError, match="NAME=VALUE"):
            parse_map_pairs([bad])
    assert pareto_front([(10, 0.5), (5, 0.4), (7, 0.3), (20, 0.5), (30, 0.6)]) == [1, 0, 4]


def test_map_from_run_folder(models, tmp_path):
    best = _run_folder(tmp_path, models["pt"], [0.1, 0.3, 0.25])
    assert map_from_run(best) == 0.3
    assert map_from_run(best.with_name("last.onnx")) == 0.25
    assert map_from_run(best.with_name("best_int8.onnx")) is None  # a quantised model has its own accuracy
    assert map_from_run(models["fixed"]) is None


def test_bad_input_gives_one_line(models, tmp_path):
    def fails(*argv: str) -> str:
        base = [t for i, t in enumerate(FAST) if t not in argv and (i == 0 or FAST[i - 1] not in argv)]  # no conflicts
        with pytest.raises(KDError) as e:
            main([*base, "--out", str(tmp_path), *argv])
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "not found" in fails(str(tmp_path / "missing.onnx"))
    assert "fixed input 128x128" in fails(str(models["fixed"]), "--imgsz", "320")
    assert "matches no model" in fails(str(models["fixed"]), "--map", "other.onnx=0.5")
    assert "NAME=VALUE" in fails(str(models["fixed"]), "--map", "0.5")
    assert "WIDTHxHEIGHT" in fails(str(models["fixed"]), "--frame", "720p")
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"x")
    assert "not a .pt, .onnx or OpenVINO model" in fails(str(engine))
    assert "no model given" in fails()
    assert "invalid choice" in fails(str(models["fixed"]), "backend=tensorrt")
    assert "both set --imgsz" in fails(str(models["fixed"]), "imgsz=128", "--imgsz", "320")  # key=value == --flag
    assert not (tmp_path / "latency.json").exists()


def test_calls_taking_turns_change_order_every_round_and_keep_their_own_numbers():
    from yolo_kd.core.timing import time_in_turns

    seen: list[int] = []
    calls = [(lambda i=i: seen.append(i)) for i in range(6)]
    out = time_in_turns(calls, seconds=0.0, rounds=4, warmup=0)
    # each slice is 1 warm-up + 3 timed runs of one call: read the order of the slices back from the log
    slices = [seen[k] for k in range(0, len(seen), 4)]
    assert all(seen[k:k + 4] == [seen[k]] * 4 for k in range(0, len(seen), 4))
    rounds = [slices[r * 6:(r + 1) * 6] for r in range(4)]
    assert rounds[0] == list(range(6)) and all(sorted(r) == list(range(6)) for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # the order differs between rounds
    assert [o["runs"] for o in out] == [12] * 6  # 3 timed runs in each of 4 slices, counted for the right call
