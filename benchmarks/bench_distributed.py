"""Sharded dissection: 2 local worker processes vs 1 on these cores (speed-up), and the
per-shard overhead against the in-process pass, on hamlet layer6."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import gandissect_widgets as gw
from benchmarks._timing import report

N = int(os.environ.get("GW_BENCH_SAMPLES", "800"))
SHARD = 100


def _timed(session, executor=None) -> float:
    t0 = time.perf_counter()
    session.dissect("layer6", n=N, cache=False, progress=False, executor=executor, shard_size=SHARD)
    return time.perf_counter() - t0


def main() -> None:
    session = gw.Session.from_zoo("hamlet", device="cpu")
    ctx = multiprocessing.get_context("spawn")
    in_process = _timed(session)
    times = {}
    for workers in (1, 2):
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            _timed(session, pool)  # warm: workers import torch and load the model once
            times[workers] = _timed(session, pool)
    shards = 2 * -(-N // SHARD)
    report(f"in-process dissect, {N} samples", f"{in_process:.1f} s")
    report("1 worker / 2 workers", f"{times[1]:.1f} s / {times[2]:.1f} s")
    report("speed-up, 2 workers vs 1", f"{times[1] / times[2]:.2f}x")
    report(
        "per-shard overhead (1 worker vs in-process)",
        f"{(times[1] - in_process) / shards * 1e3:.0f} ms",
    )
    per_sample = times[1] / N
    report("measured cost per sample, 1 worker (64x64 hamlet)", f"{per_sample * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
