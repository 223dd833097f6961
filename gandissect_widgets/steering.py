"""Steering a classifier through its units: raise a few units of a class and the classifier
sees that class (the "insert" side of an ablation), and how often that flips its prediction.

A steering edit is an ordinary :class:`~gandissect_widgets.edits.Ablation` (undo, preview,
export and widgets see it) that sets the top ``k`` units of the target class, ranked as
``class_units`` ranks them, to a multiple of their "high" level (0.99 quantile), over the
whole map or a region.

>>> s = gw.Session.from_zoo("hamlet-classifier")                        # doctest: +SKIP
>>> edit = s.steer("conv4", "forest", k=10, value=2)                    # doctest: +SKIP
>>> gw.steering_effect(s, "conv4", "forest", k=10, value=2).flip_rate   # doctest: +SKIP
0.96
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch

from . import checks, passes
from .edits import Ablation

__all__ = ["Steering", "SteeringEffect", "steering", "steering_effect", "steering_curve"]

_rankings: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_rankings_lock = threading.Lock()


class Steering(Ablation):
    """An :class:`Ablation` that sets a class's top units to ``scale`` x their ``level``.

    ``target`` names the class; ``values`` are fixed when made (by :func:`steering`).

    >>> Steering("conv4", [3, 7], "forest", torch.ones(2), scale=2.0).describe()
    'steer 2 units of conv4 towards forest (2x high)'
    """

    kind = "steering"

    def __init__(self, layer, units, target, values, scale=1.0, level="high", mask=None):
        super().__init__(layer, units, 1.0, mask, torch.as_tensor(values, dtype=torch.float32))
        self.target, self.scale, self.level = target, float(scale), level

    def describe(self):
        where = "" if self.mask is None else " in a region"
        return (
            f"steer {len(self.units)} units of {self.layer} towards {self.target} "
            f"({self.scale:g}x {self.level}){where}"
        )


def _classifier(session, what: str):
    if session.kind != "classifier" or not session.classes:
        raise ValueError(
            f"{what} needs a classifier Session with classes= and labelled data; "
            f"this one is a {session.kind}"
        )


def target_index(session, target) -> int:
    """A class given by name or index -> its index (KeyError/TypeError naming the classes).

    >>> target_index(gw.Session.from_zoo("hamlet-classifier"), "lake")   # doctest: +SKIP
    1
    """
    names = session.classes or []
    valid = f"classes are: {', '.join(names)} (or their index 0..{len(names) - 1})"
    if isinstance(target, str):
        if target not in names:
            raise KeyError(f"unknown class {target!r}; {valid}")
        return names.index(target)
    if isinstance(target, (bool, np.bool_)) or not isinstance(target, (int, np.integer)):
        raise TypeError(f"a class must be a name or an index; got {target!r}; {valid}")
    if not 0 <= int(target) < len(names):
        raise KeyError(f"class index {int(target)} is out of range; {valid}")
    return int(target)


def _level(value) -> tuple[str, float]:
    """``"high"`` / ``"mean"`` / a positive multiple of "high" -> (level, scale)."""
    valid = "'high', 'mean' or a positive number (a multiple of each unit's 'high' level)"
    if isinstance(value, str):
        if value not in ("high", "mean"):
            raise ValueError(f"value must be {valid}; got {value!r}")
        return value, 1.0
    return "high", checks.number(value, "value", lo=0, lo_open=True)


def ranked_units(session, layer: str, target, *, n: int = 200) -> list[int]:
    """``class_units`` of ``target`` on seeds ``0..n-1`` at the Session's state, remembered
    per Session, state and layer (a widget asks again at every slider move)."""
    name = session.classes[target_index(session, target)]
    key = (session.check_layer(layer), name, checks.count(n, "n"), session.state.key)
    with _rankings_lock:
        found = _rankings.setdefault(session, {}).get(key)
    if found is None:
        found = session.class_units(layer, name, n=n)
        with _rankings_lock:
            _rankings[session][key] = found
    return list(found)


def steering(session, layer, target, k=10, value="high", mask=None, *, n=200) -> Steering:
    """A checked :class:`Steering` edit, not applied: the top ``k`` units of class ``target``
    (ranked on seeds ``0..n-1``) set to ``value``: "high" (each unit's 0.99 quantile),
    "mean", or a number, read as a multiple of "high". ``mask``: a region (H, W) in [0, 1].

    >>> edit = steering(s, "conv4", "forest", k=5, value=2)   # doctest: +SKIP
    >>> s.push(edit)                                          # doctest: +SKIP
    """
    _classifier(session, "steering")
    layer = session.check_layer(layer)
    name = session.classes[target_index(session, target)]
    level, scale = _level(value)
    channels = session.layer_shape(layer)[0]
    k = checks.count(k, "k")
    if k > channels:
        raise ValueError(f"k must be at most the {channels} units of {layer}; got {k}")
    checks.mask(mask, session.image_size, allow_empty=False)
    units = ranked_units(session, layer, name, n=n)[:k]
    values = session.unit_levels(layer)[level][torch.tensor(units)] * scale
    return session.check_edit(Steering(layer, units, name, values, scale, level, mask))


@dataclass
class SteeringEffect:
    """How often a steering edit turns other classes' scenes into the target.

    ``flip_rate``: share of the scenes of every other class (by their label) predicted as
    ``target`` with the edit; ``by_source``: the same per source class; ``already``: share
    predicted as ``target`` without it; ``prob_before`` / ``prob_after``: mean probability of
    the target on those scenes.
    """

    layer: str
    target: str
    units: list[int]
    value: str
    n: int
    flip_rate: float
    already: float
    prob_before: float
    prob_after: float
    by_source: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def table(self) -> str:
        """A Markdown table: one row per source class."""
        rows = [f"| source -> {self.target} | scenes | flip rate |", "|---|---|---|"]
        rows += [f"| {c} | {self.counts[c]} | {r:.0%} |" for c, r in self.by_source.items()]
        rows.append(f"| **all others** | {self.n} | **{self.flip_rate:.0%}** |")
        return "\n".join(rows)


def _held_out(session, seeds, n, batch_size):
    """Model inputs and labels of the samples, drawn once for every edit measured on them."""
    seeds = passes.sample_seeds(n, seeds)
    bs = passes.batch_size(session, batch_size, len(seeds))
    inputs, labels = [], []
    for chunk in passes.batches(seeds, bs):
        inputs.append(session.inputs(chunk).cpu())
        labels.append(torch.as_tensor(session.labels(chunk)))
    return torch.cat(inputs), torch.cat(labels), bs


def _probs(session, inputs, state, bs) -> torch.Tensor:
    out = [session.run(inputs[i : i + bs], state=state)[0] for i in range(0, len(inputs), bs)]
    return torch.cat(out).float().softmax(1).cpu()


def steering_curve(
    session,
    layer,
    target,
    ks=(1, 2, 3, 5, 10),
    value="high",
    mask=None,
    *,
    n=300,
    seeds=None,
    rank_n=200,
    batch_size=None,
) -> dict[int, SteeringEffect]:
    """:class:`SteeringEffect` for each ``k`` in ``ks`` on the same samples (``n`` seeds from
    0, or ``seeds``: use held-out ones). The Session's stack is not touched.

    >>> held_out = range(10**9, 10**9 + 300)                           # doctest: +SKIP
    >>> curve = steering_curve(s, "conv4", "lake", range(1, 11), seeds=held_out)  # doctest: +SKIP
    >>> min(k for k, e in curve.items() if e.flip_rate > 0.5)         # doctest: +SKIP
    8
    """
    _classifier(session, "steering_effect")
    ks = [checks.count(k, "k") for k in ([ks] if isinstance(ks, int) else ks)]
    if not ks:
        raise ValueError("ks must name at least one k")
    edits = {k: steering(session, layer, target, k, value, mask, n=rank_n) for k in ks}
    t = target_index(session, target)
    inputs, labels, bs = _held_out(session, seeds, n, batch_size)
    others = labels != t
    if not others.any():
        raise ValueError(f"no sample of a class other than {session.classes[t]!r}; raise n")
    state = session.state
    before = _probs(session, inputs[others], state, bs)
    src = labels[others]
    out = {}
    for k, edit in edits.items():
        after = _probs(session, inputs[others], state.plus(edit), bs)
        flipped = after.argmax(1) == t
        by, counts = {}, {}
        for i, name in enumerate(session.classes):
            sel = src == i
            if i != t and sel.any():
                by[name], counts[name] = float(flipped[sel].float().mean()), int(sel.sum())
        out[k] = SteeringEffect(
            layer=edit.layer,
            target=session.classes[t],
            units=list(edit.units),
            value=f"{edit.scale:g}x {edit.level}",
            n=int(others.sum()),
            flip_rate=float(flipped.float().mean()),
            already=float((before.argmax(1) == t).float().mean()),
            prob_before=float(before[:, t].mean()),
            prob_after=float(after[:, t].mean()),
            by_source=by,
            counts=counts,
        )
    return out


def steering_effect(
    session, layer, target, k=10, value="high", mask=None, *, n=300, seeds=None, **kwargs
) -> SteeringEffect:
    """Flip rate of the steering edit ``steering(session, layer, target, k, value, mask)`` on
    the samples of every other class; see :class:`SteeringEffect` and :func:`steering_curve`.

    >>> e = steering_effect(s, "conv4", "forest", seeds=range(10**9, 10**9 + 300))  # doctest: +SKIP
    >>> print(e.table())                                                         # doctest: +SKIP
    """
    return steering_curve(session, layer, target, [k], value, mask, n=n, seeds=seeds, **kwargs)[
        checks.count(k, "k")
    ]
