"""Iterative prune -> distillation fine-tune schedule, with a per-step report (table, JSON, PNG).

Step ``k`` of ``steps`` prunes the previous step's best model down to ``1 - (1 - target_flops) * k / steps`` of the
*original* GFLOPs, measures mAP50-95 right after pruning, fine-tunes with :func:`yolo_kd.train` (distilling from the
teacher, or from the unpruned model itself when no teacher is given) and keeps that run's ``best.pt``. ONNX CPU
latencies of all models are measured at the end, interleaved round by round, so they compare side by side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from ..core.checkpoints import load_checkpoint_model, load_yolo
from ..core.errors import KDError
from ..core.files import write_json_atomic, write_text_atomic
from ..distill.schedule import fine_tune_settings
from .fade import ChannelFade
from .pruner import (check_prunable, check_prune_args, count_params, model_gflops, prune_model, save_pruned_checkpoint,
                     zeroed_channels)
from .report import StepResult, markdown_table, measure_latencies, plot_map_vs_gflops

#: fine-tuning settings that differ from Ultralytics' defaults (any can be overridden): no warm-up, because the
#: pruned model is already trained and a warm-up's high bias learning rate undoes what pruning kept
FINETUNE_DEFAULTS = {"warmup_epochs": 0}

__all__ = ["StepResult", "PruneResult", "prune_iteratively", "markdown_table", "plot_map_vs_gflops"]


def step_close_mosaic(step: int, steps: int, close_mosaic: int) -> int:
    """``close_mosaic`` for the fine-tuning run after pruning step ``step`` of ``steps``.

    The fine-tunes of all steps together are one training schedule split by the pruning steps, so mosaic closes only
    in the last ``close_mosaic`` epochs of the *last* step, as in one Ultralytics run. Each step is its own
    Ultralytics run, which closes mosaic in its own last ``close_mosaic`` epochs: a step shorter than that (the usual
    10 epochs against Ultralytics' ``close_mosaic=10``) would fine-tune every step without mosaic. A run that
    ``max_map_drop`` stops early ends on a step that kept mosaic on throughout.
    """
    return close_mosaic if step == steps else 0


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
    metrics = load_yolo(weights, "model").val(
        data=data, imgsz=imgsz, batch=batch, device=device, workers=0, plots=False, verbose=False,
        project=str(save_dir), name="val", exist_ok=True,
    )
    return float(metrics.box.map)


def _check_loop_args(steps: int, epochs_per_step: int, final_epochs: int | None, fade: float = 0.0,
                     allocation: str = "uniform") -> None:
    """The loop's own settings (the pruning settings are :func:`check_prune_args`')."""
    if not isinstance(fade, (int, float)) or not 0.0 <= fade <= 1.0:
        raise KDError(f"--fade {fade} is out of range: pass the share of each step's epochs over which its channels fade, "
                      "in (0, 1], or 0 to cut first and fine-tune after")
    if fade > 0 and allocation != "uniform":
        raise KDError(f"--fade works with --allocation uniform only (got {allocation}): drop one of them")
    if not isinstance(steps, int) or steps < 1:
        raise KDError(f"--steps {steps} is invalid: pass 1 or more pruning steps (e.g. 4)")
    if not isinstance(epochs_per_step, int) or epochs_per_step < 0:
        raise KDError(f"--epochs-per-step {epochs_per_step} is invalid: pass 0 (no fine-tuning) or more epochs")
    if final_epochs is not None and (not isinstance(final_epochs, int) or final_epochs < 0):
        raise KDError(f"--final-epochs {final_epochs} is invalid: pass 0 or more epochs for the last step's fine-tuning")


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
    allocation: str = "uniform",
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
    fade: float = 0.0,
    **train_overrides: Any,
) -> PruneResult:
    """Prune ``model_path`` to ``target_flops`` of its GFLOPs in ``steps`` steps, fine-tuning after each.

    Args:
        model_path: trained detection ``.pt`` (e.g. a distilled student).
        data: dataset YAML (or ``synthetic[:preset]``), used for fine-tuning and validation.
        teacher: ``.pt`` to distil from while fine-tuning; None distils from the unpruned ``model_path`` itself.
        target_flops: fraction of the original GFLOPs to keep, in (0, 1).
        steps: pruning steps (>= 1); epochs_per_step: fine-tuning epochs after each step (0 = none).
        importance, round_to, ignore: see :func:`yolo_kd.prune.pruner.prune_by_ratio`; allocation: see
            :func:`yolo_kd.prune.pruner.prune_model`.
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
        fade: 0 cuts each step's channels first and fine-tunes after. A share in (0, 1] instead trains each step on the
            uncut model while the channels the step removes fade out over that share of its epochs
            (:class:`~yolo_kd.prune.fade.ChannelFade`), then cuts them, exactly (``allocation="uniform"`` only). The
            row's "pruned" mAP is then that of the step's start with its channels silenced (what a plain cut leaves).
        plot: write the PNG; control: also fine-tune the *unpruned* model for as many epochs as all steps together,
            with the same teacher and settings: the fair reference for the pruned model's mAP.
        **train_overrides: passed to :func:`yolo_kd.train` (lr0, optimizer, workers, seed, ...).
    Returns:
        :class:`PruneResult`; ``best`` loads in stock ``ultralytics.YOLO``.
    """
    from ultralytics.cfg import DEFAULT_CFG

    from ..api import train
    from ..data.datasets import resolve_data

    check_prune_args(target_flops, None, round_to, importance, allocation)
    _check_loop_args(steps, epochs_per_step, final_epochs, fade, allocation)
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
    close_mosaic = int(train_overrides.pop("close_mosaic", DEFAULT_CFG.close_mosaic) or 0)
    ft_args = {"epochs": epochs_per_step, "imgsz": imgsz, "batch": batch, "device": device, "plots": False,
               "project": str(save_dir), "exist_ok": True, **FINETUNE_DEFAULTS, **train_overrides}
    ft_args.update(fine_tune_settings(kd_cfg, ft_args))

    base = StepResult(0, 1.0, count_params(model), model_gflops(model, flops_imgsz), None,
                      _val_map(model_path, data, imgsz, batch, device, save_dir), str(Path(model_path).resolve()))
    rows, current, final_step, stopped = [base], model, 0, False
    for k in range(1, steps + 1):
        goal = 1.0 - (1.0 - target_flops) * k / steps
        step_dir = save_dir / f"step{k}"
        keep = goal * base.gflops / model_gflops(current, flops_imgsz)  # fraction of the *current* model to keep
        epochs = final_epochs if k == steps and final_epochs is not None else epochs_per_step
        run = {**ft_args, "epochs": epochs, "name": f"step{k}", "close_mosaic": step_close_mosaic(k, steps, close_mosaic)}
        meta = {"step": k, "source": str(model_path)}
        if fade > 0 and epochs > 0 and keep < 1:  # fade the step's channels out while training, then cut them
            silenced = prune_model(current, keep, importance, round_to, ignore, imgsz=flops_imgsz, zero=True)
            silenced_path = save_pruned_checkpoint(silenced, step_dir / "silenced.pt", train_args, meta)
            map_pruned = _val_map(silenced_path, data, imgsz, batch, device, step_dir)
            fader = ChannelFade.of(current, zeroed_channels(silenced), fade)
            trainer = train(current, teacher=teacher, data=data, kd_cfg=kd_cfg, callbacks={"on_train_batch_end": [fader]}, **run)
            faded, _ = load_checkpoint_model(trainer.last, "faded model")  # last: the channels are 0 only at the end
            pruned = prune_model(faded, keep, "bn", round_to, ignore, imgsz=flops_imgsz)  # the silent channels score 0
            best_path = pruned_path = save_pruned_checkpoint(pruned, step_dir / "pruned.pt", train_args, meta)
        else:
            pruned = current if keep >= 1 else prune_model(current, keep, importance, round_to, ignore, imgsz=flops_imgsz,
                                                           allocation=allocation)
            pruned_path = save_pruned_checkpoint(pruned, step_dir / "pruned.pt", train_args, meta)
            map_pruned = _val_map(pruned_path, data, imgsz, batch, device, step_dir)
            best_path = pruned_path
            if epochs > 0:
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
                        **{**ft_args, "epochs": total_epochs, "name": "control", "close_mosaic": close_mosaic})
        ctrl_model, _ = load_checkpoint_model(trainer.best, "control model")
        ctrl = StepResult(-1, 1.0, count_params(ctrl_model), model_gflops(ctrl_model, flops_imgsz), None,
                          _val_map(trainer.best, data, imgsz, batch, device, save_dir / "control"), str(trainer.best))

    # final checkpoint: the last accepted step, re-saved as a clean stock checkpoint
    final = save_dir / "weights" / "best.pt"
    save_pruned_checkpoint(current, final, train_args, {"step": final_step, "source": str(model_path),
                                                        "target_flops": target_flops, "importance": importance})
    measure_latencies(rows, save_dir, sizes, threads, latency_seconds)
    table = markdown_table(rows, ctrl)
    json_path = save_dir / "prune_results.json"
    write_json_atomic(json_path, {
        "model": str(Path(model_path).resolve()), "teacher": teacher, "distill": distill, "data": data,
        "target_flops": target_flops, "steps": steps, "epochs_per_step": epochs_per_step, "final_epochs": final_epochs,
        "close_mosaic": close_mosaic, "fade": fade, "importance": importance, "allocation": allocation, "round_to": round_to,
        "imgsz": imgsz, "flops_imgsz": flops_imgsz, "threads": threads, "stopped_early": stopped,
        "final_step": final_step, "best": str(final), "results": [asdict(r) for r in rows],
        "control": asdict(ctrl) if ctrl else None,
    })
    write_text_atomic(save_dir / "prune_results.md", table + "\n")
    png = plot_map_vs_gflops(rows, save_dir / "map_vs_gflops.png", ctrl) if plot else None
    return PruneResult(rows, final, save_dir, json_path, png, table, stopped, ctrl)


