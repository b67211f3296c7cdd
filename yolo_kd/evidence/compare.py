"""Side-by-side evidence: vanilla training vs yolo_kd vs Ultralytics' built-in distillation.

Every variant trains in its own subprocess (so a failure is contained and peak memory is per run)
with identical data, epochs, image size, batch, augmentation and seeds; each final ``best.pt`` and
the teacher are then validated on the same split. ``collect_run`` reads finished run folders; the summary table and
plots are in :mod:`yolo_kd.evidence.report`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..core.errors import KDError
from ..core.files import write_json_atomic, write_text_atomic
from .report import markdown_table, plot, summarize  # noqa: F401 (the comparison's report, as in 0.1)

from ..distill.terms import ablations  # noqa: E402  (the ablation variants come from the term registry)

ABLATIONS = ablations()
#: the three set-ups a comparison trains by default
VARIANTS = ("vanilla", "kd", "builtin")
#: variant name of the vanilla run given the distilled run's training time (``--equal-time``)
EQUAL_TIME = "vanilla-eqtime"
METRIC_KEYS = {"map50": "metrics/mAP50(B)", "map": "metrics/mAP50-95(B)"}


@dataclass
class RunSpec:
    """One training run of the comparison."""

    variant: str  # vanilla | vanilla-eqtime | kd | builtin | kd-cls | kd-box | kd-feat | kd-<custom>
    seed: int
    student: str
    data: str
    teacher: str | None
    project: str
    train_args: dict[str, Any]
    kd: dict[str, Any] = field(default_factory=dict)
    kd_cfg: str | None = None
    assistant: str | None = None  # teacher-assistant chain: teacher -> assistant -> student (run <name>-assistant first)

    @property
    def name(self) -> str:
        return f"{self.variant}-seed{self.seed}"

    @property
    def run_dir(self) -> Path:
        return Path(self.project) / self.name


@dataclass
class RunResult:
    """What a run produced: final metrics of its best.pt and its cost."""

    variant: str
    seed: int
    run_dir: str
    kind: str = "kd"  # vanilla | kd | builtin: how it was trained
    status: str = "ok"  # ok | failed
    error: str = ""
    map50: float = float("nan")
    map: float = float("nan")
    epoch_seconds: float = float("nan")
    train_seconds: float = float("nan")  # whole run, train + val, as results.csv's time column says
    epochs: int = 0
    last10_gain: float = float("nan")  # best mAP50-95 gained in the last 10 epochs (plateau check)
    peak_mem_gb: float = float("nan")
    params: int = 0
    gflops: float = float("nan")
    curve: list[float] = field(default_factory=list)  # mAP50-95 per epoch (EMA model, as logged)


def plan_runs(
    student: str, teacher: str | None, data: str, seeds: list[int], project: str, train_args: dict, ablate: bool, kd_cfg: str | None = None,
    variants_to_train: tuple[str, ...] | list[str] = VARIANTS, arms: dict[str, dict] | None = None,
) -> list[RunSpec]:
    """The runs of a comparison, seed-major so an interrupted comparison still has complete seeds.

    ``arms``: extra kd variants, name -> ``kd_<key>`` overrides (``--sweep``, :mod:`yolo_kd.evidence.sweep`).
    """
    variants: list[tuple[str, dict]] = [(v, {}) for v in VARIANTS if v in variants_to_train]
    if ablate:
        variants += list(ablations().items())
    variants += list((arms or {}).items())
    return [
        RunSpec(v, s, student, data, teacher if v != "vanilla" else None, project, dict(train_args), kd, kd_cfg)
        for s in seeds
        for v, kd in variants
    ]


# ----- one run (executed in a subprocess by ``run_one``) -----
def interrupted_checkpoint(spec: RunSpec) -> Path | None:
    """``last.pt`` of a run of ``spec`` that was stopped before its last epoch (killed, machine restarted), else None."""
    last = spec.run_dir / "weights" / "last.pt"
    if not last.exists() or (spec.run_dir / "run_result.json").exists():
        return None
    from ..core.checkpoints import load_checkpoint_dict

    try:
        epoch = int(load_checkpoint_dict(last).get("epoch", -1))
    except Exception:  # unreadable (cut off while written): train again from the start
        return None
    return last if 0 <= epoch < int(spec.train_args.get("epochs", 0)) - 1 else None


def _train(spec: RunSpec) -> None:
    common = {**spec.train_args, "data": spec.data, "seed": spec.seed, "project": spec.project, "name": spec.name, "exist_ok": True}
    last = interrupted_checkpoint(spec)
    if last is not None:  # continue the interrupted run where its last.pt stopped, with the settings it started with
        print(f"{spec.name}: resuming the interrupted run from {last}")
        if spec.variant in ("vanilla", EQUAL_TIME, "builtin"):
            from ultralytics import YOLO

            YOLO(str(last)).train(resume=True)
        else:
            from ..api import train

            train(str(last), data=spec.data, resume=str(last))
        return
    if spec.variant in ("vanilla", EQUAL_TIME):
        from ultralytics import YOLO

        YOLO(spec.student).train(**common)
    elif spec.variant == "builtin":
        from ultralytics import YOLO

        YOLO(spec.student).train(distill_model=spec.teacher, **common)  # Ultralytics' default weight dis=6.0
    else:
        from ..api import train

        chain = {"assistant": spec.assistant} if spec.assistant else {}
        train(spec.student, teacher=spec.teacher, kd_cfg=spec.kd_cfg, **chain, **{f"kd_{k}": v for k, v in spec.kd.items()}, **common)


def _worker(spec_path: str) -> int:
    """Subprocess entry: train one spec, write ``run_result.json`` with peak memory."""
    import resource

    import torch

    spec = RunSpec(**json.loads(Path(spec_path).read_text()))
    status, error = "ok", ""
    try:
        _train(spec)
    except Exception as e:  # reported in the table; the other runs go on
        status, error = "failed", f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(spec.run_dir / "run_result.json", {"status": status, "error": error, "peak_mem_gb": peak})
    return 0 if status == "ok" else 1


def start_run(spec: RunSpec, log: Path | None = None) -> subprocess.Popen:
    """Start training ``spec`` in a fresh Python process. Its output goes to this console, or to ``log`` when given
    (runs trained side by side would interleave their progress bars)."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    spec_file = spec.run_dir / "run_spec.json"
    write_text_atomic(spec_file, json.dumps(asdict(spec)))
    cmd = [sys.executable, "-m", "yolo_kd.evidence.compare", str(spec_file)]
    if log is None:
        return subprocess.Popen(cmd, env=os.environ.copy())
    with open(log, "w") as f:  # the child keeps its own handle
        return subprocess.Popen(cmd, env=os.environ.copy(), stdout=f, stderr=subprocess.STDOUT)


