"""Distillation-setting sweeps for ``tools/compare.py --sweep kd_<key>=v1,v2,...`` (one key, or two as a grid).

Each value (each pair of values for two keys) is one kd arm of the comparison, trained with the same seeds and
arguments as the vanilla arm and named ``kd-<key>-<value>[-<key>-<value>]``, so a repeated sweep finds and reuses its
finished runs. Rows of the sweep table and points of its plot (:func:`yolo_kd.evidence.report.sweep_plot`) are the
arms' mean ± std over seeds.
"""

from __future__ import annotations

import itertools
from typing import Any

from ..core import tables
from ..core.errors import KDError
from ..distill.config import config_keys, load_kd_config


def parse_sweep(items: list[str] | None) -> list[tuple[str, list[str]]]:
    """``["kd_temperature=1,2,4,8"]`` -> ``[("temperature", ["1", "2", "4", "8"])]``; every value is validated.

    Raises:
        KDError: not ``kd_<key>=v1,v2``, an unknown key, a key twice, more than two keys, a bad value.
    """
    out: list[tuple[str, list[str]]] = []
    for item in items or []:
        name, eq, raw = str(item).partition("=")
        key = name.strip().replace("-", "_")
        key = key[3:] if key.startswith("kd_") else key
        values = [v.strip() for v in raw.strip("[]() ").split(",") if v.strip()]
        if not eq or not values:
            raise KDError(f"--sweep '{item}' must be kd_<key>=v1,v2,... (e.g. --sweep kd_temperature=1,2,4,8)")
        if key not in config_keys():
            raise KDError(f"--sweep '{item}': unknown distillation setting '{key}': valid keys are {', '.join(config_keys())}")
        if key in (k for k, _ in out):
            raise KDError(f"--sweep names '{key}' twice: give all its values once, comma-separated")
        if len(set(values)) != len(values):
            raise KDError(f"--sweep '{item}' repeats a value: give each value once")
        for v in values:
            load_kd_config(**{key: v})  # one line naming a bad value, before anything trains
        out.append((key, values))
    if len(out) > 2:
        raise KDError(f"--sweep takes one key, or two as a grid; got {len(out)} ({', '.join(k for k, _ in out)})")
    return out


def sweep_arms(sweep: list[tuple[str, list[str]]]) -> dict[str, dict[str, str]]:
    """Arm name -> its ``kd_<key>`` overrides, the grid's first key varying slowest."""
    keys = [k for k, _ in sweep]
    arms = {}
    for combo in itertools.product(*(values for _, values in sweep)):
        settings = dict(zip(keys, combo))
        arms["kd-" + "-".join(f"{k}-{v}" for k, v in settings.items())] = settings
    return arms


def sweep_rows(rows: list[dict[str, Any]], arms: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    """The summary rows of the sweep's arms (in sweep order), each with ``settings``: ``{key: value}``."""
    by_run = {r["run"]: r for r in rows}
    return [{**by_run[name], "settings": settings} for name, settings in arms.items() if name in by_run]


def sweep_table(sweep_rows_: list[dict[str, Any]], vanilla: dict[str, Any] | None, teacher: dict[str, float] | None) -> str:
    """Markdown: one row per swept value (pair), mAP in points (x100), with vanilla and the teacher for reference."""
    keys = list(sweep_rows_[0]["settings"]) if sweep_rows_ else []
    head = [*keys, "seeds", "mAP50-95", "mAP50", "Δ vs vanilla"]
    cells = []
    for r in sweep_rows_:
        if not r["seeds"]:
            cells.append([*r["settings"].values(), "failed", "; ".join(r["failed"]), "", ""])
            continue
        cells.append([*r["settings"].values(), str(len(r["seeds"])), f"{100 * r['map']:.1f} ± {100 * r['map_std']:.1f}",
                      f"{100 * r['map50']:.1f} ± {100 * r['map50_std']:.1f}", f"{100 * r['delta_map']:+.1f}"])
    if vanilla and vanilla.get("seeds"):
        cells.append(["vanilla", *[""] * (len(keys) - 1), str(len(vanilla["seeds"])),
                      f"{100 * vanilla['map']:.1f} ± {100 * vanilla['map_std']:.1f}", f"{100 * vanilla['map50']:.1f} ± {100 * vanilla['map50_std']:.1f}", ""])
    if teacher:
        cells.append(["teacher", *[""] * (len(keys) - 1), "–", f"{100 * teacher['map']:.1f}", f"{100 * teacher['map50']:.1f}", ""])
    return tables.markdown_table(head, cells) + "\n"
