"""Issue 19's equal-compute comparisons re-priced at the step-time ratio measured on a GPU.

The runs in docs/bench/pays were trained on a 2-core CPU, where a distilled step costs 1.47x a vanilla one; on an
H200 at 640 with AMP it costs 1.15x at batch 16 and 1.26x at batch 64 (docs/bench/gpu.md). The accuracy of each run
does not depend on where its time was measured, so the equal-compute question can be asked again at the GPU's price:
vanilla trained for ``D * r + (E - D)`` epochs costs what a distilled run of E epochs costs that runs the teacher in D of
them (``off_close_mosaic`` leaves the last 10 undistilled; ``until: 0.5`` the second half). Validation, alike per epoch
in both, is left out, which gives vanilla slightly more than its share. Each comparison takes the shortest vanilla run
trained that is at least that long (never a shorter one), per seed.

    python benchmarks/pays_gpu_priced.py            # prints the markdown table of docs/bench/gpu.md
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "docs" / "bench" / "pays"
RATIOS = {"batch 16": 1.15, "batch 64": 1.26}  # docs/bench/gpu.md, yolo11s -> yolo11n, 640, AMP, H200

# vanilla runs by epochs, {epochs: (file, run_dir prefix)}, shared by the rows that compare against them
DEMO16 = {108: ("plateau/compare-e108-nbs16.json", "runs/plateau/e108-nbs16/vanilla"),
          117: ("plateau/compare-e117-nbs16.json", "runs/plateau/e117-nbs16/vanilla"),
          140: ("plateau/compare-e140-nbs16.json", "runs/plateau/e140-nbs16/vanilla")}
DEMO64 = {114: ("plateau/compare-e114-nbs64.json", "runs/plateau/e114-nbs64/vanilla"),
          117: ("plateau/compare-e117-nbs64.json", "runs/plateau/e117-nbs64/vanilla"),
          124: ("plateau/compare-e124-nbs64.json", "runs/plateau/e124-nbs64/vanilla"),
          140: ("plateau/compare-e140-nbs64.json", "runs/plateau/e140-nbs64/vanilla")}
BENCH60 = {66: ("bench-e15-tn/e60-until-tn-e66-report/compare.json", "runs/e66/vanilla"),
           70: ("bench-until50/compare.json", "runs/e70/vanilla")}
BENCH15 = {17: ("bench-e15-tn/e15-tn-e17-report/compare.json", "runs/e17/vanilla"),
           18: ("bench-e15/e15-until-report/compare.json", "runs/e18/vanilla"),
           20: ("bench-e15/e20-report/compare.json", "runs/e20/vanilla")}
BENCH40 = {47: ("e40-nbs64/compare.json", "runs/pays40/vanilla-e47"), 51: ("e40-nbs64/compare.json", "runs/pays40/vanilla-e51")}

# label, distilled runs ((file, run_dir prefix[, seeds]) or a list of them), epochs, distilled epochs, vanilla runs by epochs
ROWS = [
    ("demo preset, nbs=16, 3 seeds", ("plateau/compare-e100-nbs16.json", "runs/plateau/e100-nbs16/kd"), 100, 90, DEMO16),
    ("demo preset, nbs=16, kd_until=0.5", ("plateau/compare-e100-nbs16-until50.json", "runs/plateau/e100-nbs16-until50/kd"),
     100, 50, DEMO16),
    # seeds 0 1 of e100-nbs64 distilled throughout; its seed 2 (trained later) distilled the first half (next row)
    ("demo preset, nbs=64, kd_until=1.0",
     [("plateau/compare-e100-nbs64.json", "runs/plateau/e100-nbs64/kd", (0, 1)),
      ("plateau/compare-e100-nbs64-u100.json", "runs/plateau/e100-nbs64-u100/kd", (2,))], 100, 90, DEMO64),
    ("demo preset, nbs=64, kd_until=0.5 (today's default at 100 epochs)",
     [("plateau/compare-e100-nbs64-u50.json", "runs/plateau/e100-nbs64-u50/kd", (0, 1)),
      ("plateau/compare-e100-nbs64.json", "runs/plateau/e100-nbs64/kd", (2,))], 100, 50, DEMO64),
    ("bench preset, nbs=16, 2 seeds", ("t60/compare.json", "runs/e60t60/kd"), 60, 50,
     {**BENCH60, 80: ("t60/compare.json", "runs/e60/vanilla-eqtime")}),
    ("bench preset, nbs=16, kd_until=0.5", ("bench-until50/compare.json", "runs/e60-until50/kd"), 60, 30, BENCH60),
    ("bench preset, nbs=16, 15 epochs, 3 seeds", ("bench-e15/e15-report/compare.json", "runs/e15/kd"), 15, 15, BENCH15),
    ("bench preset, nbs=64, 40 epochs", ("e40-nbs64/compare.json", "runs/pays40/kd-until1.0"), 40, 30, BENCH40),
    ("bench preset, nbs=64, 40 epochs, T = 4 (today's default below 60 epochs)",
     ("temperature/compare-e40-nbs64-T4.json", "runs/pays40/kd-T4"), 40, 30, BENCH40),
    ("bench preset, nbs=64, 40 epochs, kd_until=0.5", ("e40-nbs64/compare.json", "runs/pays40/kd-until0.5"), 40, 20, BENCH40),
]


def runs(file: str, prefix: str, seeds: tuple[int, ...] | None = None) -> dict[int, float]:
    """mAP50-95 (points) by seed of the runs in ``file`` whose run_dir is ``prefix-s<seed>`` or ``prefix-seed<seed>`` (only ``seeds``, when
    given); {} when the file is missing.

    Seeds trained later are reported by their own ``compare.py --runs`` beside it: ``<stem>-seedN.json`` is read too.
    """
    path = ROOT / file
    found = {}
    for part in ([path] if path.is_file() else []) + sorted(path.parent.glob(f"{path.stem}-seed*.json")):
        for r in json.loads(part.read_text())["runs"]:
            if r["run_dir"].startswith(prefix + "-s") and r["status"] == "ok":
                found[int(r["seed"])] = 100 * r["map"]
    return {k: v for k, v in found.items() if seeds is None or k in seeds}


def distilled(sources) -> dict[int, float]:
    """The distilled runs of a row: one ``(file, prefix[, seeds])`` source, or a list of them (seeds from several)."""
    out = {}
    for source in [sources] if isinstance(sources, tuple) else sources:
        out.update(runs(*source))
    return out


def main() -> None:
    print("| regime | budget | " + " | ".join(f"equal GPU compute, {k} ({v}x): vanilla epochs, yolo_kd - vanilla (per seed)"
                                          for k, v in RATIOS.items()) + " |")
    print("|---|---|" + "---|" * len(RATIOS))
    for label, kd_sources, epochs, kd_epochs, vanilla in ROWS:
        kd = distilled(kd_sources)
        trained = {e: found for e, where in sorted(vanilla.items()) if (found := runs(*where))}
        cells = []
        for ratio in RATIOS.values():
            need = kd_epochs * ratio + (epochs - kd_epochs)
            fits = [e for e in trained if e >= need]
            if not fits:
                cells.append(f"{need:.0f}: no vanilla run that long")
                continue
            van = trained[fits[0]]
            seeds = sorted(set(kd) & set(van))
            deltas = [kd[s] - van[s] for s in seeds]
            mean = sum(deltas) / len(deltas)
            cells.append(f"{need:.1f} -> {fits[0]}: **{mean:+.1f}** ({', '.join(f'{d:+.1f}' for d in deltas)}; seeds "
                         f"{','.join(map(str, seeds))})")
        print(f"| {label} | {epochs} epochs | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