def run_one(spec: RunSpec) -> None:
    """Train ``spec`` in a fresh Python process (progress bars go to this console) and wait for it."""
    start_run(spec).wait()


# ----- reading and evaluating runs -----
def describe_run(run_dir: Path) -> tuple[str, str, int]:
    """(name, kind, seed) of a run folder. kind (vanilla | kd | builtin) comes from its kd.yaml/args.yaml;
    the name from its run_spec.json, else the folder name without a ``-seedN`` suffix (runs of one
    name are averaged over seeds)."""
    args = yaml.safe_load((run_dir / "args.yaml").read_text()) if (run_dir / "args.yaml").exists() else {}
    spec = json.loads((run_dir / "run_spec.json").read_text()) if (run_dir / "run_spec.json").exists() else {}
    kind = "kd" if (run_dir / "kd.yaml").exists() else "builtin" if args.get("distill_model") else "vanilla"
    if spec:
        kind = "vanilla" if spec["variant"] in ("vanilla", EQUAL_TIME) else "builtin" if spec["variant"] == "builtin" else "kd"
        return spec["variant"], kind, int(spec["seed"])
    name = run_dir.name
    if "-seed" in name and name.rsplit("-seed", 1)[1].isdigit():
        name = name.rsplit("-seed", 1)[0]
    return name, kind, int(args.get("seed", 0))


