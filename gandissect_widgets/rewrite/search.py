"""Search for where a rule applies: samples ranked by how strongly their keys match a context.

>>> m = context_matches(s, "layer6", [(3, roof3)], n=32, stat_samples=100)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .. import checks
from .keys import context_keys, features, rule_directions, second_moment
from .request import check_context, conv_of

__all__ = ["ContextMatches", "context_matches"]


class ContextMatches(NamedTuple):
    """Samples ranked by how strongly their keys match a rule's context."""

    seeds: list[int]
    scores: np.ndarray  # (n,) best match per sample, descending
    heatmaps: np.ndarray  # (n, h, w) match strength |D k| at each key position


def context_matches(
    session,
    layer: str,
    context,
    n: int = 64,
    *,
    rank: int = 1,
    seeds=None,
    stat_samples: int = 1000,
    cache=True,
) -> ContextMatches:
    """Rank samples (seeds 0..n-1, or ``seeds``) by how strongly the context's rule matches.

    >>> m = context_matches(s, "layer6", [(3, roof3)], n=32, stat_samples=100)
    >>> m.seeds[:4], m.heatmaps.shape
    ([3, 31, 16, 7], (32, 16, 16))
    """
    if session.kind != "generator":
        raise ValueError("context matching needs a generator Session (samples drawn from seeds)")
    conv_path, _ = conv_of(session, layer)
    context = check_context(session, context)
    rank = checks.count(rank, "rank")
    seeds = list(range(checks.count(n, "n"))) if seeds is None else checks.seeds(seeds)
    state = session.state.weights_only()
    feats = features(session, state, layer, conv_path, [s for s, _ in context])
    ctx = feats["keys"][[feats["rows"][s] for s, _ in context]]
    keys = context_keys(ctx, [m for _, m in context])
    moment = second_moment(session, layer, checks.count(stat_samples, "stat_samples"),
                           cache=cache, state=state)  # fmt: skip
    d = rule_directions(keys, moment, rank).to(session.device)
    heat = []
    for i in range(0, len(seeds), session.batch_size):
        chunk = seeds[i : i + session.batch_size]
        k = features(session, state, layer, conv_path, chunk)["keys"]
        heat.append(torch.einsum("ri,nihw->nrhw", d, k).clamp_min(0).norm(dim=1).cpu())
    heat = torch.cat(heat) if heat else torch.zeros(0, 1, 1)
    scores = heat.flatten(1).amax(1) if len(seeds) else torch.zeros(0)
    order = scores.argsort(descending=True, stable=True)
    return ContextMatches(
        [seeds[i] for i in order.tolist()], scores[order].numpy(), heat[order].numpy()
    )
