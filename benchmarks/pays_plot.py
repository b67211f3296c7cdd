"""mAP50-95 per epoch of groups of finished runs, against epochs and against training compute: the median over seeds
(robust to one seed whose validation collapses for a while) and the band from the lowest to the highest seed.

    python benchmarks/pays_plot.py --out docs/bench/pays/plateau_nbs16.png \
        "vanilla 100=runs/plateau/e100-nbs16/vanilla-seed*" "yolo_kd 100=runs/plateau/e100-nbs16/kd-seed*:1.35" \
        "vanilla 140=runs/plateau/e140-nbs16/vanilla-seed*"

Each group is ``label=glob[:cost[@epochs]]``: the run folders' results.csv (or results CSV files, e.g. those kept in
docs/bench/pays/plateau/), and the cost of one epoch in vanilla epochs (default
1; e.g. the distilled/vanilla time ratio), which places the curve on the compute axis of the right-hand panel.
``cost@epochs`` prices only the first ``epochs`` epochs so, the rest at 1: a run that distilled its first half
(``until: 0.5`` on 100 epochs) is ``:1.34@50``.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np

from yolo_kd.core.files import atomic_path
from yolo_kd.evidence.compare import read_curve


def parse_group(text: str) -> tuple[str, list[str], float, int | None]:
    """``label=glob[:cost[@epochs]]`` -> (label, run folders, cost of one epoch in vanilla epochs (1 when not given),
    how many first epochs cost that (None: all))."""
    label, _, rest = text.partition("=")
    pattern, cost, priced = rest, 1.0, None
    head, sep, tail = rest.rpartition(":")
    if sep:
        try:
            ratio, _, first = tail.partition("@")
            pattern, cost, priced = head, float(ratio), int(first) if first else None
        except ValueError:
            pass  # a ':' that belongs to the glob
    runs = sorted(glob.glob(pattern))
    if not label or not runs:
        raise SystemExit(f"group '{text}': give label=glob[:cost[@epochs]] matching finished run folders or results CSV files")
    return label, runs, cost, priced


def compute_axis(n: int, cost: float, priced: int | None) -> np.ndarray:
    """Cumulative training compute after each of ``n`` epochs, in vanilla epochs: the first ``priced`` (all when None)
    cost ``cost`` each, the rest 1."""
    per_epoch = np.ones(n)
    per_epoch[: n if priced is None else priced] = cost
    return np.cumsum(per_epoch)


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("groups", nargs="+", help="label=glob[:cost of one epoch in vanilla epochs[@the first epochs it prices]]")
    p.add_argument("--out", required=True)
    p.add_argument("--title", default="")
    args = p.parse_args()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for label, runs, cost, priced in map(parse_group, args.groups):
        curves = [100 * np.asarray(read_curve(Path(r))[0]) for r in runs]  # points
        n = min(len(c) for c in curves)
        stack = np.stack([c[:n] for c in curves])
        median, low, high = np.median(stack, 0), stack.min(0), stack.max(0)
        epochs = np.arange(1, n + 1)
        name = f"{label} ({len(curves)} seeds)"
        for ax, x in ((axes[0], epochs), (axes[1], compute_axis(n, cost, priced))):
            (line,) = ax.plot(x, median, label=name)
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.12)
    axes[0].set(xlabel="epoch", ylabel="val mAP50-95, points (median; band: min-max over seeds)", title="equal epochs")
    axes[1].set(xlabel="training compute, in vanilla epochs (epoch × measured time ratio)", title="equal compute")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    if args.title:
        fig.suptitle(args.title)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    print(out)


if __name__ == "__main__":
    main()
