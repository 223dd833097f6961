"""Shared fixtures: a tiny generator and classifier defined here, fast on any CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

torch.set_num_threads(1)


class TinyGenerator(nn.Sequential):
    """z (N, 16) -> images (N, 3, 16, 16) in [-1, 1], with named conv layers."""

    z_dim = 16

    def __init__(self):
        torch.manual_seed(0)
        super().__init__()
        self.add_module("layer1", nn.Sequential(nn.ConvTranspose2d(16, 32, 4), nn.ReLU()))
        self.add_module(
            "layer2",
            nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(32, 16, 3, padding=1), nn.ReLU()),
        )
        self.add_module(
            "layer3",
            nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(16, 8, 3, padding=1), nn.ReLU()),
        )
        self.add_module("output", nn.Sequential(nn.Conv2d(8, 3, 1), nn.Tanh()))

    def forward(self, z):
        return super().forward(z.view(z.shape[0], -1, 1, 1))


class TinyClassifier(nn.Module):
    def __init__(self, classes=3):
        torch.manual_seed(1)
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU())
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(self.conv2(self.conv1(x)).mean((2, 3)))


def tiny_data(seeds):
    """Deterministic uint8 images (N, 16, 16, 3), one per seed."""
    imgs = [
        torch.randint(
            0, 256, (16, 16, 3), generator=torch.Generator().manual_seed(s), dtype=torch.uint8
        )
        for s in seeds
    ]
    return torch.stack(imgs).numpy()


@pytest.fixture
def tiny_gen():
    return TinyGenerator()


@pytest.fixture
def gen_session(tiny_gen):
    from gandissect_widgets import Session

    return Session(tiny_gen, device="cpu", batch_size=8)


@pytest.fixture
def cls_session():
    from gandissect_widgets import Session

    return Session(TinyClassifier(), device="cpu", data=tiny_data)


CONCEPTS = ["dark", "bright"]


def labelled_data(seeds):
    """Images whose concept map is exact: pixels brighter than mid-grey are 'bright'."""
    imgs = tiny_data(seeds)
    maps = (imgs.mean(-1) > 127).astype("int64")
    labels = (maps.mean((1, 2)) > 0.5).astype("int64")
    return imgs, maps, labels


class ThresholdSegmenter:
    """Segments each image into its darker and brighter half: a stand-in segmenter for tests."""

    concepts = CONCEPTS

    def segment(self, images):
        grey = torch.from_numpy(images.astype("float32").mean(-1))
        median = grey.flatten(1).median(1).values[:, None, None]
        return (grey > median).long()


@pytest.fixture
def seg_session(tiny_gen):
    from gandissect_widgets import Session

    return Session(tiny_gen, device="cpu", batch_size=8, segmenter=ThresholdSegmenter())


@pytest.fixture
def labelled_session():
    from gandissect_widgets import Session

    return Session(
        TinyClassifier(classes=2),
        device="cpu",
        data=labelled_data,
        concepts=CONCEPTS,
        classes=["darkish", "brightish"],
    )


def tiny_vit():
    """A vision transformer for 16x16 images: patch 4 (a 4x4 token grid + class token), 2 blocks."""
    from gandissect_widgets.zoo.vit import VisionTransformer

    torch.manual_seed(3)
    return VisionTransformer(
        image_size=16, patch_size=4, dim=12, depth=2, heads=2, mlp_dim=24, num_classes=2
    )


@pytest.fixture
def vit_session():
    """A classifier Session on :func:`tiny_vit` with exact concept maps: token, vector layers."""
    from gandissect_widgets import Session

    return Session(
        tiny_vit(), device="cpu", data=labelled_data, concepts=CONCEPTS, classes=["a", "b"]
    )
