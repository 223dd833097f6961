"""Checks of a rewriting request: the layer's weight (a convolution, or a linear map over
tokens), painted regions, rank, steps, lr.

Every check runs before any work, so bad input raises with nothing changed.

>>> conv_of(session, "layer6")
('layer6.conv', 'conv.weight')
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import checks, layerkinds
from ..hooks import resolve

__all__ = ["conv_of", "layer_view", "key_view", "check_context", "check_request"]


def conv_of(session, layer: str) -> tuple[str, str]:
    """(path of the module whose weight rewriting ``layer`` edits, that weight's name within
    the block).

    On a map layer (N, C, H, W) that is an ``nn.Conv2d``: the block itself, its child
    ``conv``, or its one ``nn.Conv2d`` child. On a token layer (N, T, C) it is an
    ``nn.Linear`` applied to the tokens: the block itself or its one ``nn.Linear`` child; it is
    rewritten as a 1x1 convolution of the patch-token map. Anything else raises a ValueError
    that says what is valid.
    """
    layer = session.check_layer(layer)
    block = resolve(session.model, layer)
    kind = session.layer_kind(layer)
    want = {"map": nn.Conv2d, "tokens": nn.Linear}.get(kind)
    children = dict(block.named_children())
    if want is not None and isinstance(block, want):
        path, param = layer, "weight"
    elif want is nn.Conv2d and isinstance(children.get("conv"), nn.Conv2d):
        path, param = f"{layer}.conv", "conv.weight"
    else:
        found = [n for n, m in children.items() if want is not None and isinstance(m, want)]
        if len(found) != 1:
            raise ValueError(_not_rewritable(layer, kind, block, children, found))
        path, param = f"{layer}.{found[0]}", f"{found[0]}.weight"
    groups = getattr(resolve(session.model, path), "groups", 1)
    if groups != 1:
        raise ValueError(
            f"layer {layer!r} has a grouped convolution ({groups} groups); rewriting needs groups=1"
        )
    return path, param


def _not_rewritable(layer, kind, block, children, found) -> str:
    """The error text for a layer with no single weight that rewriting could edit."""
    what = {"map": "a map layer (N, C, H, W)", "tokens": "a token layer (N, T, C)"}
    seen = what.get(kind, f"a {kind} layer")
    text = (
        f"layer {layer!r} ({seen}, a {type(block).__name__}) is not a convolution nor a single "
        "linear map over tokens: rewriting needs, on a map layer, an nn.Conv2d block or a block "
        "with a child 'conv' or exactly one nn.Conv2d child; on a token layer, an nn.Linear "
        "applied to its tokens (the block itself or exactly one nn.Linear child)"
    )
    if found:
        text += "; it has several: " + ", ".join(f"{layer}.{n}" for n in found) + " (pick one)"
    return text + f"; its children are {[f'{n}: {type(m).__name__}' for n, m in children.items()]}"


def layer_view(session, layer: str) -> layerkinds.LayerView:
    """How ``layer``'s output is seen as a map (identity for a map layer)."""
    return session.runner.views.get(session.check_layer(layer), layerkinds.MAP)


def key_view(session, layer: str, conv_path: str, keys: torch.Tensor) -> torch.Tensor:
    """The keys of ``layer``'s rewritten weight (its module's input) as an (N, C_in, h, w) map.

    A conv's input is that map already. A token Linear's input (N, T, C_in) must have the
    layer's own token grid (T = prefix + h*w); its patch tokens are read like the layer's
    output, so keys and values share one grid (the prefix tokens are no keys).
    """
    view = layer_view(session, layer)
    if view.kind != "tokens":
        return keys
    prefix, h, w = view.grid
    if keys.dim() != 3 or keys.shape[1] != prefix + h * w:
        raise ValueError(
            f"the token grid of {conv_path!r} does not match layer {layer!r}: the nn.Linear "
            f"receives {layerkinds.describe_shape(keys)} but the layer outputs {prefix} prefix + "
            f"{h}x{w} = {prefix + h * w} tokens; rewriting needs the Linear applied to the "
            "layer's tokens one for one (N, T, C_in) with the same T"
        )
    return view.read(keys)


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
    if not isinstance(context, (list, tuple)):
        raise TypeError(
            "context must be a list of (seed, mask) pairs where the rule holds; got "
            f"{type(context).__name__}" + (" (a bare mask: pair it with its seed, [(seed, mask)])"
                                           if hasattr(context, "shape") else "")
        )  # fmt: skip
    if not context:
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
