"""Fitting a rewrite: the goal from copy and paste, and Adam on the low-rank factor Lambda.

The goal and the fit live on the layer's map: a conv's output grid, or a token layer's patch
grid (its ``nn.Linear`` rewritten as a 1x1 convolution of the token map).

>>> edit = make_rewrite(s, "layer6", [(3, roof3)], (1, tree1), (3, (20, 30)), steps=50,
...                     stat_samples=100)
>>> with s.temporarily(edit): preview = s.generate([3])
"""

from __future__ import annotations

import copy as _copy
import threading
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..cache import weights_fingerprint
from ..jobs import one_torch_thread
from ..render import resize_mask
from .edit import Rewrite
from .keys import context_keys, features, rule_directions, second_moment
from .request import check_request, conv_of

__all__ = ["make_rewrite", "DEFAULT_STEPS", "DEFAULT_LR"]

DEFAULT_STEPS = 400
DEFAULT_LR = 0.05


def _clean_copy(block: nn.Module) -> nn.Module:
    """A deep copy of ``block`` without any forward hooks (ours or anyone's)."""
    block = _copy.deepcopy(block)
    for m in block.modules():
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
    return block


def _placement(session, copy, paste, grid) -> tuple[int, int]:
    """Grid-cell offset (dy, dx) that moves the copied region to where it is pasted."""
    h, w = session.image_size
    ys, xs = np.nonzero(copy[1] > 0)
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    where = paste[1]
    if isinstance(where, np.ndarray):
        ys, xs = np.nonzero(where > 0)
        ty, tx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    else:
        ty, tx = where
    return int(round((ty - cy) * grid[0] / h)), int(round((tx - cx) * grid[1] / w))


