"""The classifier half of the PNAS paper on the hamlet classifier, on held-out scenes:
steering (flip rates per target, value and k), attacks at eps = 2/255 on the class or through
20 units (judged on uint8 pictures), where class attacks act (attack_units), and the time of
one attack against the bare classifier's forward+backward passes.

    python -m benchmarks classifier            # about 15 minutes on 2 busy cores
"""

from __future__ import annotations

import time

import numpy as np
import torch

import gandissect_widgets as gw
from benchmarks._timing import compare, report
from gandissect_widgets import attacks, steering

HELD_OUT = gw.zoo.hamlet.TEST_SEED_START
LAYER = "conv4"


def _steering(s) -> None:
    seeds = range(HELD_OUT, HELD_OUT + 300)
    print(f"-- steering at {LAYER}: 300 held-out scenes, units ranked on seeds 0-199")
    for value in ("high", 2, 4):
        rates = []
        for c in s.classes:
            curve = steering.steering_curve(s, LAYER, c, range(1, 11), value, seeds=seeds)
            first = next((k for k, e in curve.items() if e.flip_rate > 0.5), None)
            rates.append(f"{c} {curve[10].flip_rate:.0%} (n={curve[10].n}, k50={first})")
            if value == 2:
                print(curve[10].table())
        report(f"k=10, value={value!r}: flip rate per target", "; ".join(rates))
    half = np.zeros(s.image_size, np.float32)
    half[:, : s.image_size[1] // 2] = 1
    rates = [
        f"{c} {gw.steering_effect(s, LAYER, c, 10, 2, half, seeds=seeds).flip_rate:.0%}"
        for c in s.classes
    ]
    report("k=10, value=2, left half of the map only", "; ".join(rates))


def _attacks(s, seeds, eps) -> None:
    labels = np.asarray(s.labels(seeds))
    print(f"-- attacks at eps={eps * 255:.0f}/255, 10 steps, {len(seeds)} held-out scenes")
    for t, c in enumerate(s.classes):
        picked = [x for x, lab in zip(seeds, labels) if lab != t]
        cls = s.attack(picked, c, eps=eps)
        flips = []
        for src in sorted(set(labels[labels != t].tolist())):
            group = [x for x, lab in zip(seeds, labels) if lab == src]
            units = attacks.unit_targets(s, LAYER, c, source=s.classes[src], k=10)
            flips += list(s.attack(group, c, eps=eps, layer=LAYER, units=units).after == t)
        report(
            f"-> {c}: flip rate (uint8), n={len(picked)}",
            f"20 units {np.mean(flips):.0%}, class logits {cls.flip_rate:.0%}, "
            f"PSNR >= {cls.psnr.min():.1f} dB",
        )


def _where(s, seeds, eps) -> None:
    t0 = time.perf_counter()
    r = gw.attack_units(s, LAYER, seeds, eps=eps)
    print(f"-- class attacks at eps={eps * 255:.0f}/255 on {len(seeds)} scenes x 4 targets")
    print(r.table())
    report(
        "top-10 moved units among source/target top-20",
        f"{r.overlap:.0%} vs {r.random:.0%} random: {r.ratio:.1f}x "
        f"(source {r.source_share:.0%}, target {r.target_share:.0%}; "
        f"flip rate {r.flip_rate:.0%}; {time.perf_counter() - t0:.0f}s)",
    )


def _timing(s) -> None:
    images = s.generate(range(HELD_OUT, HELD_OUT + 8))
    x0 = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    model = s.model

    def bare():
        delta = torch.zeros_like(x0, requires_grad=True)
        for _ in range(10):
            out = model((x0 + delta).clamp(-1, 1))
            torch.autograd.grad(out.log_softmax(1)[:, 3].sum(), delta)

    def attack():
        s.attack(images, 3, steps=10)

    c, b, ratio = compare(attack, bare, repeats=3, rounds=3)
    report("attack of 8 pictures, 64 px, 10 steps", f"{c:.3f} s (goal <= 2 s)")
    report("10 forward+backward of the bare classifier", f"{b:.3f} s")
    report("ratio (goal <= 1.3)", f"{ratio:.3f}x")


def main() -> None:
    s = gw.Session.from_zoo("hamlet-classifier", device="cpu")
    _steering(s)
    _attacks(s, list(range(HELD_OUT, HELD_OUT + 125)), 2 / 255)
    _attacks(s, list(range(HELD_OUT, HELD_OUT + 40)), 8 / 255)
    _where(s, list(range(HELD_OUT, HELD_OUT + 40)), 8 / 255)
    _timing(s)


if __name__ == "__main__":
    main()
