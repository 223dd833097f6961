"""Where samples come from: a generator's latents by seed, photos inverted into the generator,
or a classifier's ``data(seeds)``.

A photo is a sample like any other, named by an integer id from :data:`PHOTO_BASE` on: its
latent, plus a small residual added to one layer's output before any edit of that layer, so
edits act on it through the same units as on generated samples.

>>> src = Sources(z_dim=4)
>>> src.inputs([0, 1]).shape
torch.Size([2, 4])
>>> pid = src.add_photo(torch.zeros(4), "layer1", torch.ones(2, 3, 3))
>>> pid == PHOTO_BASE, src.inputs([pid]).abs().sum().item()
(True, 0.0)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import torch

from . import checks, render

__all__ = ["Sources", "PHOTO_BASE"]

PHOTO_BASE = 2**62  # sample ids from here on name photos; below it, seeds
PREVIEW_BASE = PHOTO_BASE + 2**61  # from here on, previews of photos still being inverted


class Sources:
    """Samples by seed: latents (N, z_dim) for a generator, or the images, concept maps and
    labels of ``data(seeds)`` for a classifier (the last batch is remembered, so a pass that
    asks one batch for inputs, images and maps draws the data once)."""

    def __init__(self, z_dim: int = 0, data: Callable | None = None, device="cpu"):
        self.z_dim, self.data, self.device = z_dim, data, torch.device(device)
        self.kind = "generator" if data is None else "classifier"
        self.photos: dict[int, tuple[torch.Tensor, str, torch.Tensor]] = {}
        self._memo: tuple | None = None
        self._counts = {PHOTO_BASE: 0, PREVIEW_BASE: 0}

    def add_photo(
        self, z: torch.Tensor, layer: str, residual: torch.Tensor, *, preview: bool = False
    ) -> int:
        """Register a photo (latent, layer, residual (C, h, w)); returns its sample id (from
        :data:`PREVIEW_BASE` on with ``preview=True``: the fit so far of a photo still being
        inverted; an id's photo never changes, a better fit gets a new id)."""
        if self.kind != "generator":
            raise ValueError("photos are inverted into a generator; this Session is a classifier")
        z = torch.as_tensor(z, dtype=torch.float32).detach().cpu().reshape(-1)
        if z.numel() != self.z_dim:
            raise ValueError(f"a photo's latent needs {self.z_dim} values; got {z.numel()}")
        base = PREVIEW_BASE if preview else PHOTO_BASE
        self._counts[base] += 1
        pid = base + self._counts[base] - 1
        self.photos[pid] = (z.clone(), layer, residual.detach().float().cpu().clone())
        return pid

    def check(self, seeds: list[int]) -> list[int]:
        """``seeds``, after a KeyError for an id from :data:`PHOTO_BASE` on that names no
        photo of this generator (a classifier's data function takes any seed)."""
        for seed in seeds if self.kind == "generator" else ():
            if seed >= PHOTO_BASE and seed not in self.photos:
                made = f"photo ids {PHOTO_BASE} to {PHOTO_BASE + len(self.photos) - 1}"
                raise KeyError(
                    f"sample {seed} is not a photo of this Session: ids from 2**62 on name "
                    "photos made by session.invert(); seeds are below 2**62; this Session has "
                    + (made if self.photos else "no photos")
                )
        return seeds

    def _latent(self, seed: int) -> torch.Tensor:
        if seed < PHOTO_BASE:
            return torch.randn(self.z_dim, generator=torch.Generator().manual_seed(seed))
        self.check([seed])
        return self.photos[seed][0]

    def latents(self, seeds) -> torch.Tensor:
        """Standard-normal latents (N, z_dim), one per seed, independent of batch composition
        (a photo's fitted latent for photo ids)."""
        seeds = checks.seeds(seeds)
        if not self.z_dim:
            raise ValueError("this Session wraps a classifier: it has no latents")
        z = [self._latent(s) for s in seeds]
        return torch.stack(z) if z else torch.zeros(0, self.z_dim)

    def digest(self, seeds) -> str:
        """Identifies the photos among ``seeds`` by content ("" when there are none): photo ids
        are per Session, so results kept on disk must name what the ids stood for."""
        if self.kind != "generator":
            return ""
        h = hashlib.sha256()
        for s in self.check(sorted({s for s in seeds if s >= PHOTO_BASE})):
            z, layer, residual = self.photos[s]
            h.update(f"{s}:{layer}:".encode() + z.numpy().tobytes() + residual.numpy().tobytes())
        return h.hexdigest()[:16] if any(s >= PHOTO_BASE for s in seeds) else ""

    def adapters(self, seeds) -> dict:
        """layer -> [function adding the photos' residuals to their rows] for a batch of
        ``seeds`` (empty when none is a photo): runs before any edit of that layer."""
        rows: dict[str, list[tuple[int, torch.Tensor]]] = {}
        for i, s in enumerate(seeds):
            if s >= PHOTO_BASE and s in self.photos:
                _, layer, residual = self.photos[s]
                rows.setdefault(layer, []).append((i, residual))
        return {layer: [_add_rows(found)] for layer, found in rows.items()}

    def _data(self, seeds: list[int]):
        memo = self._memo
        if memo is None or memo[0] != tuple(seeds):
            memo = self._memo = (tuple(seeds), self.data(list(seeds)))
        return memo[1]

    def _part(self, seeds, index: int, what: str):
        out = self._data(checks.seeds(seeds)) if self.data is not None else None
        if not isinstance(out, tuple) or len(out) <= index or out[index] is None:
            raise ValueError(
                f"this Session's data gives no {what}; data(seeds) must return "
                "(images, concept_maps, labels)"
            )
        return out[index]

    def images(self, seeds) -> np.ndarray:
        """A classifier's data images, uint8 (N, H, W, 3)."""
        out = self._data(checks.seeds(seeds))
        return render.to_uint8(out[0] if isinstance(out, tuple) else out)

    def concept_maps(self, seeds) -> torch.Tensor:
        """Concept maps (N, H, W) int64 from a classifier's data."""
        return torch.as_tensor(np.asarray(self._part(seeds, 1, "concept maps"))).long()

    def labels(self, seeds) -> torch.Tensor:
        """Class ids (N,) from a classifier's data."""
        return torch.as_tensor(np.asarray(self._part(seeds, 2, "labels"))).long()

    def inputs(self, seeds) -> torch.Tensor:
        """The model's inputs: latents, or data images as float (N, 3, H, W) in [-1, 1]."""
        if self.kind == "generator":
            return self.latents(seeds).to(self.device)
        imgs = torch.from_numpy(np.ascontiguousarray(self.images(seeds)))
        return (imgs.permute(0, 3, 1, 2).float() / 127.5 - 1).to(self.device)


def _add_rows(found: list[tuple[int, torch.Tensor]]):
    index = torch.tensor([i for i, _ in found])
    residuals = torch.stack([r for _, r in found])

    def fn(out):
        out = out.clone()
        out[index.to(out.device)] += residuals.to(out.device, out.dtype)
        return out

    return fn
