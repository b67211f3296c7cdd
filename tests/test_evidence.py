"""Equal-compute sizing and the plateau criterion of ``tools/compare.py`` (no training: results.csv files are written)."""

from __future__ import annotations

import pytest

from yolo_kd.core.errors import KDError
from yolo_kd.evidence.compare import equal_time_epochs, last10_gain


def _results(folder, seconds_per_epoch: float, maps: list[float]):
    folder.mkdir(parents=True)
    lines = ["epoch,time,metrics/mAP50-95(B)"]
    lines += [f"{i + 1},{seconds_per_epoch * (i + 1):.3f},{m}" for i, m in enumerate(maps)]
    (folder / "results.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_equal_time_epochs_fill_the_distilled_runs_time(tmp_path):
    vanilla = _results(tmp_path / "v", 10.0, [0.1] * 20)
    kd = _results(tmp_path / "k", 14.0, [0.2] * 20)  # 1.4x the time per epoch
    assert equal_time_epochs(vanilla, kd) == (28, pytest.approx(1.4))
    assert equal_time_epochs(vanilla, kd, time_ratio=1.25) == (25, 1.25)  # an interleaved measurement wins
    with pytest.raises(KDError, match="cannot size the equal-time run"):
        equal_time_epochs(tmp_path / "missing", kd)


def test_last10_gain_is_the_plateau_criterion():
    rising = [i / 100 for i in range(30)]  # +0.01 per epoch
    assert last10_gain(rising) == pytest.approx(0.10)
    flat = [0.5] * 20 + [0.503, 0.501] + [0.5] * 8
    assert last10_gain(flat) == pytest.approx(0.003)  # under 0.5 point: a plateau
    assert last10_gain([0.1] * 10) != last10_gain([0.1] * 10)  # too short to tell: NaN


def test_an_interrupted_run_is_resumed_not_restarted(tmp_path):
    import torch

    from yolo_kd.evidence.compare import RunSpec, interrupted_checkpoint

    spec = RunSpec("kd", 0, "yolo11n.yaml", "data.yaml", "t.pt", str(tmp_path), {"epochs": 10})
    assert interrupted_checkpoint(spec) is None  # never started
    last = spec.run_dir / "weights" / "last.pt"
    last.parent.mkdir(parents=True)
    torch.save({"epoch": 3}, last)
    assert interrupted_checkpoint(spec) == last  # stopped after epoch 4 of 10: resume
    torch.save({"epoch": 9}, last)
    assert interrupted_checkpoint(spec) is None  # its last epoch was saved: nothing to resume
    torch.save({"epoch": 3}, last)
    (spec.run_dir / "run_result.json").write_text('{"status": "failed", "error": "x", "peak_mem_gb": 0}')
    assert interrupted_checkpoint(spec) is None  # the run ended (here: failed); it is not resumed
    last.write_bytes(b"truncated")
    (spec.run_dir / "run_result.json").unlink()
    assert interrupted_checkpoint(spec) is None  # unreadable: trained again from the start
