"""Sharded dissection on hamlet layer6: 2 local worker processes vs 1 (speed-up), the per-shard
overhead against the in-process pass, and whether the tables agree bit for bit (goal: every
unit's label, IoU, threshold and top-k seeds identical in-process and on 1 or 2 workers, with
exact thresholds and with the sketch)."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import torch

import gandissect_widgets as gw
from benchmarks._timing import report

N = int(os.environ.get("GW_BENCH_SAMPLES", "800"))
SHARD = 100


def _timed(session, executor=None, **kwargs):
    t0 = time.perf_counter()
    d = session.dissect(
        "layer6",
        n=N,
        cache=False,
        progress=False,
        executor=executor,
        shard_size=SHARD,
        **kwargs,
    )
    return time.perf_counter() - t0, d


def _differences(a, b) -> str:
    """Units whose label, IoU, threshold or top-k seeds differ between two dissections."""
    units = [
        u
        for u in range(len(a.labels))
        if a.labels[u] != b.labels[u]
        or not torch.equal(a.iou[u], b.iou[u])
        or not torch.equal(a.thresholds[u], b.thresholds[u])
        or not torch.equal(a.top_seeds[u], b.top_seeds[u])
    ]
    return f"{len(units)} of {len(a.labels)} units differ"


def main() -> None:
    session = gw.Session.from_zoo("hamlet", device="cpu")
    ctx = multiprocessing.get_context("spawn")
    in_process, here = _timed(session)
    sketch_here = _timed(session, exact_mb=0)[1]
    times, tables = {}, {}
    for workers in (1, 2):
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            _timed(session, pool)  # warm: workers import torch and load the model once
            times[workers], tables[workers] = _timed(session, pool)
            tables[f"{workers} sketch"] = _timed(session, pool, exact_mb=0)[1]
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
    for workers in (1, 2):
        report(f"in-process vs {workers} worker(s), exact", _differences(here, tables[workers]))
        report(
            f"in-process vs {workers} worker(s), sketch",
            _differences(sketch_here, tables[f"{workers} sketch"]),
        )
    report(
        "sketch vs exact thresholds (not expected equal)",
        f"{_differences(here, sketch_here)}; sketch rank error bound {sketch_here.rank_error:.3%}",
    )


if __name__ == "__main__":
    main()
