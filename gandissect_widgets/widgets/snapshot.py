"""Snapshot: a saved, kernel-free view of images and heatmaps, in pages with a selector.

A live widget needs Python to redraw; a Snapshot holds everything it shows, so a saved page
(``gw.save_html``) replays it offline. One page per unit lets the reader switch units; an
"original" and a "changed" page let the reader toggle an edit on and off.

>>> import numpy as np
>>> from gandissect_widgets.widgets.snapshot import snapshot_compare
>>> before = np.zeros((2, 16, 16, 3), np.uint8)
>>> snap = snapshot_compare(before, before + 255, labels=("dark", "light"))
>>> [p["label"] for p in snap.pages]
['dark', 'light']
"""

from __future__ import annotations

import hashlib
import pathlib

import anywidget
import numpy as np
import torch
import traitlets as t

from .. import checks, render
from ._bundle import esm
from ._fallback import StaticFallback
from ._owner import Owner

__all__ = [
    "Snapshot",
    "snapshot",
    "snapshot_units",
    "snapshot_compare",
    "snapshot_ablation",
]

_STATIC = pathlib.Path(__file__).parent / "static"
MAX_UNITS = 24


def _lut(cmap: str) -> bytes:
    import matplotlib

    if cmap not in matplotlib.colormaps:
        raise ValueError(f"unknown colormap {cmap!r}; use a matplotlib name, e.g. inferno, viridis")
    rgb = matplotlib.colormaps[cmap](np.linspace(0, 1, 256))[:, :3]
    return (rgb * 255).round().astype(np.uint8).tobytes()


