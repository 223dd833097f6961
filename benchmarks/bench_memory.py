"""Memory follows ``cache_mb``: process growth over 2,000 generate calls with changing edits.

Each call replaces the active ablation (a new state, so nothing is reused) and generates a
random handful of seeds, so the result cache fills, wraps and evicts the whole time.
"""

from __future__ import annotations

import gc
import os

import numpy as np

import gandissect_widgets as gw
from benchmarks._timing import report

CALLS = 2000
CACHE_MB = 32


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(calls: int = CALLS) -> float:
    session = gw.Session(gw.zoo.load("hamlet"), device="cpu", cache_mb=CACHE_MB)
    rng = np.random.default_rng(0)
    edit = None
    session.generate(range(8))
    session.activations("layer4", range(8))
    gc.collect()
    start = rss_mb()
    for i in range(calls):
        units = rng.choice(128, size=int(rng.integers(1, 12)), replace=False).tolist()
        edit = session.replace(edit, session.ablation("layer4", units))
        seeds = rng.integers(0, 500, size=int(rng.integers(1, 9))).tolist()
        if i % 3:
            session.generate(seeds)
        else:
            session.activations(("layer3", "layer4", "layer5")[i % 3], seeds)
    gc.collect()
    growth = rss_mb() - start
    report(f"RSS growth over {calls} calls, cache_mb={CACHE_MB}", f"{growth:.0f} MB")
    report("bound (cache_mb + 100 MB)", f"{CACHE_MB + 100} MB")
    report("cache entries / bytes held", f"{len(session.runner.results)} / "
           f"{session.runner.results.bytes / 2**20:.1f} MB")  # fmt: skip
    return growth


if __name__ == "__main__":
    main()
