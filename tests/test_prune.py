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
    zeroed_channels,
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
    assert "temperature: 2.0" in kd  # fine-tunes keep the T = 2 they were measured with, not auto's short-run T = 4
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


def _random_bn(m: nn.Module) -> nn.Module:
    """Give every BatchNorm trained-looking statistics and affine values (a fresh one is the identity)."""
    g = torch.Generator().manual_seed(1)
    for b in m.modules():
        if isinstance(b, nn.BatchNorm2d):
            n = b.num_features
            b.weight.data = torch.rand(n, generator=g) + 0.5
            b.bias.data = torch.rand(n, generator=g) - 0.5
            b.running_mean = torch.randn(n, generator=g)
            b.running_var = torch.rand(n, generator=g) + 0.5
    return m


def test_silencing_a_cut_equals_the_cut_and_the_bn_cut_removes_exactly_the_silent_channels():
    m = _random_bn(_yolo11n())
    x = torch.rand(2, 3, IMGSZ, IMGSZ)
    silenced, pruned = prune_model(m, 0.6, zero=True).eval(), prune_model(m, 0.6).eval()
    assert count_params(silenced) == count_params(m)  # same shape, channels silenced
    marked = zeroed_channels(silenced)
    assert zeroed_channels(m) == {} and sum(map(len, marked.values())) > 500
    with torch.no_grad():
        out_m, out_s, out_p = m(x)[0], silenced(x)[0], pruned(x)[0]
        assert (out_m - out_p).abs().max() > 0.1  # the cut changes the outputs ...
        torch.testing.assert_close(out_s, out_p, atol=1e-3, rtol=1e-3)  # ... exactly as silencing does
        recut = prune_model(silenced, 0.6, importance="bn").eval()  # the silent channels score 0 and go first
        assert count_params(recut) == count_params(pruned)
        torch.testing.assert_close(recut(x)[0], out_s, atol=1e-3, rtol=1e-3)


def pickle_roundtrip(obj):
    import pickle

    return pickle.loads(pickle.dumps(obj))


def test_channel_fade_is_linear_then_zero_in_model_and_ema():
    from types import SimpleNamespace

    from yolo_kd.prune.fade import ChannelFade, fade_factor

    assert [fade_factor(p, 0.5) for p in (0.0, 0.25, 0.5, 0.9)] == [1.0, 0.5, 0.0, 0.0]
    m = _random_bn(_yolo11n())
    name = "model.2.cv1.bn"
    bn = dict(m.named_modules())[name]
    w0, b0 = bn.weight.detach().clone(), bn.bias.detach().clone()
    ema = copy.deepcopy(m)
    fade = pickle_roundtrip(ChannelFade.of(m, {name: [0, 3]}, share=0.5))  # survives the DDP launcher's pickling
    trainer = SimpleNamespace(model=m, ema=SimpleNamespace(ema=ema), epoch=0, epochs=4, train_loader=[0, 1])
    fade(trainer)  # after batch 1 of 2 of epoch 1 of 4: progress 1/8 of the run, half-way through a fade over 1/2
    assert torch.allclose(bn.weight[[0, 3]], w0[[0, 3]] * 0.75) and torch.allclose(bn.bias[[0, 3]], b0[[0, 3]] * 0.75)
    assert torch.equal(bn.weight[1:3], w0[1:3]) and torch.equal(bn.bias[4:], b0[4:])  # other channels untouched
    trainer.epoch = 1
    fade(trainer)
    fade(trainer)  # end of epoch 2 of 4: the fade is over
    for net in (m, ema):
        b = dict(net.named_modules())[name]
        assert b.weight[[0, 3]].abs().sum() == 0 and b.bias[[0, 3]].abs().sum() == 0
    assert zeroed_channels(m) == {name: [0, 3]}


