"""The paths users really train on: AMP/teacher precision, GradScaler overflow steps, the schedule's clock across an
OOM retry and a resume, and Ultralytics' NaN recovery in a distillation run."""

from __future__ import annotations

import copy
import csv
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from ultralytics.cfg import get_cfg
from ultralytics.nn.tasks import DetectionModel

from yolo_kd.distill.model import KDModel
from yolo_kd.distill.schedule import distill_multiplier
from yolo_kd.distill.teacher import Teacher, native_bf16_cpu, resolve_precision
from yolo_kd.distill.trainer import KDTrainer

from .conftest import TRAIN_ARGS


def _net(cfg: str, seed: int) -> DetectionModel:
    torch.manual_seed(seed)
    m = DetectionModel(cfg, nc=4, verbose=False)
    m.args = get_cfg(overrides={"imgsz": 64})
    with torch.no_grad():  # non-trivial BN statistics
        m.train()(torch.rand(4, 3, 64, 64))
    return m.eval()


def test_teacher_precision_is_its_own_under_the_trainers_autocast():
    """The trainer's autocast (AMP) does not change the teacher: fp32 stays exact, bf16 is what teacher_precision says."""
    net = _net("yolo11s.yaml", 1)
    img = torch.rand(2, 3, 64, 64)
    fp32 = Teacher(copy.deepcopy(net), "fp32").to("cpu")
    ref = fp32(img)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what amp on a bf16 device does around the whole step
        under_amp = fp32(img)
    assert fp32.dtype == torch.float32
    torch.testing.assert_close(under_amp["scores"], ref["scores"], rtol=0, atol=0)
    torch.testing.assert_close(under_amp["boxes"], ref["boxes"], rtol=0, atol=0)

    bf16 = Teacher(copy.deepcopy(net), "bf16").to("cpu")
    out = bf16(img)
    assert next(bf16.model.parameters()).dtype == torch.bfloat16 and out["scores"].dtype == torch.float32
    assert not torch.equal(out["scores"], ref["scores"])  # it really ran in bf16 ...
    torch.testing.assert_close(out["scores"].sigmoid(), ref["scores"].sigmoid(), rtol=0, atol=0.05)  # ... and stays close

    assert resolve_precision("auto", torch.device("cuda")) == torch.float16
    assert resolve_precision("auto", torch.device("cpu")) == (torch.bfloat16 if native_bf16_cpu() else torch.float32)
    assert resolve_precision("fp16", torch.device("cpu")) == torch.float16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_teacher_float16_on_cuda_under_the_trainers_autocast():
    """On a GPU, 'auto' is float16 whatever the trainer's AMP does; an fp32 teacher stays fp32 under float16 autocast."""
    net = _net("yolo11s.yaml", 1)
    img = torch.rand(2, 3, 64, 64, device="cuda")
    fp32 = Teacher(copy.deepcopy(net), "fp32").to("cuda")
    ref = fp32(img)
    with torch.autocast("cuda", dtype=torch.float16):
        under_amp = fp32(img)
    torch.testing.assert_close(under_amp["scores"], ref["scores"], rtol=1e-5, atol=1e-4)  # not run in fp16
    fp16 = Teacher(copy.deepcopy(net), "auto").to("cuda")
    out = fp16(img)
    assert next(fp16.model.parameters()).dtype == torch.float16 and out["scores"].dtype == torch.float32
    assert torch.isfinite(out["scores"]).all() and torch.isfinite(out["boxes"]).all()
    torch.testing.assert_close(out["scores"].sigmoid(), ref["scores"].sigmoid(), rtol=0, atol=0.05)


def test_teacher_returns_raw_head_outputs_equal_to_the_decoding_forward():
    """The teacher skips decoding; its raw outputs are exactly those the eval forward computes beside the decode."""
    net = _net("yolo11s.yaml", 2)
    img = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        _, raw = copy.deepcopy(net).eval()(img)
    out = Teacher(net, "fp32").to("cpu")(img)
    torch.testing.assert_close(out["scores"], raw["scores"], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(out["boxes"], raw["boxes"], rtol=1e-4, atol=1e-3)
    assert not net.model[-1].training  # the head is back in eval mode after the call


def _fake_trainer(scaler_enabled: bool):
    model = torch.nn.Linear(2, 1)
    for p in model.parameters():
        p.grad = torch.full_like(p, float("inf"))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=scaler_enabled, init_scale=1024.0)
    scaler.scale(torch.ones(()))  # as the training step's scaler.scale(loss) does before the optimizer step
    fake = SimpleNamespace(model=model, optimizer=opt, scaler=scaler, ema=None, _skipped_steps=0)
    return fake, {k: v.clone() for k, v in model.state_dict().items()}


def test_gradscaler_overflow_steps_are_not_reported_as_faults(warnings_seen):
    fake, before = _fake_trainer(scaler_enabled=True)
    KDTrainer.optimizer_step(fake)  # AMP: an overflow step is the scaler's business
    assert fake._skipped_steps == 0 and not any("non-finite gradients" in m for m in warnings_seen)
    assert fake.scaler.get_scale() == 512.0  # the scaler skipped the step and backed off
    assert all(torch.equal(before[k], v) for k, v in fake.model.state_dict().items())

    fake, before = _fake_trainer(scaler_enabled=False)
    KDTrainer.optimizer_step(fake)  # full precision: a non-finite gradient is a fault, skipped and warned
    assert fake._skipped_steps == 1 and sum("non-finite gradients" in m for m in warnings_seen) == 1
    assert all(torch.equal(before[k], v) for k, v in fake.model.state_dict().items())


