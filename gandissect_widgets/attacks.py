"""Adversarial attacks on a classifier Session, on its class or through a few of its units.

Projected gradient steps (sign of the gradient) inside an L-infinity ball of ``eps`` (a
fraction of the pixel range) around each picture, in the classifier's own input space
([-1, 1]), clipped to valid pixels. The result is judged on the perturbed pictures rounded to
uint8, pictures a user could save. An attack changes no state.

- class-targeted (``units=None``): maximise the log-probability of the target class;
- unit-targeted (``layer`` + ``units``): raise (+1) or lower (-1) the mean activation of the
  chosen units, each over its own "high" level; the logits take no part in the loss.

>>> s = gw.Session.from_zoo("hamlet-classifier")                            # doctest: +SKIP
>>> units = unit_targets(s, "conv4", "forest", source="lake")              # doctest: +SKIP
>>> a = s.attack(range(8), "forest", 16 / 255, layer="conv4", units=units)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from . import checks, render
from .steering import ranked_units, target_index

__all__ = ["Attack", "AttackUnits", "attack", "attack_units", "unit_targets"]


@dataclass
class Attack:
    """What an attack did.

    ``images`` uint8 (N, H, W, 3): the perturbed pictures, rounded; ``inputs``: the same as
    model input (float (N, 3, H, W) in [-1, 1]); ``originals`` uint8; ``before`` / ``after``
    predicted class indices on the originals / the rounded pictures; ``probs_before`` /
    ``probs_after`` (N, classes); ``psnr`` per picture (dB, inf where unchanged).
    """

    target: int
    classes: list[str]
    eps: float
    steps: int
    images: np.ndarray
    inputs: torch.Tensor
    originals: np.ndarray
    before: np.ndarray
    after: np.ndarray
    probs_before: np.ndarray
    probs_after: np.ndarray
    psnr: np.ndarray
    layer: str | None = None
    units: dict[int, float] | None = None
    labels: list[str] | None = None  # the layer's dissection labels, where one is cached
    _means: dict = field(default_factory=dict, repr=False)

    @property
    def perturbation(self) -> np.ndarray:
        """images - originals, int16 (N, H, W, 3), in pixel levels."""
        return self.images.astype(np.int16) - self.originals.astype(np.int16)

    @property
    def flip_rate(self) -> float:
        """Share of pictures predicted as the target after the attack."""
        return float((self.after == self.target).mean()) if len(self.after) else 0.0

    def unit_change(self, layer: str | None = None) -> torch.Tensor:
        """(N, C): change of each unit's spatial-mean activation of ``layer`` (default: the
        attack's layer), rounded pictures minus originals."""
        layer = layer or self.layer
        if layer not in self._means:
            raise KeyError(
                f"this attack recorded no layer {layer!r}; it recorded: "
                f"{', '.join(self._means) or 'none'} (pass layer= to attack)"
            )
        before, after = self._means[layer]
        return after - before

    def moved_units(self, k: int = 10, picture: int | None = None) -> list[dict]:
        """The ``k`` units whose activation changed most (mean absolute change over pictures,
        or one ``picture``'s): rows of unit, change, label."""
        change = self.unit_change()
        change = change.mean(0) if picture is None else change[picture]
        order = change.abs().argsort(descending=True)[: checks.count(k, "k")].tolist()
        return [
            {
                "unit": u,
                "change": float(change[u]),
                "label": self.labels[u] if self.labels else "",
            }
            for u in order
        ]

    def magnified(self, factor: float | None = None) -> np.ndarray:
        """The perturbation as uint8 pictures: 128 + factor x perturbation (default: the
        largest change fills the range)."""
        p = self.perturbation.astype(np.float32)
        if factor is None:
            factor = 127 / max(float(np.abs(p).max()), 1.0)
        return np.clip(128 + factor * p, 0, 255).astype(np.uint8)


def pictures(session, samples) -> np.ndarray:
    """Seeds or uint8 pictures ((H, W, 3) or (N, H, W, 3) at the Session's size) -> uint8."""
    if isinstance(samples, (np.ndarray, torch.Tensor)) and samples.ndim >= 3:
        arr = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else samples
        h, w = session.image_size
        if arr.dtype != np.uint8:
            raise TypeError(
                f"pictures must be uint8 (N, {h}, {w}, 3) or (H, W, 3); got dtype {arr.dtype}"
            )
        arr = arr[None] if arr.ndim == 3 else arr
        if arr.ndim != 4 or arr.shape[1:] != (h, w, 3):
            raise ValueError(
                f"pictures must be uint8 (N, {h}, {w}, 3) or ({h}, {w}, 3) at the model's size; "
                f"got shape {tuple(samples.shape)}"
            )
        return np.ascontiguousarray(arr)
    seeds = checks.seeds(samples, "samples")
    if not seeds:
        raise ValueError("samples must name at least one seed or picture; got none")
    return session.generate(seeds)