def test_prune_loop_with_fade_trains_the_uncut_model_then_cuts_exactly(model_pt, data, tmp_path):
    from ultralytics import YOLO

    from yolo_kd.prune.loop import prune_iteratively

    r = prune_iteratively(
        model_pt, data, target_flops=0.6, steps=1, epochs_per_step=2, fade=0.5, imgsz=IMGSZ, batch=16, device="cpu",
        workers=0, seed=0, project=tmp_path, name="f", latency_imgsz=[], flops_imgsz=IMGSZ, plot=False,
    )
    base, step = r.steps
    assert step.gflops <= 0.6 * base.gflops + 1e-9 and step.params < base.params
    step_dir = tmp_path / "f" / "step1"
    faded = YOLO(str(step_dir / "weights" / "last.pt")).model.float().eval()
    silent = zeroed_channels(faded)
    silenced = YOLO(str(step_dir / "silenced.pt")).model
    assert silent == zeroed_channels(silenced)  # the channels chosen at the start are the ones silent at the end
    cut = YOLO(str(r.best)).model.float().eval()
    assert count_params(cut) == step.params and zeroed_channels(cut) == {}  # ... and the cut removed exactly them
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        torch.testing.assert_close(cut(x)[0], faded(x)[0], atol=2e-2, rtol=2e-2)  # fp16 checkpoints: cut == faded
    assert json.loads(r.json.read_text())["fade"] == 0.5


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
    assert "--fade 1.5" in _one_line_error(capsys, [*base, "--fade", "1.5"])
    assert "uniform only" in _one_line_error(capsys, [*base, "--fade", "0.5", "--allocation", "global"])
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


def test_reinitialized_gives_the_pruned_widths_the_constructors_fresh_weights():
    """The scratch control: same shapes, new weights drawn as Ultralytics' constructor draws them, DFL kept."""
    import math

    from ultralytics.nn.modules.block import DFL

    from yolo_kd.prune.scratch import reinitialized

    trained = prune_model(_yolo11n(), target_flops=0.5, importance="l2", round_to=8, imgsz=128)
    with torch.no_grad():  # stand-in for training: move every weight away from its initial value
        for p in trained.parameters():
            p.add_(torch.randn_like(p).abs() + 0.5)
            p.requires_grad_(False)  # as a loaded checkpoint arrives
        for b in trained.buffers():
            if b.is_floating_point():
                b.add_(0.7)
    dfl = next(m for m in trained.modules() if isinstance(m, DFL)).conv.weight.clone()
    torch.manual_seed(3)
    fresh = reinitialized(trained)
    torch.manual_seed(3)
    again = reinitialized(trained)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), again.state_dict().values()))  # seeded
    sd0, sd1 = trained.state_dict(), fresh.state_dict()
    assert {k: v.shape for k, v in sd0.items()} == {k: v.shape for k, v in sd1.items()}  # the pruned widths
    assert count_params(fresh) == count_params(trained)
    head, fixed = fresh.model[-1], next(m for m in fresh.modules() if isinstance(m, DFL)).conv
    assert torch.equal(fixed.weight, dfl.float())  # the fixed projection onto 0..reg_max-1 is kept
    assert not fixed.weight.requires_grad and all(p.requires_grad for p in fresh.parameters() if p is not fixed.weight)
    for c in (m for m in fresh.modules() if isinstance(m, nn.Conv2d) and m is not fixed):
        bound = 1 / math.sqrt(c.weight[0].numel())  # PyTorch's Kaiming-uniform(a=sqrt(5)) on fan_in
        assert c.weight.abs().max() <= bound + 1e-7
        if c.weight.numel() >= 1000:  # a uniform(-b, b) draw: std b / sqrt(3)
            assert c.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
    bns = [m for m in fresh.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(b.weight, torch.ones_like(b.weight)) and not b.bias.any() for b in bns)
    assert all(not b.running_mean.any() and torch.equal(b.running_var, torch.ones_like(b.running_var)) for b in bns)
    assert all(b.eps == 1e-3 and b.momentum == 0.03 for b in bns)  # Ultralytics' settings, not PyTorch's
    for i, (box, cls) in enumerate(zip(head.cv2, head.cv3)):  # Detect's prior biases
        assert torch.allclose(box[-1].bias, torch.full_like(box[-1].bias, 2.0))
        prior = math.log(5 / head.nc / (640 / float(head.stride[i])) ** 2)
        assert torch.allclose(cls[-1].bias[: head.nc], torch.full((head.nc,), prior))
    with torch.no_grad():
        scores = fresh.eval()(torch.rand(1, 3, IMGSZ, IMGSZ))[0][:, 4:]
    assert scores.max() < 0.05  # the prior: about 1% objectness, not a trained model's confident scores