def _as_uint8(images, what: str) -> np.ndarray:
    arr = images if isinstance(images, np.ndarray) and images.dtype == np.uint8 else None
    if arr is None:
        arr = render.to_uint8(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(
            f"{what} must be uint8 (N, H, W, 3) or float (N, 3, H, W) in [-1, 1]; "
            f"got shape {tuple(arr.shape)}"
        )
    return arr


class Snapshot(StaticFallback, Owner, anywidget.AnyWidget):
    """Pages of image groups, each image with an optional heatmap; the reader picks a page.

    Build it with :meth:`add_page` (or the ``snapshot_*`` functions). Identical images are
    stored once, so pages over the same samples cost only their heatmaps.

    >>> snap = Snapshot(title="two pages")
    >>> imgs = np.zeros((3, 8, 8, 3), np.uint8)
    >>> snap.add_page("plain", [("samples", imgs)])
    >>> snap.add_page("hot", [("samples", imgs, np.ones((3, 2, 2)))], info="all hot")
    >>> len(snap.pages), len(snap._images)
    (2, 1)
    """

    _esm = esm("snapshot.js")  # with the grid's highlight drawing
    _css = _STATIC / "snapshot.css"

    title = t.Unicode("").tag(sync=True)
    pages = t.List(t.Dict()).tag(sync=True)
    page = t.Int(0).tag(sync=True)
    size = t.Int(96).tag(sync=True)
    columns = t.Int(8).tag(sync=True)
    opacity = t.Float(0.55).tag(sync=True)
    show_heat = t.Bool(True).tag(sync=True)
    heat_mode = t.Unicode("highlight").tag(sync=True)  # where a group has a threshold
    _images = t.List(t.Bytes()).tag(sync=True)
    _heats = t.List(t.Bytes()).tag(sync=True)
    _lut = t.Bytes(b"").tag(sync=True)

    def __init__(self, *, title: str = "", size: int = 96, columns: int = 8, cmap="inferno"):
        if size < 1 or columns < 1:
            raise ValueError(f"size and columns must be positive; got size={size}, {columns=}")
        super().__init__(title=title, size=size, columns=columns, _lut=_lut(cmap))
        self._index: dict[bytes, int] = {}

    def _image(self, image: np.ndarray) -> int:
        key = hashlib.sha1(np.ascontiguousarray(image).tobytes() + repr(image.shape).encode())
        key = key.digest()
        if key not in self._index:
            self._index[key] = len(self._images)
            self._images = [*self._images, render.png_bytes(image)]
        return self._index[key]

    def _heat(self, plane: np.ndarray, lo: float, hi: float) -> int:
        q = np.clip(np.round((plane - lo) / max(hi - lo, 1e-12) * 255), 0, 255)
        self._heats = [*self._heats, q.astype(np.uint8).tobytes()]
        return len(self._heats) - 1

    def add_page(self, label: str, groups, *, info: str = "") -> None:
        """Append a page: ``groups`` is a list of ``(title, images)``,
        ``(title, images, heatmaps)`` or ``(title, images, heatmaps, captions)``.

        Images are uint8 (N, H, W, 3) (or float (N, 3, H, W) in [-1, 1]); heatmaps float
        (N, h, w), coloured over the shared range of the group, or, given a ``threshold``,
        drawn as GAN Dissection does (above it bright inside an outline, the rest dimmed);
        ``info`` is plain text.

        >>> Snapshot().add_page("p", [("g", np.zeros((1, 4, 4, 3), np.uint8))])
        """
        out = []
        for group in groups:
            if not isinstance(group, (tuple, list)) or not 2 <= len(group) <= 5:
                raise TypeError(
                    "each group must be (title, images), (title, images, heatmaps), "
                    "(title, images, heatmaps, captions) or (..., captions, threshold); "
                    f"got {type(group).__name__}"
                )
            out.append(self._group(*group))
        with self.hold_sync():
            self.pages = [*self.pages, {"label": str(label), "info": str(info), "groups": out}]

    def _group(self, title, images, heatmaps=None, captions=None, threshold=None) -> dict:
        imgs = _as_uint8(images, "images")
        caps = [str(c) for c in captions] if captions is not None else [""] * len(imgs)
        if len(caps) != len(imgs):
            raise ValueError(f"got {len(caps)} captions for {len(imgs)} images; need one each")
        heats = [-1] * len(imgs)
        shape = [0, 0]
        level = None
        if heatmaps is not None:
            heat = np.asarray(torch.as_tensor(heatmaps).detach().float().cpu())
            if heat.ndim != 3 or len(heat) != len(imgs):
                raise ValueError(
                    f"heatmaps must be float (N, h, w) with N = {len(imgs)} images; "
                    f"got shape {heat.shape}"
                )
            if not np.isfinite(heat).all():
                raise ValueError("heatmaps contain NaN or infinite values; only finite ones")
            lo, hi = float(heat.min()), float(heat.max())
            heats = [self._heat(plane, lo, hi) for plane in heat]
            shape = list(heat.shape[1:])
            if threshold is not None:  # on the group's 0-255 scale, as the view compares
                level = (float(threshold) - lo) / max(hi - lo, 1e-12) * 255
        items = [
            {"image": self._image(im), "heat": h, "caption": c}
            for im, h, c in zip(imgs, heats, caps)
        ]
        return {"title": str(title), "heat_shape": shape, "level": level, "items": items}

    @t.validate("page")
    def _check_page(self, proposal) -> int:
        value = proposal["value"]
        if self.pages and not 0 <= value < len(self.pages):
            raise t.TraitError(f"page {value} is out of range: pages are 0-{len(self.pages) - 1}")
        return value


def snapshot_compare(
    original,
    changed,
    labels=("original", "changed"),
    *,
    captions=None,
    title: str = "",
    info=("", ""),
    size: int = 96,
    columns: int = 8,
) -> Snapshot:
    """Two pages of the same samples, before and after a change, for the reader to toggle.

    >>> a = np.zeros((4, 8, 8, 3), np.uint8)
    >>> snapshot_compare(a, a, labels=("before", "after")).pages[1]["label"]
    'after'
    """
    before, after = _as_uint8(original, "original"), _as_uint8(changed, "changed")
    if before.shape != after.shape:
        raise ValueError(
            f"original and changed must have the same shape; got {before.shape} and {after.shape}"
        )
    if len(labels) != 2:
        raise ValueError(f"labels must be two names (original, changed); got {labels!r}")
    snap = Snapshot(title=title, size=size, columns=columns)
    snap.add_page(labels[0], [("", before, None, captions)], info=info[0])
    snap.add_page(labels[1], [("", after, None, captions)], info=info[1])
    return snap


def _default_units(session, layer, dissection, max_units) -> list[int]:
    if dissection is not None:
        order = dissection.best_iou.argsort(descending=True).tolist()
    else:
        order = session.unit_levels(layer)["mean"].argsort(descending=True).tolist()
    return order[:max_units]


def _top_seeds(session, layer, unit, dissection, top, pool=64) -> list[int]:
    if dissection is not None:
        return dissection.top_seeds[unit, :top].tolist()
    seeds = list(range(pool))
    peak = session.activations(layer, seeds)[:, unit].amax((1, 2))
    return [seeds[i] for i in peak.argsort(descending=True)[:top].tolist()]


def _unit_label(unit, dissection) -> tuple[str, str]:
    if dissection is None:
        return f"unit {unit}", f"unit {unit} (no dissection: ordered by mean activation)"
    label, iou = dissection.labels[unit], float(dissection.best_iou[unit])
    info = f"unit {unit} · label {label} · IoU {iou:.3f} · threshold "
    return f"unit {unit} · {label} {iou:.2f}", info + f"{float(dissection.thresholds[unit]):.3f}"


def snapshot_units(
    session,
    layer: str,
    units=None,
    *,
    seeds=None,
    top: int = 8,
    max_units: int = MAX_UNITS,
    size: int = 96,
    columns: int = 8,
) -> Snapshot:
    """Precompute a page per unit: heatmaps over ``seeds`` and the unit's top-activating images.

    ``units`` default to the best-labelled units of the layer's dissection (or the most active
    ones), at most ``max_units`` of them.

    >>> snap = snapshot_units(session, "layer4", [3, 12], seeds=range(4), top=2)
    >>> len(snap.pages), snap.pages[0]["label"].split(" · ")[0]
    (2, 'unit 3')
    """
    layer = session.check_layer(layer)
    dissection = session.dissections.get(layer)
    if units is None:
        units = _default_units(session, layer, dissection, max_units)
    units = checks.units(units, session.layer_shape(layer)[0], layer)
    if len(units) > max_units:
        raise ValueError(
            f"{len(units)} units asked for, more than max_units={max_units}; "
            "pass fewer units or raise max_units"
        )
    seeds = list(seeds) if seeds is not None else session.samples
    images = session.generate(seeds)
    acts = session.activations(layer, seeds)
    snap = Snapshot(title=f"{layer}: {len(units)} units", size=size, columns=columns)
    levels = session.unit_levels(layer)["high"]
    vector = session.layer_kind(layer) == "vector"  # one value per image: no heatmap
    for u in units:
        tops = _top_seeds(session, layer, u, dissection, top)
        label, info = _unit_label(u, dissection)
        thr = float(dissection.thresholds[u] if dissection is not None else levels[u])
        top_acts = session.activations(layer, tops)[:, u]
        if vector:
            info = f"{layer} is a vector layer: no heatmap; captions give the values. {info}"
            groups = [
                ("samples", images, None, [f"{float(v):.2f}" for v in acts[:, u].flatten()]),
                ("top-activating", session.generate(tops), None,
                 [f"#{s} · {float(v):.2f}" for s, v in zip(tops, top_acts.flatten())]),
            ]  # fmt: skip
        else:
            groups = [
                ("samples", images, acts[:, u], None, thr),
                ("top-activating", session.generate(tops), top_acts, [f"#{s}" for s in tops], thr),
            ]
        snap.add_page(label, groups, info=info)
    return snap


def snapshot_ablation(
    session, layer: str, units, *, seeds=None, strength: float = 1.0, size: int = 96
) -> Snapshot:
    """Samples without and with ``units`` of ``layer`` ablated (the Session is left unchanged).

    >>> snap = snapshot_ablation(session, "layer4", [3, 12], seeds=range(4))
    >>> [p["label"] for p in snap.pages], session.edits
    (['original', 'ablated'], [])
    """
    edit = session.ablation(layer, units, strength)
    return compare_edit(session, edit, seeds, size, ("original", "ablated"))


def compare_edit(session, edit, seeds, size, labels) -> Snapshot:
    """A before / after Snapshot of ``edit`` on ``seeds`` (the edit active or not)."""
    seeds = list(seeds) if seeds is not None else session.samples
    with session.excluding(edit):
        before = session.generate(seeds)
    if edit is None:
        after = before
    elif any(e is edit for e in session.edits):
        after = session.generate(seeds)
    else:
        with session.temporarily(edit):
            after = session.generate(seeds)
    what = edit.describe() if edit is not None else "no edit"
    return snapshot_compare(
        before, after, labels, title=what, info=("", what), size=size, captions=None
    )


def snapshot(widget, **kwargs) -> Snapshot:
    """The saved form of a live widget: UnitBrowser -> unit pages, AblationPanel and
    RuleEditor -> an original / changed toggle.

    Objects with their own ``snapshot()`` method (e.g. a RuleEditor) are asked for it.

    >>> browser = gw.UnitBrowser(session, "layer4", seeds=range(4))
    >>> gw.save_html("r.html", snapshot(browser, max_units=2))
    PosixPath('r.html')
    """
    from .ablation_panel import AblationPanel
    from .rule_editor import RuleEditor
    from .unit_browser import UnitBrowser

    if isinstance(widget, UnitBrowser):
        units = [widget.unit, *(u for u in widget.order if u != widget.unit)]
        kwargs.setdefault("max_units", MAX_UNITS)
        return snapshot_units(
            widget.session,
            widget.layer,
            units[: kwargs["max_units"]],
            seeds=widget.seeds,
            top=widget.top,
            **kwargs,
        )
    if isinstance(widget, AblationPanel):
        widget.wait()
        labels = ("original", "inserted" if widget.mode == "insert" else "ablated")
        return compare_edit(widget.session, widget.edit, widget.seeds, 96, labels)
    if isinstance(widget, RuleEditor):
        widget.wait()
        return compare_edit(
            widget.session, widget.edit, widget.seeds, 96, ("original", "rewritten")
        )
    if callable(getattr(widget, "snapshot", None)):
        return widget.snapshot(**kwargs)
    raise TypeError(
        f"cannot snapshot a {type(widget).__name__}; snapshots exist for UnitBrowser, "
        "AblationPanel and objects with a snapshot() method"
    )
