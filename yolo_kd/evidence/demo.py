"""The whole pipeline on generated data, end to end, in a few minutes: the README's first command.

Every stage runs the real tool (the same ``main`` as ``tools/*.py``) at its ordinary settings, only with a small
dataset, image size and schedule chosen so that a short CPU run learns (the ``demo`` preset of
:mod:`yolo_kd.data.synthetic`: 3 classes of large objects at 96 px, 30 optimizer steps per epoch):
generate data -> train a teacher -> compare vanilla and yolo_kd students over seeds -> prune the distilled student
-> export FP32 + INT8 ONNX -> validate every model of the chain the same way -> benchmark latency -> the chain table
and one line saying what the run shows and what it does not. The numbers are measurements of this short run.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from ..core import tables
from ..core.errors import KDError
from ..core.files import write_json_atomic, write_text_atomic

#: where the README discusses what a short run cannot show (equal compute, longer schedules)
BENCHMARK_LINK = "README.md#does-it-pay-for-its-compute"


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo; the defaults are the README's first command (see its "Set-up" section for the time)."""

    preset: str = "demo"
    imgsz: int = 96
    batch: int = 16
    teacher_model: str = "yolo11s.yaml"
    teacher_epochs: int = 35
    student_model: str = "yolo11n.yaml"
    student_epochs: int = 8  # 6 left yolo_kd behind vanilla (8.7 vs 9.7): the teacher needs a few epochs to pay
    seeds: str = "0,1"  # comma list; the students' spread over seeds is reported next to their difference
    variants: str = "vanilla,kd"  # add ",builtin" for Ultralytics' own distiller (the README benchmark compares it)
    prune_target: float = 0.6
    prune_steps: int = 1
    prune_epochs: int = 4  # 2 left the pruned student at 5.6 mAP50-95 (from 24.3), 4 at 25.4
    calib_images: int = 64
    latency_seconds: float = 1.0
    device: str = "cpu"
    threads: int = 2  # CPU threads of the teacher's training and of the latency benchmark (Ultralytics trains on cores-1)
    jobs: int = 2  # student runs trained side by side (each on cores-1 threads; 2 fill a 2-core machine)
    # nbs=16: one optimizer step per batch of 16 (Ultralytics' default nbs=64 would give a short run 4x fewer steps)
    nbs: int = 16
    warmup_epochs: float = 1.0

    def seed_list(self) -> list[int]:
        try:
            return [int(s) for s in self.seeds.replace(" ", ",").split(",") if s]
        except ValueError:
            raise KDError(f"seeds '{self.seeds}' is not a comma list of integers: write e.g. seeds=0,1") from None


@contextlib.contextmanager
def _stage(name: str, timings: dict[str, float]):
    """Print a banner for a stage and record its wall time in ``timings``."""
    print(f"\n{'=' * 24} demo: {name} {'=' * 24}", flush=True)
    t0 = time.time()
    yield
    timings[name] = time.time() - t0


def _mb(path: str | Path) -> float:
    return Path(path).stat().st_size / 1e6


