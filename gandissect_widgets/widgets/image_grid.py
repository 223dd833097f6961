"""ImageGrid: a grid of images with optional heatmap overlays, captions, click and hover.

Images travel as PNG bytes, or as raw pixels with ``encoding="raw"`` (no encoding cost: for
fast-changing images such as an ablation preview). Heatmaps travel as uint8-quantised bytes
plus ``vmin``/``vmax``; the browser colours them with a 256-entry lookup table, upsamples
bilinearly and draws the threshold contour. Everything a view draws is a trait, so a saved
page replays it. With ``accept_photos=True`` the grid takes image files dropped onto it (or
chosen with its "add photo…" button): ``on_photo`` callbacks get each one decoded.

>>> import numpy as np
>>> from gandissect_widgets.widgets import ImageGrid
>>> grid = ImageGrid(np.zeros((4, 32, 32, 3), np.uint8), columns=2, size=64)
>>> grid.set_heatmaps(np.random.rand(4, 8, 8), vmin=0, vmax=1)
>>> grid.on_click(lambda where: print(where["index"], where["x"], where["y"]))
>>> grid.accept_photos = True
>>> grid.on_photo(lambda picture, name: print(name, picture.shape))  # uint8 (H, W, 3)
"""

from __future__ import annotations

from collections.abc import Callable

import anywidget
import numpy as np
import traitlets as t

from ._bundle import css, esm
from ._fallback import StaticFallback
from ._grid import dequantise, encode, image_stack, lut_bytes, quantise
from ._owner import Owner, closes_on_failure
from ._photos import PhotoDrop
from ._validate import InvalidValue, in_range

__all__ = ["ImageGrid"]

HEAT_MODES = ("colormap", "highlight", "outline", "none")


