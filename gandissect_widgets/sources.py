"""Where samples come from: a generator's latents by seed, or a classifier's ``data(seeds)``.

>>> src = Sources(z_dim=4)
>>> src.inputs([0, 1]).shape
torch.Size([2, 4])
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from . import checks, render

__all__ = ["Sources"]


class Sources:
    """Samples by seed: latents (N, z_dim) for a generator, or the images, concept maps and
    labels of ``data(seeds)`` for a classifier (the last batch is remembered, so a pass that
    asks one batch for inputs, images and maps draws the data once)."""

    def __init__(self, z_dim: int = 0, data: Callable | None = None, device="cpu"):
        self.z_dim, self.data, self.device = z_dim, data, torch.device(device)
        self.kind = "generator" if data is None else "classifier"
        self._memo: tuple | None = None

    def latents(self, seeds) -> torch.Tensor:
        """Standard-normal latents (N, z_dim), one per seed, independent of batch composition."""
        seeds = checks.seeds(seeds)
        if not self.z_dim:
            raise ValueError("this Session wraps a classifier: it has no latents")
        z = [torch.randn(self.z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds]
        return torch.stack(z) if z else torch.zeros(0, self.z_dim)

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
