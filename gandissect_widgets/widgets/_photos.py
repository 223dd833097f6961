"""Photos from the browser: an image file dropped onto a grid, or chosen with its "add photo…"
button, arrives as a custom message carrying the file's bytes; PIL decodes it here.

The view sends ``{"event": "photo", "name": ...}`` with one binary buffer (anywidget's
``model.send(content, callbacks, buffers)``; see ``photoDrop`` in static/_grid_core.js).
:class:`PhotoDrop` decodes it into uint8 (H, W, 3) and calls the ``on_photo`` callbacks. A bad
file (not a PNG or JPEG, over :data:`MAX_PHOTO_BYTES`, undecodable) sets ``photo_status``
(``photo_kind`` "error") and calls nothing.

>>> decode_photo(b"GIF89a...", "x.gif")
Traceback (most recent call last):
ValueError: x.gif is not a PNG or JPEG image that can be read (drop a .png or .jpg photo)
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
import traitlets as t

__all__ = ["PhotoDrop", "decode_photo", "MAX_PHOTO_BYTES"]

# The view refuses bigger files before sending them: a notebook server drops websocket messages
# over 10 MB (tornado's default), which would silently lose the photo.
MAX_PHOTO_BYTES = 8 * 2**20
MAX_PHOTO_PIXELS = 40_000_000
_FORMATS = ("PNG", "JPEG")


def decode_photo(data, name: str = "photo") -> np.ndarray:
    """PNG or JPEG bytes -> uint8 (H, W, 3) (EXIF rotation applied, alpha dropped);
    ValueError saying what was wrong."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    size = memoryview(data).nbytes
    if size == 0:
        raise ValueError(f"{name} is empty: no bytes arrived")
    if size > MAX_PHOTO_BYTES:
        raise ValueError(
            f"{name} is {size / 2**20:.1f} MB; photos up to {MAX_PHOTO_BYTES // 2**20} MB are "
            "taken (a notebook server drops bigger messages): save a smaller copy"
        )
    unreadable = f"{name} is not a PNG or JPEG image that can be read (drop a .png or .jpg photo)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.format not in _FORMATS:
                    raise ValueError(unreadable)
                if img.width * img.height > MAX_PHOTO_PIXELS:
                    raise ValueError(
                        f"{name} is {img.width}x{img.height} pixels; photos up to "
                        f"{MAX_PHOTO_PIXELS // 10**6} megapixels are taken"
                    )
                return np.array(ImageOps.exif_transpose(img).convert("RGB"), np.uint8)
    except UnidentifiedImageError:
        raise ValueError(unreadable) from None
    except (OSError, SyntaxError, EOFError, Image.DecompressionBombError, Warning) as err:
        raise ValueError(f"cannot decode {name}: {err}") from None


def failed(name: str, err: BaseException) -> str:
    """The line a view shows when work on photo ``name`` raised ``err``."""
    return f"{name}: {type(err).__name__}: {str(err).strip(chr(39))}"


class PhotoDrop(t.HasTraits):
    """Traits and message handling for a view that takes photos (``accept_photos``).

    ``photo_status`` is the line the view shows beside its "add photo…" button;
    ``photo_kind`` is "", "busy" (the view offers cancel), "done" or "error".
    """

    accept_photos = t.Bool(False).tag(sync=True)
    photo_status = t.Unicode("").tag(sync=True)
    photo_kind = t.Unicode("").tag(sync=True)

    @property
    def _photo_callbacks(self) -> list:
        if "_photo_cbs" not in vars(self):
            self._photo_cbs = []
        return self._photo_cbs

    def on_photo(self, callback: Callable[[np.ndarray, str], object], remove=False) -> None:
        """Call ``callback(picture, name)`` (uint8 (H, W, 3), the file's name) for each photo
        dropped or chosen in the view (only while ``accept_photos`` is True)."""
        if remove:
            self._photo_callbacks.remove(callback)
        else:
            self._photo_callbacks.append(callback)

    def _say_photo(self, text: str, kind: str = "") -> None:
        with self.hold_sync():
            self.photo_status, self.photo_kind = text, kind

    def handle_photo_msg(self, content, buffers) -> bool:
        """A message from the view; True if it was about photos (then it is handled)."""
        event = content.get("event") if isinstance(content, dict) else None
        if event == "photo_cancel":
            self.cancel_photo()
            return True
        if event != "photo":
            return False
        name = str(content.get("name") or "photo")[:120]
        try:
            if not self.accept_photos:
                raise ValueError("this widget takes no photos (accept_photos is False)")
            if len(buffers) != 1:
                raise ValueError(f"{name}: the file's bytes did not arrive")
            picture = decode_photo(buffers[0], name)
        except ValueError as err:
            self._say_photo(str(err), "error")
            return True
        self.add_photo(picture, name)
        return True

    def add_photo(self, picture: np.ndarray, name: str = "photo") -> None:
        """Take ``picture`` as if it had been dropped onto the view: call the callbacks."""
        height, width = picture.shape[:2]
        self._say_photo(f"received {name} ({width}x{height})", "done")
        for callback in list(self._photo_callbacks):
            try:
                callback(picture, name)
            except (ValueError, KeyError, TypeError, OSError) as err:
                self._say_photo(failed(name, err), "error")
                return

    def cancel_photo(self) -> None:
        """Stop work on dropped photos (nothing to stop here; Session widgets stop inverting)."""
