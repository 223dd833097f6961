"""Inverting held-out hamlet renders (pictures the GAN never drew) with ``fit_photo``, started
from hamlet's encoder: PSNR, segmenter mIoU against the exact concept map, seconds to the first
preview and to the end per image on 2 threads, and whether
ablating layer6's top 5% tree units removes the photos' trees as it does the samples'
and whether the hamlet example rule (trees on roofs) turns their roofs into trees (goals:
>= 26.6 dB, >= 0.8, first preview <= 1 s, <= 5 s, >= 50%, >= 50%).

``python -m benchmarks invert`` (50 renders); ``python -m benchmarks.bench_invert N [key=value
...]`` for N renders and other ``fit_photo`` settings, e.g. ``layer=layer5 steps=200``;
``encoder=none`` inverts without the encoder (the path of generators that have none);
``threads=1`` runs on one torch thread (on a busy machine its CPU seconds are the quiet figure).
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

import gandissect_widgets as gw
from benchmarks._timing import report
from gandissect_widgets.hooks import hooked
from gandissect_widgets.invert import DEFAULTS, ENCODED, fit_photo, psnr, reconstruct
from gandissect_widgets.zoo import hamlet
from gandissect_widgets.zoo.hamlet.rule import example_rule

TREE_LAYER = "layer6"
TREE_SHARE = 0.05  # top 5% of the layer's units


def tree_units(session, n=400):
    """Layer6's top 5% tree units by IoU, from a fresh dissection of ``n`` samples."""
    d = session.dissect(TREE_LAYER, n=n, cache=False)
    k = max(1, round(TREE_SHARE * len(d.labels)))
    return d.ranked_for("tree")[:k]


def _zero(units):
    idx = torch.tensor(units)

    def ablate(out):
        out = out.clone()
        out[:, idx] = 0
        return out

    return ablate


def iou_table(pred, truth, k):
    """Per-concept intersection and union counts (k,) of two id maps."""
    inter = torch.bincount(truth[pred == truth].reshape(-1), minlength=k)[:k]
    area_p = torch.bincount(pred.reshape(-1), minlength=k)[:k]
    area_t = torch.bincount(truth.reshape(-1), minlength=k)[:k]
    return inter, area_p + area_t - inter


def miou(pred, truth, k):
    """(mIoU over concepts present in ``truth``, aggregated over the images; mean over images of
    each image's mIoU over its present concepts)."""
    inter, union = iou_table(pred, truth, k)
    present = torch.bincount(truth.reshape(-1), minlength=k)[:k] > 0
    pooled = float((inter[present] / union[present]).mean())
    per_image = []
    for p, t in zip(pred, truth, strict=True):
        i, u = iou_table(p, t, k)
        here = torch.bincount(t.reshape(-1), minlength=k)[:k] > 0
        per_image.append(float((i[here] / u[here]).mean()))
    return pooled, statistics.mean(per_image)


def _clock(times):
    """A ``preview`` callback noting when each preview arrived."""
    return lambda _photo: times.append(time.perf_counter())


def evaluate(model, segmenter, seeds, units, **settings):
    """Invert the renders of ``seeds``; quality, time and the tree ablation's effect."""
    images, concepts, _ = hamlet.render(seeds)
    truth = torch.from_numpy(concepts).long()
    k = len(segmenter.concepts)
    tree = segmenter.concepts.index("tree")
    recons, ablated, psnrs, seconds, steps, photos, first = [], [], [], [], [], [], []
    cpu = []
    for image in images:
        shown: list[float] = []
        t0, c0 = time.perf_counter(), time.process_time()
        photo = fit_photo(model, image, preview=_clock(shown), **settings)
        seconds.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        first.append(shown[0] - t0)
        steps.append(len(photo.losses))
        photos.append(photo)
        recons.append(reconstruct(model, photo))
        psnrs.append(psnr(recons[-1], photo.target))
        edit = photo.edits()
        edit.setdefault(TREE_LAYER, []).append(_zero(units))  # after the residual
        with torch.no_grad(), hooked(model, edit=edit):
            ablated.append(model(photo.z[None])[0])
    recons, ablated = torch.stack(recons), torch.stack(ablated)
    seg_recon, seg_ablated = segmenter.segment(recons), segmenter.segment(ablated)
    seg_render = segmenter.segment(images)
    before, after = int((seg_recon == tree).sum()), int((seg_ablated == tree).sum())
    return {
        "psnr": statistics.mean(psnrs),
        "psnr_min": min(psnrs),
        "miou": miou(seg_recon, truth, k),
        "miou_render": miou(seg_render, truth, k),
        "seconds": statistics.mean(seconds),
        "seconds_max": max(seconds),
        "cpu_seconds": statistics.mean(cpu),
        "first_preview": statistics.mean(first),
        "first_preview_max": max(first),
        "steps_per_s": sum(steps) / sum(seconds),
        "tree_removed": 1 - after / max(before, 1),
        "tree_pixels": before,
        "images_with_trees": int((seg_recon == tree).flatten(1).any(1).sum()),
        "photos": photos,
    }


