"""Dissection: what each unit of a layer detects, and what removing units does.

GAN Dissection / Network Dissection (Bau et al.): a unit's activation, upsampled bilinearly to
the segmentation's size and thresholded at its ``quantile`` level, is compared with every
concept's mask; IoU(u, c) = |A n C| / |A u C| summed over the whole sample set.

>>> s = gw.Session.from_zoo("hamlet")                     # doctest: +SKIP
>>> d = s.dissect("layer4", n=1000)                       # doctest: +SKIP
>>> d.units_for("tree")[:5]                               # doctest: +SKIP
[37, 12, 101, 5, 88]
>>> s.ablation_effect("layer4", d.units_for("tree")[:20], "tree").removed   # doctest: +SKIP
0.61
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from . import stats
from .cache import ResultCache
from .jobs import Job
from .session import _check_seeds

__all__ = ["Dissection", "AblationEffect", "AccuracyChange", "dissect", "ablation_effect"]

INTERPRETABLE_IOU = 0.04
_KEEP_BYTES = 1 << 30  # activations kept in memory between the two passes, at most


@dataclass
class Dissection:
    """Per-unit results of dissecting one layer.

    Attributes: ``layer``, ``concepts`` (names), ``thresholds`` (C,), ``iou`` (C, K),
    ``top_values`` / ``top_seeds`` (C, k, best first), ``mean`` and ``high`` (C,) levels,
    ``seeds`` (the sample set), ``quantile``.
    """

    layer: str
    concepts: list[str]
    thresholds: torch.Tensor
    iou: torch.Tensor
    top_values: torch.Tensor
    top_seeds: torch.Tensor
    mean: torch.Tensor
    high: torch.Tensor
    seeds: list[int]
    quantile: float

    @property
    def labels(self) -> list[str]:
        """The best concept of each unit."""
        return [self.concepts[i] for i in self.iou.argmax(1).tolist()]

    @property
    def best_iou(self) -> torch.Tensor:
        return self.iou.max(1).values

    def table(self) -> list[dict]:
        """One row per unit: unit, label, iou, threshold, top seeds."""
        return [
            {
                "unit": u,
                "label": label,
                "iou": float(self.best_iou[u]),
                "threshold": float(self.thresholds[u]),
                "top_seeds": self.top_seeds[u, :8].tolist(),
            }
            for u, label in enumerate(self.labels)
        ]

    def to_pandas(self):
        """The :meth:`table` as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError("to_pandas() needs pandas: pip install pandas") from err
        return pd.DataFrame(self.table()).set_index("unit")

    def _concept_index(self, concept: str) -> int:
        if concept not in self.concepts:
            raise KeyError(f"unknown concept {concept!r}; concepts are: {', '.join(self.concepts)}")
        return self.concepts.index(concept)

    def units_for(self, concept: str, min_iou: float = 0.0) -> list[int]:
        """Units whose best label is ``concept``, sorted by IoU (best first)."""
        k = self._concept_index(concept)
        best = self.iou.argmax(1)
        units = [u for u in range(len(best)) if best[u] == k and self.iou[u, k] >= min_iou]
        return sorted(units, key=lambda u: -float(self.iou[u, k]))

    def ranked_for(self, concept: str) -> list[int]:
        """Every unit sorted by its IoU with ``concept`` (best first), whatever its label."""
        k = self._concept_index(concept)
        return self.iou[:, k].argsort(descending=True).tolist()

    def interpretable(self, min_iou: float = INTERPRETABLE_IOU) -> list[int]:
        """Units whose best IoU reaches ``min_iou``."""
        return [u for u, v in enumerate(self.best_iou.tolist()) if v >= min_iou]

    def summary(self, min_iou: float = INTERPRETABLE_IOU) -> dict[str, int]:
        """Concept -> number of interpretable units with that label, most first."""
        counts: dict[str, int] = {}
        for u in self.interpretable(min_iou):
            counts[self.labels[u]] = counts.get(self.labels[u], 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def plot_summary(self, min_iou: float = INTERPRETABLE_IOU, ax=None):
        """Bar chart of interpretable units per concept (like the paper's figure)."""
        import matplotlib.pyplot as plt

        counts = self.summary(min_iou)
        if ax is None:
            _, ax = plt.subplots(figsize=(max(4, 0.5 * len(counts) + 2), 3))
        ax.bar(list(counts), list(counts.values()), color="#4c72b0")
        share = len(self.interpretable(min_iou)) / len(self.labels)
        ax.set_title(
            f"{self.layer}: {share:.0%} of {len(self.labels)} units interpretable (IoU ≥ {min_iou})"
        )
        ax.set_ylabel("units")
        ax.tick_params(axis="x", rotation=45)
        ax.figure.tight_layout()
        return ax.figure

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "thresholds": self.thresholds.numpy(),
            "iou": self.iou.numpy(),
            "top_values": self.top_values.numpy(),
            "top_seeds": self.top_seeds.numpy(),
            "mean": self.mean.numpy(),
            "high": self.high.numpy(),
            "seeds": np.asarray(self.seeds, np.int64),
            "concepts": np.asarray(self.concepts),
            "quantile": np.asarray(self.quantile),
            "layer": np.asarray(self.layer),
        }

    @classmethod
    def from_arrays(cls, a: dict) -> Dissection:
        t = {
            k: torch.from_numpy(np.asarray(a[k]))
            for k in ("thresholds", "iou", "top_values", "top_seeds", "mean", "high")
        }
        return cls(
            layer=str(a["layer"]),
            concepts=[str(c) for c in a["concepts"]],
            seeds=[int(s) for s in a["seeds"]],
            quantile=float(a["quantile"]),
            **t,
        )

    def __repr__(self):
        return (
            f"<Dissection {self.layer}: {len(self.labels)} units, "
            f"{len(self.interpretable())} interpretable, {len(self.summary())} concepts>"
        )


