"""Rewriting a generator's rules: rank-one constrained edits of one convolution.

Following Bau et al., "Rewriting a Deep Generative Model" (ECCV 2020), a conv layer is read as
an associative memory: its input feature at a position is a *key*, the block's output a
*value*. The user copies values from a region of one sample, pastes them into another and
paints *context* examples of where the new rule applies. The conv weight then changes only
along a few input directions ``D`` picked out by the context keys (whitened by the keys'
second moment ``C = E[k k^T]``), ``dW[o, i, a, b] = sum_r Lambda[o, r, a, b] D[r, i]``, with
``Lambda`` fitted so that the pasted region is reproduced (L1 loss).

>>> import gandissect_widgets as gw
>>> from gandissect_widgets import rewrite as rw
>>> s = gw.Session.from_zoo("hamlet")                                  # doctest: +SKIP
>>> edit = rw.rewrite(s, "layer6", context=[(3, roof3), (9, roof9)],
...                   copy=(1, tree1), paste=(3, (20, 30)))            # doctest: +SKIP
>>> edit.save("trees-on-roofs.npz"); s.undo()                          # doctest: +SKIP
>>> s.push(rw.load_edit("trees-on-roofs.npz"))                         # doctest: +SKIP
"""

from __future__ import annotations

import copy as _copy
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .cache import weights_fingerprint
from .edits import WeightEdit
from .hooks import StopForward, hooked, resolve
from .render import resize_mask
from .stats import SecondMoment

__all__ = [
    "Rewrite",
    "ContextMatches",
    "rewrite",
    "make_rewrite",
    "context_matches",
    "second_moment",
    "rule_directions",
    "load_edit",
    "rewrite_eval",
]

DEFAULT_STEPS = 400
DEFAULT_LR = 0.05
_FORMAT = "gandissect-widgets rewrite 1"
_moments: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # session -> {key: C}


# ---------------------------------------------------------------------------- the edit
class Rewrite(WeightEdit):
    """A rank-``r`` change of one conv weight, with the request that made it.

    ``delta = einsum("orab,ri->oiab", lam, directions)`` is added to ``param`` (e.g.
    ``"conv.weight"``) of block ``layer``. Its first application checks that the model's
    weights are the ones the edit was made for (``fingerprint``); undo restores them
    bit-exactly.

    >>> e = Rewrite("layer6", "conv.weight", torch.ones(1, 4), torch.zeros(8, 1, 3, 3),
    ...             request={"rank": 1}, fingerprint="ab12")
    >>> e.delta.shape, e.describe()
    (torch.Size([8, 4, 3, 3]), 'rewrite layer6 (rank 1)')
    """

    kind = "rewrite"

    def __init__(
        self,
        layer: str,
        param: str,
        directions: torch.Tensor,
        lam: torch.Tensor,
        *,
        request: dict,
        fingerprint: str,
        losses: Sequence[float] = (),
        seconds: float = 0.0,
    ):
        self.directions = directions.detach().float().cpu().contiguous()
        self.lam = lam.detach().float().cpu().contiguous()
        super().__init__(layer, param, _delta(self.lam, self.directions))
        self.request = request
        self.fingerprint = fingerprint
        self.losses = [float(x) for x in losses]
        self.seconds = float(seconds)
        self._verified = False

    @property
    def rank(self) -> int:
        return int(self.directions.shape[0])

    def apply(self, model):
        if not self._verified:
            self._verify(model)
        super().apply(model)
        self._verified = True

    def _verify(self, model) -> None:
        found = weights_fingerprint(model)
        if found != self.fingerprint:
            raise ValueError(
                f"this rewrite was made for weights with fingerprint {self.fingerprint}, but the "
                f"model's weights have fingerprint {found}: it belongs to another model (or to "
                "another stack of weight edits)"
            )

    def describe(self) -> str:
        return f"rewrite {self.layer} (rank {self.rank})"

    def save(self, path) -> Path:
        """Write the request, the factors of the delta and the fingerprint to ``path`` (.npz).

        >>> edit.save("rule.npz")        # doctest: +SKIP
        """
        req = self.request
        arrays = {
            "format": np.array(_FORMAT),
            "layer": np.array(self.layer),
            "param": np.array(self.param),
            "fingerprint": np.array(self.fingerprint),
            "directions": self.directions.numpy(),
            "lam": self.lam.numpy(),
            "losses": np.asarray(self.losses, np.float32),
            "seconds": np.array(self.seconds),
            "steps": np.array(int(req["steps"])),
            "lr": np.array(float(req["lr"])),
            "context_seeds": np.array([s for s, _ in req["context"]], np.int64),
            "context_masks": np.stack([m for _, m in req["context"]]).astype(np.float32),
            "copy_seed": np.array(req["copy"][0]),
            "copy_mask": req["copy"][1].astype(np.float32),
            "paste_seed": np.array(req["paste"][0]),
        }
        where = req["paste"][1]
        key = "paste_mask" if isinstance(where, np.ndarray) else "paste_yx"
        arrays[key] = np.asarray(where, np.float32)
        path = Path(path)
        np.savez_compressed(path, **arrays)
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def load_edit(path) -> Rewrite:
    """Read a :class:`Rewrite` written by :meth:`Rewrite.save`; push it to apply it.

    No optimisation runs; pushing onto a model with other weights raises ValueError.

    >>> session.push(load_edit("rule.npz"))     # doctest: +SKIP
    """
    with np.load(path, allow_pickle=False) as f:
        a = {k: f[k] for k in f.files}
    if str(a.get("format", "")) != _FORMAT:
        raise ValueError(f"{path} is not a saved rewrite (expected format {_FORMAT!r})")
    paste = a["paste_mask"] if "paste_mask" in a else tuple(float(v) for v in a["paste_yx"])
    directions = torch.from_numpy(a["directions"])
    request = {
        "layer": str(a["layer"]),
        "context": [(int(s), m) for s, m in zip(a["context_seeds"], a["context_masks"])],
        "copy": (int(a["copy_seed"]), a["copy_mask"]),
        "paste": (int(a["paste_seed"]), paste),
        "rank": int(directions.shape[0]),
        "steps": int(a["steps"]),
        "lr": float(a["lr"]),
    }
    return Rewrite(
        str(a["layer"]),
        str(a["param"]),
        directions,
        torch.from_numpy(a["lam"]),
        request=request,
        fingerprint=str(a["fingerprint"]),
        losses=a["losses"].tolist(),
        seconds=float(a["seconds"]),
    )


