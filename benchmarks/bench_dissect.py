"""Dissection on hamlet: overhead against running generator + segmenter alone over the same
samples (goal <= 1.3x), and what it finds (goals: >= 20% of units interpretable at the best
layer, >= 6 concepts; ablating <= 20 tree units removes >= 50% of tree pixels while the other
concepts' total area changes less; classifier: a class's top 20 units cut its accuracy by
>= 50% while the other classes lose <= 10 points)."""

from __future__ import annotations

import os
import time

import torch

import gandissect_widgets as gw
from benchmarks._timing import report

N = int(os.environ.get("GW_BENCH_SAMPLES", "2000"))
LAYERS = ["layer4", "layer5", "layer6", "layer7"]


def _baseline(session, seeds, bs):
    """Generator + segmenter only: what any dissection must at least run."""
    for i in range(0, len(seeds), bs):
        chunk = seeds[i : i + bs]
        with torch.no_grad():
            images = gw.render.to_uint8(session.model(session.latents(chunk)))
        session.segmenter.segment(images)


def overhead(session, layer) -> None:
    seeds, bs = list(range(N)), session.batch_size
    t0 = time.perf_counter()
    _baseline(session, seeds, bs)
    base = time.perf_counter() - t0
    t0 = time.perf_counter()
    session.dissect(layer, n=N, cache=False, progress=False)
    full = time.perf_counter() - t0
    t0 = time.perf_counter()
    _baseline(session, seeds, bs)
    base = (base + time.perf_counter() - t0) / 2
    report(f"dissect {layer}, {N} samples", f"{full:.1f} s")
    report("generator + segmenter alone, same samples", f"{base:.1f} s")
    report("overhead ratio (goal <= 1.3)", f"{full / base:.3f}x")


def findings(session) -> None:
    best = None
    for layer in LAYERS:
        d = session.dissect(layer, n=N, progress=False)
        share = len(d.interpretable()) / len(d.labels)
        report(f"{layer}: interpretable units / concepts", f"{share:.0%} / {len(d.summary())}")
        if best is None or share > best[1]:
            best = (d, share)
    d = best[0]
    report(f"best layer {d.layer}: concepts", ", ".join(f"{c} {k}" for c, k in d.summary().items()))
    trees = d.ranked_for("tree")[:20]
    effect = session.ablation_effect(d.layer, trees, "tree", n=500, seeds=range(50_000, 50_500))
    report("20 tree units ablated: tree pixels removed (goal >= 50%)", f"{effect.removed:.1%}")
    report("  other concepts' total area changed", f"{effect.others_changed():.1%}")


def classifier() -> None:
    s = gw.Session.from_zoo("hamlet-classifier", device="cpu")
    held_out = range(gw.zoo.hamlet.TEST_SEED_START, gw.zoo.hamlet.TEST_SEED_START + 500)
    for name in s.classes:
        units = s.class_units("conv4", name, n=300)[:20]
        change = s.ablation_accuracy("conv4", units, seeds=held_out)
        report(
            f"classifier conv4, top-20 units of {name}",
            f"own accuracy drop {change.drop(name):.0%} (goal >= 50%), "
            f"others' drop {100 * change.others_drop(name):+.1f} points (goal <= 10)",
        )


def main() -> None:
    session = gw.Session.from_zoo("hamlet", device="cpu")
    overhead(session, "layer6")
    findings(session)
    classifier()


if __name__ == "__main__":
    main()
