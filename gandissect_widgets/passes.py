"""Statistics passes over samples, used alike in one process and by shards on workers.

Every pass runs at an explicit State (uncached forwards), so a background pass keeps the model
state it started with while the user edits on.

A dissection splits its sample set into shards of ``shard_size`` consecutive seeds: the
boundaries depend on the sample set and that size only, never on how many workers there are.
Pass 1 of shard i builds its own statistics (a quantile sketch seeded with i), and the shards
merge in a fixed tree order (:func:`merge_first`).  One process runs the same shards one after
another, so any executor, any number of workers and the in-process path give the same bits.

>>> batches([1, 2, 3, 4, 5], 2)
[[1, 2], [3, 4], [5]]
>>> shards([1, 2, 3, 4, 5], 2)
[(0, [1, 2]), (1, [3, 4]), (2, [5])]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import checks, render, stats

__all__ = [
    "batches",
    "shards",
    "sample_seeds",
    "batch_size",
    "shard_size",
    "concept_source",
    "acts_and_images",
    "Levels",
    "first_pass",
    "second_pass",
    "presence",
    "merge_first",
]

SHARD_SAMPLES = 256  # default shard size, rounded up to whole batches
THRESHOLD_ON = ("raw", "upsampled")
PRESENT_SHARE = 0.005  # a concept is in an image when it covers >= 0.5% of its pixels


def batches(seeds: list, size: int) -> list[list]:
    """Consecutive chunks of at most ``size``."""
    return [seeds[i : i + size] for i in range(0, len(seeds), size)]


def shards(seeds: list, size: int) -> list[tuple[int, list]]:
    """``(index, seeds)`` of consecutive shards of at most ``size`` seeds."""
    return list(enumerate(batches(seeds, size)))


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


def shard_size(size, bs: int) -> int:
    """``size`` checked, or the default: :data:`SHARD_SAMPLES` rounded up to whole batches."""
    if size is not None:
        return checks.count(size, "shard_size")
    return -(-SHARD_SAMPLES // bs) * bs


def concept_source(session, segmenter=None):
    """(concept names, ``segment(seeds, uint8 images) -> int64 concept maps``)."""
    seg = checks.segmenter(segmenter) if segmenter is not None else session.segmenter
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
    out, seen = session.forward(seeds, state, retain=[layer])
    acts = seen[layer].float()
    if not images:
        return acts, None
    if session.kind == "generator":
        return acts, render.to_uint8(out)
    return acts, session.generate(seeds)


def map_size(session, state, layer, seed, segment) -> tuple[int, int]:
    """(H, W) of the concept maps, from one sample."""
    _, images = acts_and_images(session, state, layer, [seed])
    return tuple(segment([seed], images).shape[1:])


@dataclass(frozen=True)
class Levels:
    """How pass 1 finds each unit's threshold: the ``quantile`` of its raw activation maps
    (``on="raw"``) or of the maps upsampled to the concept maps' ``size``; exactly
    (:class:`~gandissect_widgets.stats.TailQuantile`) when ``total``, the number of values per
    unit over the whole sample set, is given, else with a sketch seeded by the shard index."""

    quantile: float
    on: str = "raw"
    size: tuple[int, int] | None = None
    total: int | None = None

    @property
    def method(self) -> str:
        return "exact" if self.total else "sketch"

    @property
    def kind(self) -> type:
        """The class of the threshold statistic."""
        return stats.TailQuantile if self.total else stats.Quantile

    def statistic(self, units: int, index: int):
        """A new threshold statistic for shard ``index``."""
        if self.total:
            return stats.TailQuantile(self.quantile, self.total, units)
        return stats.Quantile(units, seed=index)

    def values(self, acts: torch.Tensor) -> torch.Tensor:
        """What the thresholds are quantiles of."""
        return stats.upsample(acts, self.size) if self.on == "upsampled" else acts

    def thresholds(self, level) -> torch.Tensor:
        """(C,) float32 thresholds from the merged statistic."""
        return (level.quantile() if self.total else level.quantile(self.quantile)).float()


def first_pass(
    session, state, layer, index, seeds, bs, k, levels, segment=None, keep=False, step=None
):
    """Pass 1 over shard ``index`` (``seeds``): its threshold statistic (see :class:`Levels`),
    top-k and moments; with ``segment`` also the concept maps, and with ``keep`` the
    activations, as computed, for the second pass."""
    c = session.layer_shape(layer)[0]
    level, top, mom = levels.statistic(c, index), stats.TopK(k=k), stats.Moments(c)
    kept, maps = [], []
    for chunk in batches(seeds, bs):
        acts, images = acts_and_images(session, state, layer, chunk, images=segment is not None)
        level.update(levels.values(acts))
        top.update(acts, torch.tensor(chunk))
        mom.update(acts)
        if segment is not None:
            maps.append(segment(chunk, images).to(torch.int16))
        if keep:
            kept.append(acts)
        if step is not None:
            step()
    return (level, top, mom), kept, maps


def merge_first(parts: list) -> tuple:
    """Merge the shards' pass-1 statistics ``[(level, top, mom), ...]`` (in shard order) in
    the fixed tree order: (level, top, mom)."""
    return tuple(stats.merge_tree([p[j] for p in parts]) for j in range(3))


def presence(concept_maps, n_concepts: int, min_share: float = PRESENT_SHARE) -> torch.Tensor:
    """(N, K) bool: which concepts cover at least ``min_share`` of each image's pixels.

    >>> presence(torch.tensor([[[0, 1], [1, 1]]]), 3, min_share=0.25).tolist()
    [[True, True, False]]
    """
    maps = torch.as_tensor(np.asarray(concept_maps)).long().reshape(len(concept_maps), -1)
    counts = torch.stack([torch.bincount(m, minlength=n_concepts) for m in maps])
    return counts >= max(1, min_share * maps.shape[1])


def second_pass(
    session, state, layer, seeds, bs, thresholds, segment, n_concepts, kept=(), maps=(), step=None
):
    """IoU counts of "activation above threshold" with every concept over ``seeds``; for a
    vector layer, of images above threshold with images that contain the concept."""
    image_level = session.layer_kind(layer) == "vector"
    iou = stats.IoU(thresholds, n_concepts)
    for i, chunk in enumerate(batches(seeds, bs)):
        if kept and maps:
            acts, concept_map = kept[i].float(), maps[i]
        else:
            acts, images = acts_and_images(session, state, layer, chunk)
            concept_map = maps[i] if maps else segment(chunk, images)
        if image_level:
            iou.update_presence(acts, presence(concept_map, n_concepts))
        else:
            iou.update(acts, torch.as_tensor(np.asarray(concept_map)).long())
        if step is not None:
            step()
    return iou
