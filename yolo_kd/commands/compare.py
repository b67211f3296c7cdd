"""``tools/compare.py`` / ``yolo-kd compare``: vanilla vs yolo_kd vs Ultralytics built-in distillation.

    python tools/compare.py --teacher teacher.pt --student yolo11n.yaml --data my.yaml --epochs 50 --seeds 0 1 2
    python tools/compare.py --runs runs/compare/*-seed* --data my.yaml --teacher teacher.pt   # read finished runs
    python tools/compare.py --teacher teacher.pt --data my.yaml --sweep kd_temperature=1,2,4,8   # + --sweep kd_cls=0.5,1: a grid

Every option is also a ``key=value`` (``model=`` is the student, ``seeds=0,1,2``, ``kd_cls=0.5``); other Ultralytics
training arguments apply to every run. Finished runs in ``--project`` are reused, so the folder does not increment.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import yaml

from ..evidence import compare as cmp
from ..evidence.report import sweep_plot
from ..evidence.sweep import parse_sweep, sweep_arms, sweep_rows, sweep_table
from ..data.datasets import resolve_data
from ..core.errors import KDError
from ..core.files import write_json_atomic, write_text_atomic
from ..distill.config import config_keys, load_kd_config
from .args import ArgParser, parse_args

#: Ultralytics arguments this tool sets itself, and why
RESERVED = {
    "name": "each run is named <variant>-seed<N> inside --project",
    "seed": "use --seeds (seeds=0,1,2)",
    "exist_ok": "finished runs in --project are reused; pass another --project for a fresh comparison",
}


def build_parser() -> ArgParser:
    p = ArgParser(prog="compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", help="trained teacher .pt (used by kd and builtin, and evaluated)")
    p.add_argument("--student", "--model", dest="student", default="yolo11n.yaml", help="student .yaml (from scratch) or .pt; model= is the same")
    p.add_argument("--data", required=True, help="dataset YAML or synthetic[:preset]")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ablate", action="store_true", help="also train each distillation term alone")
    p.add_argument("--sweep", action="append", metavar="KD_KEY=V1,V2", help="one kd arm per value of a distillation "
                   "setting, e.g. kd_temperature=1,2,4,8 (repeat for a two-key grid); trains vanilla + the arms unless "
                   "--variants says otherwise; adds a sweep table and sweep.png")
    p.add_argument("--kd-cfg", help="distillation YAML for the kd runs (default cfg/kd_default.yaml)")
    for key in config_keys():
        p.add_argument(f"--kd-{key.replace('_', '-')}", dest=f"kd_{key}", default=None, metavar="V", help=f"distillation '{key}' of the kd runs")
    p.add_argument("--self-distill", action="store_true", help="also train a kd-self arm: online self-distillation (teacher self)")
    p.add_argument("--assistant", metavar="MODEL", help="also train a kd-assistant arm: the teacher distilled into MODEL (.yaml "
                   "or .pt), then MODEL into the student")
    p.add_argument("--project", default="runs/compare", help="folder for the runs and the report")
    p.add_argument("--runs", nargs="+", help="read these finished run folders instead of training")
    p.add_argument("--variants", nargs="+", default=list(cmp.VARIANTS), choices=list(cmp.VARIANTS),
                   help="which of vanilla, kd, builtin to train (default: all three)")
    p.add_argument("--equal-time", action="store_true",
                   help="also train vanilla for the epochs that fill each seed's distilled run's training time (vanilla-eqtime)")
    p.add_argument("--jobs", type=int, default=1, help="train this many runs side by side, each in its own process "
                   "with its output in <run>/train.log (CPU: Ultralytics trains on cores-1 threads, so 2 jobs use a 2-core "
                   "machine fully; the runs' times then include the sharing, so --equal-time needs --time-ratio)")
    p.add_argument("--time-ratio", type=float, help="with --equal-time: distilled/vanilla time ratio to use instead of the "
                   "runs' measured times (e.g. from benchmarks/step_time.py on a machine whose load varied)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args, extra, given = parse_args(build_parser(), argv, passthrough=True, reserved=RESERVED)  # extra: applied to every run
    arms = sweep_arms(parse_sweep(args.sweep)) if args.sweep else {}
    if arms and "variants" not in given:
        args.variants = ["vanilla"]  # a sweep's reference; name others with --variants
    data = resolve_data(args.data)
    out = Path(args.project).resolve()
    if args.runs:
        dirs = [Path(d) for d in args.runs]
        missing = [str(d) for d in dirs if not (d / "results.csv").exists() and not (d / "run_result.json").exists()]
        if missing:
            raise KDError(f"not a finished run folder: {', '.join(missing)} (expected results.csv inside)")
        if args.teacher:
            cmp.check_inputs(args.student, args.teacher, data)
    else:
        if args.jobs < 1:
            raise KDError(f"--jobs {args.jobs}: give 1 (one run at a time) or more")
        if args.equal_time and args.jobs > 1 and args.time_ratio is None:
            raise KDError("--equal-time with --jobs > 1: runs sharing the machine time each other's load; pass --time-ratio "
                          "(e.g. from benchmarks/step_time.py) or use --jobs 1")
        needs_teacher = any(v != "vanilla" for v in args.variants) or bool(arms) or bool(args.assistant)
        cmp.check_inputs(args.student, args.teacher, data, needs_teacher)
        kd_cfg = _kd_cfg(args, out)
        teacher = str(Path(args.teacher).resolve()) if args.teacher else None
        train_args = {"epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch, "device": args.device, **extra}
        specs = cmp.plan_runs(args.student, teacher, data, args.seeds, str(out), train_args, args.ablate, kd_cfg,
                              args.variants, arms)
        specs = with_chain_arms(specs, args.seeds, teacher, args.self_distill, args.assistant)
        _train_all(specs, args.jobs)
        if args.equal_time:
            specs += _equal_time_runs(specs, args.time_ratio, args.jobs)
        dirs = [s.run_dir for s in specs]
    results = [cmp.collect_run(d, data, args.imgsz, args.batch, args.device) for d in dirs]
    teacher = cmp.evaluate(args.teacher, data, args.imgsz, args.batch, args.device) if args.teacher else None
    rows = cmp.summarize(results, teacher)
    table = cmp.markdown_table(rows, teacher)
    plots = cmp.plot(results, rows, teacher, out)
    if arms:
        swept = sweep_rows(rows, arms)
        vanilla = next((r for r in rows if r["run"] == "vanilla"), None)
        table += "\n" + sweep_table(swept, vanilla, teacher)
        plots += [p for p in [sweep_plot(swept, vanilla, teacher, out)] if p is not None]
    report = {"data": data, "teacher": teacher, "summary": rows, "runs": [r.__dict__ for r in results], "plots": [str(p) for p in plots]}
    if arms:
        report["sweep"] = [{"run": r["run"], **r["settings"], "map": r["map"], "map_std": r["map_std"], "seeds": r["seeds"]} for r in swept]
    write_json_atomic(out / "compare.json", report)
    write_text_atomic(out / "compare.md", table)
    print("\n" + table)
    print(f"report: {out / 'compare.md'}, {out / 'compare.json'}\nplots:  {', '.join(map(str, plots))}")
    return 0


def with_chain_arms(specs: list[cmp.RunSpec], seeds: list[int], teacher: str | None, self_distill: bool, assistant: str | None) -> list[cmp.RunSpec]:
    """``specs`` plus, per seed, the kd-self (teacher self) and kd-assistant (teacher -> assistant -> student) arms, seed-major."""
    if not (self_distill or assistant):
        return specs
    if assistant:
        from ..api import _check_student

        try:
            _check_student(assistant)
        except KDError as e:
            raise KDError(f"assistant: {e}") from None
    base = specs[0]
    extra = []
    for seed in seeds:
        common = dict(seed=seed, student=base.student, data=base.data, project=base.project, train_args=dict(base.train_args), kd_cfg=base.kd_cfg)
        if self_distill:
            extra.append(cmp.RunSpec("kd-self", teacher="self", **common))
        if assistant:
            extra.append(cmp.RunSpec("kd-assistant", teacher=teacher, assistant=str(assistant), **common))
    return sorted(specs + extra, key=lambda s: seeds.index(s.seed))


def _finished(spec: cmp.RunSpec) -> bool:
    """Whether ``spec`` already finished in its folder. KDError if that run was trained with other settings, which
    reusing it would silently report as this one (e.g. ``epochs=8`` asked, an 8-less earlier run found)."""
    done = spec.run_dir / "run_result.json"
    if not (done.exists() and json.loads(done.read_text())["status"] == "ok" and (spec.run_dir / "weights" / "best.pt").exists()):
        return False
    saved_file = spec.run_dir / "run_spec.json"
    if saved_file.exists():
        saved, now = json.loads(saved_file.read_text()), json.loads(json.dumps(asdict(spec)))
        changed = sorted(k for k in saved.keys() & now.keys() if saved[k] != now[k])
        if changed:
            diff = "; ".join(_difference(k, saved[k], now[k]) for k in changed)
            raise KDError(f"{spec.run_dir} finished with other settings ({diff}): pass another --project, or delete that run folder")
    return True


def _difference(key: str, old, new) -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        return ", ".join(f"{key}.{k} was {old.get(k)!r}, now {new.get(k)!r}" for k in keys)
    return f"{key} was {old!r}, now {new!r}"


def _train_all(specs: list[cmp.RunSpec], jobs: int = 1) -> None:
    """Train each spec in its own process, ``jobs`` at a time; finished runs are reused."""
    todo = []
    for i, spec in enumerate(specs, 1):
        if _finished(spec):
            print(f"[{i}/{len(specs)}] {spec.name}: finished earlier, reusing {spec.run_dir}")
        else:
            todo.append((i, spec))
    if jobs == 1:
        for i, spec in todo:
            print(f"\n[{i}/{len(specs)}] training {spec.name} ...")
            cmp.run_one(spec)
        return
    todo.sort(key=lambda item: item[1].teacher is None)  # runs with a teacher take longer: start them first
    running: list[tuple[int, cmp.RunSpec, subprocess.Popen]] = []
    try:
        while todo or running:
            while todo and len(running) < jobs:
                i, spec = todo.pop(0)
                log = spec.run_dir / "train.log"
                print(f"[{i}/{len(specs)}] training {spec.name} (side by side, {jobs} at a time; progress in {log}) ...", flush=True)
                running.append((i, spec, cmp.start_run(spec, log)))
            time.sleep(1.0)
            for item in [r for r in running if r[2].poll() is not None]:
                running.remove(item)
                i, spec, _ = item
                print(f"[{i}/{len(specs)}] {spec.name}: {'finished' if _finished(spec) else 'FAILED (see its train.log)'}", flush=True)
    finally:  # Ctrl-C: stop the runs started here (their last.pt lets a new call resume them)
        for _, _, proc in running:
            proc.terminate()


def _equal_time_runs(specs: list[cmp.RunSpec], time_ratio: float | None, jobs: int = 1) -> list[cmp.RunSpec]:
    """Per seed, a vanilla run given the epochs that fill the distilled run's training time; trained here."""
    extra = []
    for spec in specs:
        if spec.variant != "kd":
            continue
        vanilla = next(s for s in specs if s.variant == "vanilla" and s.seed == spec.seed)
        if not (_finished(spec) and _finished(vanilla)):
            print(f"{cmp.EQUAL_TIME}-seed{spec.seed}: skipped, the vanilla or kd run of this seed failed")
            continue
        epochs, ratio = cmp.equal_time_epochs(vanilla.run_dir, spec.run_dir, time_ratio)
        print(f"{cmp.EQUAL_TIME}-seed{spec.seed}: {epochs} epochs (distilled/vanilla time {ratio:.2f})")
        extra.append(cmp.RunSpec(cmp.EQUAL_TIME, spec.seed, vanilla.student, vanilla.data, None, vanilla.project,
                                 {**vanilla.train_args, "epochs": epochs}))
    _train_all(extra, jobs)
    return extra


def _kd_cfg(args, out: Path) -> str | None:
    """The kd runs' distillation YAML: --kd-cfg, or (with --kd-<key> settings) the merged settings written to ``out``."""
    kd = {k[3:]: v for k, v in vars(args).items() if k.startswith("kd_") and k != "kd_cfg" and v is not None}
    if not kd:
        return args.kd_cfg
    config = load_kd_config(args.kd_cfg, **kd)  # unknown keys and bad values: one line, before anything trains
    path = out / "kd_cfg.yaml"
    write_text_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
    return str(path)
