"""Wall-clock timing with warm-up and a stable median: the one timing primitive every benchmark here uses, and the
one ONNX Runtime timer built on it (onnxruntime is imported only when a session is made; numpy only otherwise)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np


def summarize(ms: Sequence[float]) -> dict[str, float]:
    """``median``, ``p90``, ``min``, ``mean`` (ms) and ``runs`` of a list of timings in milliseconds."""
    a = np.asarray(ms, dtype=np.float64)
    return {
        "median": float(np.median(a)),
        "p90": float(np.percentile(a, 90)),
        "min": float(a.min()),
        "mean": float(a.mean()),
        "runs": int(a.size),
    }


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
    Returns milliseconds: ``median``, ``p90``, ``min``, ``mean`` and the number of ``runs`` (:func:`summarize`).
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
    return summarize(times)


def onnx_session(path: str | Path, threads: int | None = None, providers: Sequence[str] | None = None, **options):
    """An ``onnxruntime.InferenceSession`` of ``path``: quiet (errors only), ``threads`` intra-op threads and one
    inter-op thread when given, CPU unless ``providers`` says otherwise; ``options`` are set on its
    ``SessionOptions`` (e.g. ``optimized_model_filepath``)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3  # onnxruntime's notices would interleave with our reports and the camera's output
    if threads:
        so.intra_op_num_threads, so.inter_op_num_threads = int(threads), 1
    for key, value in options.items():
        setattr(so, key, value)
    return ort.InferenceSession(str(path), so, providers=list(providers or ["CPUExecutionProvider"]))


def time_in_turns(calls: Sequence[Callable[[], object]], seconds: float = 10.0, rounds: int = 5,
                  warmup: int = 5, sync: Callable[[], object] | None = None) -> list[dict[str, float]]:
    """Latency (ms) of several calls taking turns, so a busy neighbour on a shared CPU slows all of them alike.

    After ``warmup`` calls each, the calls take turns in ``rounds`` slices of ``seconds / rounds`` (each slice a
    :func:`time_callable`), in a different (seeded) order each round, so that a disturbance that recurs with the
    period of one round cannot land on the same call every time. Returns per call the median of its slices' medians
    and p90s, its fastest run (``min``) and the number of ``runs``. ``sync`` as in :func:`time_callable`.
    """
    for call in calls:
        for _ in range(warmup):
            call()
        if sync:
            sync()
    stats: list[list[dict]] = [[] for _ in calls]
    for r in range(rounds):
        for i in np.random.default_rng(r).permutation(len(calls)) if r else range(len(calls)):
            stats[i].append(time_callable(calls[i], warmup=1, min_runs=3, min_seconds=seconds / rounds, sync=sync))
    return [{"median": float(np.median([t["median"] for t in st])), "p90": float(np.median([t["p90"] for t in st])),
             "min": min(t["min"] for t in st), "runs": sum(t["runs"] for t in st)} for st in stats]


def time_onnx_models(paths: Sequence[str | Path], imgsz: int, threads: int = 2, seconds: float = 10.0, rounds: int = 5,
                     warmup: int = 5) -> list[dict[str, float]]:
    """Batch-1 CPU latency (ms) of several ONNX models in onnxruntime, timed in turns (:func:`time_in_turns`)."""
    sessions = [onnx_session(p, threads) for p in paths]
    x = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    calls = [(lambda s=s: s.run(None, {s.get_inputs()[0].name: x})) for s in sessions]
    return time_in_turns(calls, seconds, rounds, warmup)