def _unit_weights(session, layer, units) -> tuple[str, dict[int, float]]:
    if layer is None:
        raise ValueError("units= needs layer= (the layer the units belong to)")
    layer = session.check_layer(layer)
    channels = session.layer_shape(layer)[0]
    if isinstance(units, dict):
        keys = checks.units(list(units), channels, layer)
        signs = [units[u] for u in units]
        for s in signs:
            if checks.number(s, "a unit's sign") not in (1.0, -1.0):
                raise ValueError(f"a unit's sign must be +1 (raise) or -1 (lower); got {s!r}")
        weights = {u: float(s) for u, s in zip(keys, signs)}
    else:
        weights = dict.fromkeys(checks.units(units, channels, layer), 1.0)
    if not weights:
        raise ValueError(f"units must name at least one unit of {layer} (0..{channels - 1})")
    return layer, weights


def unit_targets(session, layer, target, source=None, k: int = 10, *, n: int = 200) -> dict:
    """Units to attack through: the top ``k`` units of ``target`` to raise (+1) and, with a
    ``source`` class, its top ``k`` to lower (-1); ranked as ``class_units`` ranks them.

    >>> unit_targets(s, "conv4", "forest", source="lake", k=2)     # doctest: +SKIP
    {17: 1.0, 88: 1.0, 5: -1.0, 60: -1.0}
    """
    k = checks.count(k, "k")
    raise_ = ranked_units(session, layer, target, n=n)[:k]
    out = dict.fromkeys(raise_, 1.0)
    if source is not None:
        for u in ranked_units(session, layer, source, n=n)[:k]:
            out.setdefault(u, -1.0)
    return out


def _check_eps(eps) -> float:
    return checks.number(eps, "eps (a fraction of the pixel range)", lo=0, hi=1, lo_open=True)


def attack(
    session,
    samples,
    target,
    eps=2 / 255,
    steps=10,
    layer=None,
    units=None,
    *,
    step_size=None,
    job=None,
) -> Attack:
    """Attack ``samples`` (seeds or uint8 pictures) towards class ``target``; see the module.

    ``units``: a dict unit -> +1 (raise) / -1 (lower), or a list of units to raise, of
    ``layer``; None attacks the class logits (``layer`` then only chooses what
    :meth:`Attack.unit_change` records). ``step_size`` defaults to 2.5 eps / steps; ``job``
    (a :class:`~gandissect_widgets.jobs.Job`) gets one step per gradient step, and cancels.
    """
    if session.kind != "classifier" or not session.classes:
        raise ValueError(f"attack needs a classifier Session; this one is a {session.kind}")
    t = target_index(session, target)
    eps = _check_eps(eps)
    steps = checks.count(steps, "steps")
    weights = None
    if units is not None:
        layer, weights = _unit_weights(session, layer, units)
    elif layer is not None:
        layer = session.check_layer(layer)
    alpha = 2.5 * eps / steps if step_size is None else checks.number(step_size, "step_size")
    originals = pictures(session, samples)
    state = session.state
    device = session.device
    radius, alpha = 2 * eps, 2 * alpha  # [-1, 1] spans two pixel ranges
    retain = [layer] if layer else []
    if weights is not None:
        idx = torch.tensor(list(weights), device=device)
        sign = torch.tensor(list(weights.values()), device=device)
        scale = session.unit_levels(layer)["high"].to(device)[idx].abs().clamp_min(1e-6)

    def as_input(images):
        return torch.from_numpy(images).permute(0, 3, 1, 2).float().to(device) / 127.5 - 1

    def observe(x):
        out, seen = session.run(x, state=state, retain=retain)
        means = seen[layer].float().mean((2, 3)).cpu() if layer else torch.zeros(len(x), 0)
        return out.float().softmax(1).cpu(), means

    def perturb(x0):
        delta = torch.zeros_like(x0)
        for _ in range(steps):
            if job is not None:
                job.step()
            delta.requires_grad_(True)
            x = (x0 + delta).clamp(-1, 1)
            if weights is None:
                out, _ = session.runner.run(x, state, grad=True)
                loss = out.float().log_softmax(1)[:, t].sum()
            else:
                _, seen = session.runner.run(x, state, retain=[layer], stop=True, grad=True)
                acts = seen[layer].index_select(1, idx).float().mean((2, 3))
                loss = (acts / scale * sign).sum()
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta = (delta + alpha * grad.sign()).clamp(-radius, radius)
                delta = (x0 + delta).clamp(-1, 1) - x0
        return render.to_uint8(x0 + delta.detach())

    parts = []  # one batch at a time: (probs, means) before, images, (probs, means) after
    for i in range(0, len(originals), session.batch_size):
        x0 = as_input(originals[i : i + session.batch_size])
        before, images = observe(x0), perturb(x0)
        parts.append((*before, images, *observe(as_input(images))))
    probs0, means0 = (torch.cat([p[j] for p in parts]) for j in (0, 1))
    probs1, means1 = (torch.cat([p[j] for p in parts]) for j in (3, 4))
    images = np.concatenate([p[2] for p in parts])
    inputs = as_input(images)
    mse = ((images.astype(np.float64) - originals) ** 2).mean((1, 2, 3))
    with np.errstate(divide="ignore"):
        psnr = np.where(mse > 0, 10 * np.log10(255.0**2 / np.maximum(mse, 1e-12)), math.inf)
    d = session.dissections.get(layer) if layer else None
    return Attack(
        target=t,
        classes=list(session.classes),
        eps=eps,
        steps=steps,
        images=images,
        inputs=inputs.cpu(),
        originals=originals,
        before=probs0.argmax(1).numpy(),
        after=probs1.argmax(1).numpy(),
        probs_before=probs0.numpy(),
        probs_after=probs1.numpy(),
        psnr=psnr,
        layer=layer,
        units=weights,
        labels=d.labels if d is not None else None,
        _means={layer: (means0, means1)} if layer else {},
    )


