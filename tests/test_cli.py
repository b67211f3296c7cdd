"""The tools' command lines: Ultralytics' key=value equals --flag, one-line conflicts, run-folder increments, --resume.

Parse-level tests call each command's argument resolution directly; one tiny training runs the whole `yolo-kd train`
in key=value form.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import yolo_kd
from yolo_kd.commands import compare, demo, make_data, prune, train
from yolo_kd.commands.args import ArgParser, parse_args
from yolo_kd.core.errors import KDError, run_cli

from .conftest import TRAIN_ARGS

ROOT = Path(__file__).resolve().parents[1]


def _one_line(capsys, main, argv) -> str:
    """Run a command as the CLI does; it must fail with exit 2 and exactly one 'yolo_kd: error:' line."""
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("yolo_kd: error: "), err
    return err[0]


# ----- the shared parser -----
def test_key_value_equals_flag_form_for_every_kind_of_option():
    p = ArgParser(prog="t")
    p.add_argument("--student", "--model", dest="student", default="yolo11n.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--ablate", action="store_true")
    p.add_argument("--target-flops", type=float, default=0.5)
    p.add_argument("--resume", nargs="?", const=True)
    p.add_argument("--map", action="append")
    flags = parse_args(p, ["--model", "a.pt", "--seeds", "0", "1", "2", "--ablate", "--target-flops", "0.3", "--resume", "l.pt"]).args
    keys = parse_args(p, ["model=a.pt", "seeds=0,1,2", "ablate=True", "target_flops=0.3", "resume=l.pt"]).args
    assert vars(flags) == vars(keys) == {"student": "a.pt", "seeds": [0, 1, 2], "ablate": True, "target_flops": 0.3, "resume": "l.pt", "map": None}
    assert parse_args(p, ["resume=True"]).args.resume is True and parse_args(p, ["ablate=False"]).args.ablate is False
    # a value that looks like key=value stays the value of its option; negative numbers are values
    assert parse_args(p, ["--map", "best=0.6", "--map", "b.onnx=0.5"]).args.map == ["best=0.6", "b.onnx=0.5"]
    assert parse_args(p, ["--target-flops", "-1"]).args.target_flops == -1.0
    assert parse_args(p, ["--student", "x", "model=x"]).args.student == "x"  # the same value twice is no conflict
    # one name repeated: the last value wins, as in argparse and Ultralytics (a helper's default, then the user's)
    assert parse_args(p, ["--target-flops", "0.3", "--target-flops=0.4"]).args.target_flops == 0.4
    assert parse_args(p, ["model=a", "model=b"]).args.student == "b"
    assert parse_args(p, ["imgsz=64", "imgsz=128", "--lr0", "1", "--lr0", "2"], passthrough=True).overrides == {"imgsz": 128, "lr0": 2}
    for argv, words in (
        (["--student", "x", "model=y"], "'--student x' and 'model=y' both set --student: give it once"),
        (["--seeds", "0", "seeds=1"], "both set --seeds"),
        (["--target-flops", "x"], "invalid float value: 'x'"),
        (["epochs=3"], "unknown argument 'epochs=3'"),
        (["--targ", "0.3"], "unknown argument '--targ'"),  # never abbreviated
        (["ablate=maybe"], "'ablate=maybe' must be True or False"),
    ):
        with pytest.raises(KDError, match=words):
            parse_args(p, argv)
    parsed = parse_args(p, ["--lr0", "0.02", "optimizer=SGD", "epochs=3"], passthrough=True)
    assert parsed.overrides == {"lr0": 0.02, "optimizer": "SGD", "epochs": 3}
    with pytest.raises(KDError, match="'--epochs 3' and 'epochs=4' both set epochs"):
        parse_args(p, ["--epochs", "3", "epochs=4"], passthrough=True)
    with pytest.raises(KDError, match="unknown training argument 'bogus'"):
        parse_args(p, ["bogus=1"], passthrough=True)
    with pytest.raises(KDError, match="'name' is set by this tool: because"):
        parse_args(p, ["name=x"], passthrough=True, reserved={"name": "because"})


# ----- train -----
def test_train_key_value_form_equals_flag_form():
    kv = ["teacher=t.pt", "model=yolo11s.yaml", "data=d.yaml", "kd_cls=2", "kd_cfg=k.yaml", "imgsz=64", "epochs=3", "lr0=0.02"]
    flags = ["--teacher", "t.pt", "--student", "yolo11s.yaml", "--data", "d.yaml", "--kd-cls", "2", "--kd-cfg", "k.yaml",
             "--imgsz", "64", "--epochs", "3", "--lr0", "0.02"]
    expected = {"student": "yolo11s.yaml", "teacher": "t.pt", "data": "d.yaml", "kd_cls": "2", "kd_cfg": "k.yaml",
                "imgsz": 64, "epochs": 3, "lr0": 0.02}
    assert train.resolve(kv) == train.resolve(flags) == (expected, None)
    assert train.resolve(["--teacher", "t.pt", "data=my.yaml"])[0]["data"] == "my.yaml"  # was: TypeError, data twice
    assert train.resolve(["--teacher", "t.pt", "--model", "m.pt"])[0]["student"] == "m.pt"
    assert train.resolve(["--teacher", "t.pt"])[0]["student"] == "yolo11n.yaml"  # the default student


def test_train_conflicts_are_one_line(capsys):
    assert "'--data a.yaml' and 'data=b.yaml' both set --data" in _one_line(capsys, train.main, ["--teacher", "t.pt", "--data", "a.yaml", "data=b.yaml"])
    assert "'--student x.yaml' and 'model=y.yaml' both set --student" in _one_line(capsys, train.main, ["--teacher", "t.pt", "--student", "x.yaml", "model=y.yaml"])
    assert "both set --teacher" in _one_line(capsys, train.main, ["--teacher", "a.pt", "teacher=b.pt"])
    assert "no teacher given" in _one_line(capsys, train.main, ["data=d.yaml"])
    assert "unknown distillation setting 'tmperature' (kd_tmperature=2)" in _one_line(capsys, train.main, ["--teacher", "t.pt", "kd_tmperature=2"])


def test_train_cli_data_twice_is_one_line_in_a_real_process():
    """`yolo-kd train --teacher t.pt data=a.yaml --data b.yaml`: exit 2, one line, no traceback (was a TypeError)."""
    out = subprocess.run([sys.executable, "-m", "yolo_kd.cli", "train", "--teacher", "t.pt", "data=a.yaml", "--data", "b.yaml"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.strip().splitlines() == ["yolo_kd: error: 'data=a.yaml' and '--data b.yaml' both set --data: give it once"]


def test_api_model_and_student_conflict(tiny_data):
    with pytest.raises(KDError, match="student 'yolo11n.yaml' and model='yolo11s.yaml' both name the student"):
        yolo_kd.train("yolo11n.yaml", model="yolo11s.yaml", data=tiny_data)


def test_resume_names_ignored_settings_and_keeps_teacher(capsys, monkeypatch, tmp_path):
    last = str(tmp_path / "kd" / "train" / "weights" / "last.pt")
    argv = ["--resume", last, "--teacher", "t2.pt", "kd_cls=2", "--student", "x.yaml", "epochs=5", "batch=8", "--data", "d.yaml",
            "name=other"]
    kwargs, note = train.resolve(argv)
    assert kwargs == {"student": last, "data": "d.yaml", "resume": last, "batch": 8, "teacher": "t2.pt"}
    assert note == f"yolo_kd: --resume continues {last} with its own settings; ignored: kd_cls=2, --student, epochs=5, name=other"
    assert train.resolve(["--resume", last, "--data", "d.yaml", "device=cpu"])[1] is None  # nothing ignored: no line
    # Ultralytics' habit: `resume model=path/to/last.pt`
    assert train.resolve(["resume=True", f"model={last}", "data=d.yaml"]) == ({"student": last, "data": "d.yaml", "resume": last}, None)
    with pytest.raises(KDError, match="--resume needs the path of the run's last.pt"):
        train.resolve(["--resume", "data=d.yaml"])
    # main prints the line (stderr) before training
    calls = []
    monkeypatch.setattr(yolo_kd.api, "train", lambda **kw: calls.append(kw) or SimpleNamespace(best="b", last="l", save_dir="s"))
    assert run_cli(train.main, argv) == 0
    assert calls == [kwargs] and capsys.readouterr().err.strip() == note


def test_train_run_folders_increment_unless_exist_ok(tiny_data, tmp_path, monkeypatch):
    """A second run with the same project/name gets <name>-2 (Ultralytics' increment_path), exist_ok=True reuses it."""
    from yolo_kd.distill.trainer import KDTrainer

    monkeypatch.setattr(KDTrainer, "train", lambda self: None)  # set-up only: the run folder is made in __init__
    args = dict(model="yolo11n.yaml", data=tiny_data, project=str(tmp_path), device="cpu", workers=0, plots=False)
    dirs = [yolo_kd.train(**args).save_dir for _ in range(2)] + [yolo_kd.train(**args, exist_ok=True).save_dir]
    assert [Path(d).name for d in dirs] == ["train", "train-2", "train"]
    assert train.resolve(["--teacher", "t.pt", "exist_ok=True"])[0]["exist_ok"] is True


def test_train_all_key_value_one_epoch(tiny_data, teacher_pt, tmp_path):
    """`yolo-kd train` written the Ultralytics way: model= is the student, kd_<key>= a distillation setting."""
    from yolo_kd.cli import main

    argv = ["train", f"teacher={teacher_pt}", "model=yolo11n.yaml", f"data={tiny_data}", "epochs=1", "kd_cls=0.5",
            f"project={tmp_path}", "name=kv", *[f"{k}={v}" for k, v in TRAIN_ARGS.items() if k != "exist_ok"]]
    assert main(argv) == 0
    run = tmp_path / "kv"
    assert yaml.safe_load((run / "kd.yaml").read_text())["cls"] == 0.5
    assert yaml.safe_load((run / "args.yaml").read_text())["model"] == "yolo11n.yaml"
    assert (run / "weights" / "best.pt").is_file()


# ----- compare, prune, data, demo -----
def test_compare_key_value_equals_flags_and_conflicts(capsys):
    kv = ["teacher=t.pt", "model=s.yaml", "data=d.yaml", "epochs=3", "imgsz=64", "seeds=0,1", "ablate=True", "kd_cls=0.5",
          "variants=vanilla,kd", "project=p", "lr0=0.02"]
    flags = ["--teacher", "t.pt", "--student", "s.yaml", "--data", "d.yaml", "--epochs", "3", "--imgsz", "64", "--seeds", "0", "1",
             "--ablate", "--kd-cls", "0.5", "--variants", "vanilla", "kd", "--project", "p", "--lr0", "0.02"]
    a, b = (parse_args(compare.build_parser(), v, passthrough=True, reserved=compare.RESERVED) for v in (kv, flags))
    assert vars(a.args) == vars(b.args) and a.overrides == b.overrides == {"lr0": 0.02}
    assert a.args.student == "s.yaml" and a.args.seeds == [0, 1] and a.args.kd_cls == "0.5" and a.args.variants == ["vanilla", "kd"]
    assert "both set --data" in _one_line(capsys, compare.main, ["--teacher", "t.pt", "--data", "a.yaml", "data=b.yaml"])
    assert "'seed' is set by this tool: use --seeds" in _one_line(capsys, compare.main, ["--data", "a.yaml", "seed=3"])


def test_compare_kd_settings_reach_the_kd_runs(tmp_path):
    args = parse_args(compare.build_parser(), ["data=d.yaml", "kd_cls=0.5", "kd_feat_loss=mse"], passthrough=True).args
    cfg = yaml.safe_load(Path(compare._kd_cfg(args, tmp_path)).read_text())
    assert (cfg["cls"], cfg["feat_loss"], cfg["box"]) == (0.5, "mse", "auto")  # the given settings over the defaults
    with pytest.raises(KDError, match="unknown feature distillation loss 'nope'"):
        compare._kd_cfg(parse_args(compare.build_parser(), ["data=d.yaml", "kd_feat_loss=nope"]).args, tmp_path)


def test_prune_key_value_equals_flags_and_increments(tmp_path, capsys):
    kv = ["model=m.pt", "teacher=t.pt", "data=d.yaml", "target_flops=0.3", "steps=2", "epochs_per_step=1", "imgsz=64",
          "ignore=2,10", "latency_imgsz=64,128", f"project={tmp_path}", "name=run", "kd_cls=0.5", "lr0=0.02"]
    flags = ["--model", "m.pt", "--teacher", "t.pt", "--data", "d.yaml", "--target-flops", "0.3", "--steps", "2",
             "--epochs-per-step", "1", "--imgsz", "64", "--ignore", "2", "10", "--latency-imgsz", "64", "128",
             "--project", str(tmp_path), "--name", "run", "--kd-cls", "0.5", "--lr0", "0.02"]
    (a, ov_a), (b, ov_b) = prune.resolve(kv), prune.resolve(flags)
    assert vars(a) == vars(b) and ov_a == ov_b == {"lr0": 0.02, "kd_cls": "0.5"}
    assert (a.model, a.target_flops, a.ignore, a.latency_imgsz, a.name) == ("m.pt", 0.3, ["2", "10"], [64, 128], "run")
    (tmp_path / "run").mkdir()
    (tmp_path / "run-2").mkdir()
    assert prune.resolve(kv)[0].name == "run-3"  # an existing run folder is never mixed into
    assert prune.resolve([*kv, "exist_ok=True"])[0].name == prune.resolve([*flags, "--exist-ok"])[0].name == "run"
    assert "'epochs' is set by this tool: use --epochs-per-step" in _one_line(capsys, prune.main, ["--model", "m.pt", "--data", "d.yaml", "epochs=3"])
    assert "both set --model" in _one_line(capsys, prune.main, ["--model", "a.pt", "model=b.pt", "--data", "d.yaml"])
    assert "unknown distillation setting 'nope' (kd_nope=1)" in _one_line(capsys, prune.main, ["--model", "a.pt", "--data", "d.yaml", "kd_nope=1"])
    assert "distillation setting 'cls' must be a number" in _one_line(capsys, prune.main, ["--model", "a.pt", "--data", "d.yaml", "kd_cls=high"])


def test_make_data_and_demo_take_key_value(tmp_path, capsys):
    out = tmp_path / "shapes"
    assert run_cli(make_data.main, ["preset=tiny", f"out={out}", "n_train=4", "n_val=2", "imgsz=64"]) == 0
    assert len(list((out / "images" / "train").iterdir())) == 4 and len(list((out / "images" / "val").iterdir())) == 2
    assert "invalid choice: 'huge'" in _one_line(capsys, make_data.main, ["preset=huge"])
    a = parse_args(demo.build_parser(), ["student_epochs=2", "out=o", "prune_target=0.5"]).args
    b = parse_args(demo.build_parser(), ["--student-epochs", "2", "--out", "o", "--prune-target", "0.5"]).args
    assert vars(a) == vars(b) and (a.student_epochs, a.out, a.prune_target) == (2, "o", 0.5)
    assert "unknown argument 'lr0=0.1'" in _one_line(capsys, demo.main, ["lr0=0.1"])


def test_tests_leave_ultralytics_logger_as_they_found_it(tmp_path):
    """A test that needs caplog turns on LOGGER.propagate; it must be off again for the tests after it."""
    check = tmp_path / "test_after.py"
    check.write_text("def test_after():\n    from ultralytics.utils import LOGGER\n    assert LOGGER.propagate is False\n")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
                          "tests/test_distill_model.py::test_reg_max_one_teacher_distils_boxes_on_distances_with_message", str(check)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0 and "2 passed" in out.stdout, out.stdout[-3000:]
