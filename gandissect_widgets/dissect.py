"""Dissection: what each unit of a layer detects, and what removing units does.

GAN Dissection / Network Dissection (Bau et al.): a unit's activation, upsampled bilinearly to
the segmentation's size and thresholded at its ``quantile`` level, is compared with every
concept's mask; IoU(u, c) = |A n C| / |A u C| summed over the whole sample set.  The level is
the quantile of the raw activation maps by default (GAN Dissection, 2018), or of the upsampled
maps (``threshold_on="upsampled"``, as the later ``dissect`` code does); it is exact whenever
each unit's top values fit the memory budget, and a sketch with a recorded worst-case rank
error otherwise.

``s`` is a Session (``s = gw.Session.from_zoo("hamlet")``); 64 samples keep the example
quick, a real dissection takes 1,000 or more:

>>> d = s.dissect("layer4", n=64, progress=False)
>>> d.units_for("tree")[:5]
[18, 44, 125, 123, 75]
>>> effect = s.ablation_effect("layer4", d.units_for("tree")[:20], "tree", n=16)
>>> 0.2 < effect.removed < 1  # the share of tree pixels that went
True
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from . import checks, passes, stats
from .cache import ResultCache, weights_fingerprint
from .jobs import Job, progress_bar

__all__ = ["Dissection", "dissect", "INTERPRETABLE_IOU"]

INTERPRETABLE_IOU = 0.04
EXACT_MB = 256  # default memory budget of the exact quantile
_KEEP_BYTES = 1 << 30  # activations kept in memory between the two passes, at most


@dataclass
class Dissection:
    """Per-unit results of dissecting one layer.

    Attributes: ``layer``, ``concepts`` (names), ``thresholds`` (C,), ``iou`` (C, K),
    ``top_values`` / ``top_seeds`` (C, k, best first), ``mean`` and ``high`` (C,) levels,
    ``seeds`` (the sample set), ``quantile``, ``fingerprint`` (of the model state dissected),
    ``threshold_on`` ("raw" or "upsampled" maps), ``threshold_method`` ("exact" or "sketch")
    and ``rank_error`` (the sketch's worst-case rank error as a share of the values; 0 when
    exact).
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
    fingerprint: str = ""
    threshold_on: str = "raw"
    threshold_method: str = "exact"
    rank_error: float = 0.0

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
            "fingerprint": np.asarray(self.fingerprint),
            "threshold_on": np.asarray(self.threshold_on),
            "threshold_method": np.asarray(self.threshold_method),
            "rank_error": np.asarray(self.rank_error),
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
            fingerprint=str(a["fingerprint"]) if "fingerprint" in a else "",
            threshold_on=str(a["threshold_on"]) if "threshold_on" in a else "raw",
            threshold_method=str(a["threshold_method"]) if "threshold_method" in a else "sketch",
            rank_error=float(a["rank_error"]) if "rank_error" in a else float("nan"),
            **t,
        )

    def __repr__(self):
        return (
            f"<Dissection {self.layer}: {len(self.labels)} units, "
            f"{len(self.interpretable())} interpretable, {len(self.summary())} concepts>"
        )


def _result(layer, concepts, seeds, quantile, levels, parts, fp) -> Dissection:
    level, top, mom, iou, thresholds = parts
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
        fingerprint=fp,
        threshold_on=levels.on,
        threshold_method=levels.method,
        rank_error=float(level.rank_error()),
    )


def _in_process(session, state, layer, seeds, bs, levels, segment, n_concepts, k, size, step):
    """The shards of the sharded path, one after another, merged the same way.  Pass 1 keeps
    activations (when they fit) and concept maps, so the generator and segmenter run once per
    sample."""
    c, h, w = session.layer_shape(layer)
    keep = len(seeds) * c * h * w * 4 <= _KEEP_BYTES
    parts = passes.shards(seeds, size)
    first, kept, maps = [], [], []
    for index, chunk in parts:
        stats_, acts, concept_maps = passes.first_pass(
            session, state, layer, index, chunk, bs, k, levels, segment, keep, step
        )
        first.append(stats_)
        kept.append(acts)
        maps.append(concept_maps)
    level, top, mom = passes.merge_first(first)
    thresholds = levels.thresholds(level)
    counts = [
        passes.second_pass(
            session,
            state,
            layer,
            chunk,
            bs,
            thresholds,
            segment,
            n_concepts,
            kept[i],
            maps[i],
            step,
        )
        for i, (_, chunk) in enumerate(parts)
    ]
    return level, top, mom, stats.merge_tree(counts), thresholds


