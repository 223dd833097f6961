"""Layer kinds: how a layer's output is seen as a map (N, C, h, w), and how edits go back.

Three kinds of output are understood:

- ``map``: (N, C, H, W), seen as is (convolutional layers);
- ``tokens``: (N, T, C) with T = prefix + h*w, a transformer's token sequence: the patch tokens
  are seen as an (N, C, h, w) map (row by row, as patch embeddings lay them out); the prefix
  tokens (class, register tokens) are left out of the view and untouched by edits;
- ``vector``: (N, C), an MLP layer or a pooled embedding, seen as an (N, C, 1, 1) map.

Everything above the hooks (statistics, dissection, effects, widgets) sees the map view; an
edit written on the view goes back into the layer's own shape. Any other output (a tuple, a
5-d tensor, a token count that is no grid) raises a ValueError that says what was seen.

>>> import torch
>>> view = view_for(torch.zeros(2, 5, 3), "blocks.0", grid=(1, 2, 2))
>>> view.kind, tuple(view.read(torch.zeros(2, 5, 3)).shape)
('tokens', (2, 3, 2, 2))
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "KINDS", "LayerView", "LayerTable", "view_for", "token_grid", "check_grid", "describe_shape",
]  # fmt: skip

KINDS = ("map", "tokens", "vector")


class LayerView:
    """Reads a layer's output as a map and writes an edited map back (``map``: identity)."""

    kind = "map"

    def read(self, out: torch.Tensor) -> torch.Tensor:
        """The (N, C, h, w) map view of ``out``."""
        return out

    def write(self, out: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """``out`` with its viewed part replaced by ``view`` (a new tensor, ``out`` unchanged)."""
        return view

    def shape(self, out_shape) -> tuple[int, int, int]:
        """(C, h, w) of the view of an output of shape ``(N, ...)``."""
        return tuple(out_shape[1:])

    def edit_prefix(self, out: torch.Tensor, fn) -> torch.Tensor:
        """``out`` with ``fn`` applied to its prefix tokens seen as an (N, C, prefix, 1) map
        (layers without prefix tokens: ``out`` as is)."""
        return out

    def __repr__(self):
        return f"<{self.kind} view>"


class TokenView(LayerView):
    """(N, T, C) tokens, T = prefix + h*w -> the patch tokens as an (N, C, h, w) map.

    >>> v = TokenView(1, 2, 2)
    >>> out = torch.arange(10.0).view(1, 5, 2)
    >>> v.read(out)[0, 0].tolist()
    [[2.0, 4.0], [6.0, 8.0]]
    >>> v.write(out, v.read(out) * 0)[0, :, 0].tolist()   # the class token stays
    [0.0, 0.0, 0.0, 0.0, 0.0]
    """

    kind = "tokens"

    def __init__(self, prefix: int, h: int, w: int):
        self.prefix, self.h, self.w = int(prefix), int(h), int(w)

    @property
    def grid(self) -> tuple[int, int, int]:
        return (self.prefix, self.h, self.w)

    def read(self, out):
        n, _, c = out.shape
        return out[:, self.prefix :].transpose(1, 2).reshape(n, c, self.h, self.w)

    def write(self, out, view):
        n, c = view.shape[:2]
        new = out.clone()
        new[:, self.prefix :] = view.reshape(n, c, self.h * self.w).transpose(1, 2)
        return new

    def shape(self, out_shape):
        return (out_shape[-1], self.h, self.w)

    def edit_prefix(self, out, fn):
        if not self.prefix:
            return out
        new = out.clone()
        new[:, : self.prefix] = fn(out[:, : self.prefix].transpose(1, 2)[..., None])[
            ..., 0
        ].transpose(1, 2)
        return new

    def __repr__(self):
        return f"<tokens view: {self.prefix} prefix + {self.h}x{self.w} grid>"


class VectorView(LayerView):
    """(N, C) -> an (N, C, 1, 1) map: one value per unit and image, no heatmap."""

    kind = "vector"

    def read(self, out):
        return out[:, :, None, None]

    def write(self, out, view):
        return view[:, :, 0, 0]

    def shape(self, out_shape):
        return (out_shape[1], 1, 1)


MAP = LayerView()
VECTOR = VectorView()


def describe_shape(out) -> str:
    """A short text for what a module returned: ``(N, 65, 96)``, ``a tuple``, ..."""
    if isinstance(out, torch.Tensor):
        return "(N, " + ", ".join(str(s) for s in out.shape[1:]) + ")"
    if out is None:
        return "nothing"
    return f"a {type(out).__name__}"


def token_grid(tokens: int, image_size=None, patch_size=None, grid=None) -> tuple[int, int, int]:
    """``(prefix, h, w)`` for a layer of ``tokens`` tokens: ``grid`` if given (checked), else
    from the image and patch sizes, else the one of "all tokens" or "one class token" that is a
    square grid; a ValueError says what to pass when none fits.

    >>> token_grid(65), token_grid(197, image_size=(224, 224), patch_size=16)
    ((1, 8, 8), (1, 14, 14))
    """
    if grid is not None:
        prefix, h, w = check_grid(grid)
        if prefix + h * w != tokens:
            raise ValueError(
                f"tokens={tuple(grid)} needs {prefix + h * w} tokens per sample but the layer "
                f"outputs {tokens}; pass tokens=(prefix, h, w) with prefix + h*w = {tokens}"
                + _suggestion(tokens)
            )
        return prefix, h, w
    if image_size is not None and patch_size is not None:
        ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
        h, w = image_size[0] // ph, image_size[1] // pw
        if 0 <= tokens - h * w <= 16:
            return tokens - h * w, h, w
    fits = [(p, math.isqrt(tokens - p)) for p in (1, 0)]
    fits = [(p, side) for p, side in fits if side * side == tokens - p]
    if len(fits) == 1 and fits[0][1] > 1:
        p, side = fits[0]
        return p, side, side
    raise ValueError(
        f"cannot read {tokens} tokens as a grid: pass tokens=(prefix, h, w) to the Session, "
        f"with prefix + h*w = {tokens} (prefix: class and register tokens)" + _suggestion(tokens)
    )


def _suggestion(tokens: int) -> str:
    for p in range(0, 9):
        side = math.isqrt(max(tokens - p, 0))
        if side > 1 and side * side == tokens - p:
            return f", e.g. ({p}, {side}, {side})"
    return ""


def check_grid(grid) -> tuple[int, int, int]:
    """``grid`` as ``(prefix, h, w)`` ints, or a ValueError saying what a grid is."""
    try:
        prefix, h, w = (int(v) for v in grid)
        ok = all(int(v) == v for v in grid) and prefix >= 0 and h >= 1 and w >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"tokens must be (prefix, h, w): prefix >= 0, h, w >= 1; got {grid!r}")
    return prefix, h, w


