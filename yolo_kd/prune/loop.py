"""Iterative prune -> distillation fine-tune schedule, with a per-step report (table, JSON, PNG).

Step ``k`` of ``steps`` prunes the previous step's best model down to ``1 - (1 - target_flops) * k / steps`` of the
*original* GFLOPs, measures mAP50-95 right after pruning, fine-tunes with :func:`yolo_kd.train` (distilling from the
teacher, or from the unpruned model itself when no teacher is given) and keeps that run's ``best.pt``. ONNX CPU
latencies of all models are measured at the end, interleaved round by round, so they compare side by side.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..core.errors import KDError
from ..core.files import atomic_path, write_json_atomic, write_text_atomic
from .pruner import IMPORTANCES, check_prunable, count_params, model_gflops, prune_model, save_pruned_checkpoint

#: fine-tuning settings that differ from Ultralytics' defaults (any can be overridden): no warm-up, because the
#: pruned model is already trained and a warm-up's high bias learning rate undoes what pruning kept
FINETUNE_DEFAULTS = {"warmup_epochs": 0}

__all__ = ["StepResult", "PruneResult", "prune_iteratively", "markdown_table", "plot_map_vs_gflops"]


@dataclass
class StepResult:
    """One row of the report; step 0 is the unpruned model. mAPs are fractions (0-1), latencies ms by imgsz."""

    step: int
    target_flops: float  # fraction of the original GFLOPs this step aimed at
    params: int
    gflops: float  # at `flops_imgsz`, as Ultralytics' model.info() counts them
    map_pruned: float | None  # mAP50-95 right after pruning (None for step 0)
    map_finetuned: float  # mAP50-95 of the step's best.pt (step 0: the unpruned model)
    weights: str
    pruned_weights: str | None = None
    latency_ms: dict[int, float] = field(default_factory=dict)


@dataclass
class PruneResult:
    """Everything a pruning run produced."""

    steps: list[StepResult]
    best: Path  # final pruned checkpoint (stock Ultralytics format)
    save_dir: Path
    json: Path
    png: Path | None
    table: str
    stopped_early: bool = False
    control: StepResult | None = None  # unpruned model fine-tuned with the same total epochs (``control=True``)


def _val_map(weights: str | Path, data: str, imgsz: int, batch: int, device: Any, save_dir: Path) -> float:
    """mAP50-95 of a checkpoint on the dataset's val split (stock Ultralytics validator)."""
    from ultralytics import YOLO

    metrics = YOLO(str(weights)).val(
        data=data, imgsz=imgsz, batch=batch, device=device, workers=0, plots=False, verbose=False,
        project=str(save_dir), name="val", exist_ok=True,
    )
    return float(metrics.box.map)


def _export_onnx(weights: Path, imgsz: int) -> Path:
    """FP32 ONNX export of ``weights`` at a fixed ``imgsz`` to ``<stem>_<imgsz>.onnx`` beside it."""
    from ultralytics import YOLO

    target = weights.with_name(f"{weights.stem}_{imgsz}.onnx")
    out = Path(YOLO(str(weights)).export(format="onnx", imgsz=imgsz, dynamic=False, verbose=False))
    with atomic_path(target) as tmp:
        shutil.copyfile(out, tmp)
    out.unlink(missing_ok=True)
    return target


def onnx_latencies(paths: Sequence[Path], imgsz: int, threads: int = 2, seconds: float = 6.0, rounds: int = 3) -> list[float]:
    """Median batch-1 FP32 CPU latency (ms) of each ONNX model in onnxruntime with ``threads`` intra-op threads.

    Models take turns in ``rounds`` slices of ``seconds / rounds`` each, so a busy neighbour on a shared CPU slows
    all of them alike; each model's result is the median of its slices' medians.
    """
    import numpy as np
    import onnxruntime as ort

    from ..core.timing import time_callable

    def session(path: Path):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.log_severity_level = 3
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    x = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    calls = [(lambda s=session(p): s.run(None, {s.get_inputs()[0].name: x})) for p in paths]
    medians: list[list[float]] = [[] for _ in paths]
    for _ in range(rounds):
        for i, call in enumerate(calls):
            medians[i].append(time_callable(call, warmup=3, min_runs=5, min_seconds=seconds / rounds)["median"])
    return [float(np.median(m)) for m in medians]