def _levels(session, state, layer, seeds, quantile, threshold_on, exact_mb, segment):
    """How the thresholds are found: exact when each unit's top values fit ``exact_mb``."""
    if threshold_on not in passes.THRESHOLD_ON:
        raise ValueError(
            f"threshold_on must be one of {', '.join(map(repr, passes.THRESHOLD_ON))}; "
            f"got {threshold_on!r}"
        )
    budget = checks.number(exact_mb, "exact_mb", 0, float("inf")) * 2**20
    c, h, w = session.layer_shape(layer)
    size = None
    if threshold_on == "upsampled":
        size = passes.map_size(session, state, layer, seeds[0], segment)
        h, w = size
    total = len(seeds) * h * w
    exact = stats.TailQuantile.nbytes(quantile, total, c) <= budget
    return passes.Levels(quantile, threshold_on, size, total if exact else None)


def _code_bytes(code) -> bytes:
    """What a code object computes (instructions, names, constants, nested code), without
    where it was defined: a re-run notebook cell gives the same bytes."""
    parts = [code.co_code, repr(code.co_names).encode()]
    for const in code.co_consts:
        parts.append(_code_bytes(const) if hasattr(const, "co_code") else repr(const).encode())
    return b"\x00".join(parts)


def _code_digest(obj) -> str:
    """A digest of the Python code of a function (or partial), or of the methods of an
    object's classes outside torch."""
    fn = getattr(obj, "func", obj)  # functools.partial
    if hasattr(fn, "__code__"):
        codes = [fn.__code__]
    else:
        codes = [
            getattr(value, "__code__", None)
            for cls in type(obj).__mro__
            if not cls.__module__.startswith(("builtins", "torch"))
            for _, value in sorted(vars(cls).items())
        ]
    h = hashlib.sha256()
    for code in codes:
        if code is not None:
            h.update(_code_bytes(code))
    return h.hexdigest()[:12]


def _output_digest(value, h) -> None:
    if isinstance(value, (tuple, list)):
        for v in value:
            _output_digest(v, h)
    elif isinstance(value, dict):
        for k in sorted(value, key=str):
            h.update(str(k).encode())
            _output_digest(value[k], h)
    else:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        a = np.ascontiguousarray(np.asarray(value))
        h.update(f"{a.dtype.str}{a.shape}".encode() + a.tobytes())


def _source_id(obj, probe=None) -> str:
    """Identifies a segmenter or data source for cache keys by what it computes: a module by
    its class, code and weights; anything else by its name, its code and a digest of
    ``probe(obj)`` (what it returns for fixed inputs), so that a redefined class or function
    (a corrected notebook cell) gets a new key. One whose probe fails is keyed by its
    identity: its results are not reused by another object."""
    if obj is None:
        return "none"
    code = _code_digest(obj)
    if isinstance(obj, torch.nn.Module):
        return f"{type(obj).__qualname__}:{code}:{weights_fingerprint(obj)}"
    fn = getattr(obj, "func", obj)  # functools.partial
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"
    if "<" in name:
        name += f"@{id(obj)}"
    extra = (getattr(obj, "args", ()), getattr(obj, "keywords", {})) if fn is not obj else ""
    out = ""
    if probe is not None:
        h = hashlib.sha256()
        try:
            _output_digest(probe(obj), h)
            out = h.hexdigest()[:12]
        except Exception:  # noqa: BLE001 - any failure: not reusable across objects
            out = f"@{id(obj)}"
    return f"{name}{extra}:{code}:{out}"


