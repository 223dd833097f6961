"""AblationPanel latency: "slider value changed" -> "new image bytes set", 8 hamlet samples,
against the bare generation of the same 8 images (uint8 out) in the same process."""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

import gandissect_widgets as gw
from benchmarks._timing import median_seconds, report


def main() -> None:
    session = gw.Session.from_zoo("hamlet", device="cpu")
    seeds = list(range(8))
    panel = gw.AblationPanel(session, "layer4", units=list(range(10)), seeds=seeds)
    z = session.latents(seeds)
    model = session.model

    def bare():
        with torch.no_grad():
            gw.render.to_uint8(model(z))

    strengths = np.linspace(0.02, 1.0, 50).round(3).tolist()
    latencies, bare_times = [], []
    for i, value in enumerate(strengths):
        if i % 10 == 0:
            bare_times.append(median_seconds(bare, repeats=5, warmup=1))
        t0 = time.perf_counter()
        panel.strength.value = value
        panel.wait()
        latencies.append(time.perf_counter() - t0)
    lat, base = statistics.median(latencies[5:]), statistics.median(bare_times)
    report("slider -> new image bytes (median)", f"{lat * 1e3:.2f} ms (goal <= 30 ms)")
    report("bare generation of the 8 images", f"{base * 1e3:.2f} ms")
    report("ratio (goal <= 1.2)", f"{lat / base:.3f}x")
    panel.close()


if __name__ == "__main__":
    main()
