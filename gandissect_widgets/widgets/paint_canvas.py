"""PaintCanvas: an image with a brush; the painted mask is a binary (H, W) array in Python.

Strokes are drawn in the browser (pointer events, coalesced to animation frames) and the mask
is synced once per stroke as raw H*W uint8 bytes. Undo history lives in Python, so the
browser's Undo button and ``canvas.undo()`` step back through the same strokes.

>>> import numpy as np
>>> from gandissect_widgets.widgets import PaintCanvas
>>> canvas = PaintCanvas(np.zeros((64, 64, 3), np.uint8), size=256, brush=6)
>>> mask = np.zeros((64, 64), np.uint8); mask[10:20, 10:20] = 1
>>> canvas.mask = mask
>>> int(canvas.mask.sum())
100
"""

from __future__ import annotations

import re
from collections.abc import Callable

import anywidget
import numpy as np
import torch
import traitlets as t

from .. import render
from ._bundle import css, esm
from ._fallback import StaticFallback
from ._owner import Owner, closes_on_failure
from ._validate import InvalidValue, in_range

__all__ = ["PaintCanvas", "CanvasTraits", "CanvasPart"]

_HISTORY = 64
_MODES = ("paint", "erase")


def _bytes_from_json(value, _widget) -> bytes:
    """Front-end buffers arrive as memoryview; the trait holds bytes."""
    return bytes(value) if value is not None else b""


