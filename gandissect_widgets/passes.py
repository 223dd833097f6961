"""Statistics passes over samples, used alike in one process and by shards on workers.

Every pass runs at an explicit State (uncached forwards), so a background pass keeps the model
state it started with while the user edits on.

>>> batches([1, 2, 3, 4, 5], 2)
[[1, 2], [3, 4], [5]]
"""

from __future__ import annotations

import numpy as np
import torch

from . import checks, render, stats

__all__ = [
    "batches",
    "sample_seeds",
    "batch_size",
    "concept_source",
    "acts_and_images",
    "first_pass",
    "second_pass",
]


def batches(seeds: list, size: int) -> list[list]:
    """Consecutive chunks of at most ``size``."""
    return [seeds[i : i + size] for i in range(0, len(seeds), size)]


def sample_seeds(n, seeds) -> list[int]:
    """The sample set: ``seeds`` when given (non-empty), else ``0..n-1``."""
    if seeds is not None:
        seeds = checks.seeds(seeds)
        if not seeds:
            raise ValueError("seeds is empty; give at least one seed")
        return seeds
    return list(range(checks.count(n, "n")))


def batch_size(session, size, n: int) -> int:
    """The batch size for ``n`` samples: ``size`` checked, or the Session's."""
    if size is None:
        return min(session.batch_size, n)
    size = checks.count(size, "batch_size")
    if size > n:
        raise ValueError(
            f"n={n} samples is fewer than batch_size={size}; lower batch_size or raise n"
        )
    return size


def concept_source(session, segmenter=None):
    """(concept names, ``segment(seeds, uint8 images) -> int64 concept maps``)."""
    seg = segmenter if segmenter is not None else session.segmenter
    if seg is not None:
        return list(seg.concepts), lambda seeds, images: seg.segment(images).cpu()
    if session.kind == "classifier" and session.concepts:
        return list(session.concepts), lambda seeds, images: session.concept_maps(seeds)
    raise ValueError(
        "dissection needs concept maps: attach a segmenter (Session(..., segmenter=seg) or "
        "dissect(..., segmenter=seg)), or give a classifier Session data that returns concept maps"
    )


def acts_and_images(session, state, layer, seeds, images=True):
    """One uncached forward of ``seeds`` at ``state``: (activations, uint8 images or None)."""
    out, seen = session.run(session.inputs(seeds), retain=[layer], state=state)
    acts = seen[layer].float()
    if not images:
        return acts, None
    if session.kind == "generator":
        return acts, render.to_uint8(out)
    return acts, session.generate(seeds)


def first_pass(session, state, layer, seeds, bs, k, segment=None, keep=False, step=None, seed=0):
    """Quantile sketch, top-k and moments over ``seeds``; with ``segment`` also the concept
    maps, and with ``keep`` the activations (float16) for the second pass."""
    c = session.layer_shape(layer)[0]
    q, top, mom = stats.Quantile(c, seed=seed), stats.TopK(k=k), stats.Moments(c)
    kept, maps = [], []
    for chunk in batches(seeds, bs):
        acts, images = acts_and_images(session, state, layer, chunk, images=segment is not None)
        q.update(acts)
        top.update(acts, torch.tensor(chunk))
        mom.update(acts)
        if segment is not None:
            maps.append(segment(chunk, images).to(torch.int16))
        if keep:
            kept.append(acts.half())
        if step is not None:
            step()
    return (q, top, mom), kept, maps


def second_pass(
    session, state, layer, seeds, bs, thresholds, segment, n_concepts, kept=(), maps=(), step=None
):
    """IoU counts of "activation above threshold" with every concept over ``seeds``."""
    iou = stats.IoU(thresholds, n_concepts)
    for i, chunk in enumerate(batches(seeds, bs)):
        if kept and maps:
            acts, concept_map = kept[i].float(), maps[i]
        else:
            acts, images = acts_and_images(session, state, layer, chunk)
            concept_map = maps[i] if maps else segment(chunk, images)
        iou.update(acts, torch.as_tensor(np.asarray(concept_map)).long())
        if step is not None:
            step()
    return iou
