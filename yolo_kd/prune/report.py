"""The pruning run's report: one :class:`StepResult` per step, their ONNX CPU latencies measured side by side, the
markdown table and the mAP-vs-GFLOPs plot."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..core import tables
from ..core.checkpoints import export_copy
from ..core.files import atomic_path
from ..core.timing import time_onnx_models


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


def measure_latencies(rows: list[StepResult], save_dir: Path, sizes: Sequence[int], threads: int, seconds: float) -> None:
    """Export every row's checkpoint to FP32 ONNX at each size and time them side by side (fills ``latency_ms``).

    Each ``.onnx`` lands beside its step's checkpoint (the unpruned one in ``save_dir/unpruned``, never beside the
    user's file). Each model gets ``seconds`` of timing, interleaved with the others (:func:`time_onnx_models`).
    """
    targets = [save_dir / "unpruned" / "unpruned.pt"] + [Path(r.weights) for r in rows[1:]]
    for s in sizes:
        onnx = [export_copy(r.weights, t.with_name(f"{t.stem}_{s}.onnx"), format="onnx", imgsz=s, dynamic=False)
                for r, t in zip(rows, targets)]
        for r, t in zip(rows, time_onnx_models(onnx, s, threads, seconds, rounds=3, warmup=3)):
            r.latency_ms[s] = t["median"]


def markdown_table(steps: Sequence[StepResult], control: StepResult | None = None) -> str:
    """Markdown table: params, GFLOPs, mAP50-95 before/after fine-tuning, ONNX latency (and ratios to step 0).

    ``control`` (the unpruned model fine-tuned with the same epochs) is appended as a last row if given.
    """
    base = steps[0]
    sizes = sorted({s for r in steps for s in r.latency_ms})
    head = ["step", "params", "GFLOPs", "GFLOPs ratio", "mAP50-95 pruned", "mAP50-95 fine-tuned"]
    head += [f"ONNX ms @{s} (ratio)" for s in sizes]
    rows = []
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
        rows.append(cells)
    return tables.markdown_table(head, rows)


def plot_map_vs_gflops(steps: Sequence[StepResult], path: Path, control: StepResult | None = None) -> Path:
    """PNG of mAP50-95 (points) against GFLOPs: after pruning (hollow) and after fine-tuning (filled), one point per
    step, each fine-tuned point labelled with its step and mAP without overlapping labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..core.plot_labels import place_labels

    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=120)
    g = [r.gflops for r in steps]
    ft = [100 * r.map_finetuned for r in steps]
    ax.plot(g, ft, "o-", label="fine-tuned (best.pt of each step)")
    pr = [(r.gflops, 100 * r.map_pruned) for r in steps if r.map_pruned is not None]
    if pr:
        ax.plot(*zip(*pr), "o", mfc="none", label="right after pruning")
    ys = ft + [y for _, y in pr] + ([100 * control.map_finetuned] if control else [])
    if control:
        ax.plot([control.gflops], [100 * control.map_finetuned], "*", ms=12, label="unpruned + same fine-tuning")
    ax.set_xlabel("GFLOPs")
    ax.set_ylabel("mAP50-95 (points)")
    ax.set_title("Pruning steps: accuracy vs compute")
    span = max(max(ys) - min(ys), 1.0)
    ax.set_ylim(min(ys) - 0.3 * span, max(ys) + 0.3 * span)
    ax.set_xlim(max(g) + 0.15 * (max(g) - min(g) or 1), min(g) - 0.25 * (max(g) - min(g) or 1))  # inverted: fewer FLOPs right
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    place_labels(ax, g, ft, [f"{'unpruned' if r.step == 0 else f'step {r.step}'}: {100 * r.map_finetuned:.1f}" for r in steps],
                 avoid=pr + ([(control.gflops, 100 * control.map_finetuned)] if control else []))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