def _sample_seeds(n, seeds) -> list[int]:
    if seeds is not None:
        seeds = _check_seeds(seeds)
        if not seeds:
            raise ValueError("seeds is empty; give at least one seed")
        return seeds
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer number of samples; got {n!r}")
    return list(range(int(n)))


def _batch_size(session, batch_size, n) -> int:
    if batch_size is None:
        return min(session.batch_size, n)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    if batch_size > n:
        raise ValueError(
            f"n={n} samples is fewer than batch_size={batch_size}; lower batch_size or raise n"
        )
    return batch_size


def _segmenter_of(session, segmenter):
    """(concept names, function seeds, uint8 images -> int64 concept maps)."""
    seg = segmenter if segmenter is not None else session.segmenter
    if seg is not None:
        return list(seg.concepts), lambda seeds, images: seg.segment(images).cpu()
    if session.kind == "classifier" and session.concepts:
        return list(session.concepts), lambda seeds, images: session.concept_maps(seeds)
    raise ValueError(
        "dissection needs concept maps: attach a segmenter (Session(..., segmenter=seg) or "
        "dissect(..., segmenter=seg)), or give a classifier Session data that returns concept maps"
    )


def _batches(seeds, size):
    return [seeds[i : i + size] for i in range(0, len(seeds), size)]


def _first_pass(session, layer, seeds, bs, k, segment=None, keep=False, step=None, seed=0):
    """Quantile sketch, top-k and moments over ``seeds``; with ``segment``, also the concept
    maps, and with ``keep`` the activations (float16) for the second pass."""
    c = session.layer_shape(layer)[0]
    q, top, mom = stats.Quantile(c, seed=seed), stats.TopK(k=k), stats.Moments(c)
    kept, maps = [], []
    for chunk in _batches(seeds, bs):
        acts, images = _acts_and_images(session, layer, chunk, images=segment is not None)
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


def _second_pass(
    session, layer, seeds, bs, thresholds, segment, n_concepts, kept=(), maps=(), step=None
):
    """IoU counts of "activation above threshold" with every concept over ``seeds``."""
    iou = stats.IoU(thresholds, n_concepts)
    for i, chunk in enumerate(_batches(seeds, bs)):
        if kept and maps:
            acts, concept_map = kept[i].float(), maps[i]
        else:
            acts, images = _acts_and_images(session, layer, chunk)
            concept_map = maps[i] if maps else segment(chunk, images)
        iou.update(acts, concept_map.long())
        if step is not None:
            step()
    return iou


def _result(layer, concepts, seeds, quantile, q, top, mom, iou, thresholds) -> Dissection:
    values, ids = top.result()
    return Dissection(
        layer=layer,
        concepts=concepts,
        thresholds=thresholds.cpu(),
        iou=iou.iou().float().cpu(),
        top_values=values.float().cpu(),
        top_seeds=ids.cpu(),
        mean=mom.mean.float().cpu(),
        high=thresholds.cpu(),
        seeds=list(seeds),
        quantile=quantile,
    )


