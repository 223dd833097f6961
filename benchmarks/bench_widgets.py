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

LAYER = "layer6"  # the layer the issue names: its ablations change nothing before it


def _drag(panel, values, bare, draws) -> tuple[float, float, float, int]:
    """(median slider -> new bytes, median bare generation, median of the per-move ratios,
    browser redraws during the drag).

    Each value is set as soon as the previous one is drawn, right after one bare generation:
    pairs measured back to back, so the machine's load changes hit both alike. A move ends
    when the panel's worker sets the new bytes (a kernel sends them from there).
    """
    latencies, bare_times, sent = [], [], []
    panel.observe(lambda _change: sent.append(time.perf_counter()), "edited")
    median_seconds(bare, repeats=3, warmup=2)
    start = time.monotonic()
    for value in values:
        if value == panel.strength:
            continue  # no move
        t0 = time.perf_counter()
        bare()
        bare_times.append(time.perf_counter() - t0)
        sent.clear()
        t0 = time.perf_counter()
        panel.strength = value
        panel.wait()
        latencies.append(sent[-1] - t0)  # when the worker set the bytes (and a kernel sends)
    end = time.monotonic()
    during = sum(start <= t <= end for t in draws)
    lat, base = latencies[5:], bare_times[5:]
    ratio = statistics.median(a / b for a, b in zip(lat, base))
    return statistics.median(lat), statistics.median(base), ratio, during


def main() -> None:
    session = gw.Session.from_zoo("hamlet", device="cpu")
    seeds = list(range(8))
    browser = gw.UnitBrowser(session, LAYER, seeds=seeds)
    panel = gw.AblationPanel(session, LAYER, units=list(range(10)), seeds=seeds)
    z = session.latents(seeds)
    model = session.model

    def bare():  # under the Session's lock, as every user of the model is
        with session.lock, torch.no_grad():
            gw.render.to_uint8(model(z))

    draws: list[float] = []
    redraw = browser.refresh
    browser.refresh = lambda: draws.append(time.monotonic()) or redraw()
    values = np.linspace(0.02, 1.0, 150).round(3).tolist()

    _drag(panel, values[::8], bare, draws)  # warm-up: the worker, torch's pools, caches
    draws.clear()
    lat, base, ratio, during = _drag(panel, values, bare, draws)
    report("preview: slider -> new image bytes (median)", f"{lat * 1e3:.2f} ms")
    report("bare generation of the 8 images (median)", f"{base * 1e3:.2f} ms")
    report("preview ratio, UnitBrowser open (goal <= 0.6)", f"{ratio:.3f}x")
    report("  browser redraws (the Session is unchanged)", f"{len(draws)}")

    panel.apply()
    browser.wait()
    draws.clear()
    lat, base, ratio, during = _drag(panel, values[::-1], bare, draws)
    browser.wait()
    report("applied: slider -> new image bytes (median)", f"{lat * 1e3:.2f} ms")
    report("bare generation of the 8 images (median)", f"{base * 1e3:.2f} ms")
    report("applied ratio, UnitBrowser open (goal <= 0.6)", f"{ratio:.3f}x")
    report("  browser redraws during / after the drag", f"{during} / {len(draws) - during}")
    panel.close()
    browser.close()


if __name__ == "__main__":
    main()
