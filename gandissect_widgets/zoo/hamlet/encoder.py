"""An encoder for the hamlet generator: a picture -> the latent the generator draws it from.

It gives :func:`~gandissect_widgets.invert.fit_photo` its first guess (in milliseconds), which
the optimisation then refines in far fewer steps than from random latents (GANPaint's recipe:
an encoder, then a per-image fit). ``weights/encoder.safetensors`` (1 MB, float16) is the
step-500 checkpoint of ``python -m gandissect_widgets.zoo.hamlet.train_encoder`` (seeded, one
torch thread): 500 steps of its first stage, on the generator's own samples, matching their
layer5 features (some 8 minutes on a quiet core; on the shared machine the run was stopped
there).

Example:
    >>> import torch
    >>> enc = Encoder()
    >>> enc(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 128])
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Encoder(nn.Module):
    """Float images (N, 3, 64, 64) in [-1, 1] -> latents (N, z_dim) of norm ``sqrt(z_dim)``.

    Strided 3x3 convolutions from 64 down to 4 pixels, then one linear layer; the latent's
    direction is all the generator reads (it pixel-normalises ``z`` first), so the output is
    scaled to the typical length of a standard-normal latent.

    Example:
        >>> round(Encoder(z_dim=16)(torch.rand(1, 3, 64, 64)).norm().item(), 3)
        4.0
    """

    def __init__(self, z_dim: int = 128, widths=(32, 64, 128, 128)):
        super().__init__()
        layers, c_in = [], 3
        for c_out in widths:  # 64 -> 32, 16, 8, 4 pixels
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in * 16, z_dim)
        self.z_dim = z_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, 64, 64):
            raise ValueError(f"expected images (N, 3, 64, 64) in [-1, 1]; got {tuple(x.shape)}")
        z = self.fc(self.features(x).flatten(1))
        return z * (math.sqrt(self.z_dim) / z.norm(dim=1, keepdim=True).clamp_min(1e-8))