def _delta(lam: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """(C_out, r, kh, kw) x (r, C_in) -> (C_out, C_in, kh, kw)."""
    return torch.einsum("orab,ri->oiab", lam, directions)


# ---------------------------------------------------------------------------- checks
def _conv_of(session, layer: str) -> tuple[str, str]:
    """(path of the conv to edit, its weight's name relative to the block)."""
    conv_path, param = _find_conv(session, layer)
    groups = resolve(session.model, conv_path).groups
    if groups != 1:
        raise ValueError(
            f"layer {layer!r} has a grouped convolution ({groups} groups); rewriting needs groups=1"
        )
    return conv_path, param


def _find_conv(session, layer: str) -> tuple[str, str]:
    layer = session._check_layer(layer)
    block = resolve(session.model, layer)
    if isinstance(block, nn.Conv2d):
        return layer, "weight"
    children = dict(block.named_children())
    if isinstance(children.get("conv"), nn.Conv2d):
        return f"{layer}.conv", "conv.weight"
    convs = [n for n, m in children.items() if isinstance(m, nn.Conv2d)]
    if len(convs) == 1:
        return f"{layer}.{convs[0]}", f"{convs[0]}.weight"
    raise ValueError(
        f"layer {layer!r} is not a convolution: rewriting needs an nn.Conv2d block, or a block "
        f"with a child 'conv' or exactly one nn.Conv2d child; its children are "
        f"{[f'{n}: {type(m).__name__}' for n, m in children.items()]}"
    )


def _check_seed(session, seed, what: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{what}: the seed must be a non-negative integer; got {seed!r}")
    return int(seed)


def _check_region(session, item, what: str) -> tuple[int, np.ndarray]:
    """(seed, mask) -> (seed, float32 mask (H, W) in [0, 1]), refusing empty masks."""
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise TypeError(f"{what} must be a pair (seed, mask); got {type(item).__name__}")
    seed = _check_seed(session, item[0], what)
    mask = session._check_mask(item[1])
    if mask is None or float(mask.max()) <= 0:
        raise ValueError(f"{what} (seed {seed}): the mask is empty; paint a region first")
    return seed, mask.numpy()


def _check_context(session, context) -> list[tuple[int, np.ndarray]]:
    """A list of checked (seed, mask) pairs; one bare pair is accepted too."""
    if isinstance(context, tuple) and len(context) == 2 and not isinstance(context[0], tuple):
        context = [context]
    if not isinstance(context, (list, tuple)) or not context:
        raise ValueError("context is empty: give a list of (seed, mask) pairs where the rule holds")
    return [_check_region(session, c, f"context[{i}]") for i, c in enumerate(context)]


def _check_paste(session, paste) -> tuple[int, np.ndarray | tuple[float, float]]:
    if not isinstance(paste, (tuple, list)) or len(paste) != 2:
        raise TypeError(f"paste must be (seed, mask) or (seed, (y, x)); got {paste!r}")
    where = paste[1]
    if isinstance(where, (tuple, list)):
        seed = _check_seed(session, paste[0], "paste")
        h, w = session.image_size
        if len(where) != 2 or not all(isinstance(v, (int, float, np.number)) for v in where):
            raise TypeError(f"paste position must be (y, x) image pixels; got {where!r}")
        y, x = (float(v) for v in where)
        if not (0 <= y < h and 0 <= x < w):
            raise ValueError(f"paste position (y, x) = {where} lies outside the {h}x{w} image")
        return seed, (y, x)
    return _check_region(session, paste, "paste")


def _check_request(session, layer, context, copy, paste, rank, steps, lr) -> dict:
    if session.kind != "generator":
        raise ValueError("rewriting needs a generator Session (samples drawn from seeds)")
    _conv_of(session, layer)
    context = _check_context(session, context)
    if copy is None or paste is None:
        missing = " and ".join(n for n, v in (("copy=", copy), ("paste=", paste)) if v is None)
        raise ValueError(
            f"{missing} missing: a rewrite needs copy=(seed, mask) and paste=(seed, mask or "
            "(y, x)) together"
        )
    copy = _check_region(session, copy, "copy")
    paste = _check_paste(session, paste)
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ValueError(f"rank must be a positive integer; got {rank!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer; got {steps!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number; got {lr!r}")
    return {
        "layer": layer,
        "context": context,
        "copy": copy,
        "paste": paste,
        "rank": int(rank),
        "steps": int(steps),
        "lr": float(lr),
    }


# ---------------------------------------------------------------------------- statistics
def second_moment(
    session,
    layer: str,
    n: int = 1000,
    *,
    cache=True,
    batch_size: int | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> torch.Tensor:
    """C = E[k k^T] (C_in, C_in) float64 of the keys of ``layer``'s conv over seeds 0..n-1.

    Kept in memory per Session and, with ``cache`` (True, False or a folder), on disk; the
    key is the model's weights without the edited conv itself (its keys do not depend on it).

    >>> second_moment(session, "layer6", n=1000).shape      # doctest: +SKIP
    torch.Size([128, 128])
    """
    conv_path, _ = _conv_of(session, layer)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive number of samples; got {n!r}")
    with session.lock:
        fp = weights_fingerprint(session.model, skip=[f"{conv_path}.weight"])
    key = {"kind": "rewrite-second-moment", "conv": conv_path, "n": int(n), "weights": fp}
    memo = _moments.setdefault(session, {})
    mkey = tuple(sorted(key.items()))
    if mkey in memo:
        return memo[mkey]
    store = _result_cache(cache)
    found = store.load(key) if store is not None else None
    if found is not None:
        stat = SecondMoment().load_state_dict(found)
    else:
        stat = _collect_moment(session, conv_path, int(n), batch_size, progress)
        if store is not None:
            store.save(key, stat.state_dict())
    memo[mkey] = stat.moment.cpu()
    return memo[mkey]


def _result_cache(cache):
    if cache is False or cache is None:
        return None
    from .cache import ResultCache

    return ResultCache.resolve(cache)


def _collect_moment(session, conv_path, n, batch_size, progress) -> SecondMoment:
    stat = SecondMoment()
    bs = batch_size or max(session.batch_size, 64)
    for i in range(0, n, bs):
        z = session.latents(range(i, min(n, i + bs))).to(session.device)
        with (
            session.lock,
            torch.no_grad(),
            hooked(session.model, retain_input=[conv_path], stop_after_retained=True) as seen,
        ):
            try:
                session.model(z)
            except StopForward:
                pass
        stat.update(seen[conv_path + ":in"])
        if progress is not None:
            progress(min(n, i + bs), n)
    return stat


def _inverse_sqrt(c: torch.Tensor) -> torch.Tensor:
    """C^(-1/2) of a symmetric PSD matrix, eigenvalues floored for stability."""
    values, vectors = torch.linalg.eigh(c.double())
    floor = values.clamp_min(0).mean().clamp_min(1e-12) * 1e-4
    return (vectors * values.clamp_min(0).add(floor).rsqrt()) @ vectors.T


# ---------------------------------------------------------------------------- features
def _features(session, layer, conv_path, seeds) -> dict[str, torch.Tensor]:
    """Block input, conv input (keys) and block output (values) for the seeds, unedited."""
    seeds = list(dict.fromkeys(seeds))
    _, seen = session.run(
        session.latents(seeds), retain=[layer], retain_input=[layer, conv_path], edits=False
    )
    rows = {s: i for i, s in enumerate(seeds)}
    return {
        "rows": rows,
        "block_in": seen[layer + ":in"].detach(),
        "keys": seen[conv_path + ":in"].detach(),
        "values": seen[layer].detach(),
    }


def _context_keys(keys: torch.Tensor, masks: Sequence[np.ndarray]) -> torch.Tensor:
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
    return target[None], weight[None, None]


# ---------------------------------------------------------------------------- rewriting
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

    >>> edit = make_rewrite(s, "layer6", [(3, roof)], (1, tree), (3, (20, 30)))  # doctest: +SKIP
    >>> with s.temporarily(edit): preview = s.generate([3])                    # doctest: +SKIP
    """
    t0 = time.perf_counter()
    req = _check_request(session, layer, context, copy, paste, rank, steps, lr)
    conv_path, param = _conv_of(session, layer)
    c_in = resolve(session.model, conv_path).weight.shape[1]
    if req["rank"] > c_in:
        raise ValueError(f"rank {rank} is larger than {layer!r}'s {c_in} input channels")
    seeds = [s for s, _ in req["context"]] + [req["copy"][0], req["paste"][0]]
    feats = _features(session, layer, conv_path, seeds)
    ctx_keys = feats["keys"][[feats["rows"][s] for s, _ in req["context"]]]
    keys = _context_keys(ctx_keys, [m for _, m in req["context"]])
    if req["rank"] > keys.shape[0]:
        raise ValueError(
            f"rank {rank} needs at least {rank} painted context positions on {layer!r}'s grid; "
            f"got {keys.shape[0]}"
        )
    target, weight = _goal(session, feats, req["copy"], req["paste"])
    with session.lock:
        fingerprint = weights_fingerprint(session.model)
    moment = second_moment(session, layer, stat_samples, cache=cache)
    directions = rule_directions(keys, moment, req["rank"]).to(session.device)
    b = feats["rows"][req["paste"][0]]
    f = _LowRankBlock(resolve(session.model, layer), param, directions, feats, b)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: thread hand-offs would cost more than the work
    try:
        lam, losses = _fit(f, target, weight, req, progress, cancel)
    finally:
        torch.set_num_threads(threads)
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
    the first term is computed once and each step convolves only the r projected channels.
    The rest of the block (normalisation, bias, nonlinearity after the conv) runs as usual on
    a private copy, so the live model is never touched.
    """

    def __init__(self, block, param, directions, feats, row):
        super().__init__()
        conv_name = param.rpartition(".")[0]
        self.block = _copy.deepcopy(block)
        conv = self.block.get_submodule(conv_name) if conv_name else self.block
        keys = feats["keys"][row : row + 1]
        with torch.no_grad():
            self.base = conv(keys)
            self.projected = torch.einsum("ri,nihw->nrhw", directions, keys)
        self.conv = conv
        self.lam = nn.Parameter(
            torch.zeros(conv.weight.shape[0], len(directions), *conv.weight.shape[2:]).to(keys)
        )
        if conv_name:
            self.block.set_submodule(conv_name, _Replay(self))
            self.block_in = feats["block_in"][row : row + 1]

    def _conv_out(self) -> torch.Tensor:
        return self.base + self.conv._conv_forward(self.projected, self.lam, None)

    def forward(self) -> torch.Tensor:
        return self.block(self.block_in) if hasattr(self, "block_in") else self._conv_out()


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


def rewrite(session, layer: str, context, copy=None, paste=None, **kwargs) -> Rewrite | None:
    """Change ``layer``'s conv so that ``copy`` pasted at ``paste`` holds wherever ``context``.

    - ``context``: [(seed, mask), ...] painted examples of where the rule applies.
    - ``copy``: (seed, mask) the region to copy; ``paste``: (seed, mask) or (seed, (y, x))
      where it goes (a mask centres the copy on the painted box, (y, x) on that pixel).
    - ``rank``, ``steps``, ``lr``: the edit's rank and its optimisation (Adam on Lambda).
    - ``stat_samples``, ``cache``: samples for the key statistics C and where to keep them.
    - ``progress(step, loss)`` is called every 10 steps; setting ``cancel`` stops early.

    Masks are image-pixel arrays (H, W), float in [0, 1], bool or uint8. Returns the pushed
    edit (undo with ``session.undo()``), or None when cancelled. Bad input raises before any
    weight changes.

    >>> edit = rewrite(s, "layer6", context=[(3, roof3)], copy=(1, tree1),
    ...                paste=(3, (20, 30)), rank=1)                    # doctest: +SKIP
    """
    edit = make_rewrite(session, layer, context, copy, paste, **kwargs)
    return None if edit is None else session.push(edit)


# ---------------------------------------------------------------------------- search
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

    >>> m = context_matches(s, "layer6", [(3, roof3)], n=32)   # doctest: +SKIP
    >>> m.seeds[:4], m.heatmaps.shape                          # doctest: +SKIP
    ([3, 17, 8, 21], (32, 16, 16))
    """
    if session.kind != "generator":
        raise ValueError("context matching needs a generator Session (samples drawn from seeds)")
    conv_path, _ = _conv_of(session, layer)
    context = _check_context(session, context)
    seeds = list(range(n)) if seeds is None else [_check_seed(session, s, "seeds") for s in seeds]
    feats = _features(session, layer, conv_path, [s for s, _ in context])
    ctx = feats["keys"][[feats["rows"][s] for s, _ in context]]
    keys = _context_keys(ctx, [m for _, m in context])
    moment = second_moment(session, layer, stat_samples, cache=cache)
    d = rule_directions(keys, moment, rank).to(session.device)
    heat = []
    for i in range(0, len(seeds), session.batch_size):
        chunk = seeds[i : i + session.batch_size]
        k = _features(session, layer, conv_path, chunk)["keys"]
        heat.append(torch.einsum("ri,nihw->nrhw", d, k).clamp_min(0).norm(dim=1).cpu())
    heat = torch.cat(heat) if heat else torch.zeros(0, 1, 1)
    scores = heat.flatten(1).amax(1) if len(seeds) else torch.zeros(0)
    order = scores.argsort(descending=True, stable=True)
    return ContextMatches(
        [seeds[i] for i in order.tolist()], scores[order].numpy(), heat[order].numpy()
    )


# ---------------------------------------------------------------------------- evaluation
def rewrite_eval(
    session, edit, source_concept: str, target_concept: str, n: int = 200, *, seeds=None
) -> dict:
    """Measure a rewrite on ``n`` samples (seeds 0..n-1, or ``seeds``) with the segmenter.

    - ``success``: share of pixels segmented as ``source_concept`` before the edit that are
      ``target_concept`` after it;
    - ``preservation``: mean absolute pixel change outside source regions (fraction of 255);
    - ``change_without_source``: the same on samples without any source pixel.

    The Session's edits are as before afterwards.

    >>> gw.rewrite_eval(s, edit, "roof", "tree", n=200)["success"]     # doctest: +SKIP
    0.71
    """
    seg = session.segmenter
    if seg is None:
        raise ValueError("rewrite_eval needs a Session with a segmenter (segmenter=...)")
    concepts = list(seg.concepts)
    for c in (source_concept, target_concept):
        if c not in concepts:
            raise KeyError(f"unknown concept {c!r}; the segmenter knows: {', '.join(concepts)}")
    seeds = list(range(n)) if seeds is None else list(seeds)
    before, after = _before_after(session, edit, seeds)
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


def _before_after(session, edit, seeds) -> tuple[np.ndarray, np.ndarray]:
    """Images without and with ``edit``; the stack is left as it was."""
    with session.lock:
        if edit in session.stack.active:
            after = session.generate(seeds)
            with session.excluding(edit):
                before = session.generate(seeds)
            return before, after
        before = session.generate(seeds)
        with session.temporarily(edit):
            after = session.generate(seeds)
        return before, after
