"""Wall-clock timing with warm-up and a stable median: the one timing primitive every benchmark here uses."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def time_callable(
    fn: Callable[[], object],
    warmup: int = 10,
    min_runs: int = 100,
    min_seconds: float = 10.0,
    max_runs: int = 100_000,
    sync: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Time ``fn()`` after ``warmup`` calls until both ``min_runs`` runs and ``min_seconds`` have passed.

    ``sync`` (e.g. ``torch.cuda.synchronize``) is called after each run so asynchronous devices are timed fully.
    Returns milliseconds: ``median``, ``p90``, ``min``, ``mean`` and the number of ``runs``.
    """
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    times = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append((time.perf_counter() - t0) * 1e3)
    ms = np.asarray(times)
    return {
        "median": float(np.median(ms)),
        "p90": float(np.percentile(ms, 90)),
        "min": float(ms.min()),
        "mean": float(ms.mean()),
        "runs": int(len(ms)),
    }