def _probe_images(size) -> np.ndarray:
    """Two fixed uint8 pictures (2, H, W, 3) that a segmenter's key is probed with."""
    return np.random.default_rng(0).integers(0, 256, (2, *size, 3), dtype=np.uint8)


_NEEDED = ("thresholds", "iou", "top_values", "top_seeds", "mean", "high", "seeds", "concepts",
           "quantile", "layer")  # fmt: skip


def _check_cached(a: dict, *, layer, concepts, seeds, quantile, units, k) -> None:
    """Raise ValueError saying how a cached dissection disagrees with the request."""
    missing = [name for name in _NEEDED if name not in a]
    if missing:
        raise ValueError(f"lacks the arrays {missing}")
    if str(a["layer"]) != layer:
        raise ValueError(f"holds layer {str(a['layer'])!r}'s table, not {layer!r}'s")
    if [str(c) for c in a["concepts"]] != list(concepts):
        raise ValueError("holds other concepts than the segmenter's")
    if a["seeds"].shape != (len(seeds),) or a["seeds"].tolist() != list(seeds):
        raise ValueError("holds another sample set")
    if float(a["quantile"]) != quantile:
        raise ValueError(f"holds quantile {float(a['quantile'])}, not {quantile}")
    iou = a["iou"]
    if not ((iou >= 0) & (iou <= 1)).all():
        raise ValueError("holds IoU values outside [0, 1]")
    top = (units, min(k, len(seeds)))
    for name in ("top_values", "top_seeds"):
        if a[name].shape != top:
            raise ValueError(f"holds {name} of shape {a[name].shape}, expected {top}")
    ids = a["top_seeds"]
    if not np.issubdtype(ids.dtype, np.integer) or not np.isin(ids, seeds).all():
        raise ValueError("holds top_seeds that are not among the samples")


