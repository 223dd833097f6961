"""Dissection on hamlet: overhead against running generator + segmenter alone over the same
samples (goal <= 1.3x), and what it finds (goals: >= 20% of units interpretable at the best
layer, >= 6 concepts; ablating <= 20 tree units removes >= 50% of tree pixels while the other
concepts' total area changes less; classifier: a class's top 20 units cut its accuracy by
>= 50% while the other classes lose <= 10 points); and how much the threshold convention
(quantile of the raw or of the upsampled activation maps) changes the IoUs."""

from __future__ import annotations

import os
import statistics
import time

import torch

import gandissect_widgets as gw
from benchmarks._timing import report

N = int(os.environ.get("GW_BENCH_SAMPLES", "2000"))
ROUNDS = int(os.environ.get("GW_BENCH_ROUNDS", "10"))
LAYERS = ["layer4", "layer5", "layer6", "layer7"]


def _baseline(session, seeds, bs):
    """Generator + segmenter only: what any dissection must at least run."""
    for i in range(0, len(seeds), bs):
        chunk = seeds[i : i + bs]
        with torch.no_grad():
            images = gw.render.to_uint8(session.model(session.latents(chunk)))
        session.segmenter.segment(images)


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def overhead(session, layer) -> None:
    """The dissection of N samples against generator + segmenter alone on the same samples,
    in ROUNDS interleaved rounds of N / ROUNDS samples (baseline, dissection, baseline), so a
    busy machine slows both alike; the median of the rounds' ratios, in wall and CPU time."""
    bs, rounds = session.batch_size, max(1, min(ROUNDS, N // session.batch_size))
    per_round = N // rounds
    wall, cpu, totals, d = [], [], [0.0, 0.0], None
    for r in range(rounds):
        seeds = list(range(r * per_round, (r + 1) * per_round))
        before = _timed(lambda seeds=seeds: _baseline(session, seeds, bs))

        def run(seeds=seeds):
            nonlocal d
            d = session.dissect(layer, seeds=seeds, cache=False, progress=False)

        full = _timed(run)
        after = _timed(lambda seeds=seeds: _baseline(session, seeds, bs))
        wall.append(full[0] / ((before[0] + after[0]) / 2))
        cpu.append(full[1] / ((before[1] + after[1]) / 2))
        totals[0] += full[0]
        totals[1] += (before[0] + after[0]) / 2
    samples = rounds * per_round
    report(f"dissect {layer}, {samples} samples in {rounds} rounds", f"{totals[0]:.1f} s")
    report("generator + segmenter alone, same samples", f"{totals[1]:.1f} s")
    report(
        "overhead ratio (goal <= 1.3), median of rounds",
        f"{statistics.median(wall):.3f}x wall, {statistics.median(cpu):.3f}x CPU "
        f"(rounds: {', '.join(f'{w:.2f}' for w in wall)})",
    )
    report("  thresholds", f"{d.threshold_method}, worst-case rank error {d.rank_error:.3%}")


def conventions(session) -> None:
    """threshold_on="raw" (the default, GAN Dissection 2018) against "upsampled" (the later
    dissect code): per-unit best IoU and interpretable units, same samples."""
    for layer in LAYERS:
        raw = session.dissect(layer, n=N, progress=False)
        up = session.dissect(layer, n=N, progress=False, threshold_on="upsampled")
        diff = up.best_iou.double() - raw.best_iou.double()
        relabelled = sum(a != b for a, b in zip(raw.labels, up.labels))
        report(
            f"{layer}: best IoU, upsampled - raw",
            f"mean {diff.mean():+.4f}, min {diff.min():+.4f}, max {diff.max():+.4f}; "
            f"interpretable {len(raw.interpretable())} -> {len(up.interpretable())} "
            f"of {len(raw.labels)}; {relabelled} units relabelled",
        )


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
    conventions(session)
    classifier()


if __name__ == "__main__":
    main()
