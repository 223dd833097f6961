"""Keys of a rewritten layer: their second moment C over many samples, a rule's context keys,
and the directions D in which a rewrite may change the weight (the C^-1 metric of the paper).

The keys are the input of the layer's conv as a map (N, C_in, h, w); for a token layer's
``nn.Linear``, its input tokens seen as a map of the patch grid (the prefix tokens are no keys).

>>> C = torch.eye(3, dtype=torch.float64); k = torch.tensor([[2.0, 0.0, 0.0]])
>>> rule_directions(k, C).abs().tolist()
[[1.0, 0.0, 0.0]]
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .. import checks
from ..cache import ResultCache, weights_fingerprint
from ..render import resize_mask
from ..stats import SecondMoment
from .request import conv_of, key_view, layer_view

__all__ = ["second_moment", "rule_directions", "features", "context_keys"]

_moments: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # session -> {key: C}


def second_moment(
    session,
    layer: str,
    n: int = 1000,
    *,
    cache=True,
    batch_size: int | None = None,
    progress: Callable[[int, int], object] | None = None,
    state=None,
    compute: bool = True,
) -> torch.Tensor | None:
    """C = E[k k^T] (C_in, C_in) float64 of the keys of ``layer``'s conv (or token Linear: its
    patch tokens) over seeds 0..n-1.

    Computed at ``state``'s weights (default: the Session's state; output edits left out).
    Kept in memory per Session and, with ``cache`` (True, False or a folder), on disk; the key
    is those weights without the edited conv itself (its keys do not depend on it). With
    ``compute=False`` it returns None instead of computing what neither holds.

    >>> second_moment(session, "layer6", n=100).shape
    torch.Size([64, 64])
    """
    conv_path, _ = conv_of(session, layer)
    n = checks.count(n, "n")
    bs = checks.count(batch_size, "batch_size") if batch_size is not None else None
    state = (state or session.state).weights_only()
    with session.weights_at(state) as model:
        fp = weights_fingerprint(model, skip=[f"{conv_path}.weight"])
        c_in = model.get_submodule(conv_path).weight.shape[1]
    key = {"kind": "rewrite-second-moment", "conv": conv_path, "n": n, "weights": fp}
    memo = _moments.setdefault(session, {})
    mkey = tuple(sorted(key.items()))
    if mkey in memo:
        return memo[mkey]
    store = ResultCache.resolve(cache)
    check = functools.partial(_check_cached, n=n, c_in=c_in)
    found = store.load(key, expect={"sum": (c_in, c_in)}, check=check) if store else None
    if found is not None:
        stat = SecondMoment().load_state_dict(found)
    elif not compute:
        return None
    else:
        stat = SecondMoment()
        bs = bs or max(session.batch_size, 64)
        for i in range(0, n, bs):
            seeds = range(i, min(n, i + bs))
            _, seen = session.forward(seeds, state, retain_input=[conv_path], stop=True)
            stat.update(key_view(session, layer, conv_path, seen[conv_path + ":in"]))
            if progress is not None:
                progress(min(n, i + bs), n)
        if store is not None:
            store.save(key, stat.state_dict())
    memo[mkey] = stat.moment.cpu()
    return memo[mkey]


def _check_cached(a: dict, *, n: int, c_in: int) -> None:
    """Raise ValueError saying how a cached second moment disagrees with the request: its
    rows are the positions of ``n`` samples (a positive multiple of n), its sum symmetric
    with a non-negative diagonal."""
    count, units = a.get("count"), a.get("units")
    if count is None or count.shape != () or not np.issubdtype(count.dtype, np.integer):
        raise ValueError("lacks an integer row count")
    if int(count) <= 0 or int(count) % n:
        raise ValueError(f"counts {int(count)} rows, not a positive multiple of {n} samples")
    if units is None or units.shape != () or int(units) != c_in:
        raise ValueError(f"is for another number of channels than {c_in}")
    total = a["sum"]
    atol = 1e-6 * float(np.abs(total).max(initial=0))
    if not np.allclose(total, total.T, rtol=1e-5, atol=atol) or (np.diag(total) < 0).any():
        raise ValueError("holds a sum that is not symmetric with a non-negative diagonal")


def _inverse_sqrt(c: torch.Tensor) -> torch.Tensor:
    """C^(-1/2) of a symmetric PSD matrix, eigenvalues floored for stability."""
    values, vectors = torch.linalg.eigh(c.double())
    floor = values.clamp_min(0).mean().clamp_min(1e-12) * 1e-4
    return (vectors * values.clamp_min(0).add(floor).rsqrt()) @ vectors.T


def features(session, state, layer, conv_path, seeds) -> dict[str, torch.Tensor]:
    """Block input, conv input (``inputs``, as the conv or Linear receives it; ``keys``, the
    same as a map) and block output (``values``, its map view) of the seeds at ``state``'s
    weights with no output edits; ``rows`` maps each seed to its row, ``view`` reads the
    block's output as that map."""
    seeds = list(dict.fromkeys(seeds))
    _, seen = session.forward(
        seeds, state.weights_only(), retain=[layer], retain_input=[layer, conv_path]
    )
    values = seen[layer].detach()
    inputs = seen[conv_path + ":in"].detach()
    # a photo's own residual at this layer: the block itself computes values - residual
    own = torch.zeros_like(values)
    for fn in session.sources.adapters(seeds).get(layer, []):
        own = fn(own)
    return {
        "rows": {s: i for i, s in enumerate(seeds)},
        "view": layer_view(session, layer),
        "block_in": seen[layer + ":in"].detach(),
        "inputs": inputs,
        "keys": key_view(session, layer, conv_path, inputs),
        "values": values,
        "residual": own,
    }


def context_keys(keys: torch.Tensor, masks: Sequence[np.ndarray]) -> torch.Tensor:
    """Keys (K, C_in, h, w) weighted by their masks on that grid -> rows (M, C_in), non-zero."""
    grid = keys.shape[-2:]
    weights = torch.stack([resize_mask(m, grid) for m in masks]).to(keys)
    rows = (keys * weights[:, None]).permute(0, 2, 3, 1).reshape(-1, keys.shape[1])
    return rows[weights.reshape(-1) > 0]


def rule_directions(keys: torch.Tensor, moment: torch.Tensor, rank: int = 1) -> torch.Tensor:
    """Orthonormal directions D (rank, C_in) of context keys (M, C_in) in the C^-1 metric.

    The keys are whitened by C^(-1/2); their top singular directions are mapped back through
    C^(-1/2) and orthonormalised. For one key k this is C^-1 k, normalised. Each direction is
    signed so that the context keys project positively on it.

    >>> C = torch.eye(3, dtype=torch.float64); k = torch.tensor([[2.0, 0.0, 0.0]])
    >>> rule_directions(k, C).abs().tolist()
    [[1.0, 0.0, 0.0]]
    """
    keys = keys.double()
    if rank > keys.shape[1]:
        raise ValueError(f"rank {rank} is larger than the layer's {keys.shape[1]} input channels")
    if rank > keys.shape[0]:
        raise ValueError(
            f"rank {rank} needs at least {rank} painted context positions; got {keys.shape[0]}"
        )
    white = _inverse_sqrt(moment.to(keys.device))
    _, _, vh = torch.linalg.svd(keys @ white, full_matrices=False)
    d = vh[:rank] @ white
    q, _ = torch.linalg.qr(d.T)
    d = q.T
    sign = torch.sign((keys @ d.T).sum(0))
    d = d * torch.where(sign == 0, torch.ones_like(sign), sign)[:, None]
    return d.float()