def dissect(
    session,
    layer: str,
    *,
    n: int = 1000,
    seeds=None,
    batch_size: int | None = None,
    quantile: float | None = None,
    segmenter=None,
    k: int = 32,
    cache=True,
    background: bool = False,
    progress: bool = True,
    executor=None,
    shard_size: int | None = None,
    threshold_on: str = "raw",
    exact_mb: float = EXACT_MB,
):
    """Dissect ``layer`` over ``n`` samples (or the given ``seeds``); see :class:`Dissection`.

    The dissection runs at the Session's state when it is called: a background job keeps that
    state to the end while the user edits on, and its result is labelled with that state's
    fingerprint. ``cache``: True (per-user folder), False, or a folder path; results are keyed
    by the state's fingerprint, layer, sample set and parameters, and by what the segmenter and a
    classifier's data function compute: a module by its code and weights, any other object or
    function by its code and a digest of its output on fixed inputs (two random pictures; seeds
    0 and 1), so a corrected notebook cell is never served the old table.
    ``background=True`` returns a :class:`~gandissect_widgets.jobs.Job` (``progress``,
    ``cancel()``, ``result()``). ``executor`` (any
    ``concurrent.futures.Executor``, e.g. Dask's ``client.get_executor()``) runs the passes as
    shards of ``shard_size`` seeds on its workers; see :mod:`gandissect_widgets.distributed`.
    Without one the same shards run here, so the tables are identical either way; the default
    shard size is 256 samples rounded up to whole batches.

    Thresholds: each unit's ``quantile`` level of its activation maps, ``threshold_on="raw"``
    (the default: GAN Dissection, Bau et al. 2018, and this package's earlier versions) or
    ``"upsampled"`` (the maps upsampled to the concept maps' size, as the later ``dissect``
    code of the same authors does).  The upsampled convention gives higher IoUs: on hamlet
    over 2,000 samples the best IoU of layer6's units rises by 0.021 on average (at most 0.088)
    and one more unit passes 0.04 (44 -> 45 of 64); at layer4 by 0.029, 44 -> 69 of 128 units
    (``python -m benchmarks dissect``; BENCHMARKS.md).  The quantile is exact
    (:class:`~gandissect_widgets.stats.TailQuantile`) when each unit's top ``1 - quantile``
    share of values fits ``exact_mb`` MiB (default 256), else a sketch whose worst-case
    rank error is recorded in ``rank_error``.  Only exact thresholds are independent of
    ``shard_size``: the sketch is built per shard (seeded by the shard's index) and merged, so
    another shard size gives other thresholds, within that rank error; the same shard size
    gives the same bits on any executor.

    Token layers (N, T, C) are dissected as the (N, C, h, w) maps of their patch tokens. A
    vector layer (N, C) is dissected image by image: a unit is "on" in the images where its
    value passes its ``quantile`` level (default 0.8 there, 0.99 elsewhere), a concept is "in"
    the images where it covers at least 0.5% of the pixels (:func:`passes.presence`), and
    ``iou`` holds how far the IoU of those two sets of images rises above chance (see
    :meth:`stats.IoU.iou`), so that sky, in every image, labels no unit by default.

    >>> d = session.dissect("layer4", n=64, progress=False)
    >>> d.layer, len(d.labels)
    ('layer4', 128)
    """
    layer = session.check_layer(layer)
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(
            "executor must be a concurrent.futures.Executor (with submit) or None; got "
            f"{executor!r}"
        )
    seeds = passes.sample_seeds(n, seeds)
    bs = passes.batch_size(session, batch_size, len(seeds))
    vector = session.layer_kind(layer) == "vector"
    quantile = checks.quantile(quantile if quantile is not None else 0.8 if vector else 0.99)
    k = checks.count(k, "k")
    concepts, segment = passes.concept_source(session, segmenter)
    store = ResultCache.resolve(cache)
    state = session.state
    fp = session.fingerprint(state)
    c = session.layer_shape(layer)[0]
    size = passes.shard_size(shard_size, bs)
    levels = _levels(session, state, layer, seeds, quantile, threshold_on, exact_mb, segment)

    def probe_segmenter(seg):
        return seg.segment(_probe_images(session.image_size))

    key = {
        "kind": "dissect",
        "model": fp,
        "layer": layer,
        "seeds": [seeds[0], seeds[-1], len(seeds), hash(tuple(seeds)) & 0xFFFFFFFF],
        "photos": session.sources.digest(seeds),
        "quantile": quantile,
        "k": k,
        "concepts": concepts,
        "segmenter": _source_id(
            segmenter or session.segmenter,
            lambda seg: seg.segment(_probe_images(session.image_size)),
        ),
        "data": _source_id(session.data, lambda data: data([0, 1])),
        "threshold_on": levels.on,
        "method": levels.method,
        "shard_size": size,
        "upsampled_values": "float64",  # IoU counts before 2026-12 compared float32 values
    }
    expect = {"iou": (c, len(concepts)), "thresholds": (c,), "mean": (c,), "high": (c,)}

    def finish(result):
        session.add_dissection(result)
        return result

    if executor is not None:
        units = len(passes.shards(seeds, size))
    else:
        units = sum(len(passes.batches(chunk, bs)) for _, chunk in passes.shards(seeds, size))

    check = functools.partial(
        _check_cached, layer=layer, concepts=concepts, seeds=seeds, quantile=quantile,
        units=c, k=k,
    )  # fmt: skip
    hit = store.load(key, expect=expect, check=check) if store else None
    if hit is not None:  # read before any bar is drawn: a cached result shows none
        done = finish(Dissection.from_arrays(hit))
        return Job(lambda job: done, total=1, name=f"dissect {layer}") if background else done
    bar = progress_bar(2 * units, f"dissect {layer}", progress)

    def work(job=None):
        def step():
            bar.update()
            if job is not None:
                job.step()

        try:
            if executor is not None:
                from .distributed import dissect_sharded

                parts = dissect_sharded(
                    session, state, layer, seeds, bs, levels, concepts, k, executor, size, step
                )
            else:
                parts = _in_process(
                    session, state, layer, seeds, bs, levels, segment, len(concepts), k, size, step
                )
        finally:
            bar.close()
        result = _result(layer, concepts, seeds, quantile, levels, parts, fp)
        if store is not None:
            store.save(key, result.arrays())
        return finish(result)

    if background:
        return Job(work, total=2 * units, name=f"dissect {layer}")
    return work()
