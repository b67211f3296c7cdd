"""Structured pruning: real FLOPs/params cuts, unchanged outputs, stock-loadable checkpoints, the full loop, bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from yolo_kd.core.errors import KDError, run_cli
from yolo_kd.prune.blocks import SplitCSP, merge_blocks, split_blocks
from yolo_kd.prune.pruner import (
    count_params,
    ignored_modules,
    kept_channels,
    model_gflops,
    prune_by_ratio,
    prune_model,
    save_pruned_checkpoint,
)

IMGSZ = 64


def _yolo11n(nc: int = 4) -> nn.Module:
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    m = DetectionModel("yolo11n.yaml", nc=nc, verbose=False)
    m.names = {i: f"c{i}" for i in range(nc)}
    return m.eval()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    from yolo_kd.data.synthetic import make_shapes_dataset

    return str(make_shapes_dataset(tmp_path_factory.mktemp("prune_data") / "tiny", "tiny"))


@pytest.fixture(scope="module")
def model_pt(data, tmp_path_factory) -> Path:
    """An (untrained) yolo11n checkpoint with the tiny set's 4 classes, saved in stock Ultralytics format."""
    import yaml

    m = _yolo11n(4)
    m.names = dict(enumerate(yaml.safe_load(Path(data).read_text())["names"].values()))
    return save_pruned_checkpoint(m, tmp_path_factory.mktemp("prune_model") / "model.pt", {"imgsz": IMGSZ})


def test_kept_channels_round_to_multiples():
    assert kept_channels(64, 0.3, 8) == 48  # 44.8 -> nearest multiple of 8
    assert kept_channels(16, 0.6, 8) == 8  # never below round_to
    assert kept_channels(16, 0.2, 8) == 16  # 12.8 -> 16
    assert kept_channels(8, 0.9, 8) == 8  # groups of round_to channels stay whole
    assert kept_channels(100, 0.5, 1) == 50