def run_demo(out: str | Path = "demo_out", s: DemoSettings = DemoSettings()) -> dict[str, Any]:
    """Run every stage into ``out`` and return the summary (also written as summary.json / summary.md)."""
    from ultralytics import YOLO

    from ..commands import bench_latency, compare, export_int8, prune
    from ..core.checkpoints import export_copy
    from ..data.synthetic import make_shapes_dataset
    from ..quantize.report import onnx_map

    out, seeds = Path(out).resolve(), s.seed_list()
    variants = [v.strip() for v in s.variants.split(",") if v.strip()]
    if not seeds or "vanilla" not in variants or "kd" not in variants:
        raise KDError(f"the demo needs seeds and the vanilla and kd variants (got seeds='{s.seeds}', variants='{s.variants}')")
    t: dict[str, float] = {}
    common = ["--device", s.device, "workers=0", "plots=False", f"nbs={s.nbs}", f"warmup_epochs={s.warmup_epochs}"]

    with _stage("1/8 synthetic dataset", t):
        data = str(make_shapes_dataset(out / "data", s.preset))
    with _stage("2/8 teacher", t):
        teacher = out / "teacher" / "weights" / "best.pt"
        cached = teacher.exists()
        if cached:
            _check_cached_teacher(out / "teacher", s)
        if not cached:
            model = YOLO(s.teacher_model)
            model.add_callback("on_pretrain_routine_start", _cpu_threads(s.threads))
            model.train(
                data=data, epochs=s.teacher_epochs, imgsz=s.imgsz, batch=s.batch, device=s.device, workers=0,
                plots=False, seed=0, project=str(out), name="teacher", exist_ok=True, nbs=s.nbs, warmup_epochs=s.warmup_epochs,
                val=False,  # validated once, after its last epoch (best.pt = last.pt): 3-4% of its time saved
            )
    with _stage(f"3/8 compare {' vs '.join(variants)}, seeds {s.seeds}", t):
        compare.main(["--teacher", str(teacher), "--student", s.student_model, "--data", data, "--epochs", str(s.student_epochs),
                      "--imgsz", str(s.imgsz), "--batch", str(s.batch), "--seeds", *map(str, seeds), "--variants", *variants,
                      "--jobs", str(s.jobs), "--project", str(out / "compare"), *common])
    cmp = json.loads((out / "compare" / "compare.json").read_text())
    best = {v: out / "compare" / f"{v}-seed{seeds[0]}" / "weights" / "best.pt" for v in ("vanilla", "kd")}
    with _stage("4/8 prune the distilled student", t):
        prune.main(["--model", str(best["kd"]), "--teacher", str(teacher), "--data", data, "--target-flops", str(s.prune_target),
                    "--steps", str(s.prune_steps), "--epochs-per-step", str(s.prune_epochs), "--imgsz", str(s.imgsz),
                    "--batch", str(s.batch), "--project", str(out), "--name", "prune", "--exist-ok", "--latency-imgsz", str(s.imgsz),
                    "--latency-seconds", str(s.latency_seconds), "--threads", str(s.threads), "--flops-imgsz", str(s.imgsz), *common])
    pr = json.loads((out / "prune" / "prune_results.json").read_text())
    pruned = Path(pr["best"])
    with _stage("5/8 export FP32 + INT8 ONNX", t):
        export_int8.main(["--model", str(pruned), "--data", data, "--imgsz", str(s.imgsz), "--calib-images", str(s.calib_images),
                          "--out-dir", str(out / "export"), "--threads", str(s.threads), "--latency-seconds", str(s.latency_seconds),
                          "--device", s.device, "--backend", "onnxruntime", "--no-peer", "--no-map",  # mAP: stage 6, as the others
                          "--fp32-name", "pruned_fp32.onnx", "--int8-name", "pruned_int8.onnx"])
    ex = json.loads((out / "export" / f"{pruned.stem}_int8_report.json").read_text())
    fp32, int8 = Path(ex["export"]["fp32_onnx"]), Path(ex["export"]["int8_onnx"])
    with _stage("6/8 validate the chain the same way (.pt and ONNX: val split, imgsz, batch 1)", t):
        (out / "chain").mkdir(exist_ok=True)
        shutil.copyfile(best["kd"], out / "chain" / "distilled.pt")  # timed on torch beside its own ONNX export
        onnx = {"teacher": teacher, "vanilla": best["vanilla"], "distilled": best["kd"]}
        onnx = {k: export_copy(p, out / "chain" / f"{k}_fp32.onnx", format="onnx", imgsz=s.imgsz, dynamic=False)
                for k, p in onnx.items()}
        chain = [("teacher", teacher, onnx["teacher"]), ("vanilla", best["vanilla"], onnx["vanilla"]),
                 ("distilled (yolo_kd)", best["kd"], onnx["distilled"]), ("pruned", pruned, fp32), ("pruned INT8", None, int8)]
        maps = {str(p): onnx_map(p, data, s.imgsz, device=s.device)[1] for _, pt, o in chain for p in (pt, o) if p}
        gflops = {str(pt): _gflops(pt, s.imgsz) for _, pt, _ in chain if pt}
    with _stage("7/8 latency benchmark", t):
        maps[str(out / "chain" / "distilled.pt")] = maps[str(best["kd"])]  # the same file, under a name the plot can show
        timed = [onnx["teacher"], onnx["vanilla"], onnx["distilled"], fp32, int8, out / "chain" / "distilled.pt"]
        bench_latency.main([*map(str, timed), "--imgsz", str(s.imgsz), "--threads", str(s.threads), "--min-runs", "30", "--device", s.device,
                            "--backend", "onnxruntime",  # one runtime for every ONNX row, as the table says
                            "--min-seconds", str(s.latency_seconds), "--warmup", "5", "--out", str(out / "latency"),
                            *sum((["--map", f"{p}={maps[str(p)]}"] for p in timed), [])])
    lat = {str(Path(m["path"]).resolve()): m["total"]["median"] for m in json.loads((out / "latency" / "latency.json").read_text())["models"]}
    with _stage("8/8 summary", t):
        rows = [{"stage": name, "map": 100 * maps[str(o)], "map_pt": None if pt is None else 100 * maps[str(pt)],
                 "gflops": gflops[str(pt or pruned)], "latency_ms": lat.get(str(o.resolve())), "onnx_mb": _mb(o),
                 "model": str(o if pt is None else pt)} for name, pt, o in chain]
        summary = {"settings": asdict(s), "teacher_cached": cached, "rows": rows, "compare": cmp["summary"],
                   "pt_latency_ms": lat.get(str((out / "chain" / "distilled.pt").resolve())), "stage_seconds": t}
        summary["verdict"] = verdict(cmp["runs"], rows, s)
        pngs = ("compare/map_per_epoch.png", "compare/final_map.png", "prune/map_vs_gflops.png", "latency/latency_vs_map.png")
        summary["plots"] = [str(out / p) for p in pngs if (out / p).exists()]
        text = summary_text(summary)
        write_json_atomic(out / "summary.json", summary)
        write_text_atomic(out / "summary.md", text)
    print("\n" + text)
    print("plots:\n  " + "\n  ".join(summary["plots"]))
    print(f"summary: {out / 'summary.md'} (and summary.json)")
    return summary


