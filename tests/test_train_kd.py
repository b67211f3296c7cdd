"""End-to-end distillation on the tiny generated set: run folder, stock-loadable best.pt, resume, DDP rebuild, CLI."""

from __future__ import annotations

import copy
import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from yolo_kd.distill.trainer import kd_state_of

import yolo_kd
from yolo_kd.core.errors import KDError
from yolo_kd.distill.trainer import KDTrainer

from .conftest import TRAIN_ARGS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def kd_run(tiny_data, teacher_pt, tmp_path_factory):
    project = tmp_path_factory.mktemp("kd_runs")
    trainer = yolo_kd.train(
        "yolo11n.yaml", teacher=teacher_pt, data=tiny_data, epochs=2, project=str(project), name="kd", kd_feat_loss="mse", **TRAIN_ARGS
    )
    return trainer


def test_run_folder_has_distillation_columns_and_config(kd_run):
    save_dir = Path(kd_run.save_dir)
    rows = list(csv.DictReader(open(save_dir / "results.csv")))
    assert len(rows) == 2
    for col in ("train/kd_cls", "train/kd_box", "train/kd_feat"):
        assert col in rows[0] and float(rows[0][col]) > 0, col
    assert not any(k.startswith("val/kd") for k in rows[0])
    kd_yaml = (save_dir / "kd.yaml").read_text()
    assert "feat_loss: mse" in kd_yaml and "teacher:" in kd_yaml and (save_dir / "args.yaml").exists()


def test_checkpoints_hold_the_student_only(kd_run):
    for name in ("best.pt", "last.pt"):
        ckpt = torch.load(Path(kd_run.save_dir) / "weights" / name, map_location="cpu", weights_only=False)
        assert type(ckpt["model"]).__name__ == "DetectionModel" and "yolo_kd" not in ckpt
        keys = ckpt["model"].state_dict().keys()
        assert not any("adapter" in k or "teacher" in k or "student_model" in k for k in keys)


def test_resuming_a_finished_run_is_one_line(kd_run, tiny_data):
    before = Path(kd_run.last).read_bytes()
    with pytest.raises(KDError, match="has finished its 2 epochs, nothing to resume"):
        yolo_kd.train(kd_run.last, data=tiny_data, resume=True)
    assert Path(kd_run.last).read_bytes() == before


def test_best_pt_works_in_stock_ultralytics_without_yolo_kd(kd_run, tiny_data, tmp_path):
    code = f"""
import sys
from ultralytics import YOLO
m = YOLO({str(kd_run.best)!r})
metrics = m.val(data={tiny_data!r}, imgsz=64, batch=8, device="cpu", plots=False, verbose=False, project={str(tmp_path)!r})
m.predict(source={str(Path(tiny_data).parent / "images" / "val")!r}, imgsz=64, device="cpu", verbose=False)
onnx = m.export(format="onnx", imgsz=64)
assert not any(k.startswith("yolo_kd") for k in sys.modules), "yolo_kd was imported"
print("OK", metrics.box.map, onnx)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "OK" in out.stdout


def test_resume_restores_adapters_and_finishes(tiny_data, teacher_pt, tmp_path):
    class Killed(Exception):
        pass

    def die_after_first_save(trainer):
        raise Killed

    overrides = dict(model="yolo11n.yaml", data=tiny_data, teacher=teacher_pt, epochs=2, project=str(tmp_path), name="r", **TRAIN_ARGS)
    trainer = KDTrainer(overrides=overrides)
    trainer.add_callback("on_model_save", die_after_first_save)
    with pytest.raises(Killed):
        trainer.train()
    last = tmp_path / "r" / "weights" / "last.pt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["epoch"] == 0 and "adapters" in kd_state_of(saved)

    seen = {}

    def capture(tr):
        seen["adapters"] = {k: v.clone() for k, v in tr.model.adapters.state_dict().items()}
        seen["start"] = tr.start_epoch
        seen["optimizer"] = copy.deepcopy(tr.optimizer.state_dict())  # live tensors move on with training

    resumed = KDTrainer(overrides={"model": str(last), "resume": str(last), "data": tiny_data})
    resumed.add_callback("on_pretrain_routine_end", capture)
    resumed.train()
    assert seen["start"] == 1 and resumed.teacher_path == str(Path(teacher_pt).resolve())
    for k, v in kd_state_of(saved)["adapters"].items():
        assert torch.allclose(seen["adapters"][k].float(), v.float()), k
    opt, ref = seen["optimizer"], saved["optimizer"]  # optimizer moments (adapters' included), saved as fp16 by Ultralytics
    assert len(opt["state"]) == len(ref["state"]) > 0
    for i, st in ref["state"].items():
        assert all(torch.allclose(opt["state"][i][k].float(), v.float(), rtol=1e-3, atol=0) for k, v in st.items() if torch.is_tensor(v)), i
    assert len(list(csv.DictReader(open(tmp_path / "r" / "results.csv")))) == 2


def test_ddp_launcher_rebuild_keeps_settings(tiny_data, teacher_pt, tmp_path):
    """Rebuild the trainer the way ultralytics.utils.dist.generate_ddp_file's worker script does."""
    import cloudpickle
    from ultralytics.utils import DEFAULT_CFG_DICT

    overrides = dict(model="yolo11n.yaml", data=tiny_data, teacher=teacher_pt, kd_feat_loss="mgd", kd_temperature=3, project=str(tmp_path), name="ddp", **TRAIN_ARGS)
    parent = KDTrainer(overrides=overrides)
    state = cloudpickle.loads(cloudpickle.dumps({"trainer": type(parent), "args": vars(parent.args), "callbacks": parent.callbacks}))
    cfg = DEFAULT_CFG_DICT.copy()
    cfg.update(save_dir="")
    worker = state["trainer"](cfg=cfg, overrides=state["args"], _callbacks=state["callbacks"])
    assert worker.kd_config == parent.kd_config and worker.kd_config.feat_loss == "mgd"
    assert worker.teacher_path == parent.teacher_path and worker.teacher is not None


