"""Measure the hamlet models on held-out seeds (``TEST_SEED_START`` onwards).

Usage::

    python -m gandissect_widgets.zoo.hamlet.evaluate [--n 2000] [--generator PATH]
        [--segmenter PATH] [--classifier PATH] [--vit PATH] [--only WHICH ...] [--write]
        [--samples PNG]

Prints every figure beside its goal; ``--write`` also stores them in ``weights/metrics.json``
(the figures MODELS.md reports and the regression test checks).

Example:
    >>> from gandissect_widgets.zoo import hamlet
    >>> segmenter_iou(hamlet.load_segmenter(), n=100)["miou"] > 0.5
    True
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from .world import CONCEPTS, TEST_SEED_START, render

GOALS = {"miou": 0.85, "accuracy": 0.95, "relative_error": 0.25, "min_share": 0.01}
PRESENT_PIXELS = 20  # a concept "appears" in an image when it labels >= 20 px (~0.5% of 64x64)
METRICS = Path(__file__).parent / "weights" / "metrics.json"


def _held_out(n):
    return render(range(TEST_SEED_START, TEST_SEED_START + n))


def segmenter_iou(seg, n=2000):
    """Per-concept IoU (pooled over pixels) and their mean on ``n`` held-out scenes."""
    images, truth, _ = _held_out(n)
    return iou_table(truth, seg.segment(images))


def iou_table(truth, pred):
    """Per-concept IoU of predicted vs. true concept maps (pooled over pixels), and the mean."""
    truth, pred = np.asarray(truth).ravel(), np.asarray(pred).ravel()
    k = len(CONCEPTS)
    confusion = np.bincount(truth * k + pred, minlength=k * k).reshape(k, k)
    inter = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - inter
    iou = {c: float(i / u) for c, i, u in zip(CONCEPTS, inter, union, strict=True) if u}
    n = len(truth) // (64 * 64)
    return {"iou": iou, "miou": float(np.mean(list(iou.values()))), "n": n}


@torch.no_grad()
def classifier_accuracy(clf, n=2000):
    """Share of ``n`` held-out scenes whose scene type the classifier predicts."""
    images, _, scenes = _held_out(n)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    pred = torch.cat([clf(x[i : i + 250]).argmax(1) for i in range(0, n, 250)]).numpy()
    return {"accuracy": float((pred == scenes).mean()), "n": n}


def concept_stats(concept_maps):
    """Per concept: pixel share, presence rate and mean area (share of the image) when present."""
    maps = torch.as_tensor(concept_maps).reshape(len(concept_maps), -1)
    counts = torch.stack([(maps == i).sum(1) for i in range(len(CONCEPTS))], 1).double()
    present = counts >= PRESENT_PIXELS
    area = counts / maps.shape[1]
    out = {}
    for i, c in enumerate(CONCEPTS):
        hits = present[:, i]
        out[c] = {
            "share": float(area[:, i].mean()),
            "presence": float(hits.double().mean()),
            "area": float(area[hits, i].mean()) if hits.any() else 0.0,
        }
    return out


@torch.no_grad()
def generator_stats(generator, seg, n=2000, seed=0, real_maps=None):
    """Segment ``n`` generated and ``n`` held-out rendered scenes; compare concept statistics.

    For every concept covering >= 1% of real pixels, reports presence rate and mean area of
    both, and the relative error of each (goal: <= 25%). ``real_maps`` reuses segmentations
    of the first ``n`` held-out scenes when the caller already has them.
    """
    if real_maps is None:
        real_maps = seg.segment(_held_out(n)[0])
    real = concept_stats(real_maps)
    z = torch.randn(n, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    fake_maps = torch.cat([seg.segment(generator(z[i : i + 250])) for i in range(0, n, 250)])
    fake = concept_stats(fake_maps)
    rows = {}
    for c in CONCEPTS:
        if real[c]["share"] < GOALS["min_share"]:
            continue
        r, f = real[c], fake[c]
        rows[c] = {
            "real_presence": r["presence"], "fake_presence": f["presence"],
            "presence_error": abs(f["presence"] - r["presence"]) / max(r["presence"], 1e-9),
            "real_area": r["area"], "fake_area": f["area"],
            "area_error": abs(f["area"] - r["area"]) / max(r["area"], 1e-9),
        }  # fmt: skip
    worst = max(max(v["presence_error"], v["area_error"]) for v in rows.values())
    return {"concepts": rows, "worst_error": worst, "n": n}


@torch.no_grad()
def save_samples(generator, path, n=32, seed=0):
    """Save a grid of ``n`` generated samples (8 per row) as a PNG, e.g. for the README."""
    from .train import save_grid

    z = torch.randn(n, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    save_grid(generator(z), path)


def _report(m):
    lines = []
    if "segmenter" in m:
        s = m["segmenter"]
        lines.append(f"segmenter mIoU {s['miou']:.3f} (goal >= {GOALS['miou']}), n={s['n']}")
        lines += [f"  {c:9s} IoU {v:.3f}" for c, v in s["iou"].items()]
    if "classifier" in m:
        a = m["classifier"]
        lines.append(f"classifier accuracy {a['accuracy']:.3f} (goal >= {GOALS['accuracy']})")
    if "vit" in m:
        a = m["vit"]
        lines.append(f"hamlet-vit accuracy {a['accuracy']:.3f} (goal >= {GOALS['accuracy']})")
    if "generator" in m:
        g = m["generator"]
        lines.append(f"generator worst relative error {g['worst_error']:.3f} (goal <= 0.25)")
        for c, v in g["concepts"].items():
            lines.append(
                f"  {c:9s} presence {v['fake_presence']:.3f} vs {v['real_presence']:.3f} "
                f"({v['presence_error']:.0%})  area {v['fake_area']:.4f} vs {v['real_area']:.4f} "
                f"({v['area_error']:.0%})"
            )
    return "\n".join(lines)


def main(argv=None):
    from . import load_classifier, load_generator, load_segmenter, load_vit

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--generator", type=Path, help="weights file (default: shipped)")
    parser.add_argument("--segmenter", type=Path, help="weights file (default: shipped)")
    parser.add_argument("--classifier", type=Path, help="weights file (default: shipped)")
    parser.add_argument("--vit", type=Path, help="weights file (default: shipped)")
    kinds = ["segmenter", "classifier", "generator", "vit"]
    parser.add_argument("--only", choices=kinds, nargs="*")
    parser.add_argument("--write", action="store_true", help="store figures in metrics.json")
    parser.add_argument("--samples", type=Path, help="also save 32 generated samples here")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    only = set(args.only or kinds)
    seg = load_segmenter(args.segmenter)
    m = json.loads(METRICS.read_text()) if METRICS.exists() else {}
    if "segmenter" in only:
        m["segmenter"] = segmenter_iou(seg, args.n)
    if "classifier" in only:
        m["classifier"] = classifier_accuracy(load_classifier(args.classifier), args.n)
    if "vit" in only:
        m["vit"] = classifier_accuracy(load_vit(args.vit), args.n)
    if "generator" in only:
        m["generator"] = generator_stats(load_generator(args.generator), seg, args.n)
    print(_report(m))
    if args.samples:
        save_samples(load_generator(args.generator), args.samples)
    if args.write:
        METRICS.write_text(json.dumps(m, indent=1) + "\n")


if __name__ == "__main__":
    main()
