"""AblationPanel latency with a UnitBrowser open on the same Session: "slider value changed" ->
"new image bytes set", 8 hamlet samples, against the bare generation of the same 8 images
(uint8 out) in the same process, interleaved.

Two cases: the panel previewing its edit (the Session unchanged, so the browser has nothing to
redraw), and the panel's edit applied, so every value retunes the shared edit and the browser
is told: it defers its redraw until the drag settles, and draws once after it.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

import gandissect_widgets as gw
from benchmarks._timing import median_seconds, report


def _drag(panel, values, bare) -> tuple[float, float]:
    """(median slider -> new bytes, median bare generation), interleaved."""
    latencies, bare_times = [], []
    for i, value in enumerate(values):
        if i % 10 == 0:
            bare_times.append(median_seconds(bare, repeats=5, warmup=1))
        t0 = time.perf_counter()
        panel.strength = value
        panel.wait()
        latencies.append(time.perf_counter() - t0)
    return statistics.median(latencies[5:]), statistics.median(bare_times)


def main() -> None:
    session = gw.Session.from_zoo("hamlet", device="cpu")
    seeds = list(range(8))
    browser = gw.UnitBrowser(session, "layer4", seeds=seeds)
    panel = gw.AblationPanel(session, "layer4", units=list(range(10)), seeds=seeds)
    z = session.latents(seeds)
    model = session.model

    def bare():  # under the Session's lock, as every user of the model is
        with session.lock, torch.no_grad():
            gw.render.to_uint8(model(z))

    draws = []
    redraw = browser.refresh
    browser.refresh = lambda: draws.append(1) or redraw()
    values = np.linspace(0.02, 1.0, 50).round(3).tolist()

    lat, base = _drag(panel, values, bare)
    report("preview: slider -> new image bytes (median)", f"{lat * 1e3:.2f} ms")
    report("bare generation of the 8 images", f"{base * 1e3:.2f} ms")
    report("preview ratio, UnitBrowser open (goal <= 1.2)", f"{lat / base:.3f}x")
    report("  browser redraws during the drag", f"{len(draws)}")

    panel.apply()
    browser.wait()
    draws.clear()
    lat, base = _drag(panel, values[::-1], bare)
    during = len(draws)
    browser.wait()
    report("applied: slider -> new image bytes (median)", f"{lat * 1e3:.2f} ms")
    report("bare generation of the 8 images", f"{base * 1e3:.2f} ms")
    report("applied ratio, UnitBrowser open (goal <= 1.2)", f"{lat / base:.3f}x")
    report("  browser redraws during / after the drag", f"{during} / {len(draws) - during}")
    panel.close()
    browser.close()


if __name__ == "__main__":
    main()
