"""Session overhead: 8 hamlet images through the Session with one ablation vs. the bare model."""

from __future__ import annotations

import torch

import gandissect_widgets as gw
from benchmarks._timing import compare, report


def main() -> None:
    model = gw.zoo.load("hamlet")
    session = gw.Session(model, device="cpu", cache_mb=0)  # no cache: every call computes
    seeds = list(range(8))
    z = session.latents(seeds)
    session.ablate("layer4", list(range(10)))

    def bare():
        with torch.no_grad():
            model(z)

    def through_session():
        session.generate(seeds)

    c, b, ratio = compare(through_session, bare)
    report("session.generate(8) with 1 ablation", f"{c * 1e3:.2f} ms")
    report("bare model forward(8)", f"{b * 1e3:.2f} ms")
    report("ratio (goal <= 1.15)", f"{ratio:.3f}x")


if __name__ == "__main__":
    main()