def rule_carry_over(session, photos):
    """The example rule's success (roof pixels turned tree) on the photos and on 200 samples."""
    ids = [session.sources.add_photo(p.z, p.layer, p.residual) for p in photos]
    rule = example_rule(session)
    edit = session.rewrite(rule["layer"], **rule["request"])
    on_photos = gw.rewrite_eval(session, edit, "roof", "tree", seeds=ids)
    on_samples = gw.rewrite_eval(session, edit, "roof", "tree", n=200, seeds=range(50_000, 50_200))
    session.undo()
    return on_photos, on_samples


def main(n: int = 50, threads: int = 2, **settings) -> None:
    torch.set_num_threads(threads)
    session = gw.Session.from_zoo("hamlet")
    model, segmenter = session.model, session.segmenter
    units = tree_units(session)
    samples = session.ablation_effect(TREE_LAYER, units, "tree", n=200, seeds=range(50_000, 50_200))
    seeds = range(hamlet.TEST_SEED_START, hamlet.TEST_SEED_START + n)
    if settings.get("encoder", "") == "none":
        settings["encoder"] = None
    settings.setdefault("encoder", session.encoder)
    chosen = DEFAULTS if settings["encoder"] is None else {**DEFAULTS, **ENCODED}
    shown = {**chosen, **settings, "encoder": settings["encoder"] is not None}
    print("fit_photo settings: " + ", ".join(f"{k}={v}" for k, v in shown.items()), flush=True)
    r = evaluate(model, segmenter, seeds, units, **settings)
    report(f"{n} held-out renders: PSNR mean (goal >= 26.6 dB)", f"{r['psnr']:.2f} dB")
    report("... PSNR worst image", f"{r['psnr_min']:.2f} dB")
    report(
        "segmenter mIoU vs exact map, pooled (goal >= 0.8)",
        f"{r['miou'][0]:.3f} (per image {r['miou'][1]:.3f})",
    )
    report(
        "... same segmenter on the renders themselves",
        f"{r['miou_render'][0]:.3f} (per image {r['miou_render'][1]:.3f})",
    )
    report(
        f"first preview, seconds per image, {threads} threads (goal <= 1 s)",
        f"{r['first_preview']:.3f} s (worst {r['first_preview_max']:.3f} s)",
    )
    report(
        f"seconds per image to the end, {threads} threads (goal <= 5 s)",
        f"{r['seconds']:.2f} s (worst {r['seconds_max']:.2f} s)",
    )
    report(
        "... CPU seconds per image (all threads; the wall time on a quiet machine)",
        f"{r['cpu_seconds']:.2f} s",
    )
    report("... optimisation steps per second", f"{r['steps_per_s']:.1f}")
    report(
        f"ablating {len(units)} tree units of {TREE_LAYER} {units}: photos' tree px removed",
        f"{r['tree_removed']:.1%} (goal >= 50%; {r['tree_pixels']} px in "
        f"{r['images_with_trees']} photos)",
    )
    report("... on 200 generated samples", f"{samples.removed:.1%}")
    photos, generated = rule_carry_over(session, r["photos"])
    report(
        "example rule (trees on roofs): photos' roof px turned tree",
        f"{photos['success']:.1%} (goal >= 50%; {photos['with_source']} photos with roofs)",
    )
    report("... on 200 generated samples", f"{generated['success']:.1%}")


def _parse(argv):
    n = int(argv[0]) if argv else 50
    settings = {}
    for arg in argv[1:]:
        key, _, value = arg.partition("=")
        for cast in (int, float, str):
            try:
                settings[key] = cast(value)
                break
            except ValueError:
                continue
    return n, settings


if __name__ == "__main__":
    n, settings = _parse(sys.argv[1:])
    main(n, **settings)