def test_bad_inputs_fail_before_training(tiny_data, teacher_pt, tmp_path):
    from yolo_kd.data.synthetic import make_shapes_dataset

    other = make_shapes_dataset(tmp_path / "three", "tiny", n_classes=3, n_train=4, n_val=2)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(Path(teacher_pt).read_bytes()[:5000])
    cases = [
        (dict(teacher=tmp_path / "missing.pt"), "not found"),
        (dict(teacher=corrupt), "corrupt"),
        (dict(teacher=teacher_pt, data=other), "teacher has 4 classes but the dataset has 3"),
        (dict(teacher=teacher_pt, kd_feat_loss="nope"), "unknown feature distillation loss"),
        (dict(teacher=teacher_pt, kd_temperature=-1), "must be > 0"),
        (dict(teacher="yolo11x.pt"), "cannot be downloaded"),
    ]
    for kwargs, words in cases:
        kwargs = {"data": tiny_data, "project": str(tmp_path / "runs"), "name": "bad", **kwargs}
        with pytest.raises(KDError, match=words):
            yolo_kd.train("yolo11n.yaml", epochs=1, **{k: v for k, v in TRAIN_ARGS.items()}, **kwargs)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))
    with pytest.raises(KDError, match="student weights .* not found"):
        yolo_kd.train(tmp_path / "nope.pt", teacher=teacher_pt, data=tiny_data)