def read_curve(run_dir: Path) -> tuple[list[float], float, float]:
    """mAP50-95 per epoch, median seconds per epoch and total seconds (train + val) from a run folder's results.csv
    (or from a results CSV file given directly, e.g. one kept under docs/).

    The median keeps one epoch slowed by unrelated load on a shared machine from moving the figure.
    """
    import csv

    rows = []
    table = run_dir if run_dir.suffix == ".csv" else run_dir / "results.csv"
    if table.exists():
        with open(table) as f:
            rows = list(csv.DictReader(f))
    curve = [float(r[METRIC_KEYS["map"]]) for r in rows if r.get(METRIC_KEYS["map"]) not in (None, "")]
    times = [float(r["time"]) for r in rows]
    per_epoch = float(np.median(np.diff([0.0, *times]))) if times else float("nan")
    return curve, per_epoch, (times[-1] if times else float("nan"))


def last10_gain(curve: list[float]) -> float:
    """Best mAP of the whole curve minus the best before its last 10 epochs: the plateau criterion (< 0.005 = plateau)."""
    return float(max(curve) - max(curve[:-10])) if len(curve) > 10 else float("nan")


def equal_time_epochs(vanilla_dir: Path, kd_dir: Path, time_ratio: float | None = None) -> tuple[int, float]:
    """Epochs that give vanilla training the distilled run's compute, and the time ratio used.

    The ratio is the distilled run's total training time over the vanilla run's (same epochs, same seed, from
    results.csv), or ``time_ratio`` when given (e.g. measured interleaved by ``benchmarks/step_time.py`` on a
    machine whose load changed between the two runs).
    """
    _, _, kd_total = read_curve(kd_dir)
    curve, _, vanilla_total = read_curve(vanilla_dir)
    ratio = time_ratio if time_ratio else kd_total / vanilla_total
    if not np.isfinite(ratio) or ratio <= 0 or not curve:
        raise KDError(f"cannot size the equal-time run: no finished results.csv in '{vanilla_dir}' and '{kd_dir}'")
    return max(int(round(len(curve) * ratio)), 1), float(ratio)


def evaluate(weights: str | Path, data: str, imgsz: int, batch: int, device: str | None) -> dict[str, float]:
    """Validate ``weights`` on ``data``'s val split: mAP50, mAP50-95, params, GFLOPs."""
    from ultralytics.utils.torch_utils import get_flops

    from ..core.checkpoints import load_yolo

    model = load_yolo(weights, "model", purpose="the comparison")
    m = model.val(data=data, imgsz=imgsz, batch=batch, device=device, plots=False, verbose=False, split="val")
    net = model.model
    return {
        "map50": float(m.box.map50),
        "map": float(m.box.map),
        "params": int(sum(p.numel() for p in net.parameters())),
        "gflops": float(get_flops(net, imgsz)),
    }


def collect_run(run_dir: Path, data: str, imgsz: int, batch: int, device: str | None) -> RunResult:
    """Evaluate one finished (or failed) run folder."""
    variant, kind, seed = describe_run(run_dir)
    res = RunResult(variant, seed, str(run_dir), kind)
    info = run_dir / "run_result.json"
    if info.exists():
        d = json.loads(info.read_text())
        res.status, res.error, res.peak_mem_gb = d["status"], d["error"], d["peak_mem_gb"]
    best = run_dir / "weights" / "best.pt"
    if res.status == "ok" and not best.exists():
        res.status, res.error = "failed", "no weights/best.pt"
    if res.status != "ok":
        return res
    res.curve, res.epoch_seconds, res.train_seconds = read_curve(run_dir)
    res.epochs, res.last10_gain = len(res.curve), last10_gain(res.curve)
    for k, v in evaluate(best, data, imgsz, batch, device).items():
        setattr(res, k, v)
    return res


def check_inputs(student: str, teacher: str | None, data: str, needs_teacher: bool = True) -> None:
    """Fail in one line before any training when the comparison cannot run. ``needs_teacher`` is False when only
    vanilla (and online self-distillation) runs are planned: then a teacher is optional and only evaluated if given."""
    from ..core.checkpoints import load_checkpoint_model

    if teacher is None and needs_teacher:
        raise KDError("compare needs --teacher path/to/teacher.pt (a trained checkpoint) for its kd, builtin, sweep and "
                      "assistant runs; with --variants vanilla alone it may be left out")
    if teacher is not None:
        load_checkpoint_model(teacher, "teacher")
    if not Path(data).is_file():
        raise KDError(f"dataset YAML '{data}' not found: pass a local data.yaml")
    if student.endswith(".pt"):
        load_checkpoint_model(student, "student")


if __name__ == "__main__":
    raise SystemExit(_worker(sys.argv[1]))