def _check_cached_teacher(run: Path, s: DemoSettings) -> None:
    """KDError if the teacher of an earlier run (its args.yaml) was trained with other settings than ``s`` asks for."""
    import yaml

    if not (run / "args.yaml").exists():
        return
    args = yaml.safe_load((run / "args.yaml").read_text())
    want = {"model": s.teacher_model, "epochs": s.teacher_epochs, "imgsz": s.imgsz, "batch": s.batch, "nbs": s.nbs}
    changed = [f"{k} was {args.get(k)!r}, now {v!r}" for k, v in want.items() if args.get(k) != v]
    if changed:
        raise KDError(f"the teacher in {run} was trained with other settings ({'; '.join(changed)}): pass another --out, "
                      "or delete that folder to train it again")


def _cpu_threads(n: int):
    """Trainer callback: train on ``n`` CPU threads. Ultralytics sets cores-1 (one on a 2-core machine), which leaves
    a core idle when nothing else runs; 2 threads train a yolo11s step at 96 px 1.7x faster there."""

    def set_threads(trainer) -> None:
        if trainer.device.type == "cpu":
            import torch

            torch.set_num_threads(n)

    return set_threads


def _gflops(weights: Path, imgsz: int) -> float:
    from ..core.checkpoints import load_yolo
    from ..prune.pruner import model_gflops

    return model_gflops(load_yolo(weights, "model", purpose="the demo").model, imgsz)


def verdict(runs: list[dict], rows: list[dict], s: DemoSettings) -> str:
    """The one line: what this run shows (distilled vs vanilla against the seed spread, the chain) and what it does not.

    ``runs``: compare.json's per-run results (variant, seed, status, map as a fraction). "More than the seed spread"
    means every distilled seed beats every vanilla seed and the mean gain exceeds both arms' std over seeds.
    """
    per = {v: [100 * r["map"] for r in runs if r["variant"] == v and r["status"] == "ok"] for v in ("vanilla", "kd")}
    v, k = per["vanilla"], per["kd"]
    if not v or not k:
        return f"A student run failed (see compare/compare.md), so this run shows nothing about distillation; see {BENCHMARK_LINK}."
    std = lambda x: stdev(x) if len(x) > 1 else 0.0  # noqa: E731
    gain = mean(k) - mean(v)
    clear = len(k) > 1 and len(v) > 1 and min(k) > max(v) and gain > max(std(k), std(v))
    seeds = f"{len(k)} seeds" if len(k) > 1 else "1 seed, so no spread (pass seeds=0,1)"
    head = (f"Shows: after {s.student_epochs} epochs yolo_kd's student reached {mean(k):.1f} ± {std(k):.1f} mAP50-95 vs "
            f"vanilla {mean(v):.1f} ± {std(v):.1f} ({gain:+.1f} points; per seed {'/'.join(f'{x:.1f}' for x in k)} vs "
            f"{'/'.join(f'{x:.1f}' for x in v)}, {seeds}), " + ("more than the seed spread" if clear else "NOT more than the seed spread")
            + f", and the chain from the distilled student to pruned INT8 at {rows[-1]['map']:.1f} mAP50-95. ")
    return head + (f"Does not show: a full schedule or equal compute (the distilled run also costs the teacher's forward "
                   f"pass; Ultralytics' built-in distiller not run here): see {BENCHMARK_LINK}.")


def summary_text(summary: dict[str, Any]) -> str:
    """The chain table (mAP50-95 in points, GFLOPs, ONNX latency, ONNX size), stage times and the one-line verdict."""
    fmt = lambda v, f: "" if v is None else format(v, f)  # noqa: E731
    cells = [[r["stage"], fmt(r["map"], ".1f"), fmt(r["map_pt"], ".1f"), fmt(r["gflops"], ".2f"), fmt(r["latency_ms"], ".2f"),
              fmt(r["onnx_mb"], ".1f")] for r in summary["rows"]]
    imgsz = summary["settings"]["imgsz"]
    table = tables.markdown_table(["chain", "mAP50-95 (ONNX)", "mAP50-95 (.pt)", "GFLOPs", "ONNX latency ms", "ONNX MB"], cells)
    pt = summary.get("pt_latency_ms")
    note = (f"All at {imgsz} px, batch 1: mAP50-95 in points on the val split, .pt and ONNX validated the same way; "
            f"latency = median per frame on onnxruntime, {summary['settings']['threads']} threads"
            + (f" (the distilled .pt on torch: {pt:.2f} ms)" if pt else "") + ".")
    secs = summary.get("stage_seconds", {})
    times = f"stage times (s, total {sum(secs.values()):.0f}): " + ", ".join(f"{k.split(' ', 1)[1].split(' (')[0]}: {v:.0f}" for k, v in secs.items())
    if summary.get("teacher_cached"):
        times += " (teacher reused from an earlier run)"
    return f"{table}\n\n{note}\n{times}\n\n{summary['verdict']}\n"