def _dissect_work(
    session, layer, seeds, bs, quantile, concepts, segment, k, job=None, progress=True
):
    """In one process: pass 1 keeps activations (when they fit) and concept maps, pass 2
    counts IoU at the thresholds, so the generator and segmenter run once per sample."""
    c, h, w = session.layer_shape(layer)
    keep = len(seeds) * c * h * w * 2 <= _KEEP_BYTES
    n_batches = len(_batches(seeds, bs))
    bar = tqdm(total=2 * n_batches, desc=f"dissect {layer}", disable=not progress, leave=False)

    def step():
        bar.update()
        if job is not None:
            job.step()

    try:
        (q, top, mom), kept, maps = _first_pass(session, layer, seeds, bs, k, segment, keep, step)
        thresholds = q.quantile(quantile).float()
        iou = _second_pass(
            session, layer, seeds, bs, thresholds, segment, len(concepts), kept, maps, step
        )
    finally:
        bar.close()
    return _result(layer, concepts, seeds, quantile, q, top, mom, iou, thresholds)


def _acts_and_images(session, layer, seeds, images=True):
    """One uncached forward of ``seeds``: (layer activations, uint8 images or None)."""
    inputs = session._inputs(seeds)
    out, seen = session.run(inputs, retain=[layer])
    if not images:
        return seen[layer].float(), None
    if session.kind == "generator":
        from .render import to_uint8

        images = to_uint8(out)
    else:
        images = session._data_images(seeds)
    return seen[layer].float(), images


