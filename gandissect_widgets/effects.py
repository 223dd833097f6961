"""What removing units does: segmented concept area of a generator, per-class accuracy of a
classifier, and units ranked by how much they support a class.

>>> d = s.dissect("layer4", n=64, progress=False)    # s: gw.Session.from_zoo("hamlet")
>>> effect = s.ablation_effect("layer4", d.units_for("tree")[:20], "tree", n=16)
>>> 0 < effect.removed <= 1
True
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from . import checks, passes
from .attacks import attack_units
from .edits import Ablation, State
from .steering import steering_effect, target_index

__all__ = [
    "AblationEffect",
    "AccuracyChange",
    "ablation_effect",
    "ablation_accuracy",
    "class_units",
    "rewrite_eval",
    "steering_effect",
    "attack_units",
]


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
    """Segment ``n`` generated samples with and without ablating ``units``, both on top of the
    current model (``session.state``); see AblationEffect. Measure before applying the same
    ablation (or inside ``with session.excluding(edit):``): units already ablated are measured
    from their ablated state, and a warning says so. Example: the module's docstring.
    """
    concepts, segment = passes.concept_source(session, segmenter)
    if concept not in concepts:
        raise KeyError(f"unknown concept {concept!r}; concepts are: {', '.join(concepts)}")
    seeds = passes.sample_seeds(n, seeds)
    bs = passes.batch_size(session, batch_size, len(seeds))
    edit = session.ablation(layer, units)
    k = len(concepts)
    state = session.state
    _warn_already_ablated(state, edit)

    def areas(at):
        total = torch.zeros(k, dtype=torch.int64)
        for chunk in passes.batches(seeds, bs):
            images = session.generate(chunk, state=at)
            total += torch.bincount(segment(chunk, images).reshape(-1).long(), minlength=k)
        return total

    before = areas(state)
    after = areas(state.plus(edit))
    b = dict(zip(concepts, before.tolist()))
    a = dict(zip(concepts, after.tolist()))
    changes = {c: (a[c] - b[c]) / b[c] if b[c] else 0.0 for c in concepts}
    removed = 0.0 - changes[concept]  # 0.0, never -0.0
    return AblationEffect(layer, list(edit.units), concept, removed, changes, b, a)


def _warn_already_ablated(state, edit) -> None:
    """Warn when units of ``edit`` are already changed by an active ablation (or steering): the
    effect then starts from their changed state (0 for the very same ablation, applied
    before measuring)."""
    for active in state.edits:
        if isinstance(active, Ablation) and active.layer == edit.layer:
            both = sorted(set(active.units) & set(edit.units))
            if both:
                shown = ", ".join(map(str, both[:8])) + (", ..." if len(both) > 8 else "")
                warnings.warn(
                    f"units {shown} of {edit.layer} are already changed by an active edit "
                    f"({active!r}), so the effect is measured from their changed state; measure "
                    "before applying it, or inside `with session.excluding(edit):`",
                    stacklevel=checks.user_stacklevel(),
                )
                return


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


def _labels_and_predictions(session, seeds, bs, state):
    labels, preds = [], []
    for chunk in passes.batches(seeds, bs):
        labels.append(torch.as_tensor(session.labels(chunk)))
        out, _ = session.forward(chunk, state)
        preds.append(out.argmax(1).cpu())
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
    seeds = passes.sample_seeds(n, seeds)
    bs = passes.batch_size(session, batch_size, len(seeds))
    edit = session.ablation(layer, units)
    state = session.state
    labels, before = _labels_and_predictions(session, seeds, bs, state)
    _, after = _labels_and_predictions(session, seeds, bs, state.plus(edit))
    return AccuracyChange(
        layer,
        list(edit.units),
        _per_class(session, labels, before),
        _per_class(session, labels, after),
    )


def class_units(session, layer, name, *, n=500, seeds=None, batch_size=None) -> list[int]:
    """Units of ``layer`` ranked by how much they support class ``name`` (a name or an index),
    best first.

    The score is activation x gradient of the class logit, summed over positions and averaged
    over the samples of that class (a first-order estimate of the logit lost by ablation).
    """
    if session.kind != "classifier" or not session.classes:
        raise ValueError("class_units needs a classifier Session with classes= and labelled data")
    target = target_index(session, name)  # a name or an index
    layer = session.check_layer(layer)
    seeds = passes.sample_seeds(n, seeds)
    bs = passes.batch_size(session, batch_size, len(seeds))
    score = torch.zeros(session.layer_shape(layer)[0], dtype=torch.float64)
    count = 0
    for chunk in passes.batches(seeds, bs):
        labels = torch.as_tensor(session.labels(chunk))
        picked = [s for s, lab in zip(chunk, labels.tolist()) if lab == target]
        if not picked:
            continue
        acts, logits = session.attribution_pass(layer, picked)
        grad = torch.autograd.grad(logits[:, target].sum(), acts)[0]
        score += (acts * grad).sum((2, 3)).sum(0).double().cpu()
        count += len(picked)
    if count == 0:
        raise ValueError(
            f"no sample of class {session.classes[target]!r} among the {len(seeds)} seeds; raise n"
        )
    return (score / count).argsort(descending=True).tolist()


def rewrite_eval(
    session, edit, source_concept: str, target_concept: str, n: int = 200, *, seeds=None
) -> dict:
    """Measure a rewrite on ``n`` samples (seeds 0..n-1, or ``seeds``) with the segmenter.

    - ``success``: share of pixels segmented as ``source_concept`` before the edit that are
      ``target_concept`` after it;
    - ``preservation``: mean absolute pixel change outside source regions (fraction of 255);
    - ``change_without_source``: the same on samples without any source pixel.

    The Session's stack is not touched: both sides are computed at explicit states. An edit
    on the stack is measured on the weights it was fitted on: weight edits pushed after it
    (fitted with it in place) are left out of both sides.

    >>> edit = s.rewrite("layer6", [(3, roof3)], (1, tree1), (3, (20, 30)), steps=20,
    ...                  stat_samples=100)
    >>> 0 <= gw.rewrite_eval(s, edit, "roof", "tree", n=16)["success"] <= 1
    True
    """
    seg = session.segmenter
    if seg is None:
        raise ValueError("rewrite_eval needs a Session with a segmenter (segmenter=...)")
    concepts = list(seg.concepts)
    for c in (source_concept, target_concept):
        if c not in concepts:
            raise KeyError(f"unknown concept {c!r}; the segmenter knows: {', '.join(concepts)}")
    seeds = passes.sample_seeds(n, seeds)
    state = session.state
    if edit in state.edits:  # on the weights it was fitted on: later weight edits left out
        i = state.edits.index(edit)
        later = tuple(e for e in state.edits[i + 1 :] if not e.changes_weights)
        without, state = State(state.edits[:i] + later), State(state.edits[: i + 1] + later)
    else:
        without = state
        session.check_edit(edit, without)
    before = session.generate(seeds, state=without)
    after = session.generate(seeds, state=state if edit in state.edits else state.plus(edit))
    src, tgt = concepts.index(source_concept), concepts.index(target_concept)
    was_src = (seg.segment(before) == src).cpu().numpy()
    now_tgt = (seg.segment(after) == tgt).cpu().numpy()
    change = np.abs(after.astype(np.float32) - before.astype(np.float32)).mean(-1) / 255
    clean = ~was_src.any(axis=(1, 2))
    outside = ~was_src
    return {
        "success": float((was_src & now_tgt).sum() / max(was_src.sum(), 1)),
        "preservation": float(change[outside].mean()) if outside.any() else float("nan"),
        "change_without_source": float(change[clean].mean()) if clean.any() else float("nan"),
        "n": len(seeds),
        "with_source": int((~clean).sum()),
    }
