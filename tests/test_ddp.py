"""A real two-process DDP run on CPU (gloo) through KDTrainer and Ultralytics' own launcher path.

The trainer is built here as a user would build it; Ultralytics' ``generate_ddp_command`` writes the pickled
trainer class, arguments, model and callbacks plus its worker script and picks the port, exactly as
``BaseTrainer.train`` does for ``device=0,1``; two workers started by ``torch.distributed.run`` rebuild and train
the trainer from them. The only change is the CPU stand-in for CUDA device selection in ``tests/ddp_worker.py``.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from yolo_kd.distill.model import KD_TERMS
from yolo_kd.distill.schedule import distill_multiplier
from yolo_kd.distill.teacher import resolve_precision
from yolo_kd.distill.trainer import KDTrainer

from .conftest import TRAIN_ARGS
from .ddp_worker import Probe

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
EPOCHS = 2
TIMEOUT_S = 600  # generous for a loaded 2-core machine: the two workers take about 30 s on a busy one


def _launch(cmd: list[str], log: Path) -> None:
    """Run the launcher in its own process group; on failure or timeout, fail with the workers' output tail."""
    env = {k: v for k, v in os.environ.items() if k not in {"RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}}
    env.update(YOLO_OFFLINE="1", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its two workers
            proc.wait()
            rc = "timeout"
    assert rc == 0, f"DDP run failed ({rc}); last output:\n{log.read_text()[-6000:]}"


def test_two_process_cpu_ddp_through_the_ultralytics_launcher(tiny_data, teacher_pt, tmp_path):
    from ultralytics.utils.dist import ddp_cleanup, generate_ddp_command

    overrides = dict(model="yolo11n.yaml", data=tiny_data, teacher=teacher_pt, epochs=EPOCHS, project=str(tmp_path), name="ddp", **TRAIN_ARGS)
    overrides.update(nbs=TRAIN_ARGS["batch"])  # one optimizer step per batch: every batch moves the adapters
    trainer = KDTrainer(overrides=overrides)
    trainer.world_size = WORLD  # the device count a device=0,1 parent has; Ultralytics counts device=cpu as 0
    probe = Probe(str(tmp_path / "probe"))
    for event in ("on_pretrain_routine_end", "on_train_epoch_start", "on_train_batch_end", "on_train_epoch_end", "teardown"):
        trainer.add_callback(event, getattr(probe, event))

    cmd, file = generate_ddp_command(trainer)  # as BaseTrainer.train: removes save_dir, writes the state + script
    try:
        assert cmd[-1] == file and cmd[cmd.index("--nproc_per_node") + 1] == str(WORLD)
        _launch(cmd[:-1] + ["-m", "tests.ddp_worker", file], tmp_path / "ddp.log")
    finally:
        ddp_cleanup(trainer, str(file))
    ranks = [torch.load(tmp_path / "probe" / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]

    # real DDP: one gloo group of two CPU processes, the KDModel (student + adapters) wrapped, the teacher beside it
    for r, rec in enumerate(ranks):
        assert (rec["rank"], rec["world"], rec["backend"], rec["device"]) == (r, WORLD, "gloo", "cpu")
        assert rec["wrapper"] == "CPUDistributedDataParallel" and rec["adapters_in_ddp"] and rec["teacher_in_ddp"] is False
        assert rec["teacher_device"] == rec["device"] and rec["terms"] == tuple(KD_TERMS)  # moved to the rank's device
        assert rec["teacher_dtype"] == str(resolve_precision(trainer.kd_config.teacher_precision, torch.device(rec["device"])))
        # callbacks rebuilt from the pickle are not registered a second time by KDTrainer.__init__
        assert (rec["report_callbacks"], rec["settings_callbacks"], rec["probe_callbacks"]) == (1, 1, 5)
    assert ranks[0]["config"] == ranks[1]["config"] == trainer.kd_config

    # each rank gets half of every global batch; batches per epoch are then the single-process count
    n_train = _count_images(trainer.data["train"])
    nb = math.ceil(n_train / TRAIN_ARGS["batch"])
    for rec in ranks:
        assert [(b["epoch"], b["index"]) for b in rec["batches"]] == [(e, i) for e in range(EPOCHS) for i in range(nb)]
        for b in rec["batches"]:
            # the multiplier the model received equals the single-process value at the same (epoch, batch index)
            assert b["batches"] == nb
            assert b["scale"] == distill_multiplier(trainer.kd_config, b["epoch"], b["index"], nb, EPOCHS, rec["close_mosaic"])
            # every distillation term is computed on every rank, finite and non-zero
            assert all(k in b["items"] and math.isfinite(b["items"][k]) and b["items"][k] > 0 for k in KD_TERMS), b["items"]
            assert len(b["files"]) == TRAIN_ARGS["batch"] // WORLD
    assert len({b["scale"] for b in ranks[0]["batches"]}) == EPOCHS * nb  # the schedule really moves per batch
    for e in range(EPOCHS):  # the ranks saw different images: the gradients they share are not trivially equal
        files = [{f for b in rec["batches"] if b["epoch"] == e for f in b["files"]} for rec in ranks]
        assert not files[0] & files[1] and len(files[0] | files[1]) == n_train

    # adapters' (and the student's) parameters identical across ranks after the steps, and the steps did move them
    for key in ("adapters_start", "adapters_end", "student_end"):
        a, b = ranks[0][key], ranks[1][key]
        assert a.keys() == b.keys() and len(a) > 0, key
        assert all(torch.equal(a[k], b[k]) for k in a), f"{key} differ across ranks"
    start, end = ranks[0]["adapters_start"], ranks[0]["adapters_end"]
    assert all(not torch.equal(start[k], end[k]) for k in start)

    # rank 0 alone writes one results.csv: one header, one row per epoch, the kd_* columns filled
    save_dir = Path(trainer.save_dir)
    lines = (save_dir / "results.csv").read_text().splitlines()
    assert sum(ln.startswith("epoch") for ln in lines) == 1
    rows = list(csv.DictReader(lines))
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1))
    for col in ("train/kd_cls", "train/kd_box", "train/kd_feat"):
        assert all(float(r[col]) > 0 for r in rows), col
        for e, row in enumerate(rows):  # Ultralytics logs rank 0's running mean of its own batches' loss items
            mine = [b["items"][col[6:]] for b in ranks[0]["batches"] if b["epoch"] == e]
            assert float(row[col]) == pytest.approx(sum(mine) / len(mine), rel=1e-3, abs=2e-5), (col, e)
    assert (save_dir / "weights" / "best.pt").exists() and (save_dir / "kd.yaml").exists()


def _count_images(folder: str) -> int:
    return sum(1 for p in Path(folder).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"})
