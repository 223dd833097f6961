"""StaticFallback: a picture of what a widget shows, next to its live view, in its display bundle.

A notebook saved with its outputs keeps each output's whole mime bundle. Where no widget manager
runs (GitHub, nbviewer, ``jupyter nbconvert --to html``, PDF, a notebook opened before it is run
again) the reader picks the richest type it knows, so a bundle with ``image/png`` (exact) and a
small ``text/html`` ``<img>`` (a JPEG of the same picture) shows a picture instead of
``<ImageGrid object at 0x...>``. A live frontend still renders the widget view: the mixin
extends the bundle, it never replaces it.

The picture is composed from what the widget already holds (the images and heatmaps of its
grids, a canvas's image and mask, a snapshot's current page), drawn as the browser draws them
(:func:`render.highlight` or :func:`render.overlay`) and tiled with :func:`render.grid`, at the
images' own resolution so saved notebooks stay small; the bundle's metadata (and the ``<img>``'s
``width``) ask the reader to show it enlarged by an integer factor towards the widget's size.

**The picture follows the widget.** Shown by IPython (JupyterLab, Notebook 7, a headless run),
a widget displays two outputs: its live view (widget view + a short text) and, with a
``display_id``, its picture (``image/png``, ``text/html``, ``text/plain``). Once the widget has
been idle for :attr:`StaticFallback.picture_delay` seconds after a change, and when a cell that
changed it ends (a headless run stops listening after its last cell), the picture output is
updated (``update_display_data``) if the picture or its caption would differ, so the notebook
saves what the widget showed when it was saved. The live view is never updated:
JupyterLab re-creates a widget view whose output is updated (the view flashes "Loading
widget...", loses focus and scroll, a drag under way ends, and the old view is never disposed),
so the picture lives in an output of its own. Where a widget's stylesheet is loaded (a live
widget on the page) that output is hidden (``gw-static-picture`` in ``_common.css``); where no
widget runs (GitHub, nbviewer, nbconvert, a notebook reopened without its kernel) it is the
picture the reader sees. marimo never calls ``_ipython_display_`` and keeps the one bundle of
``_repr_mimebundle_``; so do Colab and VS Code (detected; each output of Colab is a frame of its
own, and VS Code's could not be checked here), where the picture stays the display-time one.

>>> import numpy as np, gandissect_widgets as gw
>>> data, _meta = gw.ImageGrid(np.zeros((2, 8, 8, 3), np.uint8), size=16)._repr_mimebundle_()
>>> sorted(k for k in data if "/" in k)[:3]
['application/vnd.jupyter.widget-view+json', 'image/png', 'text/html']
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import os
import sys
import threading
import time
import weakref

import numpy as np

from .. import render

__all__ = ["StaticFallback", "fallback_picture", "fallback_png", "picture_follows"]

MAX_WIDTH = 960  # px of the composed picture; images are enlarged only while it fits
GAP = 8  # px of white between the blocks of a composite widget
JPEG_QUALITY = 85  # of the text/html <img>
PNG_BUDGET = 48_000  # bytes: a larger exact PNG is stored with a 256-colour palette instead


def _decode(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _draw(images, heatmaps, *, mode, threshold, cmap, opacity, vmin, vmax) -> np.ndarray:
    """Images with their heatmaps drawn the way the browser draws them."""
    if heatmaps is None or len(images) == 0:
        return images
    if mode in ("highlight", "outline") and threshold is not None:
        return render.highlight(images, heatmaps, threshold)
    if mode == "outline":  # an outline without a level has nothing to draw
        return images
    return render.overlay(images, heatmaps, cmap=cmap, opacity=opacity, vmin=vmin, vmax=vmax)


def _tile(images: np.ndarray, columns: int, size: int) -> tuple[np.ndarray, int]:
    """Tile uint8 (N, H, W, 3) images; also the integer factor that brings them towards
    ``size`` px (the widget's display size) within MAX_WIDTH."""
    n, h, w = images.shape[:3]
    cols = max(1, min(columns, n))
    scale = max(1, min(int(size) // max(w, 1), (MAX_WIDTH // cols) // max(w, 1)))
    return render.grid(images, columns=cols), scale


def _blocks(widget) -> list[tuple[np.ndarray, int]]:
    """The pictures a widget shows, top to bottom, each uint8 (H, W, 3) with its display scale."""
    from ._grid import GridData

    cmap = getattr(widget, "cmap", "inferno")
    opacity = float(getattr(widget, "opacity", 0.5))
    if hasattr(widget, "_arrays") and hasattr(widget, "_heat_shape"):  # ImageGrid
        images = widget._arrays
        if len(images) == 0:
            return []
        drawn = _draw(
            images,
            widget.heatmaps,
            mode=widget.heat_mode,
            threshold=widget.threshold,
            cmap=cmap,
            opacity=opacity,
            vmin=widget.vmin,
            vmax=widget.vmax,
        )
        return [_tile(drawn, widget.columns, widget.size)]
    grids = [g for g in vars(widget).values() if isinstance(g, GridData) and len(g)]
    if grids:  # UnitBrowser, AblationPanel, RuleEditor: their grids in the order they were made
        out = []
        for g in grids:
            drawn = _draw(
                g.images,
                g.heatmaps,
                mode=g.mode or getattr(widget, "heat_mode", "colormap"),
                threshold=g.threshold,
                cmap=cmap,
                opacity=opacity,
                vmin=g.vmin,
                vmax=g.vmax,
            )
            out.append(_tile(drawn, g.columns, g.size))
        return out
    if hasattr(widget, "pages") and hasattr(widget, "_images"):  # Snapshot: its current page
        if not widget.pages:
            return []
        page = widget.pages[min(widget.page, len(widget.pages) - 1)]
        out = []
        for group in page["groups"]:
            images = np.stack([_decode(widget._images[it["image"]]) for it in group["items"]])
            if group["level"] is not None and all(it["heat"] >= 0 for it in group["items"]):
                h, w = group["heat_shape"]
                heat = np.stack(
                    [
                        np.frombuffer(widget._heats[it["heat"]], np.uint8).reshape(h, w)
                        for it in group["items"]
                    ]
                ).astype(np.float32)
                images = render.highlight(images, heat, group["level"])
            out.append(_tile(images, widget.columns, widget.size))
        return out
    image = getattr(widget, "image", None)  # PaintCanvas
    if isinstance(image, np.ndarray) and image.ndim == 3:
        rgb = image[..., :3]
        mask = getattr(widget, "mask", None)
        if isinstance(mask, np.ndarray) and mask.shape == rgb.shape[:2] and mask.any():
            rgb = render.overlay(rgb[None], mask[None].astype(np.float32), "viridis", 0.4, 0, 1)[0]
        return [_tile(rgb[None], 1, int(getattr(widget, "size", rgb.shape[1])))]
    return []


def _grid_names(widget) -> list[str]:
    """The titles of a composite widget's grids that show images, in the picture's order."""
    from ._grid import GridData

    titles = {"samples_grid": "samples", "top_grid": "top-activating samples"}
    return [
        titles.get(name, name.removesuffix("_grid").replace("_", " "))
        for name, g in vars(widget).items()
        if isinstance(g, GridData) and len(g)
    ]


def fallback_caption(widget) -> str:
    """What the picture shows, in words: which block is which and the widget's state (its
    status, selected unit, captions), so a saved page says what the live widget said."""
    lines = []
    names = _grid_names(widget)
    if len(names) > 1:
        lines.append("Top to bottom: " + "; ".join(names) + ".")
    if isinstance(getattr(widget, "units", None), str) and hasattr(widget, "strength"):
        region = " · only in a painted region" if getattr(widget, "region", False) else ""
        state = "applied to the Session" if widget.applied else "not applied (a preview)"
        lines.append(
            f"units {widget.units or '(none)'} of {widget.layer} · strength {widget.strength:.0%}"
            f" · {widget.mode}{region} · {state}"
        )
    for attr in ("info", "status"):
        text = str(getattr(widget, attr, "") or "").strip()
        if text:
            lines.append(text)
    captions = [str(c) for c in getattr(widget, "captions", []) if c]
    if captions:
        lines.append("Captions in order: " + " · ".join(captions))
    labels = list(getattr(widget, "labels", []) or [])[:8]
    if labels and hasattr(widget, "order"):
        lines.append("Units listed first: " + "; ".join(labels))
    pages = getattr(widget, "pages", None)
    if pages and isinstance(pages, list):
        page = pages[min(getattr(widget, "page", 0), len(pages) - 1)]
        lines.append(f"Page shown: {page.get('label', '')} (of {len(pages)})")
    return "\n".join(lines)


def fallback_picture(widget) -> tuple[np.ndarray, int] | None:
    """One uint8 (H, W, 3) picture of what ``widget`` shows and the factor to show it enlarged
    by, or None when it shows no image."""
    tiles = _blocks(widget)
    if not tiles:
        return None
    scale = min(s for _, s in tiles)
    blocks = [b for b, _ in tiles]
    width = max(b.shape[1] for b in blocks)
    rows = []
    for i, b in enumerate(blocks):
        if i:
            rows.append(np.full((GAP, width, 3), 255, np.uint8))
        pad = np.full((b.shape[0], width - b.shape[1], 3), 255, np.uint8)
        rows.append(np.concatenate([b, pad], axis=1))
    return np.concatenate(rows, axis=0), scale


def _encode(picture, fmt: str, **options) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def fallback_png(picture: np.ndarray) -> bytes:
    """PNG bytes of ``picture``: exact, or where that exceeds PNG_BUDGET (noisy GAN samples
    compress badly: 16 of hamlet's 64 px samples take 117 KB) a 256-colour palette PNG, about
    3/255 off on average, so a saved notebook stays within a few hundred KB."""
    from PIL import Image

    exact = _encode(picture, "PNG", optimize=True)
    if len(exact) <= PNG_BUDGET:
        return exact
    image = Image.fromarray(picture).quantize(
        256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    return min(exact, _encode(image, "PNG", optimize=True), key=len)


VIEW = "application/vnd.jupyter.widget-view+json"
PICTURE_CLASS = "gw-static-picture"  # hidden by _common.css where a live widget runs


def picture_follows() -> bool:
    """True where a widget's picture is shown as an output of its own that follows its state
    (see the module's text): IPython outside Colab and VS Code. ``GW_PICTURE_FOLLOWS=1`` / ``0``
    forces it on or off."""
    forced = os.environ.get("GW_PICTURE_FOLLOWS", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    in_vscode = any(name.startswith("VSCODE_") for name in os.environ)  # its kernels, terminals
    if "google.colab" in sys.modules or in_vscode:
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return False
    return getattr(get_ipython(), "kernel", None) is not None  # not a terminal IPython


def _formatting_only() -> bool:
    """True when IPython formats a widget for a caller that keeps the bundle itself
    (ipywidgets' ``Output.append_display_data``, ``display(w, display_id=...)`` and its
    ``update``): those get the one bundle of ``_repr_mimebundle_``, as before."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_name
        if name == "append_display_data":
            return True
        if name in ("display", "update_display") and frame.f_globals.get("__name__", "").startswith(
            "IPython"
        ):
            here = frame.f_locals
            return here.get("display_id") is not None or bool(here.get("update"))
        frame = frame.f_back
    return False


def _publish(data: dict, metadata: dict, display_id: str, update: bool) -> None:
    """Show (or update) a raw mime bundle under ``display_id`` through IPython."""
    from IPython.display import display

    display(data, metadata=metadata, raw=True, display_id=display_id, update=update)


class StaticFallback:
    """Mixin (put it first in the bases): adds ``image/png`` and ``text/html`` to the widget's
    display bundle, keeping the widget view and whatever else the base class returns. Shown by
    IPython, the picture is an output of its own that follows the widget's state (see the
    module's text)."""

    picture_delay = 1.0  # s of quiet after a change before the saved picture is redrawn

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, meta = bundle if isinstance(bundle, tuple) else (bundle, {})
        found = self._static_picture()
        if found is None:
            return bundle
        picture, caption = found
        return {**data, **picture[0]}, {**(meta or {}), **picture[1]}

    def _static_picture(self, timeout: float = 30, failed=None):
        """((data, metadata), caption) of the picture and its caption, or None (no image);
        ``failed`` is returned instead where drawing it raised."""
        try:
            wait = getattr(self, "wait", None)
            if callable(wait):
                wait(timeout)  # a background render: picture what the view will show
            found = fallback_picture(self)
        except Exception:  # a fallback never breaks the live view
            return failed
        if found is None:
            return None
        try:
            caption = fallback_caption(self)
        except Exception:  # a fallback never breaks the live view
            caption = ""
        return _picture_bundle(type(self).__name__, *found, caption), caption

    # ------------------------------------------------------------ the picture follows
    @property
    def _ipython_display_(self):
        """IPython's display hook: two outputs where the picture follows (see the module's
        text); absent otherwise, so IPython uses ``_repr_mimebundle_``'s one bundle."""
        if not picture_follows() or _formatting_only():
            raise AttributeError("_ipython_display_")
        return self._display_two_outputs

    def _display_two_outputs(self, **_kwargs) -> None:
        bundle = super()._repr_mimebundle_()
        if bundle is None:
            return
        data, meta = bundle if isinstance(bundle, tuple) else (bundle, {})
        found = self._static_picture()
        name = type(self).__name__
        live = {VIEW: data[VIEW], "text/plain": f"{name} (live widget; its picture follows)"}
        _publish(live, dict(meta or {}), None, False)
        picture, picture_meta = found[0] if found is not None else _NO_PICTURE
        picture = _hideable(picture)
        # one display id per widget: an update reaches every output that shows it
        display_id = f"gw-picture-{self.model_id}"
        first = not self._picture_ids()
        _publish(picture, picture_meta, display_id, False)
        if first:
            self._picture_ids().append(display_id)
            self.observe(self._picture_changed, names=list(self.keys))
        elif _digest(picture) != getattr(self, "_picture_sent", None):
            _publish(picture, picture_meta, display_id, True)  # the earlier outputs too
        self._picture_sent = _digest(picture)
        _flush_after_each_cell()

    def _picture_ids(self) -> list:
        if "_picture_displays" not in vars(self):
            self._picture_displays = []
            self._picture_lock = threading.Lock()
        return self._picture_displays

    def _picture_changed(self, _change=None) -> None:
        """A synced trait changed: redraw the saved picture once the widget is quiet."""
        self._picture_due = time.monotonic() + float(self.picture_delay)
        with _PICTURE_LOCK:
            _PENDING.add(self)
            if getattr(self, "_picture_timer", None) is not None:
                return  # the running timer sees the new due time
            self._picture_timer = threading.Thread(
                target=self._picture_wait, name="gw-picture", daemon=True
            )
            self._picture_timer.start()

    def _picture_wait(self) -> None:
        while True:
            left = self._picture_due - time.monotonic()
            if left > 0:
                time.sleep(left)
                continue
            try:
                self.update_picture()
            except Exception:  # a picture never breaks the widget; the next change retries
                self._picture_sent = None
            with _PICTURE_LOCK:
                if self._picture_due <= time.monotonic():
                    self._picture_timer = None
                    return

    def update_picture(self, timeout: float = 30) -> bool:
        """Send the widget's current picture to its outputs (where it was shown by IPython)
        if it differs from the one they hold; True if it was sent. It runs by itself once the
        widget has been quiet for ``picture_delay`` s after a change, and when a cell that
        changed it ends. ``timeout``: seconds to wait for a render under way."""
        if not self._picture_ids() or getattr(self, "comm", None) is None:
            with _PICTURE_LOCK:
                _PENDING.discard(self)  # closed: nothing to send any more
            return False
        wait = getattr(self, "wait", None)
        if callable(wait) and timeout > 0:
            wait(timeout)  # a render under way: picture what it will show (outside the lock)
        if not self._picture_lock.acquire(timeout > 0, timeout if timeout > 0 else -1):
            return False  # another thread is sending it
        try:
            with _PICTURE_LOCK:
                _PENDING.discard(self)
            found = self._static_picture(0, failed=False)
            if found is False:
                return False  # drawing it failed: keep the picture the outputs hold
            picture, picture_meta = found[0] if found is not None else _NO_PICTURE
            picture = _hideable(picture)
            digest = _digest(picture)
            if digest == getattr(self, "_picture_sent", None):
                return False
            self._picture_sent = digest
            for display_id in list(self._picture_ids()):
                _publish(picture, picture_meta, display_id, True)
            return True
        finally:
            self._picture_lock.release()


FLUSH_WAIT = 2.0  # s a cell's end waits for a render under way before leaving it to the timer
_PENDING: weakref.WeakSet = weakref.WeakSet()  # widgets whose picture may be out of date
_HOOKED: list = []  # the IPython shell whose post_run_cell flushes them


def _flush_pictures(*_args) -> None:
    """At the end of a cell: widgets it changed send their picture now, in this cell's
    messages (a headless run stops listening when its last cell ends, before any timer)."""
    with _PICTURE_LOCK:
        pending = list(_PENDING)
    deadline = time.monotonic() + FLUSH_WAIT  # for all of them together
    for widget in pending:
        busy = getattr(widget, "_runner", None)
        if busy is not None and not busy.wait(max(0.0, deadline - time.monotonic())):
            continue  # a long render: the timer sends the picture once it is done
        try:
            widget.update_picture(timeout=0)
        except Exception:  # a picture never breaks a cell
            pass


def _flush_after_each_cell() -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return
    shell = get_ipython()
    if shell is None or any(s is shell for s in _HOOKED):
        return
    shell.events.register("post_run_cell", _flush_pictures)
    _HOOKED.append(shell)


_PICTURE_LOCK = threading.Lock()


def _digest(data: dict) -> str:
    """What decides whether a picture output must be sent again."""
    h = hashlib.sha1()
    for key in ("image/png", "text/plain"):
        h.update(str(data.get(key, "")).encode())
    return h.hexdigest()


def _hideable(data: dict) -> dict:
    """The picture's bundle with its HTML marked, so that a live widget's stylesheet hides it."""
    marked = data["text/html"].replace("<figure ", f'<figure class="{PICTURE_CLASS}" ', 1)
    return {**data, "text/html": marked}


# the picture output of a widget that shows no image yet (an empty grid): filled on a change
_NO_PICTURE = ({"text/html": '<figure style="margin: 0"></figure>', "text/plain": ""}, {})


def _picture_bundle(name: str, picture: np.ndarray, scale: int, caption: str):
    """(data, metadata) of the picture: exact PNG, a JPEG ``<img>`` with its caption, text."""
    b64 = base64.b64encode(fallback_png(picture)).decode("ascii")
    # the page's <img> is a JPEG: a few times smaller than the exact PNG, alike to the eye
    jpeg = _encode(picture, "JPEG", quality=JPEG_QUALITY, subsampling=0)
    small = base64.b64encode(jpeg).decode("ascii")
    alt = html.escape(f"{name} (static picture; run the notebook to interact)")
    width = int(picture.shape[1]) * scale
    data = {
        "image/png": b64,
        "text/html": (
            f'<figure style="margin: 0"><img src="data:image/jpeg;base64,{small}" width="{width}"'
            f' alt="{alt}" title="{alt}" style="image-rendering: pixelated"/>'
            '<figcaption style="font-size: 12px; white-space: pre-line; max-width: 60em">'
            f"{html.escape(caption)}</figcaption></figure>"
        ),
    }
    if caption:
        data["text/plain"] = f"{name}: {caption}"
    return data, {"image/png": {"width": width, "height": int(picture.shape[0]) * scale}}