@dataclass
class AttackUnits:
    """Where class-targeted attacks act in a layer (the PNAS figure): the share of the ``k``
    most changed units of each picture that are among the top ``top`` units of its source or
    target class, against the share expected of as many random units.

    ``overlap`` / ``random`` / ``ratio``: over every picture; ``by_target``: ratio per target;
    ``source`` / ``target_share``: the overlap with the source's or the target's units alone.
    """

    layer: str
    n: int
    k: int
    top: int
    flip_rate: float
    overlap: float
    random: float
    ratio: float
    source_share: float
    target_share: float
    by_target: dict[str, float] = field(default_factory=dict)

    def table(self) -> str:
        """A Markdown table: one row per target class."""
        rows = ["| target | ratio to random units |", "|---|---|"]
        rows += [f"| {c} | {r:.1f}x |" for c, r in self.by_target.items()]
        rows.append(f"| **all** ({self.n} attacks) | **{self.ratio:.1f}x** |")
        return "\n".join(rows)


def attack_units(
    session,
    layer,
    seeds,
    *,
    eps=2 / 255,
    steps=10,
    k: int = 10,
    top: int = 20,
    rank_n: int = 200,
    batch_size: int = 16,
    job=None,
) -> AttackUnits:
    """Attack each sample (by seed, labelled) towards every other class, class-targeted, and
    measure how much the ``k`` units of ``layer`` that change most (over each unit's "high"
    level) fall among the source's or target's top ``top`` units; see :class:`AttackUnits`.

    >>> attack_units(s, "conv4", range(10**9, 10**9 + 40), eps=8 / 255).ratio  # doctest: +SKIP
    1.9
    """
    layer = session.check_layer(layer)
    seeds = checks.seeds(seeds)
    k, top = checks.count(k, "k"), checks.count(top, "top")
    if not seeds:
        raise ValueError("seeds must name at least one labelled sample")
    labels = np.asarray(session.labels(seeds))
    channels = session.layer_shape(layer)[0]
    tops = [set(ranked_units(session, layer, c, n=rank_n)[:top]) for c in session.classes]
    scale = session.unit_levels(layer)["high"].abs().clamp_min(1e-6)
    hits = {"both": [], "src": [], "tgt": [], "rand": [], "flip": []}
    by_target: dict[str, list] = {}
    for t, name in enumerate(session.classes):
        picked = [s for s, lab in zip(seeds, labels) if lab != t]
        for i in range(0, len(picked), batch_size):
            chunk = picked[i : i + batch_size]
            a = attack(session, chunk, t, eps, steps, layer, job=job)
            moved = (a.unit_change().abs() / scale).argsort(1, descending=True)[:, :k]
            for row, seed in zip(moved.tolist(), chunk):
                src = tops[labels[seeds.index(seed)]]
                both = src | tops[t]
                share = len(both.intersection(row)) / k
                hits["both"].append(share)
                hits["src"].append(len(src.intersection(row)) / k)
                hits["tgt"].append(len(tops[t].intersection(row)) / k)
                hits["rand"].append(len(both) / channels)
                by_target.setdefault(name, []).append((share, len(both) / channels))
            hits["flip"] += list(a.after == t)
    overlap, rand = float(np.mean(hits["both"])), float(np.mean(hits["rand"]))
    return AttackUnits(
        layer=layer,
        n=len(hits["both"]),
        k=k,
        top=top,
        flip_rate=float(np.mean(hits["flip"])),
        overlap=overlap,
        random=rand,
        ratio=overlap / rand,
        source_share=float(np.mean(hits["src"])),
        target_share=float(np.mean(hits["tgt"])),
        by_target={
            c: float(np.mean([s for s, _ in v]) / np.mean([r for _, r in v]))
            for c, v in by_target.items()
        },
    )
