"""Checks of a rewriting request: the layer's convolution, painted regions, rank, steps, lr.

Every check runs before any work, so bad input raises with nothing changed.

>>> conv_of(session, "layer6")
('layer6.conv', 'conv.weight')
"""

from __future__ import annotations

import numpy as np
from torch import nn

from .. import checks
from ..hooks import resolve

__all__ = ["conv_of", "check_context", "check_request"]


def conv_of(session, layer: str) -> tuple[str, str]:
    """(path of the conv that rewriting ``layer`` edits, its weight's name within the block)."""
    layer = session.check_layer(layer)
    block = resolve(session.model, layer)
    children = dict(block.named_children())
    if isinstance(block, nn.Conv2d):
        path, param = layer, "weight"
    elif isinstance(children.get("conv"), nn.Conv2d):
        path, param = f"{layer}.conv", "conv.weight"
    else:
        convs = [n for n, m in children.items() if isinstance(m, nn.Conv2d)]
        if len(convs) != 1:
            raise ValueError(
                f"layer {layer!r} is not a convolution: rewriting needs an nn.Conv2d block, or a "
                "block with a child 'conv' or exactly one nn.Conv2d child; its children are "
                f"{[f'{n}: {type(m).__name__}' for n, m in children.items()]}"
            )
        path, param = f"{layer}.{convs[0]}", f"{convs[0]}.weight"
    groups = resolve(session.model, path).groups
    if groups != 1:
        raise ValueError(
            f"layer {layer!r} has a grouped convolution ({groups} groups); rewriting needs groups=1"
        )
    return path, param


def _region(session, item, what: str) -> tuple[int, np.ndarray]:
    """(seed, mask) -> (seed, float32 mask (H, W) in [0, 1]), refusing empty masks."""
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise TypeError(f"{what} must be a pair (seed, mask); got {type(item).__name__}")
    seed = checks.seed(item[0], f"{what}: the seed")
    mask = checks.mask(item[1], session.image_size, what=f"{what} (seed {seed}): the mask",
                       allow_empty=False)  # fmt: skip
    if mask is None:
        raise TypeError(f"{what} (seed {seed}): the mask is None; paint a region first")
    return seed, mask.numpy()


def check_context(session, context) -> list[tuple[int, np.ndarray]]:
    """A list of checked (seed, mask) pairs; one bare pair is accepted too."""
    if isinstance(context, tuple) and len(context) == 2 and not isinstance(context[0], tuple):
        context = [context]
    if not isinstance(context, (list, tuple)) or not context:
        raise ValueError("context is empty: give a list of (seed, mask) pairs where the rule holds")
    return [_region(session, c, f"context[{i}]") for i, c in enumerate(context)]


def _paste(session, paste) -> tuple[int, np.ndarray | tuple[float, float]]:
    if not isinstance(paste, (tuple, list)) or len(paste) != 2:
        raise TypeError(f"paste must be (seed, mask) or (seed, (y, x)); got {paste!r}")
    where = paste[1]
    if not isinstance(where, (tuple, list)):
        return _region(session, paste, "paste")
    seed = checks.seed(paste[0], "paste: the seed")
    h, w = session.image_size
    if len(where) != 2:
        raise TypeError(f"paste position must be (y, x) image pixels; got {where!r}")
    y, x = (checks.number(v, "paste position (y, x) in image pixels") for v in where)
    if not (0 <= y < h and 0 <= x < w):
        raise ValueError(
            f"paste position (y, x) = {tuple(where)} lies outside the {h}x{w} image; "
            f"y must be in [0, {h}) and x in [0, {w})"
        )
    return seed, (y, x)


def check_request(session, layer, context, copy, paste, rank, steps, lr) -> dict:
    """The checked request as a dict (layer, context, copy, paste, rank, steps, lr)."""
    if session.kind != "generator":
        raise ValueError("rewriting needs a generator Session (samples drawn from seeds)")
    conv_of(session, layer)
    context = check_context(session, context)
    if copy is None or paste is None:
        missing = " and ".join(n for n, v in (("copy=", copy), ("paste=", paste)) if v is None)
        raise ValueError(
            f"{missing} missing: a rewrite needs copy=(seed, mask) and paste=(seed, mask or "
            "(y, x)) together"
        )
    return {
        "layer": layer,
        "context": context,
        "copy": _region(session, copy, "copy"),
        "paste": _paste(session, paste),
        "rank": checks.count(rank, "rank"),
        "steps": checks.count(steps, "steps"),
        "lr": checks.learning_rate(lr),
    }