def markdown_table(steps: Sequence[StepResult], control: StepResult | None = None) -> str:
    """Markdown table: params, GFLOPs, mAP50-95 before/after fine-tuning, ONNX latency (and ratios to step 0).

    ``control`` (the unpruned model fine-tuned with the same epochs) is appended as a last row if given.
    """
    base = steps[0]
    sizes = sorted({s for r in steps for s in r.latency_ms})
    head = ["step", "params", "GFLOPs", "GFLOPs ratio", "mAP50-95 pruned", "mAP50-95 fine-tuned"]
    head += [f"ONNX ms @{s} (ratio)" for s in sizes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in [*steps, *([control] if control else [])]:
        cells = [
            "0 (unpruned)" if r.step == 0 else "unpruned + same fine-tuning" if r.step < 0 else str(r.step),
            f"{r.params / 1e6:.3f}M",
            f"{r.gflops:.2f}",
            f"{r.gflops / base.gflops:.2f}",
            "-" if r.map_pruned is None else f"{100 * r.map_pruned:.1f}",
            f"{100 * r.map_finetuned:.1f}",
        ]
        for s in sizes:
            ms, b = r.latency_ms.get(s), base.latency_ms.get(s)
            cells.append("-" if ms is None else f"{ms:.1f} ({ms / b:.2f}x)" if b else f"{ms:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_map_vs_gflops(steps: Sequence[StepResult], path: Path, control: StepResult | None = None) -> Path:
    """PNG of mAP50-95 (%) against GFLOPs: after pruning (hollow) and after fine-tuning (filled), one point per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    g = [r.gflops for r in steps]
    ax.plot(g, [100 * r.map_finetuned for r in steps], "o-", label="fine-tuned (best.pt of each step)")
    pr = [(r.gflops, 100 * r.map_pruned) for r in steps if r.map_pruned is not None]
    if pr:
        ax.plot(*zip(*pr), "o", mfc="none", label="right after pruning")
    if control:
        ax.plot([control.gflops], [100 * control.map_finetuned], "*", ms=12, label="unpruned + same fine-tuning")
    for r in steps:
        ax.annotate(str(r.step), (r.gflops, 100 * r.map_finetuned), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("GFLOPs")
    ax.set_ylabel("mAP50-95 (%)")
    ax.set_title("Pruning steps: accuracy vs compute")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _check_args(target_flops: float, steps: int, epochs_per_step: int, importance: str, round_to: int) -> None:
    if not 0.0 < target_flops < 1.0:
        raise KDError(
            f"--target-flops {target_flops} is out of range: pass the fraction of GFLOPs to keep, between 0 and 1 (0.5 halves them)"
        )
    if not isinstance(steps, int) or steps < 1:
        raise KDError(f"--steps {steps} is invalid: pass 1 or more pruning steps (e.g. 4)")
    if not isinstance(epochs_per_step, int) or epochs_per_step < 0:
        raise KDError(f"--epochs-per-step {epochs_per_step} is invalid: pass 0 (no fine-tuning) or more epochs")
    if importance not in IMPORTANCES:
        raise KDError(f"unknown --importance '{importance}': choose one of {', '.join(IMPORTANCES)}")
    if not isinstance(round_to, int) or round_to < 1:
        raise KDError(f"--round-to {round_to} is invalid: pass a positive integer such as 8 (1 disables rounding)")


def prune_iteratively(
    model_path: str | Path,
    data: str | Path,
    teacher: str | Path | None = None,
    target_flops: float = 0.5,
    steps: int = 4,
    epochs_per_step: int = 10,
    importance: str = "l2",
    round_to: int = 8,
    ignore: Sequence[int | str] = (),
    imgsz: int = 640,
    batch: int = 16,
    device: Any = None,
    kd_cfg: str | Path | dict | None = None,
    project: str | Path = "runs/prune",
    name: str = "exp",
    latency_imgsz: Sequence[int] | None = None,
    latency_seconds: float = 6.0,
    threads: int = 2,
    flops_imgsz: int = 640,
    max_map_drop: float | None = None,
    plot: bool = True,
    control: bool = False,
    distill: bool = True,
    final_epochs: int | None = None,
    **train_overrides: Any,
) -> PruneResult:
    """Prune ``model_path`` to ``target_flops`` of its GFLOPs in ``steps`` steps, fine-tuning after each.

    Args:
        model_path: trained detection ``.pt`` (e.g. a distilled student).
        data: dataset YAML (or ``synthetic[:preset]``), used for fine-tuning and validation.
        teacher: ``.pt`` to distil from while fine-tuning; None distils from the unpruned ``model_path`` itself.
        target_flops: fraction of the original GFLOPs to keep, in (0, 1).
        steps: pruning steps (>= 1); epochs_per_step: fine-tuning epochs after each step (0 = none).
        importance, round_to, ignore: see :func:`yolo_kd.prune.pruner.prune_by_ratio`.
        imgsz, batch, device: fine-tuning and validation settings; kd_cfg: distillation settings.
        project, name: outputs go to ``<project>/<name>``: ``stepK/`` runs, ``weights/best.pt``, JSON, PNG.
        latency_imgsz: ONNX sizes to time (default: ``imgsz``; empty list: no latency); latency_seconds per model and
            size; threads: onnxruntime intra-op threads.
        flops_imgsz: image side for GFLOPs (640 matches Ultralytics' model summaries).
        max_map_drop: stop pruning further once a step's fine-tuned mAP50-95 is more than this (fraction, 0.01 = one
            point) below the unpruned model's; the last step within budget becomes the result.
        final_epochs: fine-tuning epochs after the last step (default ``epochs_per_step``): short fine-tunes between
            steps plus one longer final recovery is the cheapest way to recover accuracy.
        distill: False fine-tunes without any teacher (plain detection loss), e.g. when the unpruned model is weak.
        plot: write the PNG; control: also fine-tune the *unpruned* model for as many epochs as all steps together,
            with the same teacher and settings: the fair reference for the pruned model's mAP.
        **train_overrides: passed to :func:`yolo_kd.train` (lr0, optimizer, workers, seed, ...).
    Returns:
        :class:`PruneResult`; ``best`` loads in stock ``ultralytics.YOLO``.
    """
    from ..api import train
    from ..core.checkpoints import load_checkpoint_model
    from ..data.datasets import resolve_data

    _check_args(target_flops, steps, epochs_per_step, importance, round_to)
    if final_epochs is not None and (not isinstance(final_epochs, int) or final_epochs < 0):
        raise KDError(f"--final-epochs {final_epochs} is invalid: pass 0 or more epochs for the last step's fine-tuning")
    if not distill and teacher:
        raise KDError("--teacher and --no-distill contradict each other: drop one of them")
    for role, path in (("model", model_path), ("teacher", teacher)):
        if path and not Path(path).is_file():
            raise KDError(f"{role} checkpoint '{path}' not found: pass the local path of a trained detection .pt")
    data = resolve_data(data)
    model, ckpt = load_checkpoint_model(model_path, "model")
    check_prunable(model, f"model checkpoint '{model_path}'")
    if teacher:
        load_checkpoint_model(teacher, "teacher")  # fail now, not after the first pruning step
    save_dir = Path(project).resolve() / name
    save_dir.mkdir(parents=True, exist_ok=True)
    teacher = None if not distill else str(teacher) if teacher else str(Path(model_path).resolve())
    train_args = dict(ckpt.get("train_args") or {})
    sizes = [imgsz] if latency_imgsz is None else list(latency_imgsz)
    ft_args = {"epochs": epochs_per_step, "imgsz": imgsz, "batch": batch, "device": device, "plots": False,
               "project": str(save_dir), "exist_ok": True, **FINETUNE_DEFAULTS, **train_overrides}

    base = StepResult(0, 1.0, count_params(model), model_gflops(model, flops_imgsz), None,
                      _val_map(model_path, data, imgsz, batch, device, save_dir), str(Path(model_path).resolve()))
    rows, current, final_step, stopped = [base], model, 0, False
    for k in range(1, steps + 1):
        goal = 1.0 - (1.0 - target_flops) * k / steps
        step_dir = save_dir / f"step{k}"
        keep = goal * base.gflops / model_gflops(current, flops_imgsz)  # fraction of the *current* model to keep
        pruned = prune_model(current, keep, importance, round_to, ignore, imgsz=flops_imgsz) if keep < 1 else current
        pruned_path = save_pruned_checkpoint(pruned, step_dir / "pruned.pt", train_args, {"step": k, "source": str(model_path)})
        map_pruned = _val_map(pruned_path, data, imgsz, batch, device, step_dir)
        best_path = pruned_path
        epochs = final_epochs if k == steps and final_epochs is not None else epochs_per_step
        if epochs > 0:
            run = {**ft_args, "epochs": epochs, "name": f"step{k}"}
            trainer = train(pruned, teacher=teacher, data=data, kd_cfg=kd_cfg, **run)
            if Path(trainer.best).is_file():
                best_path = Path(trainer.best)
        best_model, _ = load_checkpoint_model(best_path, "fine-tuned model")
        row = StepResult(k, goal, count_params(best_model), model_gflops(best_model, flops_imgsz), map_pruned,
                         _val_map(best_path, data, imgsz, batch, device, step_dir), str(best_path), str(pruned_path))
        rows.append(row)
        too_far = max_map_drop is not None and base.map_finetuned - row.map_finetuned > max_map_drop
        if not too_far or k == 1:  # a step over the mAP budget is reported but not kept (unless it is the first)
            current, final_step = best_model, k
        if too_far:
            stopped = True
            break

    ctrl = None
    total_epochs = (steps - 1) * epochs_per_step + (epochs_per_step if final_epochs is None else final_epochs)
    if control and total_epochs > 0:
        trainer = train(str(model_path), teacher=teacher, data=data, kd_cfg=kd_cfg,
                        **{**ft_args, "epochs": total_epochs, "name": "control"})
        ctrl_model, _ = load_checkpoint_model(trainer.best, "control model")
        ctrl = StepResult(-1, 1.0, count_params(ctrl_model), model_gflops(ctrl_model, flops_imgsz), None,
                          _val_map(trainer.best, data, imgsz, batch, device, save_dir / "control"), str(trainer.best))

    # final checkpoint: the last accepted step, re-saved as a clean stock checkpoint
    final = save_dir / "weights" / "best.pt"
    save_pruned_checkpoint(current, final, train_args, {"step": final_step, "source": str(model_path),
                                                        "target_flops": target_flops, "importance": importance})
    _measure_latencies(rows, save_dir, sizes, threads, latency_seconds)
    table = markdown_table(rows, ctrl)
    json_path = save_dir / "prune_results.json"
    write_json_atomic(json_path, {
        "model": str(Path(model_path).resolve()), "teacher": teacher, "distill": distill, "data": data,
        "target_flops": target_flops, "steps": steps, "epochs_per_step": epochs_per_step, "final_epochs": final_epochs,
        "importance": importance, "round_to": round_to, "imgsz": imgsz, "flops_imgsz": flops_imgsz, "threads": threads, "stopped_early": stopped,
        "final_step": final_step, "best": str(final), "results": [asdict(r) for r in rows],
        "control": asdict(ctrl) if ctrl else None,
    })
    write_text_atomic(save_dir / "prune_results.md", table + "\n")
    png = plot_map_vs_gflops(rows, save_dir / "map_vs_gflops.png", ctrl) if plot else None
    return PruneResult(rows, final, save_dir, json_path, png, table, stopped, ctrl)


def _measure_latencies(rows: list[StepResult], save_dir: Path, sizes: Sequence[int], threads: int, seconds: float) -> None:
    """Export every row's checkpoint to FP32 ONNX at each size and time them side by side (fills ``latency_ms``)."""
    paths = [_copy_baseline(Path(rows[0].weights), save_dir)] + [Path(r.weights) for r in rows[1:]]
    for s in sizes:
        onnx = [_export_onnx(p, s) for p in paths]
        for r, ms in zip(rows, onnx_latencies(onnx, s, threads, seconds)):
            r.latency_ms[s] = ms


def _copy_baseline(path: Path, save_dir: Path) -> Path:
    """Copy the unpruned checkpoint into the run folder so its ONNX export lands there, not beside the user's file."""
    dst = save_dir / "unpruned" / "unpruned.pt"
    if not dst.exists():
        with atomic_path(dst) as tmp:
            shutil.copyfile(path, tmp)
    return dst