def test_cli_passthrough_and_one_line_errors(tiny_data, teacher_pt, tmp_path):
    cmd = [sys.executable, str(ROOT / "tools" / "train_kd.py"), "--teacher", teacher_pt, "--data", tiny_data]
    out = subprocess.run(cmd + ["--kd-feat-loss", "fgd"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith("yolo_kd: error: unknown feature")
    assert "Traceback" not in out.stderr
    out = subprocess.run(cmd + ["bogus=3"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "unknown training argument 'bogus'" in out.stderr
    run = cmd + ["--kd-cls", "0.5", "epochs=1", "imgsz=64", "batch=16", "device=cpu", "--workers", "0", "plots=False", f"project={tmp_path}", "name=cli"]
    out = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "cli" / "weights" / "best.pt").exists()
    assert "cls: 0.5" in (tmp_path / "cli" / "kd.yaml").read_text()


def test_full_disk_keeps_previous_checkpoint(tiny_data, teacher_pt, tmp_path, monkeypatch):
    import errno

    overrides = dict(model="yolo11n.yaml", data=tiny_data, teacher=teacher_pt, epochs=2, project=str(tmp_path), name="full", **TRAIN_ARGS)
    trainer = KDTrainer(overrides=overrides)
    last = tmp_path / "full" / "weights" / "last.pt"
    state = {}

    def disk_fills_up(tr):
        if tr.epoch == 0:
            state["bytes"] = last.read_bytes()

            def no_space(self, data):
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(Path, "write_bytes", no_space)

    trainer.add_callback("on_model_save", disk_fills_up)
    with pytest.raises(KDError, match="No space left on device.*previous last.pt/best.pt are intact"):
        trainer.train()
    monkeypatch.undo()
    assert last.read_bytes() == state["bytes"]  # the epoch-1 checkpoint survived untouched
    assert not [p.name for p in last.parent.iterdir() if p.name.startswith(".")]  # no temp files left
    torch.load(last, map_location="cpu", weights_only=False)


def _train_cmd(teacher_pt, tiny_data, project, name):
    return [sys.executable, str(ROOT / "tools" / "train_kd.py"), "--teacher", teacher_pt, "--data", tiny_data, "epochs=3",
            "imgsz=64", "batch=16", "device=cpu", "workers=0", "plots=False", "seed=0", f"project={project}", f"name={name}"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, teacher_pt, tmp_path_factory):
    """results.csv rows of a 3-epoch run that nobody interrupts."""
    project = tmp_path_factory.mktemp("uninterrupted")
    out = subprocess.run(_train_cmd(teacher_pt, tiny_data, project, "u"), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return list(csv.DictReader(open(project / "u" / "results.csv")))


#: runs `yolo-kd train` with one extra callback: at the first batch of the second epoch (epoch 0's last.pt is on disk)
#: it writes one byte to the pipe the test blocks on and waits there to be signalled, so the test signals at a known
#: point, however loaded or fast the machine is
_LAUNCHER = """
import os, sys, threading

from ultralytics.utils.callbacks.base import default_callbacks

from yolo_kd.commands.train import main
from yolo_kd.core.errors import run_cli

READY_FD = int(sys.argv[1])  # write end of the test's pipe


def wait_for_signal(trainer):
    if trainer.epoch == 1:
        os.write(READY_FD, b"1")
        threading.Event().wait(300)  # block until the test's signal arrives; never signalled -> the run goes on and the test fails


default_callbacks["on_train_batch_end"].append(wait_for_signal)
raise SystemExit(run_cli(main, sys.argv[2:]))
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_killed_mid_run_then_resume_matches_uninterrupted(sig, tiny_data, teacher_pt, tmp_path, uninterrupted):
    import os
    import select
    import signal

    launcher = tmp_path / "launch_train.py"
    launcher.write_text(_LAUNCHER)
    ready_r, ready_w = os.pipe()  # the run writes one byte here when it reaches the second epoch
    cmd = [sys.executable, str(launcher), str(ready_w), *_train_cmd(teacher_pt, tiny_data, tmp_path, "k")[2:]]
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:  # a file, not a pipe: a full pipe would stall the run while the test waits
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, text=True, pass_fds=(ready_w,))
    os.close(ready_w)  # only the child holds the write end: its exit ends the read below with b""
    last = tmp_path / "k" / "weights" / "last.pt"
    try:
        readable, _, _ = select.select([ready_r], [], [], 600)  # blocks until the byte, the child's exit, or 10 min
        reached = os.read(ready_r, 1) if readable else b""
    finally:
        os.close(ready_r)
    assert reached == b"1", f"the run never reached the second epoch (exit {proc.poll()})"
    proc.send_signal(getattr(signal, sig))
    proc.wait(timeout=120)
    err = log.read_text()
    if sig == "SIGINT":  # Ctrl-C: one line, exit 130, no traceback
        assert proc.returncode == 130 and err.strip().splitlines()[-1] == "yolo_kd: interrupted" and "Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL
    saved = torch.load(last, map_location="cpu", weights_only=False)  # never half written
    assert saved["epoch"] == 0 and saved["optimizer"] is not None and "adapters" in kd_state_of(saved)
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "train_kd.py"), "--resume", str(last)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "k" / "results.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for done, ref in zip(rows, uninterrupted):  # same schedule position: learning rates identical every epoch
        assert all(float(done[k]) == pytest.approx(float(ref[k]), rel=1e-6) for k in ref if k.startswith("lr/"))
    # final metrics within noise (training losses on 3 tiny batches swing 3x epoch to epoch; validation is stable)
    for k in ("val/box_loss", "val/cls_loss", "val/dfl_loss"):
        assert float(rows[-1][k]) == pytest.approx(float(uninterrupted[-1][k]), rel=0.05), k
    assert float(rows[-1]["metrics/mAP50-95(B)"]) == pytest.approx(float(uninterrupted[-1]["metrics/mAP50-95(B)"]), abs=0.05)
    assert all(float(rows[-1][k]) > 0 for k in ("train/kd_cls", "train/kd_box", "train/kd_feat"))  # still distilling


def test_pretrained_student_with_other_classes_is_fine_tuned(teacher_pt, tmp_path):
    """A .pt trained on other classes (like COCO weights) is a normal fine-tuning start, not a 'pruned' module."""
    from yolo_kd.data.synthetic import make_shapes_dataset

    three = make_shapes_dataset(tmp_path / "three", "tiny", n_classes=3, n_train=8, n_val=4)
    tr = yolo_kd.train(teacher_pt, data=three, epochs=1, project=str(tmp_path), name="ft", **TRAIN_ARGS)
    model = torch.load(tr.best, map_location="cpu", weights_only=False)["model"]
    assert model.model[-1].nc == 3 and len(model.names) == 3
