"""ViT loaders: torchvision's and timm's published layouts, checked on random weights against
reference forwards written in tests/published_layouts.py; and hamlet-vit's figures."""

from __future__ import annotations

import pytest
import torch
from published_layouts import (
    timm_vit_forward,
    timm_vit_layout,
    torchvision_vit_forward,
    torchvision_vit_layout,
    vit_state_dict,
)

from gandissect_widgets.zoo import checkpoints as ck
from gandissect_widgets.zoo.vit import VisionTransformer, vit_from_state_dict


@pytest.mark.parametrize(
    "layout, reference, heads",
    [
        (torchvision_vit_layout, torchvision_vit_forward, 12),  # vit_b_16
        (timm_vit_layout, timm_vit_forward, 6),  # vit_small_patch16_224
    ],
)
def test_published_vit_layouts_load_and_match_reference(tmp_path, layout, reference, heads):
    # the published widths, patch and image size; two of the twelve blocks (the same keys per
    # block; twelve, with two-digit indices, in the test below) keep this test fast
    sd = vit_state_dict(layout(depth=2), seed=1)
    torch.save(sd, tmp_path / "vit.pth")
    net = ck.load(tmp_path / "vit.pth")
    assert isinstance(net, VisionTransformer) and net.token_grid == (1, 14, 14)
    assert net.blocks[0].attn.heads == heads and len(net.blocks) == 2
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = reference(sd, x, heads)
        net.normalization = None  # compare on the same normalised input
        got = net(x)
    assert got.shape == (1, 1000)
    assert (got - want).abs().max() <= 1e-5


def test_vit_normalisation_and_bad_layouts():
    sd = vit_state_dict(timm_vit_layout(dim=64, depth=12, mlp=32, classes=3, image=32), seed=0)
    net = vit_from_state_dict(sd, normalization="half")  # [-1, 1] is timm's augreg input
    assert len(net.blocks) == 12
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert (net(x) - timm_vit_forward(sd, x, heads=1)).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="not a ViT state_dict"):
        vit_from_state_dict({"fc.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="1 \\+ a square"):
        vit_from_state_dict({**sd, "pos_embed": torch.zeros(1, 6, 64)})
    with pytest.raises(ValueError, match=r"expected images \(N, 3, 32, 32\)"):
        net(torch.zeros(1, 3, 16, 16))
