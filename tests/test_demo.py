"""The demo's stages end to end at their smallest settings, its one-line verdict, and plot labels that never overlap."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest

from yolo_kd.evidence.demo import BENCHMARK_LINK, DemoSettings, run_demo, verdict

CHAIN = ["teacher", "vanilla", "distilled (yolo_kd)", "pruned", "pruned INT8"]


def test_demo_runs_every_stage_and_ends_with_the_chain_table(tiny_data, teacher_pt, tmp_path, capsys):
    out = tmp_path / "demo"
    cached = out / "teacher" / "weights" / "best.pt"  # a teacher from an earlier run is reused, as on a second demo run
    cached.parent.mkdir(parents=True)
    shutil.copyfile(teacher_pt, cached)
    s = DemoSettings(preset="tiny", imgsz=64, teacher_epochs=1, student_epochs=1, seeds="0", prune_target=0.7,
                     prune_steps=1, prune_epochs=1, calib_images=8, latency_seconds=0.05, threads=1)
    summary = run_demo(out, s)

    rows = {r["stage"]: r for r in summary["rows"]}
    assert list(rows) == CHAIN and summary["teacher_cached"]
    for r in rows.values():
        assert 0 <= r["map"] <= 100 and r["latency_ms"] > 0 and r["onnx_mb"] > 0
    for name in CHAIN[:-1]:  # the .pt and its own FP32 ONNX, validated the same way, agree
        assert rows[name]["map_pt"] == pytest.approx(rows[name]["map"], abs=1.0)
    assert rows["pruned"]["gflops"] < 0.9 * rows["distilled (yolo_kd)"]["gflops"]
    assert rows["pruned INT8"]["onnx_mb"] < 0.5 * rows["pruned"]["onnx_mb"]
    assert rows["vanilla"]["gflops"] == pytest.approx(rows["distilled (yolo_kd)"]["gflops"])
    assert len(summary["stage_seconds"]) == 8

    text = (out / "summary.md").read_text()
    table = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert table[0].startswith("| chain | mAP50-95 (ONNX) | mAP50-95 (.pt) | GFLOPs") and len(table) == 1 + len(CHAIN)
    last = text.strip().splitlines()[-1]
    assert last.startswith("Shows: after 1 epochs") and "1 seed, so no spread" in last and last.endswith(f"{BENCHMARK_LINK}.")
    assert "teacher reused" in text and last in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["verdict"] == last
    for png in summary["plots"]:
        assert cv2.imread(png) is not None
    assert {Path(p).name for p in summary["plots"]} == {"map_per_epoch.png", "final_map.png", "map_vs_gflops.png", "latency_vs_map.png"}


def _runs(variant, maps):
    return [{"variant": variant, "seed": i, "status": "ok", "map": m} for i, m in enumerate(maps)]


def test_verdict_says_whether_the_gain_exceeds_the_seed_spread():
    s, rows = DemoSettings(student_epochs=10), [{"map": 41.3}]
    clear = verdict(_runs("vanilla", [0.20, 0.22]) + _runs("kd", [0.30, 0.31]), rows, s)
    assert "30.5 ± 0.7 mAP50-95 vs vanilla 21.0 ± 1.4 (+9.5 points; per seed 30.0/31.0 vs 20.0/22.0, 2 seeds), more than" in clear
    assert "pruned INT8 at 41.3" in clear and clear.endswith(BENCHMARK_LINK + ".")
    overlap = verdict(_runs("vanilla", [0.20, 0.30]) + _runs("kd", [0.26, 0.29]), rows, s)
    assert "NOT more than the seed spread" in overlap
    failed = verdict(_runs("vanilla", [0.2]) + [{"variant": "kd", "seed": 0, "status": "failed", "map": float("nan")}], rows, s)
    assert failed.startswith("A student run failed")


def test_labels_of_coincident_points_do_not_overlap(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from yolo_kd.core.plot_labels import labels_overlap, place_labels

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    xs, ys = [1.0, 1.0, 1.02, 3.0, 3.0], [50.0, 50.0, 50.3, 20.0, 20.1]  # two pairs on top of each other
    ax.scatter(xs, ys)
    ax.set_xlim(0, 4)
    ax.set_ylim(0, 70)
    texts = [f"model number {i}, {y:.1f}" for i, y in enumerate(ys)]
    naive = [ax.annotate(t, (x, y), textcoords="offset points", xytext=(6, 4)) for t, x, y in zip(texts, xs, ys)]
    assert labels_overlap(naive)  # what the plots drew before
    for n in naive:
        n.remove()
    assert not labels_overlap(place_labels(ax, xs, ys, texts))


def test_latency_plot_draws_the_pareto_front_in_points(tmp_path):
    from yolo_kd.deploy.latency_report import plot_latency_vs_map

    def row(name, ms, m):
        return {"name": name, "total": {"median": ms}, "map50_95": m}

    # one model beats all: the front is a single point, still drawn (ringed, and its step line)
    rows = [row("a.onnx", 2.0, 0.5), row("b.onnx", 2.0, 0.4), row("c.pt", 5.0, 0.45)]
    assert plot_latency_vs_map(rows, tmp_path / "p.png")
    img = cv2.imread(str(tmp_path / "p.png"))
    green = ((img[..., 1] > 100) & (img[..., 0] < 80) & (img[..., 2] < 80)).sum()  # tab:green pixels: front + legend
    assert green > 300


def test_pt_and_its_onnx_are_validated_on_the_same_input_size(tiny_data, teacher_pt, tmp_path, monkeypatch):
    """A .pt and its own FP32 ONNX see the same letterboxed square: YOLO(pt).val() alone pads rectangular batches by
    half a stride (64 px -> 96 px here), which made the demo's .pt rows disagree with their ONNX rows."""
    from ultralytics.models.yolo.detect import DetectionValidator

    from yolo_kd.core.checkpoints import export_copy
    from yolo_kd.quantize.report import onnx_map

    shapes: list[tuple] = []
    preprocess = DetectionValidator.preprocess

    def record(self, batch):
        shapes.append(tuple(batch["img"].shape))
        return preprocess(self, batch)

    monkeypatch.setattr(DetectionValidator, "preprocess", record)
    onnx = export_copy(teacher_pt, tmp_path / "teacher.onnx", format="onnx", imgsz=64, dynamic=False)
    onnx_map(teacher_pt, tiny_data, 64)
    pt_shapes, shapes[:] = set(shapes), []
    onnx_map(onnx, tiny_data, 64)
    assert pt_shapes == set(shapes) == {(1, 3, 64, 64)}


def test_a_cached_teacher_trained_with_other_settings_is_refused(tmp_path):
    from yolo_kd.core.errors import KDError

    out = tmp_path / "demo"
    (out / "teacher" / "weights").mkdir(parents=True)
    (out / "teacher" / "weights" / "best.pt").write_bytes(b"x")
    s = DemoSettings(preset="tiny", teacher_epochs=35)
    (out / "teacher" / "args.yaml").write_text(f"model: {s.teacher_model}\nepochs: 30\nimgsz: {s.imgsz}\nbatch: {s.batch}\nnbs: {s.nbs}\n")
    with pytest.raises(KDError, match=r"teacher in .* was trained with other settings \(epochs was 30, now 35\): pass another --out"):
        run_demo(out, s)


def test_the_benchmark_link_names_a_readme_section():
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", readme, flags=re.M)}
    path, _, anchor = BENCHMARK_LINK.partition("#")
    assert path == "README.md" and anchor in anchors