def view_for(out, layer: str, grid=None, image_size=None, patch_size=None) -> LayerView:
    """The view of ``layer`` from one of its outputs (batch first); ValueError when its shape
    is neither a map, tokens nor a vector. ``grid`` / ``image_size`` / ``patch_size`` place the
    tokens (see :func:`token_grid`).

    >>> view_for(torch.zeros(2, 8), "fc").kind
    'vector'
    """
    if isinstance(out, torch.Tensor) and out.is_floating_point():
        if out.dim() == 4:
            return MAP
        if out.dim() == 2:
            return VECTOR
        if out.dim() == 3:
            try:
                return TokenView(*token_grid(out.shape[1], image_size, patch_size, grid))
            except ValueError as err:
                msg = f"layer {layer!r} outputs tokens {describe_shape(out)}: {err}"
                raise ValueError(msg) from None
    raise ValueError(
        f"layer {layer!r} outputs {describe_shape(out)}"
        + ("" if not isinstance(out, torch.Tensor) else f" of {out.dtype}")
        + ": neither a map (N, C, H, W), tokens (N, T, C) nor a vector (N, C) of floats; "
        "pick another layer (session.layer_info() lists every layer and its kind)"
    )


class LayerTable(list):
    """Rows (dicts) describing a model's layers; prints as a table, shows as HTML in notebooks.

    >>> LayerTable([{"layer": "fc", "kind": "vector"}])
    layer  kind
    fc     vector
    """

    def _columns(self):
        return list(self[0]) if self else []

    @staticmethod
    def _text(value):
        if isinstance(value, tuple):
            return "(" + ", ".join(map(str, value)) + ")"
        if isinstance(value, bool):
            return "yes" if value else ""
        return "" if value is None else str(value)

    def __repr__(self):
        cols = [c for c in self._columns() if c != "note"]
        cells = [[self._text(r[c]) for c in cols] for r in self]
        widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
        rows = [cols, *cells]
        return "\n".join(
            "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
        )

    def _repr_html_(self):
        import html

        cols = self._columns()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(self._text(r[c]))}</td>" for c in cols) + "</tr>"
            for r in self
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def to_pandas(self):
        """The rows as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(list(self))
