"""Layer surveys: which layer to look at, and which layer to edit.

:func:`survey` dissects every layer of a model on one shared sample set (the seeds ``0..n-1``,
so the layers are compared on the same pictures) and reports per layer the share of units
with a concept, the number of distinct concepts, the best unit of each concept and, for a
generator, what ablating each concept's best units removes. :func:`rewrite_survey` fits one
rule at every layer and rank and measures its success and its collateral change.

Not run in the tests (it dissects every layer: minutes on a CPU; tests/test_survey.py runs
small ones):

>>> s = gw.Session.from_zoo("hamlet")                       # doctest: +SKIP
>>> table = gw.survey(s, n=200)                             # doctest: +SKIP
>>> table.best_layer()                                      # doctest: +SKIP
'layer6'
>>> table.plot()                                            # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from . import checks, passes
from .dissect import INTERPRETABLE_IOU
from .effects import ablation_effect, rewrite_eval

__all__ = ["Survey", "survey", "RewriteSurvey", "rewrite_survey"]


class _Table:
    """Rows of dicts: ``table()``, ``to_pandas()``, HTML in notebooks, text elsewhere."""

    rows: list
    columns: tuple = ()

    def table(self) -> list[dict]:
        """The rows, cells as they print (one dict per row)."""
        return [{c: self._cell(r, c) for c in self.columns} for r in self.rows]

    def _cell(self, row, column):
        return row[column]

    def to_pandas(self):
        """The :meth:`table` as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.table())

    def __repr__(self):
        rows = [list(self.columns)] + [[str(v) for v in r.values()] for r in self.table()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.columns))]
        return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)

    def _repr_html_(self):
        import html

        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>"
            for r in self.table()
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _SharedSegmentation(torch.nn.Module):
    """A segmenter module that segments each distinct image once: the layers of a survey see
    the same generated images, so they share one segmentation of each. Cache keys see the
    wrapped segmenter's weights."""

    def __init__(self, segmenter):
        super().__init__()
        self.inner = segmenter
        self.concepts = list(segmenter.concepts)
        self._maps: dict[bytes, torch.Tensor] = {}

    def segment(self, images):
        images = np.ascontiguousarray(np.asarray(images))
        keys = [hashlib.sha1(im.tobytes()).digest() for im in images]
        todo = [i for i, k in enumerate(keys) if k not in self._maps]
        if todo:
            for i, found in zip(todo, self.inner.segment(images[todo]).cpu(), strict=True):
                self._maps[keys[i]] = found
        return torch.stack([self._maps[k] for k in keys])


