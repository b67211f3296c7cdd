"""Online self-distillation (teacher="self"): a frozen EMA snapshot, refreshed on schedule, never saved, re-created on
resume, zero terms when it equals the student, carried through the DDP launcher."""

from __future__ import annotations

import math

import cloudpickle
import pytest
import torch
import yaml
from ultralytics import YOLO
from ultralytics.cfg import get_cfg
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import DEFAULT_CFG_DICT

from yolo_kd.core.checkpoints import load_checkpoint_dict
from yolo_kd.distill.config import load_kd_config
from yolo_kd.distill.model import KDModel
from yolo_kd.distill.schedule import for_self_teacher
from yolo_kd.distill.self_teacher import SELF, refresh_due, self_multiplier, snapshot_teacher
from yolo_kd.distill.trainer import KDTrainer
from yolo_kd.core.errors import KDError

from .conftest import TRAIN_ARGS

FAST = {**TRAIN_ARGS, "nbs": 16, "fraction": 0.34, "val": False}  # one batch, one optimizer step per epoch


def _student(seed=3, nc=4):
    torch.manual_seed(seed)
    m = DetectionModel("yolo11n.yaml", nc=nc, verbose=False)
    m.args = get_cfg(overrides={"imgsz": 64})
    with torch.no_grad():  # non-trivial BatchNorm statistics, so the snapshot's BN folding is really exercised
        m.train()(torch.rand(4, 3, 64, 64))
    return m


def _batch():
    g = torch.Generator().manual_seed(0)
    return {"img": torch.rand(2, 3, 64, 64, generator=g), "batch_idx": torch.tensor([0.0, 1.0]),
            "cls": torch.tensor([[1.0], [2.0]]), "bboxes": torch.tensor([[0.5, 0.5, 0.3, 0.3], [0.4, 0.6, 0.2, 0.4]])}


def test_self_teacher_equal_to_the_student_gives_zero_terms_and_takes_no_gradient():
    student = _student()
    teacher = snapshot_teacher(student)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in student.modules())  # the student itself is untouched
    kd = KDModel(student, teacher, for_self_teacher(load_kd_config()))  # all three terms, as KDTrainer sets them for "self"
    assert kd.kd_config.box == 1.0 and set(kd.terms) == {"kd_cls", "kd_box", "kd_feat"} and not list(kd.adapters.parameters())  # identity adapters
    kd.train()
    kd.student_model.eval()  # BatchNorm on running statistics, as in the frozen teacher: the same function
    kd.training = True
    loss, items = kd.loss(_batch())
    assert all(float(items[t]) < 1e-6 for t in kd.terms), items
    assert float(items["cls_loss"]) > 0.1  # the detection loss is there
    loss.sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher.model.parameters())
    assert student.model[0].conv.weight.grad.abs().sum() > 0
    assert not any(n.startswith("teacher") for n in kd.state_dict())
    # the same weights with training-mode BatchNorm (batch statistics) are another function: non-zero terms
    kd.student_model.train()
    _, items = kd.loss(_batch())
    assert all(float(items[t]) > 1e-3 for t in kd.terms), items


def test_refresh_schedule():
    assert [e for e in range(7) if refresh_due(e, 0, 2)] == [2, 4, 6]
    assert [e for e in range(7) if refresh_due(e, 0, 1)] == [1, 2, 3, 4, 5, 6]
    assert [e for e in range(3, 7) if refresh_due(e, 3, 2)] == [4, 6]  # resumed at 3: taken from the resumed EMA there
    assert [self_multiplier(e, 2) for e in range(4)] == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(KDError, match="self_refresh"):
        load_kd_config(self_refresh=0)
    with pytest.raises(KDError, match="whole number"):
        load_kd_config(self_refresh=1.5)


class _Stop(Exception):
    pass


def _watch(trainer, seen: dict, stop_after: int | None = None):
    """Record, at each epoch's first batch, the teacher object and whether it equals a fresh snapshot of the EMA."""
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))

    def first_batch(tr):
        if tr._batch_index:
            return
        t = tr.teacher
        assert t is tr.model.__dict__["teacher"] and all(not p.requires_grad for p in t.model.parameters())
        ema = snapshot_teacher(tr.ema.ema.student_model, "fp32")
        same = torch.allclose(t(x)["scores"], ema(x)["scores"], atol=1e-4)
        seen[tr.epoch] = [id(t), same]

    def batch_end(tr):
        if len(seen[tr.epoch]) == 2:  # the first batch's distillation terms
            seen[tr.epoch].append([float(tr.loss_items[k]) for k in ("kd_cls", "kd_box", "kd_feat")])

    def epoch_end(tr):
        if stop_after is not None and tr.epoch == stop_after:
            raise _Stop

    trainer.add_callback("on_train_batch_start", first_batch)
    trainer.add_callback("on_train_batch_end", batch_end)
    trainer.add_callback("on_fit_epoch_end", epoch_end)