def _record_scales(trainer, seen: list) -> None:
    trainer.add_callback("on_train_batch_end", lambda tr: seen.append((tr.epoch, tr._batch_index - 1, len(tr.train_loader), tr.kd_scale)))


def _expected(cfg, seen, epochs, close_mosaic):
    return [distill_multiplier(cfg, e, i, nb, epochs, close_mosaic) for e, i, nb, _ in seen]


def test_schedule_follows_the_batch_clock_through_an_oom_retry(tiny_data, teacher_pt, tmp_path, monkeypatch):
    """An OOM in the first epoch makes Ultralytics halve the batch and restart the epoch: the schedule restarts with it."""
    real, calls = KDModel.loss, {"n": 0}

    def oom_once(self, batch, preds=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("CPU out of memory (simulated)")
        return real(self, batch, preds)

    monkeypatch.setattr(KDModel, "loss", oom_once)
    kd = {"kd_schedule": "linear", "kd_final_ratio": 0.0, "kd_off_close_mosaic": False}
    tr = KDTrainer(overrides=dict(model="yolo11n.yaml", data=tiny_data, teacher=teacher_pt, epochs=2, project=str(tmp_path), name="oom", **kd, **TRAIN_ARGS))
    seen = []
    _record_scales(tr, seen)
    tr.train()
    assert tr.batch_size == TRAIN_ARGS["batch"] // 2  # the retry really happened
    epoch0 = [s for s in seen if s[0] == 0]
    assert [s[1] for s in epoch0[:2]] == [0, 0]  # one batch, then the OOM on the second: epoch 0 starts again at 0
    assert [s[1] for s in epoch0[1:]] == list(range(epoch0[1][2])) and epoch0[1][2] > epoch0[0][2]  # halved batch: more batches
    assert [s[3] for s in seen] == pytest.approx(_expected(tr.kd_config, seen, 2, tr.args.close_mosaic))
    assert seen[0][3] == 1.0 and seen[-1][3] < 0.5  # linear decay over the run


def test_schedule_after_resume_is_the_uninterrupted_value(tiny_data, teacher_pt, tmp_path):
    class Killed(Exception):
        pass

    def die_after_first_save(tr):
        raise Killed

    kd = {"kd_schedule": "cosine", "kd_final_ratio": 0.1, "kd_off_close_mosaic": False}
    tr = KDTrainer(overrides=dict(model="yolo11n.yaml", data=tiny_data, teacher=teacher_pt, epochs=2, project=str(tmp_path), name="r", **kd, **TRAIN_ARGS))
    tr.add_callback("on_model_save", die_after_first_save)
    with pytest.raises(Killed):
        tr.train()
    last = tmp_path / "r" / "weights" / "last.pt"
    resumed = KDTrainer(overrides={"model": str(last), "resume": str(last), "data": tiny_data})
    seen = []
    _record_scales(resumed, seen)
    resumed.train()
    assert {s[0] for s in seen} == {1} and [s[1] for s in seen] == list(range(seen[0][2]))
    assert [s[3] for s in seen] == pytest.approx(_expected(resumed.kd_config, seen, 2, 0))
    assert all(0.1 <= s[3] < 0.6 for s in seen)  # the second half of a cosine decay, not its start


def test_nan_loss_after_epoch_one_is_recovered_from_last_pt(tiny_data, teacher_pt, tmp_path, warnings_seen):
    """Ultralytics' NaN recovery reloads last.pt (the bare student) and redoes the epoch instead of raising."""
    tr = KDTrainer(overrides=dict(model="yolo11n.yaml", data=tiny_data, teacher=teacher_pt, epochs=3, project=str(tmp_path), name="nan", **TRAIN_ARGS))
    state = {"done": False, "restored": None}

    def poison(trainer):  # a non-finite loss at the end of epoch 1, once
        if trainer.epoch == 1 and not state["done"]:
            state["done"] = True
            trainer.loss = torch.tensor(float("nan"))

    real_load = tr._load_checkpoint_state

    def spy(ckpt):
        real_load(ckpt)
        if state["done"] and state["restored"] is None:  # the recovery's load: the student equals the checkpoint now
            model = tr.model.student_model.state_dict()
            state["restored"] = all(torch.allclose(model[k].float(), v.float()) for k, v in ckpt["ema"].float().state_dict().items())

    tr._load_checkpoint_state = spy
    tr.add_callback("on_train_epoch_end", poison)
    seen = []
    _record_scales(tr, seen)
    tr.train()
    assert any("recovering from last.pt" in m for m in warnings_seen)
    assert state["restored"] is True
    rows = list(csv.DictReader(open(Path(tr.save_dir) / "results.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert all(float(r["train/kd_cls"]) > 0 for r in rows)
    assert [s[1] for s in seen if s[0] == 1][:2] == [0, 1] and sum(s[1] == 0 and s[0] == 1 for s in seen) == 2  # epoch 1 redone
    assert all(torch.isfinite(p).all() for p in torch.load(tr.best, map_location="cpu", weights_only=False)["model"].parameters())
