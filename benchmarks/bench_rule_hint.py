"""Does the rule check before Apply (``rewrite.rule_hint``) warn about the rules that fail?

Requests built around hamlet's example rule (trees on roofs, layer6) from several draws of
candidate samples, each in the ways a hand-painted rule goes wrong: too little context, loose
strokes that spill over the roof, the wrong place as context, the copy pasted where nothing is
like the context. Each is checked (positions, agreement, paste match, advice), fitted (rank 1,
400 steps) and measured on seeds 10,000-10,099: success (roof pixels that become tree) and
collateral (mean pixel change on samples without roofs). A rule "fails" below 50 % success or
above 2 % collateral. Prints one row per request and how the advice separates the two groups,
on draws 0-3 (on which the thresholds in ``rewrite/fit.py`` were chosen) and on draws 4-7.

    python -m benchmarks.bench_rule_hint [draws]
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import gandissect_widgets as gw
from gandissect_widgets import rewrite as rw
from gandissect_widgets.zoo.hamlet import example_rule

HELD_OUT = range(10_000, 10_100)


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """The mask dilated by ``pixels`` (a brush that spills over the region's edge)."""
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return (F.max_pool2d(t, 2 * pixels + 1, stride=1, padding=pixels)[0, 0] > 0).numpy()


def variants(session, rule) -> dict:
    """Named requests made from one scripted rule."""
    req = rule["request"]
    ctx, copy, paste = req["context"], req["copy"], req["paste"]
    seg = session.segmenter
    seeds = [s for s, _ in ctx]
    labels = seg.segment(session.generate(seeds)).cpu().numpy()

    def regions(concept):
        k = seg.concepts.index(concept)
        return [(s, (lab == k).astype(np.float32)) for s, lab in zip(seeds, labels, strict=True)]

    sky, grass = regions("sky"), regions("grass")
    ys, xs = np.nonzero(sky[0][1])
    sky_spot = (int(ys.min()) + 4, int(np.median(xs)))  # high in the paste sample's sky
    one = ctx[0][1]
    ys, xs = np.nonzero(one)
    cy, cx = int(ys[len(ys) // 2]), int(xs[len(xs) // 2])  # a roof pixel
    dot = np.zeros_like(one)
    dot[cy - 1 : cy + 2, cx - 1 : cx + 2] = one[cy - 1 : cy + 2, cx - 1 : cx + 2]

    def loose(pixels):
        return [(s, _grow(m, pixels).astype(np.float32)) for s, m in ctx[:3]]

    return {
        "as scripted (8 roofs)": dict(context=ctx, copy=copy, paste=paste),
        "3 roofs": dict(context=ctx[:3], copy=copy, paste=paste),
        "1 roof": dict(context=ctx[:1], copy=copy, paste=paste),
        "3 roofs, loose strokes (+4 px)": dict(context=loose(4), copy=copy, paste=paste),
        "3 roofs, very loose (+8 px)": dict(context=loose(8), copy=copy, paste=paste),
        "a few roof pixels": dict(context=[(ctx[0][0], dot)], copy=copy, paste=paste),
        "sky as context": dict(context=sky[:3], copy=copy, paste=paste),
        "grass as context": dict(context=grass[:3], copy=copy, paste=paste),
        "roofs and grass as context": dict(context=ctx[:2] + grass[:2], copy=copy, paste=paste),
        "pasted into the sky": dict(context=ctx[:3], copy=copy, paste=(paste[0], sky_spot)),
    }


def main(draws: int = 8, first: int = 0) -> None:
    torch.set_num_threads(2)
    session = gw.Session(
        gw.zoo.load("hamlet"), device="cpu", segmenter=gw.zoo.load_segmenter("hamlet")
    )
    rows, t0 = [], time.perf_counter()
    for d in range(first, first + draws):
        rule = example_rule(session, first=1000 * d)
        for name, request in variants(session, rule).items():
            hint = rw.rule_hint(session, "layer6", **request)
            edit = rw.make_rewrite(session, "layer6", **request, stat_samples=1000)
            r = gw.rewrite_eval(session, edit, "roof", "tree", seeds=HELD_OUT)
            fails = r["success"] < 0.5 or r["change_without_source"] > 0.02
            rows.append((d, name, hint, r, fails))
            m = hint["paste_match"]
            print(
                f"draw {d} | {name:32s} | pos {hint['positions']:4d} agree {hint['agreement']:.2f}"
                f" match {m if m is None else round(m, 2)} spread {hint['spread']:.3f} | "
                f"advice {len(hint['advice'])} | "
                f"success {r['success']:6.1%} collateral {r['change_without_source']:.2%} | "
                f"{'FAILS' if fails else 'works'}",
                flush=True,
            )
    print(f"{len(rows)} requests in {time.perf_counter() - t0:.0f} s")
    for half, keep in (("draws 0-3 (thresholds chosen)", lambda d: d < 4),
                       ("draws 4-7 (held out)", lambda d: d >= 4)):  # fmt: skip
        part = [(bool(h["advice"]), f) for d, _, h, _, f in rows if keep(d)]
        if part:
            fails = [w for w, f in part if f]
            works = [w for w, f in part if not f]
            print(
                f"{half}: failing rules warned {sum(fails)}/{len(fails)}, "
                f"working rules warned {sum(works)}/{len(works)}"
            )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