def test_self_distillation_refreshes_on_schedule_saves_the_student_and_resumes(tiny_data, tmp_path):
    args = dict(model="yolo11n.yaml", data=tiny_data, teacher="self", kd_self_refresh=2, kd_teacher_precision="fp32", epochs=4, project=str(tmp_path), name="self", **FAST)
    trainer = KDTrainer(overrides=args)
    seen: dict = {}
    _watch(trainer, seen, stop_after=2)  # stop after 3 of 4 epochs: last.pt at epoch index 2
    with pytest.raises(_Stop):
        trainer.train()
    assert seen[0][1], "the first teacher is the starting weights (the EMA's start)"
    assert seen[0][2] == seen[1][2] == [0.0, 0.0, 0.0], "no distillation before the first EMA snapshot"
    assert all(v > 0 for v in seen[2][2]), "distillation from the first snapshot on"
    assert seen[1][0] == seen[0][0] and not seen[1][1], "epoch 1: no refresh (every 2), the EMA has moved on"
    assert seen[2][0] != seen[0][0] and seen[2][1], "epoch 2: a new snapshot of the EMA"
    kd_yaml = yaml.safe_load((tmp_path / "self" / "kd.yaml").read_text())
    assert kd_yaml["teacher"] == SELF and kd_yaml["box"] == 1.0  # box: auto's long-run weight is not for a self-teacher

    last = tmp_path / "self" / "weights" / "last.pt"
    ckpt = load_checkpoint_dict(last)
    assert ckpt["epoch"] == 2 and ckpt["ema"].yolo_kd_state["teacher"] == SELF  # what resume reads
    plain = set(DetectionModel("yolo11n.yaml", nc=4, verbose=False).state_dict())
    assert set(ckpt["ema"].state_dict()) == plain  # no teacher (nor adapter) tensors in the checkpoint

    resumed = KDTrainer(overrides={"model": str(last), "data": tiny_data, "resume": str(last)})
    seen_r: dict = {}
    _watch(resumed, seen_r)
    resumed.train()
    assert resumed.teacher_path == SELF and list(seen_r) == [3] and seen_r[3][1], "resume: re-created from the resumed EMA"
    for name in ("best.pt", "last.pt"):
        path = tmp_path / "self" / "weights" / name
        ck = load_checkpoint_dict(path)
        assert ck.get("ema") is None and set(ck["model"].state_dict()) == plain
        assert "yolo_kd_state" not in ck["model"].__dict__
    m = YOLO(str(tmp_path / "self" / "weights" / "best.pt")).val(data=tiny_data, imgsz=64, batch=16, device="cpu", plots=False, verbose=False)
    assert len(m.box.maps) == 4 and math.isfinite(m.box.map)  # stock Ultralytics validates every class of the student


def test_self_teacher_travels_through_the_ddp_launcher(tiny_data, tmp_path):
    """Rebuild the trainer as Ultralytics' DDP worker script does: the setting travels, the snapshot is taken there."""
    parent = KDTrainer(overrides=dict(model="yolo11n.yaml", data=tiny_data, teacher="self", kd_self_refresh=3, project=str(tmp_path), name="ddp", **TRAIN_ARGS))
    state = cloudpickle.loads(cloudpickle.dumps({"trainer": type(parent), "args": vars(parent.args), "callbacks": parent.callbacks}))
    cfg = {**DEFAULT_CFG_DICT, "save_dir": ""}
    worker = state["trainer"](cfg=cfg, overrides=state["args"], _callbacks=state["callbacks"])
    assert worker.teacher_path == SELF and worker.kd_config.self_refresh == 3 and worker.teacher is None


def test_self_distillation_in_a_two_process_cpu_ddp_run(tiny_data, tmp_path):
    """Ultralytics' own DDP launcher path (as tests/test_ddp.py): each rank builds its snapshot teacher beside DDP,
    distils nothing in epoch 0 and from its EMA snapshot in epoch 1, and keeps the student identical across ranks."""
    from ultralytics.utils.dist import ddp_cleanup, generate_ddp_command

    from .ddp_worker import Probe
    from .test_ddp import WORLD, _launch

    overrides = dict(model="yolo11n.yaml", data=tiny_data, teacher="self", kd_self_refresh=1, epochs=2, project=str(tmp_path), name="ddp",
                     **{**TRAIN_ARGS, "nbs": TRAIN_ARGS["batch"], "fraction": 0.67})
    trainer = KDTrainer(overrides=overrides)
    trainer.world_size = WORLD
    probe = Probe(str(tmp_path / "probe"))
    for event in ("on_pretrain_routine_end", "on_train_epoch_start", "on_train_batch_end", "on_train_epoch_end", "teardown"):
        trainer.add_callback(event, getattr(probe, event))
    cmd, file = generate_ddp_command(trainer)
    try:
        _launch(cmd[:-1] + ["-m", "tests.ddp_worker", file], tmp_path / "ddp.log")
    finally:
        ddp_cleanup(trainer, str(file))
    ranks = [torch.load(tmp_path / "probe" / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    for rec in ranks:
        assert rec["teacher_in_ddp"] is False and rec["terms"] == ("kd_cls", "kd_box", "kd_feat") and rec["config"].self_refresh == 1
        by_epoch = {e: [b["items"] for b in rec["batches"] if b["epoch"] == e] for e in (0, 1)}
        assert by_epoch[0] and all(items[k] == 0.0 for items in by_epoch[0] for k in rec["terms"])
        assert by_epoch[1] and all(items[k] > 0 for items in by_epoch[1] for k in rec["terms"])
    a, b = ranks[0]["student_end"], ranks[1]["student_end"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "refreshed from the EMA at the start of epoch 2" in (tmp_path / "ddp.log").read_text()
