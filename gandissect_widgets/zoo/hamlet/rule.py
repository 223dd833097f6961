"""Scripted rewriting examples: "trees grow on roofs" in the hamlet world.

Seeds and masks are picked from the Session's segmenter, so the rule is the same on every
machine: the copied tree crown is the densest one among the candidate samples, the context is
the roofs of the samples with the most roof, and the paste goes on the densest roof.

>>> import gandissect_widgets as gw
>>> session = gw.Session.from_zoo("hamlet")
>>> rule = example_rule(session, candidates=32)
>>> edit = session.rewrite(rule["layer"], **rule["request"], steps=50, stat_samples=100)
>>> scores = gw.rewrite_eval(session, edit, rule["source_concept"], rule["target_concept"],
...                          n=16)
>>> sorted(scores)
['change_without_source', 'n', 'preservation', 'success', 'with_source']
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["example_rule"]

_LAYER = "layer6"


def example_rule(
    session,
    *,
    layer: str = _LAYER,
    source: str = "roof",
    target: str = "tree",
    candidates: int = 200,
    contexts: int = 8,
    window: int = 16,
    first: int = 0,
) -> dict:
    """The scripted rule "every ``source`` gets a ``target``" (default: trees grow on roofs).

    ``session`` is a generator Session with a segmenter (e.g. the hamlet one). Samples are
    chosen among seeds ``first..first+candidates-1``. Returns ``layer``, ``request`` (the keyword
    arguments of ``rewrite``), ``source_concept`` and ``target_concept``.

    >>> rule = example_rule(session, candidates=32)
    >>> sorted(rule["request"])
    ['context', 'copy', 'paste', 'rank']
    """
    seg = session.segmenter
    if seg is None:
        raise ValueError("example_rule needs a Session with a segmenter (segmenter=...)")
    for c in (source, target):
        if c not in seg.concepts:
            raise KeyError(f"unknown concept {c!r}; the segmenter knows: {', '.join(seg.concepts)}")
    seeds = list(range(first, first + candidates))
    labels = seg.segment(session.generate(seeds)).cpu()
    src = labels == seg.concepts.index(source)
    tgt = labels == seg.concepts.index(target)
    src_density, tgt_density = _density(src, window), _density(tgt, window)

    copy_seed = _best(tgt_density, f"no {target!r} in seeds {first}..{first + candidates - 1}")
    cy, cx = _peak(tgt_density[copy_seed])
    copy_mask = (tgt[copy_seed] & _box(src.shape[-2:], cy, cx, window)).numpy()

    by_amount = src.flatten(1).sum(1)
    order = [i for i in by_amount.argsort(descending=True, stable=True).tolist() if by_amount[i]]
    order = [i for i in order if i != copy_seed][:contexts]
    if not order:
        raise ValueError(
            f"no {source!r} in seeds {first}..{first + candidates - 1} besides the copy sample"
        )
    paste_seed = order[0]
    return {
        "layer": layer,
        "request": {
            "context": [(seeds[i], src[i].numpy().astype(np.float32)) for i in order],
            "copy": (seeds[copy_seed], copy_mask.astype(np.float32)),
            "paste": (seeds[paste_seed], _peak(src_density[paste_seed] * src[paste_seed])),
            "rank": 1,
        },
        "source_concept": source,
        "target_concept": target,
    }


def _density(mask: torch.Tensor, window: int) -> torch.Tensor:
    """Share of ``mask`` pixels in the ``window`` box around each pixel, (N, H, W)."""
    x = mask.float()[:, None]
    pad = window // 2
    d = F.avg_pool2d(F.pad(x, (pad, pad, pad, pad)), window, stride=1)
    return d[:, 0, : mask.shape[-2], : mask.shape[-1]]


def _best(density: torch.Tensor, message: str) -> int:
    peaks = density.flatten(1).amax(1)
    if float(peaks.max()) <= 0:
        raise ValueError(message)
    return int(peaks.argmax())


def _peak(density: torch.Tensor) -> tuple[int, int]:
    y, x = divmod(int(density.argmax()), density.shape[-1])
    return y, x


def _box(shape, cy: int, cx: int, window: int) -> torch.Tensor:
    """A boolean (H, W) box of side ``window`` whose window-density peak is at (cy, cx)."""
    box = torch.zeros(shape, dtype=torch.bool)
    top, left = max(0, cy - window // 2), max(0, cx - window // 2)
    box[top : cy - window // 2 + window, left : cx - window // 2 + window] = True
    return box