class PaintCanvas(StaticFallback, Owner, anywidget.AnyWidget):
    """Paint a binary mask over an image with a brush (mouse, pen or touch).

    ``brush`` is the brush diameter in image pixels; ``size`` the displayed width in CSS
    pixels. Without an image the canvas is ``size`` x ``size`` image pixels, and the first
    mask assigned sets its shape.

    >>> canvas = PaintCanvas(size=128)
    >>> canvas.on_stroke(lambda mask: print(mask.sum()))
    >>> canvas.mode = "erase"
    """

    _esm = esm("paint_canvas.js")
    _css = css("paint_canvas.css")

    _image = t.Bytes(b"").tag(sync=True)
    _shape = t.List(t.Int(), default_value=[256, 256]).tag(sync=True)
    _mask = t.Bytes(b"").tag(sync=True, from_json=_bytes_from_json)
    _strokes = t.Int(0).tag(sync=True)
    _undo_depth = t.Int(0).tag(sync=True)
    size = t.Int(256).tag(sync=True)
    brush = t.Int(8).tag(sync=True)
    mode = t.Unicode("paint").tag(sync=True)
    opacity = t.Float(0.5).tag(sync=True)
    color = t.Unicode("#ff3366").tag(sync=True)

    _check_opacity = in_range("opacity", low=0, high=1)
    _check_sizes = in_range("brush", "size", low=1)

    @closes_on_failure
    def __init__(
        self,
        image=None,
        *,
        size: int = 256,
        brush: int = 8,
        mode: str = "paint",
        opacity: float = 0.5,
        color: str = "#ff3366",
    ):
        super().__init__(size=size, brush=brush, mode=mode, opacity=opacity, color=color)
        self._history: list[bytes] = []
        self._stroke_callbacks: list[Callable[[np.ndarray], object]] = []
        self._image_array: np.ndarray | None = None
        self._restoring = False
        self.on_msg(self._on_front_end_msg)
        with self.hold_sync():
            self._shape = [size, size]
            self._mask = bytes(size * size)
            if image is not None:
                self.image = image

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the image and the mask, in image pixels."""
        return tuple(self._shape)

    @property
    def image(self) -> np.ndarray | None:
        """The image as uint8 (H, W, 3), or None."""
        return self._image_array

    @image.setter
    def image(self, value) -> None:
        arr = render.to_uint8(value)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise ValueError(
                "image must be uint8 (H, W, 3) or float (3, H, W) in [-1, 1]; "
                f"got {arr.dtype} {arr.shape}"
            )
        shape = list(arr.shape[:2])
        with self.hold_sync():
            self._image_array = arr
            self._image = render.png_bytes(arr)
            if shape != self._shape:
                self._history.clear()
                self._shape = shape
                self._restore(bytes(shape[0] * shape[1]))

    @property
    def mask(self) -> np.ndarray:
        """The painted mask, uint8 (H, W) of 0 and 1 in image pixels; assign an array to draw."""
        return np.frombuffer(self._mask, np.uint8).reshape(self.shape).copy()

    @mask.setter
    def mask(self, value) -> None:
        arr = np.asarray(torch.as_tensor(value).detach().float().cpu())
        if arr.ndim != 2:
            raise ValueError(f"mask must be 2-D (H, W); got shape {arr.shape}")
        if self._image_array is None and list(arr.shape) != self._shape:
            with self.hold_sync():
                self._history.clear()
                self._shape = list(arr.shape)
                self._restore(bytes(arr.size))
        if tuple(arr.shape) != self.shape:
            raise ValueError(f"mask must have the image's shape {self.shape}; got {arr.shape}")
        self._mask = (arr >= 0.5).astype(np.uint8).tobytes()

    def clear(self) -> None:
        """Erase the whole mask (undoable)."""
        self._mask = bytes(len(self._mask))

    def undo(self) -> bool:
        """Restore the mask before the last stroke (or assignment); False if nothing to undo."""
        if not self._history:
            return False
        self._restore(self._history.pop())
        return True

    def on_stroke(self, callback: Callable[[np.ndarray], object], remove: bool = False) -> None:
        """Call ``callback(mask)`` after each edit made in the browser (stroke, clear, undo).

        Changes made from Python (``mask = ...``, ``clear()``, ``undo()``) do not call it.

        >>> PaintCanvas(size=8).on_stroke(lambda m: None)
        """
        if remove:
            self._stroke_callbacks.remove(callback)
        else:
            self._stroke_callbacks.append(callback)

    def _restore(self, mask: bytes) -> None:
        """Set the mask without recording history."""
        self._restoring = True
        try:
            self._mask = mask
        finally:
            self._restoring = False

    def _on_front_end_msg(self, _widget, content, _buffers) -> None:
        if content == {"event": "undo"} and self.undo():
            self._notify_stroke()

    @t.observe("_mask")
    def _record(self, change) -> None:
        if not self._restoring and change["old"] and len(change["old"]) == len(change["new"]):
            self._history = (self._history + [change["old"]])[-_HISTORY:]
        self._undo_depth = len(self._history)

    @t.observe("_strokes")
    def _notify_stroke(self, _change=None) -> None:
        mask = self.mask
        for callback in list(self._stroke_callbacks):
            callback(mask)

    @t.validate("_mask")
    def _check_mask_bytes(self, proposal) -> bytes:
        (h, w), n = self._shape, len(proposal["value"])
        if n != h * w:
            raise InvalidValue(f"mask bytes must hold H*W = {h * w} values; got {n}")
        return proposal["value"]

    @t.validate("mode")
    def _check_mode(self, proposal) -> str:
        if proposal["value"] not in _MODES:
            raise InvalidValue(f"mode must be one of {_MODES}; got {proposal['value']!r}")
        return proposal["value"]

    @t.validate("color")
    def _check_color(self, proposal) -> str:
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", proposal["value"]):
            raise InvalidValue(f"color must be '#rrggbb' hex; got {proposal['value']!r}")
        return proposal["value"]


class CanvasTraits(t.HasTraits):
    """A paint canvas inside a composite widget: PaintCanvas's traits, named ``canvas_*``
    (the view maps them back; see ``mapped`` in static/_util.js). Use it through
    :class:`CanvasPart`."""

    canvas_image = t.Bytes(b"").tag(sync=True)
    canvas_shape = t.List(t.Int(), default_value=[256, 256]).tag(sync=True)
    canvas_mask = t.Bytes(b"").tag(sync=True, from_json=_bytes_from_json)
    canvas_strokes = t.Int(0).tag(sync=True)
    canvas_undo_depth = t.Int(0).tag(sync=True)
    canvas_size = t.Int(256).tag(sync=True)
    canvas_brush = t.Int(8).tag(sync=True)
    canvas_mode = t.Unicode("paint").tag(sync=True)
    canvas_opacity = t.Float(0.5).tag(sync=True)
    canvas_color = t.Unicode("#ff3366").tag(sync=True)


class CanvasPart:
    """PaintCanvas's Python side (image, mask, undo history, stroke callbacks) over a
    composite's ``canvas_*`` traits, so ``panel.canvas.mask`` reads like ``PaintCanvas.mask``.

    Not a widget: it holds no model of its own and closes with its host.
    """

    def __init__(self, host: CanvasTraits, image=None, *, size: int = 256, brush: int = 8):
        self._host = host
        self._history: list[bytes] = []
        self._callbacks: list[Callable[[np.ndarray], object]] = []
        self._image_array: np.ndarray | None = None
        self._restoring = False
        host.observe(self._record, "canvas_mask")
        host.observe(self._notify, "canvas_strokes")
        with host.hold_sync():
            host.canvas_size, host.canvas_brush = size, brush
            host.canvas_shape = [size, size]
            host.canvas_mask = bytes(size * size)
            if image is not None:
                self.image = image

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self._host.canvas_shape)

    @property
    def image(self) -> np.ndarray | None:
        return self._image_array

    @image.setter
    def image(self, value) -> None:
        arr = render.to_uint8(value)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise ValueError(f"image must be uint8 (H, W, 3); got {arr.dtype} {arr.shape}")
        host, shape = self._host, list(arr.shape[:2])
        with host.hold_sync():
            self._image_array = arr
            host.canvas_image = render.png_bytes(arr)
            if shape != list(host.canvas_shape):
                self._history.clear()
                host.canvas_shape = shape
                self._restore(bytes(shape[0] * shape[1]))

    @property
    def mask(self) -> np.ndarray:
        """The painted mask, uint8 (H, W) of 0 and 1; assign an array to draw."""
        data = self._host.canvas_mask
        if len(data) != self.shape[0] * self.shape[1]:
            return np.zeros(self.shape, np.uint8)
        return np.frombuffer(data, np.uint8).reshape(self.shape).copy()

    @mask.setter
    def mask(self, value) -> None:
        arr = np.asarray(torch.as_tensor(value).detach().float().cpu())
        if arr.shape != self.shape:
            raise ValueError(f"mask must have the image's shape {self.shape}; got {arr.shape}")
        self._host.canvas_mask = (arr >= 0.5).astype(np.uint8).tobytes()

    def clear(self) -> None:
        """Erase the whole mask (undoable)."""
        self._host.canvas_mask = bytes(self.shape[0] * self.shape[1])

    def undo(self) -> bool:
        """Restore the mask before the last stroke; False if there is nothing to undo."""
        if not self._history:
            return False
        self._restore(self._history.pop())
        return True

    def on_stroke(self, callback: Callable[[np.ndarray], object]) -> None:
        """Call ``callback(mask)`` after each edit made in the browser (stroke, clear, undo)."""
        self._callbacks.append(callback)

    def handle_msg(self, content: dict) -> bool:
        """A message from the view; True if it was this part's."""
        if content.get("part") != "canvas":
            return False
        if content.get("event") == "undo" and self.undo():
            self._notify()
        return True

    def _restore(self, mask: bytes) -> None:
        self._restoring = True
        try:
            self._host.canvas_mask = mask
        finally:
            self._restoring = False

    def _record(self, change) -> None:
        if not self._restoring and change["old"] and len(change["old"]) == len(change["new"]):
            self._history = (self._history + [change["old"]])[-_HISTORY:]
        self._host.canvas_undo_depth = len(self._history)

    def _notify(self, _change=None) -> None:
        mask = self.mask
        for callback in list(self._callbacks):
            callback(mask)