def test_split_blocks_are_exact_and_fold_back_to_stock():
    from ultralytics.nn.modules.block import C2PSA, C3k2

    m, x = _yolo11n(), torch.rand(2, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        ref = m(x)[0]
        s = copy.deepcopy(m)
        assert split_blocks(s) == 9  # 8 C3k2 + 1 C2PSA in YOLO11n
        assert torch.allclose(s(x)[0], ref, atol=1e-5)
        assert merge_blocks(s) == 9
        assert torch.allclose(s(x)[0], ref, atol=1e-5)
    assert type(s.model[2]) is C3k2 and type(s.model[10]) is C2PSA


def test_prune_cuts_params_and_flops_keeps_outputs_and_stock_modules():
    from ultralytics.nn.modules.block import C2PSA, C2f

    m = _yolo11n()
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    g0, p0 = model_gflops(m, 128), count_params(m)
    pruned = prune_model(m, target_flops=0.5, importance="l2", round_to=8, imgsz=128)
    g1, p1 = model_gflops(pruned, 128), count_params(pruned)
    assert count_params(m) == p0  # the input model is untouched
    assert 0.47 <= g1 / g0 <= 0.5, g1 / g0  # at most the target, and close to it
    assert p1 < 0.65 * p0
    with torch.no_grad():
        y0, y1 = m(x), pruned(x)
    assert y1[0].shape == y0[0].shape == (1, 4 + 4, 84)  # decoded (B, 4 + nc, anchors)
    for k in ("boxes", "scores"):
        assert y1[1][k].shape == y0[1][k].shape
    # stock classes only, channels on the rounding grid, C2f halves equal
    assert not any(isinstance(mod, SplitCSP) for mod in pruned.modules())
    assert all(type(mod).__module__.split(".")[0] in {"ultralytics", "torch"} for mod in pruned.modules())
    keep = {id(c) for mod in ignored_modules(pruned) for c in mod.modules()}
    convs = [c for c in pruned.modules() if isinstance(c, nn.Conv2d) and id(c) not in keep]
    assert convs and all(c.out_channels % 8 == 0 for c in convs)
    blocks = [b for b in pruned.modules() if isinstance(b, (C2f, C2PSA))]
    assert all(b.cv1.conv.out_channels == 2 * b.c and b.c % 8 == 0 for b in blocks)
    assert any(b.c < ob.c for b, ob in zip(blocks, [b for b in m.modules() if isinstance(b, (C2f, C2PSA))]))
    # attention is left whole
    assert pruned.model[10].c == m.model[10].c


def test_importance_choice_and_round_to_4():
    m = _yolo11n()
    by_bn = prune_by_ratio(copy.deepcopy(m), 0.3, importance="bn", round_to=4, ignore=[2])
    by_l2 = prune_by_ratio(copy.deepcopy(m), 0.3, importance="l2", round_to=4, ignore=[2])
    assert by_bn.model[2].c == m.model[2].c and by_bn.model[4].c < m.model[4].c  # --ignore 2 keeps layer 2 whole
    assert count_params(by_bn) == count_params(by_l2) < 0.7 * count_params(m)  # same widths...
    w_bn, w_l2 = by_bn.model[0].conv.weight, by_l2.model[0].conv.weight
    assert w_bn.shape == w_l2.shape == (12, 3, 3, 3) and not torch.equal(w_bn, w_l2)  # ...different channels kept
    assert all(c.out_channels % 4 == 0 for c in by_bn.model[:9].modules() if isinstance(c, nn.Conv2d))


def test_allocations_meet_the_target_and_flops_spends_the_cut_where_the_macs_are():
    m = _yolo11n()
    g0, p0 = model_gflops(m, 128), count_params(m)
    out = {a: prune_model(m, target_flops=0.6, imgsz=128, allocation=a) for a in ("uniform", "global", "flops")}
    for a, pruned in out.items():
        assert 0.55 <= model_gflops(pruned, 128) / g0 <= 0.6, a  # every allocation lands at, and near, the target
        with torch.no_grad():
            assert pruned(torch.rand(1, 3, IMGSZ, IMGSZ))[0].shape == (1, 8, 84)
    params = {a: count_params(pruned) for a, pruned in out.items()}
    # per MAC, a channel of the 1/32-scale layers (many weights, few pixels) is worth keeping: the flops allocation
    # reaches the same GFLOPs keeping far more parameters, cutting the high-resolution stem harder instead
    assert params["flops"] > params["uniform"] + 0.1 * p0, params
    stem = {a: pruned.model[1].conv.out_channels for a, pruned in out.items()}  # 32 channels at 1/4 scale
    deep = {a: pruned.model[7].conv.out_channels for a, pruned in out.items()}  # 256 channels at 1/32 scale
    assert stem["flops"] < stem["uniform"] and deep["flops"] > deep["uniform"], (stem, deep)
    with pytest.raises(KDError, match="unknown --allocation 'layer'"):
        prune_model(m, target_flops=0.6, allocation="layer")


def test_mosaic_closes_only_at_the_end_of_the_whole_pruning_schedule():
    from yolo_kd.prune.loop import step_close_mosaic

    # 3 steps of 10 epochs with close_mosaic=10: mosaic in the 20 epochs of steps 1-2, closed in step 3 (one
    # Ultralytics run's schedule); each step closing its own last 10 epochs would never train with mosaic
    assert [step_close_mosaic(k, 3, 10) for k in (1, 2, 3)] == [0, 0, 10]
    assert [step_close_mosaic(k, 2, 0) for k in (1, 2)] == [0, 0]  # close_mosaic=0: mosaic throughout
    assert step_close_mosaic(1, 1, 5) == 5


def test_prune_loop_finetunes_saves_reloads_and_exports(model_pt, data, tmp_path):
    import onnxruntime as ort
    from ultralytics import YOLO

    from yolo_kd.prune.loop import prune_iteratively

    r = prune_iteratively(
        model_pt, data, target_flops=0.6, steps=1, epochs_per_step=1, imgsz=IMGSZ, batch=16, device="cpu",
        workers=0, seed=0, project=tmp_path, name="p", latency_imgsz=[IMGSZ], latency_seconds=0.3, flops_imgsz=IMGSZ,
    )
    assert [s.step for s in r.steps] == [0, 1]
    base, step = r.steps
    assert step.gflops <= 0.6 * base.gflops + 1e-9 and step.params < base.params
    assert Path(step.weights).name == "best.pt" and "step1" in step.weights  # the fine-tuning run's best
    kd = (tmp_path / "p" / "step1" / "kd.yaml").read_text()
    assert "close_mosaic: 10" in (tmp_path / "p" / "step1" / "args.yaml").read_text()  # the last step closes mosaic
    assert str(Path(model_pt).resolve()) in kd  # no teacher given: distilled from the unpruned model
    rep = json.loads(r.json.read_text())
    assert len(rep["results"]) == 2 and [row["map_finetuned"] for row in rep["results"]] == [s.map_finetuned for s in r.steps]
    for row in rep["results"]:  # milliseconds per 64-px image on this CPU: not seconds, not microseconds, not NaN
        assert 0.05 < row["latency_ms"][str(IMGSZ)] < 1000, row["latency_ms"]
    assert r.png.stat().st_size > 1000 and "| 1 |" in r.table
    # stock Ultralytics: load, validate, export, run in onnxruntime
    y = YOLO(str(r.best))
    assert count_params(y.model) == step.params
    box = y.val(data=data, imgsz=IMGSZ, batch=16, device="cpu", workers=0, plots=False, verbose=False, project=str(tmp_path)).box
    assert 0 <= box.map <= box.map50 <= 1
    assert box.map == pytest.approx(step.map_finetuned, abs=1e-3)  # the report's mAP is that of the saved final model
    onnx = y.export(format="onnx", imgsz=IMGSZ)
    sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: np.zeros((1, 3, IMGSZ, IMGSZ), np.float32)})[0]
    assert out.shape == (1, 4 + 4, 84)


def _one_line_error(capsys, argv) -> str:
    from yolo_kd.commands.prune import main

    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def test_bad_input_one_line(capsys, model_pt, data, tmp_path):
    base = ["--model", str(model_pt), "--data", data]
    assert "out of range" in _one_line_error(capsys, [*base, "--target-flops", "1.5"])
    assert "out of range" in _one_line_error(capsys, [*base, "--target-flops", "0"])
    assert "--steps 0" in _one_line_error(capsys, [*base, "--steps", "0"])
    assert "contradict" in _one_line_error(capsys, [*base, "--teacher", str(model_pt), "--no-distill"])
    assert "not found" in _one_line_error(capsys, ["--model", str(tmp_path / "none.pt"), "--data", data])
    # a checkpoint that is not a detection model
    from ultralytics.nn.tasks import SegmentationModel

    seg = save_pruned_checkpoint(SegmentationModel("yolo11n-seg.yaml", nc=4, verbose=False), tmp_path / "seg.pt")
    assert "not a detection model" in _one_line_error(capsys, ["--model", str(seg), "--data", data])
    # library: a model without a Detect head
    with pytest.raises(KDError, match="no Detect head"):
        prune_model(nn.Sequential(nn.Conv2d(3, 8, 3)), 0.5)
    with pytest.raises(KDError, match="out of range"):
        prune_model(_yolo11n(), 1.0)
