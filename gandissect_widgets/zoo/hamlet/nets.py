"""The hamlet networks: GAN discriminator, U-Net segmenter and VGG-like scene classifier.

The generator is :class:`gandissect_widgets.zoo.progan.ProgressiveGenerator`.

Example:
    >>> seg = Segmenter(CONCEPTS)
    >>> seg.segment(np.zeros((2, 64, 64, 3), np.uint8)).shape
    torch.Size([2, 64, 64])
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..vit import VisionTransformer
from .world import CONCEPTS, SCENES

GENERATOR_SIZES = [128, 128, 128, 64, 32, 16]  # z, then channels at 4, 8, 16, 32, 64 px


_SQRT2 = math.sqrt(2)


class _WSConv(nn.Conv2d):
    """Conv with equalised learning rate: unit-normal weights scaled at run time."""

    def __init__(self, c_in, c_out, k, padding=0, gain=_SQRT2):
        super().__init__(c_in, c_out, k, padding=padding)
        nn.init.normal_(self.weight)
        nn.init.zeros_(self.bias)
        self.scale = gain / math.sqrt(c_in * k * k)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class Discriminator(nn.Module):
    """A small ProGAN-style critic for 64x64 images: one logit per image.

    Example:
        >>> Discriminator()(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2])
    """

    def __init__(self, channels=(16, 32, 64, 128, 128)):
        super().__init__()
        c = channels
        layers = [_WSConv(3, c[0], 1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(c[:-1], c[1:], strict=True):  # 64 -> 32 -> 16 -> 8 -> 4
            layers += [_WSConv(c_in, c_out, 3, 1), nn.LeakyReLU(0.2), nn.AvgPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.final = nn.Sequential(_WSConv(c[-1] + 1, c[-1], 3, 1), nn.LeakyReLU(0.2))
        self.fc1 = nn.Linear(c[-1] * 16, c[-1])
        self.fc2 = nn.Linear(c[-1], 1)

    def forward(self, x):
        h = self.features(x)
        std = h.std(dim=0, unbiased=False).mean().expand(h.shape[0], 1, 4, 4)
        h = self.final(torch.cat([h, std], 1)).flatten(1)
        return self.fc2(F.leaky_relu(self.fc1(h), 0.2)).squeeze(1)


def _conv_bn(c_in, c_out):
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)
    )


def to_float_images(images):
    """uint8 (N,H,W,3) numpy/tensor -> float (N,3,H,W) in [-1, 1]; float tensors pass through."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            one = " (for one image use images[None])" if images.ndim == 3 else ""
            raise TypeError(
                f"numpy images must be a uint8 batch (N, H, W, 3); got {images.dtype} "
                f"{images.shape}{one}"
            )
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a numpy array or torch tensor; got {type(images)}")
    if images.dtype == torch.uint8:
        return images.permute(0, 3, 1, 2).float() / 127.5 - 1
    if images.ndim != 4 or images.shape[1] != 3:
        raise TypeError(f"float images must be (N,3,H,W) in [-1, 1]; got {tuple(images.shape)}")
    return images.float()


class Segmenter(nn.Module):
    """A small U-Net labelling every pixel with a concept; call :meth:`segment`.

    Example:
        >>> seg = Segmenter(CONCEPTS)
        >>> seg.concepts[:3]
        ['sky', 'cloud', 'sun']
    """

    def __init__(self, concepts=CONCEPTS, widths=(32, 64, 96, 128)):
        super().__init__()
        self.concepts = list(concepts)
        w = widths
        pairs = list(zip(w[:-1], w[1:], strict=True))
        self.enc = nn.ModuleList(
            [nn.Sequential(_conv_bn(3, w[0]), _conv_bn(w[0], w[0]))]
            + [nn.Sequential(_conv_bn(a, b), _conv_bn(b, b)) for a, b in pairs]
        )
        self.dec = nn.ModuleList(
            [nn.Sequential(_conv_bn(a + b, a), _conv_bn(a, a)) for a, b in pairs]
        )
        self.head = nn.Conv2d(w[0], len(self.concepts), 1)

    def forward(self, x):
        """Float images (N,3,H,W) in [-1,1] -> concept logits (N,C,H,W)."""
        skips = []
        for i, block in enumerate(self.enc):
            x = block(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        for block, skip in zip(reversed(self.dec), reversed(skips[:-1]), strict=True):
            x = block(torch.cat([F.interpolate(x, scale_factor=2.0), skip], 1))
        return self.head(x)

    @torch.no_grad()
    def segment(self, images):
        """Concept ids (N,H,W) int64 for uint8 (N,H,W,3) arrays or float (N,3,H,W) in [-1,1]."""
        x = to_float_images(images).to(next(self.parameters()).device)
        h, w = x.shape[-2:]
        m = 2 ** (len(self.enc) - 1)
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        out = torch.cat([self(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)])
        return out[:, :h, :w]


class Classifier(nn.Sequential):
    """VGG-like scene classifier: ``conv1``..``conv5`` (conv+BN+ReLU), ``pool``, ``fc``.

    Takes float images (N,3,64,64) in [-1,1] and returns logits over ``SCENES``.

    Example:
        >>> Classifier()(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 5])
    """

    def __init__(self, widths=(32, 64, 96, 128, 128), n_classes=None):
        n_classes = n_classes or len(SCENES)
        parts = []
        c_in = 3
        for i, c_out in enumerate(widths):
            parts.append((f"conv{i + 1}", _conv_bn(c_in, c_out)))
            if i < len(widths) - 1:
                parts.append((f"down{i + 1}", nn.MaxPool2d(2)))
            c_in = c_out
        parts += [("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))]
        parts += [("fc", nn.Linear(c_in, n_classes))]
        super().__init__(OrderedDict(parts))


#: hamlet-vit: patch 8 at 64 px (an 8x8 token grid and a class token), four blocks of width 64.
VIT_SIZES = {"image_size": 64, "patch_size": 8, "dim": 64, "depth": 4, "heads": 4, "mlp_dim": 256}


def vit_classifier() -> VisionTransformer:
    """The hamlet-vit scene classifier (untrained): images (N,3,64,64) in [-1,1] -> logits.

    Example:
        >>> vit_classifier().token_grid
        (1, 8, 8)
    """
    return VisionTransformer(num_classes=len(SCENES), **VIT_SIZES)