class ImageGrid(StaticFallback, Owner, PhotoDrop, anywidget.AnyWidget):
    """N images in a grid, each with an optional heatmap overlay and a caption.

    ``size`` is the displayed width of each image in CSS pixels; clicks report image pixels.
    ``accept_photos=True`` takes PNG/JPEG files dropped onto the grid or chosen with its "add
    photo…" button (up to 8 MB): each is decoded to uint8 (H, W, 3) and passed to the
    :meth:`on_photo` callbacks; a bad file shows its error in the view (``photo_status``).

    >>> grid = ImageGrid(np.zeros((2, 16, 16, 3), np.uint8), captions=["a", "b"])
    >>> grid.captions = ["first", "second"]
    """

    _esm = esm("image_grid.js")
    _css = css("image_grid.css")

    _images = t.List(t.Bytes()).tag(sync=True)
    _image_shape = t.List(t.Int(), default_value=[0, 0, 3]).tag(sync=True)
    encoding = t.Unicode("png").tag(sync=True)
    _heat = t.Bytes(b"").tag(sync=True)
    _heat_shape = t.List(t.Int(), default_value=[0, 0, 0]).tag(sync=True)
    _lut = t.Bytes(b"").tag(sync=True)
    vmin = t.Float(0.0).tag(sync=True)
    vmax = t.Float(1.0).tag(sync=True)
    cmap = t.Unicode("inferno").tag(sync=True)
    opacity = t.Float(0.5).tag(sync=True)
    threshold = t.Float(None, allow_none=True).tag(sync=True)
    heat_mode = t.Unicode("colormap").tag(sync=True)
    captions = t.List(t.Unicode()).tag(sync=True)
    columns = t.Int(8).tag(sync=True)
    size = t.Int(128).tag(sync=True)
    clicked = t.Dict().tag(sync=True)

    _check_opacity = in_range("opacity", low=0, high=1)
    _check_counts = in_range("columns", "size", low=1)

    @closes_on_failure
    def __init__(
        self,
        images=None,
        *,
        heatmaps=None,
        captions=None,
        columns: int = 8,
        size: int = 128,
        cmap: str = "inferno",
        opacity: float = 0.5,
        threshold: float | None = None,
        encoding: str = "png",
        heat_mode: str = "colormap",
        accept_photos: bool = False,
    ):
        self._arrays = np.zeros((0, 1, 1, 3), np.uint8)
        captions = list(captions or [])
        if images is not None:  # refused before the widget exists
            images = image_stack(images)
            if captions and len(captions) != len(images):
                raise ValueError(
                    f"{len(captions)} captions for {len(images)} images: give one caption per "
                    "image (or none)"
                )
        super().__init__(
            encoding=encoding,
            columns=columns,
            size=size,
            cmap=cmap,
            opacity=opacity,
            threshold=threshold,
            heat_mode=heat_mode,
            accept_photos=accept_photos,
            captions=captions,
            _lut=lut_bytes(cmap),
        )
        self._click_callbacks: list[Callable[[dict], object]] = []
        self.on_msg(lambda _w, content, buffers: self.handle_photo_msg(content, buffers))
        if images is not None:
            self.set_images(images)
        if heatmaps is not None:
            self.set_heatmaps(heatmaps)

    def __len__(self) -> int:
        return len(self._arrays)

    def set_images(self, images) -> None:
        """Show new images: uint8 (N, H, W, 3), float (N, 3, H, W) in [-1, 1], or a list.

        Heatmaps are kept if the count is unchanged and dropped otherwise.

        >>> ImageGrid().set_images(np.zeros((3, 8, 8, 3), np.uint8))
        """
        arr = image_stack(images)
        with self.hold_sync():
            if self._heat_shape[0] not in (0, len(arr)):
                self.set_heatmaps(None)
            self._arrays = arr
            self._send_images()

    def _send_images(self) -> None:
        arr = self._arrays
        with self.hold_sync():
            self._image_shape = list(arr.shape[1:])
            self._images = encode(arr, self.encoding)

    def set_heatmaps(self, heatmaps, vmin: float | None = None, vmax: float | None = None) -> None:
        """Overlay float heatmaps (N, h, w), any grid size; ``None`` removes them.

        Values are quantised to 256 levels between ``vmin`` and ``vmax`` (default: their range).

        >>> g = ImageGrid(np.zeros((2, 8, 8, 3), np.uint8))
        >>> g.set_heatmaps(np.ones((2, 4, 4)), vmin=0, vmax=2)
        """
        if heatmaps is None:
            with self.hold_sync():
                self._heat, self._heat_shape = b"", [0, 0, 0]
            return
        data, shape, lo, hi = quantise(heatmaps, len(self), vmin, vmax)
        with self.hold_sync():
            self.vmin, self.vmax = lo, hi
            self._heat, self._heat_shape = data, shape

    @property
    def heatmaps(self) -> np.ndarray | None:
        """The heatmaps as the browser sees them (dequantised float32 (N, h, w)), or None."""
        return dequantise(self._heat, self._heat_shape, self.vmin, self.vmax)

    def on_click(self, callback: Callable[[dict], object], remove: bool = False) -> None:
        """Call ``callback(dict(index=i, x=x, y=y))`` (image pixels) on each click on an image.

        >>> ImageGrid().on_click(print)
        """
        if remove:
            self._click_callbacks.remove(callback)
        else:
            self._click_callbacks.append(callback)

    @t.observe("clicked")
    def _on_clicked(self, change) -> None:
        where = {k: int(change["new"][k]) for k in ("index", "x", "y") if k in change["new"]}
        if len(where) == 3:
            for callback in list(self._click_callbacks):
                callback(where)

    @t.observe("cmap")
    def _on_cmap(self, change) -> None:
        self._lut = lut_bytes(change["new"])

    @t.observe("encoding")
    def _on_encoding(self, _change) -> None:
        self._send_images()

    @t.validate("encoding")
    def _check_encoding(self, proposal) -> str:
        if proposal["value"] not in ("png", "raw"):
            raise InvalidValue(f"encoding must be 'png' or 'raw'; got {proposal['value']!r}")
        return proposal["value"]

    @t.validate("cmap")
    def _check_cmap(self, proposal) -> str:
        lut_bytes(proposal["value"])
        return proposal["value"]

    @t.validate("heat_mode")
    def _check_heat_mode(self, proposal) -> str:
        if proposal["value"] not in HEAT_MODES:
            raise InvalidValue(f"heat_mode must be one of {HEAT_MODES}; got {proposal['value']!r}")
        return proposal["value"]
