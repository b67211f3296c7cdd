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
          124: ("plateau/compare-e124-nbs64.json", "runs/plateau/e124-nbs64/vanilla"),
          140: ("plateau/compare-e140-nbs64.json", "runs/plateau/e140-nbs64/vanilla")}
BENCH60 = {66: ("bench-e15-tn/e60-until-tn-e66-report/compare.json", "runs/e66/vanilla"),
           70: ("bench-until50/compare.json", "runs/e70/vanilla")}
BENCH15 = {17: ("bench-e15-tn/e15-tn-e17-report/compare.json", "runs/e17/vanilla"),
           18: ("bench-e15/e15-until-report/compare.json", "runs/e18/vanilla"),
           20: ("bench-e15/e20-report/compare.json", "runs/e20/vanilla")}
BENCH40 = {47: ("e40-nbs64/compare.json", "runs/pays40/vanilla-e47"), 51: ("e40-nbs64/compare.json", "runs/pays40/vanilla-e51")}

# label, distilled runs (file, run_dir prefix), epochs, distilled epochs, vanilla runs by epochs
ROWS = [
    ("demo preset, nbs=16, 3 seeds", ("plateau/compare-e100-nbs16.json", "runs/plateau/e100-nbs16/kd"), 100, 90, DEMO16),
    ("demo preset, nbs=16, kd_until=0.5", ("plateau/compare-e100-nbs16-until50.json", "runs/plateau/e100-nbs16-until50/kd"),
     100, 50, DEMO16),
    ("demo preset, nbs=64, 3 seeds", ("plateau/compare-e100-nbs64.json", "runs/plateau/e100-nbs64/kd"), 100, 90, DEMO64),
    ("bench preset, nbs=16, 2 seeds", ("t60/compare.json", "runs/e60t60/kd"), 60, 50,
     {**BENCH60, 80: ("t60/compare.json", "runs/e60/vanilla-eqtime")}),
    ("bench preset, nbs=16, kd_until=0.5", ("bench-until50/compare.json", "runs/e60-until50/kd"), 60, 30, BENCH60),
    ("bench preset, nbs=16, 15 epochs, 3 seeds", ("bench-e15/e15-report/compare.json", "runs/e15/kd"), 15, 15, BENCH15),
    ("bench preset, nbs=64, 40 epochs", ("e40-nbs64/compare.json", "runs/pays40/kd-until1.0"), 40, 30, BENCH40),
    ("bench preset, nbs=64, 40 epochs, kd_until=0.5", ("e40-nbs64/compare.json", "runs/pays40/kd-until0.5"), 40, 20, BENCH40),
]


def runs(file: str, prefix: str) -> dict[int, float]:
    """mAP50-95 (points) by seed of the runs in ``file`` whose run_dir starts with ``prefix``; {} when the file is missing.

    Seeds trained later are reported by their own ``compare.py --runs`` beside it: ``<stem>-seedN.json`` is read too.
    """
    path = ROOT / file
    found = {}
    for part in ([path] if path.is_file() else []) + sorted(path.parent.glob(f"{path.stem}-seed*.json")):
        for r in json.loads(part.read_text())["runs"]:
            if r["run_dir"].startswith(prefix + "-seed") and r["status"] == "ok":
                found[int(r["seed"])] = 100 * r["map"]
    return found


def main() -> None:
    print("| regime | budget | " + " | ".join(f"equal GPU compute, {k} ({v}x): vanilla epochs, yolo_kd - vanilla (per seed)"
                                          for k, v in RATIOS.items()) + " |")
    print("|---|---|" + "---|" * len(RATIOS))
    for label, (kd_file, kd_prefix), epochs, distilled, vanilla in ROWS:
        kd = runs(kd_file, kd_prefix)
        trained = {e: found for e, where in sorted(vanilla.items()) if (found := runs(*where))}
        cells = []
        for ratio in RATIOS.values():
            need = distilled * ratio + (epochs - distilled)
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
