"""The comparison's report: mean ± std over seeds per variant, gain over vanilla, share of the teacher-student gap
closed, cost (time, memory); the markdown table and the two plots."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import tables
from ..core.files import atomic_path

if TYPE_CHECKING:
    from .compare import RunResult


def summarize(results: list[RunResult], teacher: dict[str, float] | None) -> list[dict[str, Any]]:
    """Mean ± std over seeds per variant, delta vs vanilla and share of the teacher-student gap closed."""
    rows = []
    variants = list(dict.fromkeys(r.variant for r in results))
    base_name = next((r.variant for r in results if r.kind == "vanilla"), None)
    peer_name = next((r.variant for r in results if r.kind == "builtin"), None)
    base, peer = {}, {}
    for v in variants:
        ok = [r for r in results if r.variant == v and r.status == "ok"]
        failed = [r for r in results if r.variant == v and r.status != "ok"]
        row: dict[str, Any] = {"run": v, "seeds": sorted(r.seed for r in ok), "failed": [f"seed {r.seed}: {r.error}" for r in failed]}
        for k in ("map50", "map", "epoch_seconds", "train_seconds", "epochs", "last10_gain", "peak_mem_gb"):
            vals = np.array([getattr(r, k) for r in ok], dtype=float)
            row[k] = float(vals.mean()) if len(vals) else float("nan")
            row[f"{k}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        row["params"] = ok[0].params if ok else 0
        row["gflops"] = ok[0].gflops if ok else float("nan")
        rows.append(row)
        if v == base_name:
            base = row
        if v == peer_name:
            peer = row
    for row in rows:
        row["delta_map"] = row["map"] - base.get("map", float("nan"))
        row["time_vs_vanilla"] = row["train_seconds"] / base.get("train_seconds", float("nan"))
        row["time_vs_builtin"] = row["train_seconds"] / peer.get("train_seconds", float("nan"))
        gap = (teacher or {}).get("map", float("nan")) - base.get("map", float("nan"))
        row["gap_closed"] = row["delta_map"] / gap if gap and gap > 0 else float("nan")
    return rows


def _ratio(x: float) -> str:
    return "" if np.isnan(x) else f"{x:.2f}"


def _delta(x: float) -> str:
    """A difference in points, blank without a reference (no vanilla run among the runs)."""
    return "" if np.isnan(x) else f"{100 * x:+.1f}"


def markdown_table(rows: list[dict[str, Any]], teacher: dict[str, float] | None) -> str:
    """The comparison as a markdown table (mAP in points, i.e. x100), with a trailing newline."""
    head = ["run", "seeds", "epochs", "mAP50", "mAP50-95", "Δ vs vanilla", "gap closed", "last-10 gain", "params", "GFLOPs",
            "s/epoch", "train min", "×vanilla time", "×builtin time", "peak mem GB"]
    cells = []
    for r in rows:
        if not r["seeds"]:
            cells.append([r["run"], "failed", "; ".join(r["failed"])])
            continue
        note = f" ({len(r['failed'])} failed)" if r["failed"] else ""
        gap = "" if np.isnan(r["gap_closed"]) else f"{100 * r['gap_closed']:.0f}%"
        plateau = "" if np.isnan(r.get("last10_gain", np.nan)) else f"{100 * r['last10_gain']:+.1f}"
        cells.append([
            r["run"], f"{len(r['seeds'])}{note}", f"{r.get('epochs', 0):.0f}", f"{100 * r['map50']:.1f} ± {100 * r['map50_std']:.1f}",
            f"{100 * r['map']:.1f} ± {100 * r['map_std']:.1f}", _delta(r["delta_map"]), gap, plateau,
            f"{r['params'] / 1e6:.2f}M", f"{r['gflops']:.2f}", f"{r['epoch_seconds']:.1f}",
            f"{r.get('train_seconds', np.nan) / 60:.1f}", _ratio(r["time_vs_vanilla"]), _ratio(r["time_vs_builtin"]),
            _ratio(r["peak_mem_gb"]),
        ])
    if teacher:
        cells.append(["teacher", "–", "", f"{100 * teacher['map50']:.1f}", f"{100 * teacher['map']:.1f}", "", "", "",
                      f"{teacher['params'] / 1e6:.2f}M", f"{teacher['gflops']:.2f}"])
    return tables.markdown_table(head, cells) + "\n"


def plot(results: list[RunResult], rows: list[dict[str, Any]], teacher: dict[str, float] | None, out_dir: Path) -> list[Path]:
    """mAP50-95 per epoch (mean with min-max band over seeds) and final mAP bars with std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for v in dict.fromkeys(r.variant for r in results):
        curves = [r.curve for r in results if r.variant == v and r.status == "ok" and r.curve]
        if not curves:
            continue
        n = min(map(len, curves))
        c = 100 * np.array([cv[:n] for cv in curves])
        x = np.arange(1, n + 1)
        ax.plot(x, c.mean(0), label=v, lw=2)
        ax.fill_between(x, c.min(0), c.max(0), alpha=0.2)
    if teacher:
        ax.axhline(100 * teacher["map"], color="k", ls="--", lw=1, label="teacher")
    ax.set(xlabel="epoch", ylabel="mAP50-95, points (val, EMA)", title="Validation mAP50-95 per epoch (band: min-max over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # outside the axes: never on a curve
    with atomic_path(out_dir / "map_per_epoch.png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    paths.append(out_dir / "map_per_epoch.png")
    plt.close(fig)

    ok = [r for r in rows if r["seeds"]]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = [r["run"] for r in ok] + (["teacher"] if teacher else [])
    means = [100 * r["map"] for r in ok] + ([100 * teacher["map"]] if teacher else [])
    stds = [100 * r["map_std"] for r in ok] + ([0.0] if teacher else [])
    ax.bar(names, means, yerr=stds, capsize=5, color=["#888" if n in ("vanilla", "teacher") else "#3a7" for n in names])
    top = max([m + s for m, s in zip(means, stds)] + [1.0])  # at least 1 point, so an all-zero chart still has a range
    for i, (m, s) in enumerate(zip(means, stds)):  # above the error bar, so value and bar never overlap
        ax.text(i, m + s + 0.02 * top, f"{m:.1f} ± {s:.1f}" if s else f"{m:.1f}", ha="center", va="bottom", fontsize=9)
    ax.set_ylim(0, 1.12 * top)
    ax.set(ylabel="final mAP50-95, points (best.pt)", title="Final mAP50-95, mean ± std over seeds")
    with atomic_path(out_dir / "final_map.png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    paths.append(out_dir / "final_map.png")
    plt.close(fig)
    return paths


def sweep_plot(sweep_rows: list[dict[str, Any]], vanilla: dict[str, Any] | None, teacher: dict[str, float] | None, out_dir: Path) -> Path | None:
    """mAP50-95 against the swept value (``sweep.png``): mean ± std over seeds per arm, one line per value of a grid's
    second key; the vanilla band (mean ± std) and the teacher line for reference. None when no arm finished."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in sweep_rows if r["seeds"]]
    if not ok:
        return None
    keys = list(ok[0]["settings"])
    xs = [r["settings"][keys[0]] for r in ok]
    try:
        pos = {x: float(x) for x in xs}
        numeric = True
    except ValueError:
        pos, numeric = {x: float(i) for i, x in enumerate(dict.fromkeys(xs))}, False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if vanilla and vanilla.get("seeds"):
        m, s = 100 * vanilla["map"], 100 * vanilla["map_std"]
        ax.axhspan(m - s, m + s, color="#888", alpha=0.25, label=f"vanilla {m:.1f} ± {s:.1f} ({len(vanilla['seeds'])} seeds)")
        ax.axhline(m, color="#888", lw=1)
    if teacher:
        ax.axhline(100 * teacher["map"], color="k", ls="--", lw=1, label=f"teacher {100 * teacher['map']:.1f}")
    lines = dict.fromkeys(r["settings"].get(keys[1]) if len(keys) > 1 else None for r in ok)
    for line in lines:
        pts = [r for r in ok if len(keys) == 1 or r["settings"][keys[1]] == line]
        ax.errorbar([pos[r["settings"][keys[0]]] for r in pts], [100 * r["map"] for r in pts], yerr=[100 * r["map_std"] for r in pts],
                    marker="o", capsize=4, lw=2, label=f"kd, {keys[1]}={line}" if line is not None else "kd")
    if numeric and min(pos.values()) > 0 and max(pos.values()) / min(pos.values()) >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(pos.values())), [str(x) for x in sorted(set(xs), key=lambda v: pos[v])])
    ax.set(xlabel=keys[0], ylabel="final mAP50-95 (best.pt)", title=f"Distillation sweep over {' × '.join(keys)} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    path = out_dir / "sweep.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    return path
