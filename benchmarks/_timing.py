"""Timing helpers shared by the benchmarks: interleaved repeats, medians, ratios."""

from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeats: int = 15, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def compare(candidate, baseline, repeats: int = 15, rounds: int = 3) -> tuple[float, float, float]:
    """(candidate s, baseline s, ratio) from interleaved rounds, so drift hits both alike."""
    cand, base = [], []
    for _ in range(rounds):
        base.append(median_seconds(baseline, repeats))
        cand.append(median_seconds(candidate, repeats))
    c, b = statistics.median(cand), statistics.median(base)
    return c, b, c / b


def report(name: str, figure: str) -> None:
    print(f"{name:<48} {figure}", flush=True)
