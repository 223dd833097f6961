"""What a grid shows, kept in Python and sent as one dict: images (PNG or raw bytes), uint8
heatmaps with their range, threshold and captions. ImageGrid stores these in its own traits;
composite widgets keep a :class:`GridData` per grid and sync its :meth:`~GridData.payload` as one
trait, so images, heatmaps and captions always change together.

>>> g = GridData(columns=2, size=32)
>>> g.set_images(np.zeros((2, 8, 8, 3), np.uint8))
>>> g.set_heatmaps(np.ones((2, 4, 4)), vmin=0, vmax=2)
>>> sorted(g.payload())[:3], g.heatmaps.shape
(['captions', 'columns', 'encoding'], (2, 4, 4))
"""

from __future__ import annotations

import numpy as np
import torch

from .. import checks, render
from ._validate import InvalidValue


def lut_bytes(cmap: str) -> bytes:
    """256 RGB entries of a matplotlib colormap, as 768 bytes."""
    import matplotlib

    if cmap not in matplotlib.colormaps:
        raise InvalidValue(
            f"unknown colormap {cmap!r}; use a matplotlib colormap name "
            f"({len(matplotlib.colormaps)} known), e.g. inferno, viridis, magma, gray, RdBu_r"
        )
    rgb = matplotlib.colormaps[cmap](np.linspace(0, 1, 256))[:, :3]
    return (rgb * 255).astype(np.uint8).tobytes()


def image_stack(images) -> np.ndarray:
    """uint8 (N, H, W, 3|4), float (N, 3, H, W) in [-1, 1], or a list of same-size images."""
    if isinstance(images, (list, tuple)):
        if not images:
            return np.zeros((0, 1, 1, 3), np.uint8)
        for im in images:
            _check_float_range(im)
        images = np.stack([np.asarray(render.to_uint8(im)) for im in images])
    if isinstance(images, torch.Tensor) or (
        isinstance(images, np.ndarray) and images.dtype != np.uint8
    ):
        _check_float_range(images)
        images = render.to_uint8(images)
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] not in (3, 4):
        raise ValueError(
            "images must be uint8 (N, H, W, 3), float (N, 3, H, W) in [-1, 1], or a list of "
            f"same-size images; got {arr.dtype} {arr.shape} (for one image use images[None])"
        )
    return arr


def _check_float_range(images) -> None:
    """Refuse what would show as a white or black grid: integers other than uint8, and floats
    far outside [-1, 1] (0-255 pixel values as floats; an unclamped generator's tails, a few
    units past 1, are clamped as before)."""
    t = torch.as_tensor(np.asarray(images) if isinstance(images, (list, tuple)) else images)
    if t.dtype == torch.uint8 or not t.numel():
        return
    if not t.is_floating_point():
        raise ValueError(
            f"integer images must be uint8 with values 0-255, (N, H, W, 3); got "
            f"{getattr(images, 'dtype', t.dtype)}: convert them to uint8 first"
        )
    low, high = float(t.min()), float(t.max())
    if low < -8 or high > 8:
        raise ValueError(
            f"float images must be in [-1, 1]; these range from {low:g} to {high:g} (pixels "
            "0-255: pass them as uint8 (N, H, W, 3); pixels 0-1: pass images * 2 - 1)"
        )


def encode(arr: np.ndarray, encoding: str) -> list[bytes]:
    """One bytes object per image: PNG, or the raw pixels (no encoding cost)."""
    if encoding == "png":
        return [render.png_bytes(im) for im in arr]
    return [np.ascontiguousarray(im).tobytes() for im in arr]


def quantise(heatmaps, count: int | None, vmin=None, vmax=None):
    """(bytes, shape, lo, hi): float heatmaps (N, h, w) as uint8 levels between lo and hi."""
    heat = np.asarray(torch.as_tensor(heatmaps).detach().float().cpu())
    if heat.ndim != 3:
        raise ValueError(f"heatmaps must be float (N, h, w); got shape {heat.shape}")
    if count and heat.shape[0] != count:
        raise ValueError(f"got {heat.shape[0]} heatmaps for {count} images; need one per image")
    if not np.isfinite(heat).all():
        raise ValueError("heatmaps contain NaN or infinite values; only finite ones are valid")
    lo = float(heat.min()) if vmin is None else float(vmin)
    hi = float(heat.max()) if vmax is None else float(vmax)
    if hi < lo:
        raise ValueError(f"vmax ({hi}) must be >= vmin ({lo})")
    scaled = (heat - lo) / max(hi - lo, 1e-12) * 255
    quantised = np.clip(np.round(scaled), 0, 255).astype(np.uint8)
    return quantised.tobytes(), list(heat.shape), lo, hi


def dequantise(data: bytes, shape, lo: float, hi: float) -> np.ndarray | None:
    """The float32 heatmaps a view draws from quantised bytes, or None."""
    if not data:
        return None
    q = np.frombuffer(data, np.uint8).reshape(shape).astype(np.float32)
    return lo + q / 255 * (hi - lo)


class GridData:
    """One grid of a composite widget: arrays here, :meth:`payload` for its synced trait."""

    def __init__(self, *, columns: int = 8, size: int = 128, encoding: str = "png", mode=None):
        columns, size = checks.count(columns, "columns"), checks.count(size, "size")
        self.columns, self.size, self.encoding, self.mode = columns, size, encoding, mode
        self._arrays = np.zeros((0, 1, 1, 3), np.uint8)
        self._images: list[bytes] = []
        self._heat, self._heat_shape = b"", [0, 0, 0]
        self.vmin, self.vmax = 0.0, 1.0
        self.threshold: float | None = None
        self.captions: list[str] = []

    def __len__(self) -> int:
        return len(self._arrays)

    def set_images(self, images) -> None:
        """New images; heatmaps are kept if the count is unchanged, else dropped."""
        arr = image_stack(images)
        if self._heat_shape[0] not in (0, len(arr)):
            self.set_heatmaps(None)
        self._arrays = arr
        self._images = encode(arr, self.encoding)

    def set_heatmaps(self, heatmaps, vmin=None, vmax=None, threshold=None) -> None:
        """Float heatmaps (N, h, w) between vmin and vmax (default: their range); None removes."""
        if heatmaps is None:
            self._heat, self._heat_shape, self.threshold = b"", [0, 0, 0], None
            return
        self._heat, self._heat_shape, self.vmin, self.vmax = quantise(
            heatmaps, len(self), vmin, vmax
        )
        self.threshold = None if threshold is None else float(threshold)

    @property
    def images(self) -> np.ndarray:
        """The images shown, uint8 (N, H, W, C)."""
        return self._arrays

    @property
    def heatmaps(self) -> np.ndarray | None:
        """The heatmaps as the browser sees them (dequantised float32 (N, h, w)), or None."""
        return dequantise(self._heat, self._heat_shape, self.vmin, self.vmax)

    def payload(self) -> dict:
        """Everything the view draws, for one synced Dict trait (bytes travel as buffers)."""
        out = {
            "images": list(self._images),
            "shape": list(self._arrays.shape[1:]),
            "encoding": self.encoding,
            "heat": self._heat,
            "heat_shape": list(self._heat_shape),
            "vmin": self.vmin,
            "vmax": self.vmax,
            "threshold": self.threshold,
            "captions": list(self.captions),
            "columns": self.columns,
            "size": self.size,
        }
        if self.mode is not None:
            out["mode"] = self.mode
        return out