@dataclass(repr=False)
class Survey(_Table):
    """Per-layer dissection figures on one sample set; ``rows`` holds one dict per layer:
    ``layer``, ``kind``, ``units``, ``grid`` (h, w), ``interpretable`` (share of units with
    IoU >= ``min_iou``), ``concepts`` (distinct labels among them), ``counts`` (concept ->
    units), ``best`` (concept -> (unit, IoU)) and, for a generator, ``removed`` (concept ->
    share of its pixels removed by ablating its best ``effect_units`` units)."""

    rows: list
    n: int
    min_iou: float
    dissections: dict = field(default_factory=dict)
    columns: tuple = ("layer", "kind", "units", "interpretable", "concepts", "top concepts")

    def _cell(self, row, column):
        if column == "interpretable":
            return f"{row['interpretable']:.0%}"
        if column == "top concepts":
            best = sorted(row["counts"], key=lambda c: -row["counts"][c])[:4]
            return ", ".join(
                f"{c} {row['counts'][c]}"
                + (f" ({-row['removed'][c]:+.0%})" if c in row.get("removed", {}) else "")
                for c in best
            )
        return row[column]

    def best_layer(self, by: str = "interpretable") -> str:
        """The layer with the highest ``by`` ("interpretable" or "concepts"; ties: the other)."""
        if by not in ("interpretable", "concepts"):
            raise ValueError(f"by must be 'interpretable' or 'concepts'; got {by!r}")
        other = "concepts" if by == "interpretable" else "interpretable"
        return max(self.rows, key=lambda r: (r[by], r[other]))["layer"]

    def plot(self, ax=None):
        """Share of interpretable units (bars) and number of concepts (line) per layer."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(max(4, 0.7 * len(self.rows) + 2), 3))
        names = [r["layer"] for r in self.rows]
        ax.bar(names, [100 * r["interpretable"] for r in self.rows], color="#4c72b0")
        ax.set_ylabel(f"% units with IoU ≥ {self.min_iou}")
        ax.tick_params(axis="x", rotation=45)
        twin = ax.twinx()
        twin.plot(names, [r["concepts"] for r in self.rows], "o-", color="#dd8452")
        twin.set_ylabel("concepts", color="#dd8452")
        ax.set_title(f"layer survey, {self.n} samples")
        ax.figure.tight_layout()
        return ax.figure


def survey(
    session,
    layers=None,
    *,
    n: int = 200,
    min_iou: float = INTERPRETABLE_IOU,
    effect_n: int = 50,
    effect_units: int = 5,
    batch_size: int | None = None,
    cache=True,
    progress: bool = True,
) -> Survey:
    """Dissect ``layers`` (default: ``session.layers``) on seeds ``0..n-1``; see :class:`Survey`.

    For a generator, each concept's best ``effect_units`` units are ablated on ``effect_n``
    other samples (seeds ``n..n+effect_n-1``) and the share of its pixels removed is recorded
    (``effect_n=0`` skips this). Dissections are cached like :meth:`Session.dissect`'s.

    Not run in the tests (minutes on a CPU):

    >>> gw.survey(session, n=200).best_layer()              # doctest: +SKIP
    """
    layers = list(session.layers if layers is None else layers)
    layers = [session.check_layer(layer) for layer in layers]
    n = checks.count(n, "n")
    min_iou = checks.number(min_iou, "min_iou", 0, 1)
    effect_n = int(checks.number(effect_n, "effect_n", 0))
    effect_units = checks.count(effect_units, "effect_units")
    bs = passes.batch_size(session, batch_size, n)
    seg = session.segmenter
    if isinstance(seg, torch.nn.Module) and session.kind == "generator":
        seg = _SharedSegmentation(seg)
    rows, dissections = [], {}
    for layer in layers:
        d = session.dissect(
            layer, n=n, batch_size=bs, cache=cache, progress=progress, segmenter=seg
        )
        dissections[layer] = d
        c, h, w = session.layer_shape(layer)
        good = d.interpretable(min_iou)
        counts = d.summary(min_iou)
        best = {}
        for concept in counts:
            unit = d.units_for(concept, min_iou)[0]
            best[concept] = (unit, round(float(d.best_iou[unit]), 4))
        row = {
            "layer": layer,
            "kind": session.layer_kind(layer),
            "units": c,
            "grid": (h, w),
            "interpretable": len(good) / c,
            "concepts": len(counts),
            "counts": counts,
            "best": best,
        }
        if session.kind == "generator" and effect_n:
            effect_seeds = range(n, n + effect_n)
            row["removed"] = {
                concept: ablation_effect(
                    session,
                    layer,
                    d.units_for(concept, min_iou)[:effect_units],
                    concept,
                    seeds=effect_seeds,
                    batch_size=min(bs, effect_n),
                    segmenter=seg,
                ).removed
                for concept in counts
            }
        rows.append(row)
    return Survey(rows, n, min_iou, dissections)


@dataclass(repr=False)
class RewriteSurvey(_Table):
    """One rule fitted at each layer and rank; ``rows``: ``layer``, ``rank``, ``success``,
    ``change_without_source``, ``preservation`` (see :func:`effects.rewrite_eval`) or
    ``error`` where the rule cannot be fitted there."""

    rows: list
    n: int
    columns: tuple = ("layer", "rank", "success", "change without source", "note")

    def _cell(self, row, column):
        if column == "success":
            return "" if row.get("error") else f"{row['success']:.1%}"
        if column == "change without source":
            return "" if row.get("error") else f"{row['change_without_source']:.2%}"
        if column == "note":
            return row.get("error", "")
        return row[column]

    def best(self, max_change: float = 0.02) -> dict:
        """The row of highest success whose change on samples without the source stays at or
        below ``max_change`` (the rewriting goal: 2% of the pixel range)."""
        ok = [r for r in self.rows if not r.get("error")]
        kept = [r for r in ok if r["change_without_source"] <= max_change] or ok
        if not kept:
            raise ValueError("no layer could be rewritten; see the rows' errors")
        return max(kept, key=lambda r: r["success"])


def rewrite_survey(
    session, rule, layers=None, *, ranks=(1,), n: int = 100, seeds=None, **fit
) -> RewriteSurvey:
    """Fit the rule ``rule(session, layer) -> {"request": ..., "source_concept": ...,
    "target_concept": ...}`` (e.g. :func:`zoo.hamlet.example_rule`) at every layer and rank and
    measure it on ``n`` samples (seeds ``10_000..``, or ``seeds``) that the rule was not picked
    from. The Session's edits are not changed. ``fit`` goes to the rewrite (``steps``, ...).

    Not run in the tests (a rewrite at every layer: minutes on a CPU):

    >>> from gandissect_widgets.zoo.hamlet import example_rule            # doctest: +SKIP
    >>> gw.rewrite_survey(s, lambda s, l: example_rule(s, layer=l)).best()  # doctest: +SKIP
    """
    from .rewrite import make_rewrite

    layers = list(session.layers if layers is None else layers)
    seeds = passes.sample_seeds(n, seeds if seeds is not None else range(10_000, 10_000 + n))
    rows = []
    for layer in layers:
        made = rule(session, layer)
        for rank in ranks:
            request = {**made["request"], "rank": rank, **fit}
            try:
                edit = make_rewrite(session, layer, **request)
            except (ValueError, KeyError, TypeError, RuntimeError) as err:
                rows.append({"layer": layer, "rank": rank, "error": str(err).split("\n")[0]})
                continue
            measured = rewrite_eval(
                session, edit, made["source_concept"], made["target_concept"], seeds=seeds
            )
            rows.append({"layer": layer, "rank": rank, **measured})
    return RewriteSurvey(rows, len(seeds))
