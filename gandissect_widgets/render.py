"""Turn tensors into pictures: uint8 images, heatmap colours, overlays and PNG bytes.

This is the one place where tensors become bytes. No widget code lives here.

>>> import numpy as np
>>> from gandissect_widgets import render
>>> png = render.png_bytes(np.zeros((8, 8, 3), np.uint8))
>>> png[:4]
b'\\x89PNG'
"""

from __future__ import annotations

import io

import numpy as np
import torch

__all__ = ["to_uint8", "png_bytes", "colorize", "overlay", "highlight", "resize_mask", "grid"]

DIM = 0.35  # brightness kept outside a highlighted region (the widgets' browser code: same)
OUTLINE = (255, 214, 10)


def to_uint8(images) -> np.ndarray:
    """Float images in [-1, 1], (N, 3, H, W) or (3, H, W), -> uint8 (N, H, W, 3) or (H, W, 3).

    uint8 arrays pass through unchanged.

    >>> to_uint8(torch.zeros(1, 3, 2, 2)).shape
    (1, 2, 2, 3)
    """
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        return images
    t = torch.as_tensor(images).detach().float().cpu()
    if t.dim() not in (3, 4) or t.shape[-3] != 3:
        dtype = getattr(images, "dtype", type(images).__name__)
        raise ValueError(
            "images must be uint8 (N, H, W, 3) or (H, W, 3) with values 0-255, or float "
            f"(N, 3, H, W) or (3, H, W) in [-1, 1]; got {dtype} of shape {tuple(t.shape)}"
        )
    t = ((t.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return t.movedim(-3, -1).numpy()


def png_bytes(image) -> bytes:
    """Encode one uint8 image (H, W, 3), (H, W, 4) or (H, W) as PNG bytes.

    >>> len(png_bytes(np.zeros((4, 4), np.uint8))) > 0
    True
    """
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"png_bytes needs a uint8 array; got dtype {arr.dtype}")
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"png_bytes needs (H, W), (H, W, 3) or (H, W, 4); got {arr.shape}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def colorize(values, cmap: str = "inferno", vmin=None, vmax=None) -> np.ndarray:
    """Map a float array (..., H, W) to RGB uint8 (..., H, W, 3) with a matplotlib colormap.

    >>> colorize(np.eye(3)).shape
    (3, 3, 3)
    """
    import matplotlib

    v = np.asarray(torch.as_tensor(values).detach().float().cpu())
    lo = float(np.min(v)) if vmin is None else float(vmin)
    hi = float(np.max(v)) if vmax is None else float(vmax)
    scaled = np.clip((v - lo) / max(hi - lo, 1e-12), 0, 1)
    lut = (matplotlib.colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    return lut[(scaled * 255).astype(np.int64)]


def resize_mask(mask, size, mode: str = "bilinear") -> torch.Tensor:
    """Resize a float mask (H, W) or a batch (N, H, W) to ``size`` = (h, w)."""
    m = torch.as_tensor(mask, dtype=torch.float32)
    squeeze = m.dim() == 2
    m = m[None, None] if squeeze else m[:, None]
    if tuple(m.shape[-2:]) != tuple(size):
        kw = {"align_corners": False} if mode == "bilinear" else {}
        if mode == "area" or (mode == "bilinear" and m.shape[-1] > size[-1]):
            mode, kw = "area", {}
        m = torch.nn.functional.interpolate(m, size=tuple(size), mode=mode, **kw)
    return m[0, 0] if squeeze else m[:, 0]


def overlay(images, heatmaps, cmap: str = "inferno", opacity: float = 0.5, vmin=None, vmax=None):
    """Blend heatmaps (N, h, w), upsampled bilinearly, over uint8 images (N, H, W, 3).

    >>> overlay(np.zeros((2, 8, 8, 3), np.uint8), np.ones((2, 2, 2))).shape
    (2, 8, 8, 3)
    """
    imgs = to_uint8(images)
    h, w = imgs.shape[-3:-1]
    heat = resize_mask(torch.as_tensor(heatmaps, dtype=torch.float32), (h, w)).numpy()
    rgb = colorize(heat, cmap, vmin=vmin, vmax=vmax).astype(np.float32)
    out = imgs.astype(np.float32) * (1 - opacity) + rgb * opacity
    return out.round().astype(np.uint8)


def highlight(images, heatmaps, threshold: float, *, dim: float = DIM, outline=OUTLINE):
    """GAN Dissection's picture of where a unit fires: heatmaps (N, h, w), upsampled
    bilinearly to the images (N, H, W, 3), at or above ``threshold`` keep the image bright
    inside a one-pixel ``outline`` (and a dark line just outside it); the rest is dimmed to
    ``dim`` of its brightness. This is what the widgets draw in the browser.

    >>> out = highlight(np.full((1, 8, 8, 3), 200, np.uint8), np.eye(4)[None] * 0, 1.0)
    >>> int(out.max())   # nothing reaches the threshold: all dimmed
    70
    """
    imgs = to_uint8(images)
    h, w = imgs.shape[-3:-1]
    heat = resize_mask(torch.as_tensor(heatmaps, dtype=torch.float32), (h, w)).numpy()
    if heat.ndim == 2:
        heat = heat[None]
    inside = heat >= threshold
    edge = np.zeros_like(inside)
    for axis, shift in ((1, 1), (1, -1), (2, 1), (2, -1)):
        moved = np.roll(inside, shift, axis=axis)
        valid = np.ones_like(inside)
        index = [slice(None)] * 3
        index[axis] = 0 if shift == 1 else -1
        valid[tuple(index)] = False  # no wrap-around at the borders
        edge |= valid & (moved != inside)
    # the browser lays black over the image: alpha round((1 - dim) * 255), 220 on the dark line
    keep = 1 - round((1 - dim) * 255) / 255
    out = imgs.astype(np.float32)
    out = np.where(inside[..., None], out, out * keep)
    out[edge & ~inside] = imgs[edge & ~inside] * (1 - 220 / 255)
    out[edge & inside] = outline
    return out.round().clip(0, 255).astype(np.uint8)


def grid(images, columns: int = 8, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile uint8 images (N, H, W, 3) into one image with ``columns`` per row."""
    imgs = to_uint8(images)
    n, h, w, c = imgs.shape
    rows = -(-n // columns)
    cols = min(columns, n)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), fill, np.uint8)
    for i, img in enumerate(imgs):
        r, q = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        out[y : y + h, x : x + w] = img
    return out