def dissect(
    session,
    layer: str,
    *,
    n: int = 1000,
    seeds=None,
    batch_size: int | None = None,
    quantile: float = 0.99,
    segmenter=None,
    k: int = 32,
    cache=True,
    background: bool = False,
    progress: bool = True,
    executor=None,
    shard_size: int | None = None,
):
    """Dissect ``layer`` over ``n`` samples (or the given ``seeds``); see :class:`Dissection`.

    ``cache``: True (per-user folder), False, or a folder path; results are keyed by the model
    fingerprint (weights and active edits), layer, sample set, segmenter and parameters.
    ``background=True`` returns a :class:`~gandissect_widgets.jobs.Job` (``progress``,
    ``cancel()``, ``result()``) instead of blocking. ``executor`` (any
    ``concurrent.futures.Executor``, e.g. Dask's ``client.get_executor()``) runs the passes as
    shards of ``shard_size`` seeds on its workers; see :mod:`gandissect_widgets.distributed`.
    """
    layer = session._check_layer(layer)
    seeds = _sample_seeds(n, seeds)
    bs = _batch_size(session, batch_size, len(seeds))
    if not 0 < float(quantile) < 1:
        raise ValueError(f"quantile must lie strictly between 0 and 1; got {quantile}")
    concepts, segment = _segmenter_of(session, segmenter)
    store = ResultCache.resolve(cache)
    key = {
        "kind": "dissect",
        "model": session.fingerprint(),
        "layer": layer,
        "seeds": [seeds[0], seeds[-1], len(seeds), hash(tuple(seeds)) & 0xFFFFFFFF],
        "quantile": float(quantile),
        "k": k,
        "concepts": concepts,
        "segmenter": type(segmenter or session.segmenter).__name__,
    }

    def finish(result):
        session.dissections[layer] = result
        session._unit_levels[layer] = {"mean": result.mean, "high": result.high}
        return result

    shard = shard_size or max(bs, -(-len(seeds) // 8))
    steps = 2 * (len(_batches(seeds, shard)) if executor is not None else len(_batches(seeds, bs)))

    def work(job=None):
        hit = store.load(key) if store else None
        if hit is not None:
            return finish(Dissection.from_arrays(hit))
        if executor is not None:
            from .distributed import dissect_sharded

            step = job.step if job is not None else None
            result = dissect_sharded(
                session, layer, seeds, bs, float(quantile), concepts, k, executor, shard, step
            )
        else:
            result = _dissect_work(
                session, layer, seeds, bs, float(quantile), concepts, segment, k, job, progress
            )
        if store is not None:
            store.save(key, result.arrays())
        return finish(result)

    if background:
        return Job(work, total=steps, name=f"dissect {layer}")
    return work()


@dataclass
class AblationEffect:
    """What ablating ``units`` did to the generated images (measured with the segmenter).

    ``removed``: share of the concept's pixels gone (1 - area after / area before).
    ``changes``: every concept -> relative change of its total area.
    ``before`` / ``after``: concept -> pixel count.
    """

    layer: str
    units: list[int]
    concept: str
    removed: float
    changes: dict[str, float]
    before: dict[str, int]
    after: dict[str, int]

    def others_changed(self) -> float:
        """Relative change of the total area of every other concept (absolute value)."""
        b = sum(v for c, v in self.before.items() if c != self.concept)
        a = sum(v for c, v in self.after.items() if c != self.concept)
        return abs(a - b) / max(b, 1)


def ablation_effect(
    session, layer, units, concept, *, n=200, seeds=None, batch_size=None, segmenter=None
):
    """Segment ``n`` generated samples with and without ablating ``units``; see AblationEffect."""
    concepts, segment = _segmenter_of(session, segmenter)
    if concept not in concepts:
        raise KeyError(f"unknown concept {concept!r}; concepts are: {', '.join(concepts)}")
    seeds = _sample_seeds(n, seeds)
    bs = _batch_size(session, batch_size, len(seeds))
    edit = session.ablation(layer, units)
    k = len(concepts)

    def areas():
        total = torch.zeros(k, dtype=torch.int64)
        for chunk in _batches(seeds, bs):
            images = session.generate(chunk)
            total += torch.bincount(segment(chunk, images).reshape(-1).long(), minlength=k)
        return total

    before = areas()
    with session.temporarily(edit):
        after = areas()
    b = dict(zip(concepts, before.tolist()))
    a = dict(zip(concepts, after.tolist()))
    changes = {c: (a[c] - b[c]) / b[c] if b[c] else 0.0 for c in concepts}
    return AblationEffect(layer, list(edit.units), concept, -changes[concept], changes, b, a)


@dataclass
class AccuracyChange:
    """Per-class accuracy of a classifier before and after ablating ``units``."""

    layer: str
    units: list[int]
    before: dict[str, float]
    after: dict[str, float]

    def drop(self, name: str) -> float:
        """Relative accuracy drop of one class (0.5 means half of its accuracy is gone)."""
        return 1 - self.after[name] / self.before[name] if self.before[name] else 0.0

    def others_drop(self, name: str) -> float:
        """Mean accuracy drop, in points (0-1), of every class other than ``name``."""
        others = [c for c in self.before if c != name]
        return float(np.mean([self.before[c] - self.after[c] for c in others]))


def _labels_and_logits(session, seeds, bs):
    labels, preds = [], []
    for chunk in _batches(seeds, bs):
        labels.append(torch.as_tensor(session.labels(chunk)))
        preds.append(session.classify(chunk).argmax(1))
    return torch.cat(labels), torch.cat(preds)


def _per_class(session, labels, preds) -> dict[str, float]:
    out = {}
    for i, name in enumerate(session.classes):
        sel = labels == i
        out[name] = float((preds[sel] == i).float().mean()) if sel.any() else float("nan")
    return out


def ablation_accuracy(
    session, layer, units, *, n=500, seeds=None, batch_size=None
) -> AccuracyChange:
    """Per-class accuracy of a classifier Session before and after ablating ``units``."""
    if session.kind != "classifier" or not session.classes:
        raise ValueError(
            "ablation_accuracy needs a classifier Session with classes= and labelled data"
        )
    seeds = _sample_seeds(n, seeds)
    bs = _batch_size(session, batch_size, len(seeds))
    edit = session.ablation(layer, units)
    labels, before = _labels_and_logits(session, seeds, bs)
    with session.temporarily(edit):
        _, after = _labels_and_logits(session, seeds, bs)
    return AccuracyChange(
        layer,
        list(edit.units),
        _per_class(session, labels, before),
        _per_class(session, labels, after),
    )


def class_units(session, layer, name, *, n=500, seeds=None, batch_size=None) -> list[int]:
    """Units of ``layer`` ranked by how much they support class ``name`` (best first).

    The score is activation x gradient of the class logit, summed over positions and averaged
    over the samples of that class (a first-order estimate of the logit lost by ablation).
    """
    if session.kind != "classifier" or not session.classes:
        raise ValueError("class_units needs a classifier Session with classes= and labelled data")
    if name not in session.classes:
        raise KeyError(f"unknown class {name!r}; classes are: {', '.join(session.classes)}")
    layer = session._check_layer(layer)
    target = session.classes.index(name)
    seeds = _sample_seeds(n, seeds)
    bs = _batch_size(session, batch_size, len(seeds))
    score = torch.zeros(session.layer_shape(layer)[0], dtype=torch.float64)
    count = 0
    for chunk in _batches(seeds, bs):
        labels = torch.as_tensor(session.labels(chunk))
        picked = [s for s, lab in zip(chunk, labels.tolist()) if lab == target]
        if not picked:
            continue
        acts, logits = session.attribution_pass(layer, picked)
        grad = torch.autograd.grad(logits[:, target].sum(), acts)[0]
        score += (acts * grad).sum((2, 3)).sum(0).double().cpu()
        count += len(picked)
    if count == 0:
        raise ValueError(f"no sample of class {name!r} among the {len(seeds)} seeds; raise n")
    return (score / count).argsort(descending=True).tolist()
