"""Layer surveys: every hamlet GAN layer on one sample set (goal: <= 3 minutes on 2 cores; the
per-layer top concepts agree with full dissections of three layers), the example rule fitted
at every GAN layer (which layer works best), and hamlet-vit beside the CNN classifier (share of
units with a concept and concepts per block; ablating hamlet-vit's best tree units: the drop
of the forest class's accuracy on held-out scenes)."""

from __future__ import annotations

import os
import time

import gandissect_widgets as gw
from gandissect_widgets.zoo import hamlet

N = int(os.environ.get("GW_BENCH_SURVEY_SAMPLES", "200"))
EFFECT_N = int(os.environ.get("GW_BENCH_EFFECT_SAMPLES", "50"))
FULL = int(os.environ.get("GW_BENCH_SAMPLES", "1000"))
CHECKED = ["layer4", "layer6", "layer8"]


def _top(counts: dict, k: int = 3) -> list[str]:
    return sorted(counts, key=lambda c: (-counts[c], c))[:k]


def gan_survey() -> None:
    session = gw.Session.from_zoo("hamlet", device="cpu")
    start, cpu = time.perf_counter(), time.process_time()
    table = gw.survey(session, n=N, effect_n=EFFECT_N, cache=False, progress=False)
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(table)
    print(f"survey of {len(table.rows)} GAN layers, {N} samples (+{EFFECT_N} for effects): "
          f"{took:.1f} s "
          f"wall, {cpu:.1f} s process CPU")  # fmt: skip
    for row in table.rows:
        removed = ", ".join(f"{c} {v:.0%}" for c, v in row.get("removed", {}).items())
        print(f"  {row['layer']}: top-3 {_top(row['counts'])}; best units' ablation removes "
              f"{removed}")  # fmt: skip


def rule_survey() -> None:
    session = gw.Session.from_zoo("hamlet", device="cpu")
    base = hamlet.example_rule(session)  # seeds and masks picked once; the layer varies
    layers = ["layer4", "layer5", "layer6", "layer7", "layer8"]
    start = time.perf_counter()
    table = gw.rewrite_survey(session, lambda s, layer: base, layers, n=100)
    print(table)
    best = table.best()
    print(f"best: {best['layer']} rank {best['rank']} ({best['success']:.1%} success, "
          f"{best['change_without_source']:.2%} change without roofs); "
          f"{time.perf_counter() - start:.1f} s")  # fmt: skip


def classifier_surveys() -> None:
    held_out = range(hamlet.TEST_SEED_START, hamlet.TEST_SEED_START + 500)
    for name in ("hamlet-classifier", "hamlet-vit"):
        session = gw.Session.from_zoo(name, device="cpu")
        start = time.perf_counter()
        table = gw.survey(session, n=N, cache=False, progress=False)
        print(f"== {name}: {time.perf_counter() - start:.1f} s")
        print(table)
        if name == "hamlet-vit":
            # after the last block only the class token reaches the head: its patch tokens
            # cannot change a prediction, so the tree units are taken from the blocks before
            for layer in [r["layer"] for r in table.rows if not r["layer"].startswith("blocks.3")]:
                units = table.dissections[layer].ranked_for("tree")[:20]
                change = session.ablation_accuracy(layer, units, seeds=held_out)
                others = -100 * change.others_drop("forest")
                print(f"{layer}: 20 best tree units ablated: forest accuracy "
                      f"{change.before['forest']:.1%} -> {change.after['forest']:.1%}; other "
                      f"classes {others:+.1f} points (500 held-out scenes)")  # fmt: skip


def full_dissections() -> None:
    session = gw.Session.from_zoo("hamlet", device="cpu")
    for layer in CHECKED:
        start = time.perf_counter()
        d = session.dissect(layer, n=FULL, progress=False)
        share = len(d.interpretable()) / len(d.labels)
        print(
            f"{layer} full dissection, {FULL} samples: top-3 {_top(d.summary())}, "
            f"{share:.0%} with a concept, {d.summary()} ({time.perf_counter() - start:.0f} s)"
        )


def main(parts=("gan", "full", "rule", "classifiers")) -> None:
    for part in parts:
        {"gan": gan_survey, "full": full_dissections, "rule": rule_survey,
         "classifiers": classifier_surveys}[part]()  # fmt: skip


if __name__ == "__main__":
    import sys

    import torch

    torch.set_num_threads(2)
    main(sys.argv[1:] or ("gan", "full", "rule", "classifiers"))