def _shift(t: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move the last two axes by (dy, dx) cells, filling with zeros."""
    out = torch.zeros_like(t)
    h, w = t.shape[-2:]
    ys, yd = slice(max(0, -dy), min(h, h - dy)), slice(max(0, dy), min(h, h + dy))
    xs, xd = slice(max(0, -dx), min(w, w - dx)), slice(max(0, dx), min(w, w + dx))
    out[..., yd, xd] = t[..., ys, xs]
    return out


def _goal(session, feats, copy, paste) -> tuple[torch.Tensor, torch.Tensor]:
    """(target values v*, loss weights) of the paste sample on the value grid."""
    values = feats["values"]
    grid = values.shape[-2:]
    a, b = feats["rows"][copy[0]], feats["rows"][paste[0]]
    dy, dx = _placement(session, copy, paste, grid)
    weight = _shift(resize_mask(copy[1], grid).to(values), dy, dx)
    if float(weight.sum()) <= 0:
        raise ValueError("the pasted region lies outside the image; paste it further inside")
    moved = _shift(values[a], dy, dx)
    target = values[b] * (1 - weight) + moved * weight
    # the block alone must produce the target less the paste sample's own (photo) residual
    target = target - feats["residual"][b]
    return target[None], weight[None, None]


def make_rewrite(
    session,
    layer: str,
    context,
    copy=None,
    paste=None,
    *,
    rank: int = 1,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    stat_samples: int = 1000,
    cache=True,
    progress: Callable[[int, float], object] | None = None,
    cancel: threading.Event | None = None,
) -> Rewrite | None:
    """Compute a :class:`Rewrite` without applying it (see :func:`rewrite`); None if cancelled.

    >>> edit = make_rewrite(s, "layer6", [(3, roof3)], (1, tree1), (3, (20, 30)), steps=50,
    ...                     stat_samples=100)
    >>> with s.temporarily(edit): preview = s.generate([3])
    >>> s.edits  # nothing applied
    []
    """
    t0 = time.perf_counter()
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise TypeError(f"cancel must be a threading.Event or None; got {cancel!r}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a function (step, loss) or None; got {progress!r}")
    req = check_request(session, layer, context, copy, paste, rank, steps, lr)
    conv_path, param = conv_of(session, layer)
    state = session.state.weights_only()
    with session.weights_at(state) as model:  # the fit's own copy, made from the clean block
        fingerprint = weights_fingerprint(model)
        block = _clean_copy(model.get_submodule(layer))
    c_in = block.get_submodule(param.rpartition(".")[0]).weight.shape[1]
    if req["rank"] > c_in:
        raise ValueError(f"rank {rank} is larger than {layer!r}'s {c_in} input channels")
    seeds = [s for s, _ in req["context"]] + [req["copy"][0], req["paste"][0]]
    feats = features(session, state, layer, conv_path, seeds)
    ctx_keys = feats["keys"][[feats["rows"][s] for s, _ in req["context"]]]
    keys = context_keys(ctx_keys, [m for _, m in req["context"]])
    if req["rank"] > keys.shape[0]:
        raise ValueError(
            f"rank {rank} needs at least {rank} painted context positions on {layer!r}'s grid; "
            f"got {keys.shape[0]}"
        )
    target, weight = _goal(session, feats, req["copy"], req["paste"])
    moment = second_moment(session, layer, stat_samples, cache=cache, state=state)
    directions = rule_directions(keys, moment, req["rank"]).to(session.device)
    b = feats["rows"][req["paste"][0]]
    f = _LowRankBlock(block, param, directions, feats, b)
    with one_torch_thread():  # tiny ops: thread hand-offs would cost more than the work
        lam, losses = _fit(f, target, weight, req, progress, cancel)
    if lam is None:
        return None
    return Rewrite(
        layer,
        param,
        directions,
        lam,
        request=req,
        fingerprint=fingerprint,
        losses=losses,
        seconds=time.perf_counter() - t0,
    )


class _LowRankBlock(nn.Module):
    """The block on one sample as a function of Lambda alone.

    A conv is linear in its weight, so conv(k, W0 + Lambda D) = conv(k, W0) + conv(D k, Lambda):
    the first term is computed once and each step convolves only the r projected channels. A
    token layer's nn.Linear is the same with 1x1 kernels, applied to every token (the prefix
    tokens too: it is one Linear). The rest of the block (normalisation, bias, nonlinearity
    after the conv) runs as usual on a private copy, so the live model is never touched; its
    output is read as the layer's map (a token layer: its patch tokens).
    """

    def __init__(self, block, param, directions, feats, row):
        super().__init__()
        conv_name = param.rpartition(".")[0]
        self.block = block
        conv = self.block.get_submodule(conv_name) if conv_name else self.block
        inputs = feats["inputs"][row : row + 1]
        directions = directions.to(inputs)
        self.linear = isinstance(conv, nn.Linear)
        with torch.no_grad():
            self.base = conv(inputs)
            if self.linear:  # tokens (1, T, C_in) -> (1, T, r)
                self.projected = nn.functional.linear(inputs, directions)
            else:
                self.projected = torch.einsum("ri,nihw->nrhw", directions, inputs)
        self.conv = conv
        self.read = feats["view"].read
        self.lam = nn.Parameter(
            torch.zeros(conv.weight.shape[0], len(directions), *conv.weight.shape[2:]).to(inputs)
        )
        if conv_name:
            parent, _, leaf = conv_name.rpartition(".")
            setattr(self.block.get_submodule(parent) if parent else self.block, leaf, _Replay(self))
            self.block_in = feats["block_in"][row : row + 1]

    def _conv_out(self) -> torch.Tensor:
        if self.linear:
            return self.base + nn.functional.linear(self.projected, self.lam)
        return self.base + self.conv._conv_forward(self.projected, self.lam, None)

    def forward(self) -> torch.Tensor:
        out = self.block(self.block_in) if hasattr(self, "block_in") else self._conv_out()
        return self.read(out)


class _Replay(nn.Module):
    """Stands in for the conv inside the block copy: returns the low-rank-edited output."""

    def __init__(self, owner):
        super().__init__()
        self._owner = [owner]  # a list, so the owner is not registered as a child (no cycle)

    def forward(self, x):
        return self._owner[0]._conv_out()


def _fit(f, target, weight, req, progress, cancel):
    """Adam on Lambda minimising the masked L1 between the block's output and the target.

    Adam is written out (a few lines) because ``torch.optim`` imports TorchDynamo on first
    use, which costs seconds.
    """
    lam, lr = f.lam, req["lr"]
    m, v = torch.zeros_like(lam), torch.zeros_like(lam)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    norm = weight.sum() * target.shape[1]
    losses = []
    for step in range(1, req["steps"] + 1):
        if cancel is not None and cancel.is_set():
            return None, losses
        loss = ((f() - target).abs() * weight).sum() / norm
        (grad,) = torch.autograd.grad(loss, [lam])
        with torch.no_grad():
            m.lerp_(grad, 1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step_size = lr * (1 - beta2**step) ** 0.5 / (1 - beta1**step)
            lam.addcdiv_(m, v.sqrt().add_(eps * (1 - beta2**step) ** 0.5), value=-step_size)
        losses.append(loss.item())
        if progress is not None and (step % 10 == 0 or step == req["steps"]):
            progress(step, losses[-1])
    lam = lam.detach()
    if not torch.isfinite(lam).all():
        raise ValueError("the optimisation diverged (non-finite weights); try a smaller lr")
    return lam, losses


# Below these a painted rule tends to fail (red blobs, changes elsewhere). Heuristics, stated as
# such in the hint, checked on 80 requests around hamlet's roof rule (BENCHMARKS.md, "Is the
# rule check right?"): too few context positions on the layer's grid to pin a direction down,
# context regions unlike one another, a paste target unlike the context, and a rule direction
# that fires on many places of other samples (where the rule would change them too).
_FEW_POSITIONS = 8
_LOW_AGREEMENT = 0.5
_LOW_MATCH = 0.6  # of the context's own agreement
_WIDE_SPREAD = 0.07  # share of other samples' positions where the direction fires
SPREAD_SEEDS = range(10_000, 10_020)  # the other samples the spread is read on


def rule_hint(
    session,
    layer: str,
    context,
    copy=None,
    paste=None,
    *,
    stat_samples: int = 1000,
    cache=True,
    quick: bool = False,
) -> dict:
    """How well a painted request holds together, before any fitting (forward passes of the
    request's samples and 20 others; the key statistics as for a fit, cached).

    Returns ``positions`` (context positions on the conv's input grid), ``agreement`` (mean
    cosine of the context keys with their mean direction, 0-1: do the regions look alike to
    the layer?), ``paste_match`` (the same for the keys where the copy lands, when copy and
    paste are given: does the target look like the context?), ``spread`` (the share of
    positions of 20 other samples where the rule's direction, as the fit computes it, reaches
    half its mean over the context: how much else the rule would change), ``advice`` (what to
    change, an empty list when nothing stands out) and ``text`` (one line saying all that).
    ``stat_samples``/``cache``: the key statistics, as for :func:`make_rewrite` (shared);
    ``quick``: read the spread only where they are at hand already (in memory or on disk),
    else ``spread`` is None (a widget's click handler must not wait for 1,000 samples).

    >>> h = rule_hint(s, "layer6", [(3, roof3), (9, roof9)], (1, tree1), (3, (20, 30)),
    ...               stat_samples=100)
    >>> sorted(h), h["positions"] > 0, 0 <= h["spread"] <= 1
    (['advice', 'agreement', 'paste_match', 'positions', 'spread', 'text'], True, True)
    """
    req = check_request(session, layer, context, copy, paste, 1, 1, DEFAULT_LR)
    conv_path, _ = conv_of(session, layer)
    state = session.state.weights_only()
    seeds = [s for s, _ in req["context"]] + ([req["paste"][0]] if req["paste"] else [])
    feats = features(session, state, layer, conv_path, seeds)
    keys = feats["keys"]
    ctx = context_keys(keys[[feats["rows"][s] for s, _ in req["context"]]],
                       [m for _, m in req["context"]])  # fmt: skip
    unit = torch.nn.functional.normalize(ctx.double(), dim=1)
    direction = torch.nn.functional.normalize(unit.mean(0), dim=0)
    agreement = float((unit @ direction).mean())
    moment = second_moment(session, layer, stat_samples, cache=cache, state=state,
                           compute=not quick)  # fmt: skip
    spread = None
    if moment is not None:
        rule = rule_directions(ctx, moment, 1)[0].to(keys.dtype)
        reach = float((ctx @ rule).double().sum() / max(len(ctx), 1))
        others = features(session, state, layer, conv_path, SPREAD_SEEDS)["keys"]
        fired = torch.einsum("nchw,c->nhw", others, rule.to(others))  # no copy of the keys
        spread = float((fired >= 0.5 * reach).double().mean()) if reach > 0 else 1.0
    match = None
    if req["copy"] is not None and req["paste"] is not None:
        grid = keys.shape[-2:]
        dy, dx = _placement(session, req["copy"], req["paste"], grid)
        weight = _shift(resize_mask(req["copy"][1], grid).to(keys), dy, dx)
        at = keys[feats["rows"][req["paste"][0]]]
        rows = at.permute(1, 2, 0)[weight > 0]
        if len(rows):
            match = float((torch.nn.functional.normalize(rows.double(), dim=1) @ direction).mean())
    advice = []
    if len(ctx) < _FEW_POSITIONS:
        advice.append(
            f"the context covers only {len(ctx)} positions of {layer}'s "
            f"{keys.shape[-2]}x{keys.shape[-1]} grid: paint larger regions or more samples"
        )
    if agreement < _LOW_AGREEMENT:
        advice.append(
            "the context regions look unlike one another to this layer: paint only the kind "
            "of place the rule is for"
        )
    if spread is not None and spread > _WIDE_SPREAD:
        advice.append(
            f"the rule would also act on {spread:.0%} of the places in other samples: paint "
            "the context tighter, on the kind of place the rule is for only"
        )
    if match is not None and match < _LOW_MATCH * agreement:
        advice.append(
            "where the copy lands looks unlike the context: paste onto a place like the "
            "context (or paint context like that place)"
        )
    verdict = "before Execute: " + "; ".join(advice) if advice else "looks ready to Execute"
    figures = f"{len(ctx)} context positions, context agreement {agreement:.2f}"
    if match is not None:
        figures += f", paste target match {match:.2f}"
    figures += (
        ", spread after the first fit"
        if spread is None
        else f", acts on {spread:.0%} of other places"
    )
    text = f"rule check: {verdict} ({figures}; heuristic thresholds)"
    return {
        "positions": len(ctx),
        "agreement": agreement,
        "paste_match": match,
        "spread": spread,
        "advice": advice,
        "text": text,
    }
