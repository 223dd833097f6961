"""A Progressive-GAN generator with the module and state_dict layout of the published checkpoints.

Children are ``layer1`` .. ``layerN`` then ``output_RxR``; each conv block holds ``conv``
(bias-free) and ``wscale`` (equalised learning rate, a bias ``b`` and a constant scale), so a
state_dict has keys such as ``layer1.conv.weight`` and ``layer1.wscale.b``. The same class runs
the embedded hamlet generator and real ProGAN LSUN checkpoints.

Example:
    >>> g = ProgressiveGenerator([128, 128, 64, 32])  # z, 4x4, 8x8, 16x16 channels
    >>> g(torch.randn(2, 128)).shape
    torch.Size([2, 3, 16, 16])
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict

import torch
from torch import nn

_SQRT2 = math.sqrt(2)


class PixelNorm(nn.Module):
    """Scale each pixel's feature vector to unit root-mean-square."""

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class WScale(nn.Module):
    """Equalised learning rate: multiply by ``gain / sqrt(fan_in)``, then add the bias ``b``."""

    def __init__(self, out_channels, in_channels, kernel_size, gain=_SQRT2):
        super().__init__()
        self.scale = gain / math.sqrt(in_channels * kernel_size**2)
        self.b = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x):
        return x * self.scale + self.b.view(1, -1, 1, 1)


class NormConvBlock(nn.Module):
    """Pixel norm, (optional nearest x2 upsample), conv, wscale, leaky ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, padding, upsample=False):
        super().__init__()
        self.norm = PixelNorm()
        self.up = nn.Upsample(scale_factor=2, mode="nearest") if upsample else None
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, 1, padding, bias=False)
        self.wscale = WScale(out_channels, in_channels, kernel_size)
        self.relu = nn.LeakyReLU(0.2)
        nn.init.normal_(self.conv.weight)

    def forward(self, x):
        x = self.norm(x)
        if self.up is not None:
            # the same values either way; nn.Upsample keeps its own backward, whose rounding
            # photo inversion was tuned on
            x = self.up(x) if torch.is_grad_enabled() else _upsample2(x)
        return self.relu(self.wscale(self.conv(x)))


def _upsample2(x):
    """Nearest x2 upsampling, the same values as ``nn.Upsample`` (a view and one copy: several
    times faster on the CPU)."""
    n, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)


class OutputBlock(nn.Module):
    """Pixel norm, 1x1 conv to RGB, wscale with gain 1, clamp to [-1, 1]."""

    def __init__(self, in_channels):
        super().__init__()
        self.norm = PixelNorm()
        self.conv = nn.Conv2d(in_channels, 3, 1, bias=False)
        self.wscale = WScale(3, in_channels, 1, gain=1.0)
        self.clamp = nn.Hardtanh()
        nn.init.normal_(self.conv.weight)

    def forward(self, x):
        return self.clamp(self.wscale(self.conv(self.norm(x))))


class ProgressiveGenerator(nn.Sequential):
    """Map latents (N, z_dim) to images (N, 3, R, R) in [-1, 1].

    ``sizes`` is ``[z_dim, channels at 4x4, at 8x8, ..., at RxR]``.

    Example:
        >>> g = ProgressiveGenerator([128, 128, 128, 128, 64, 32])
        >>> [name for name, _ in g.named_children()][-2:], g.z_dim
        (['layer10', 'output_64x64'], 128)
    """

    def __init__(self, sizes):
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must be [z_dim, c4, c8, ...] of positive ints; got {sizes}")
        blocks = [
            NormConvBlock(sizes[0], sizes[1], 4, 3),
            NormConvBlock(sizes[1], sizes[1], 3, 1),
        ]
        for c_in, c_out in zip(sizes[1:-1], sizes[2:], strict=True):
            blocks.append(NormConvBlock(c_in, c_out, 3, 1, upsample=True))
            blocks.append(NormConvBlock(c_out, c_out, 3, 1))
        res = 4 * 2 ** (len(sizes) - 2)
        named = [(f"layer{i + 1}", b) for i, b in enumerate(blocks)]
        named.append((f"output_{res}x{res}", OutputBlock(sizes[-1])))
        super().__init__(OrderedDict(named))
        self.sizes = sizes
        self.z_dim = sizes[0]
        self.resolution = res

    def forward(self, z):
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"expected latents of shape (N, {self.z_dim}); got {tuple(z.shape)}")
        return super().forward(z.view(z.shape[0], z.shape[1], 1, 1))

    @classmethod
    def from_state_dict(cls, state_dict):
        """Build a generator whose channel sizes are read from ``state_dict``, and load it.

        Example:
            >>> g = ProgressiveGenerator([16, 8, 4])
            >>> ProgressiveGenerator.from_state_dict(g.state_dict()).sizes
            [16, 8, 4]
        """
        return _from_state_dict(cls, state_dict)


def sizes_from_state_dict(state_dict):
    """Read ``[z_dim, c4, c8, ...]`` from a ProGAN state_dict's conv weight shapes."""
    convs = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r"layer(\d+)\.conv\.weight", key)
        if m:
            convs[int(m.group(1))] = value.shape
    if 1 not in convs or len(convs) % 2:
        raise KeyError(
            "not a ProGAN generator state_dict: expected keys layer1.conv.weight, "
            f"layer2.conv.weight, ... in pairs; got {sorted(state_dict)[:6]}"
        )
    return [int(convs[1][1])] + [int(convs[i][0]) for i in range(1, len(convs) + 1, 2)]


def _from_state_dict(cls, state_dict):
    g = cls(sizes_from_state_dict(state_dict))
    g.load_state_dict({k: v.float() for k, v in state_dict.items()})
    return g
