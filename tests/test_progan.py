"""The ProGAN generator: published layer names and state_dict layout, shapes, loading."""

import pytest
import torch

from gandissect_widgets.zoo.progan import ProgressiveGenerator, sizes_from_state_dict

SIZES = [32, 16, 16, 8, 8, 4]  # z, 4, 8, 16, 32, 64 px


def test_layer_names_follow_the_published_layout():
    g = ProgressiveGenerator(SIZES)
    names = [n for n, _ in g.named_children()]
    assert names == [f"layer{i}" for i in range(1, 11)] + ["output_64x64"]
    keys = set(g.state_dict())
    assert "layer1.conv.weight" in keys and "layer1.wscale.b" in keys
    assert "output_64x64.conv.weight" in keys and "output_64x64.wscale.b" in keys
    assert all(k.endswith(("conv.weight", "wscale.b")) for k in keys)
    assert g.layer1.conv.weight.shape == (16, 32, 4, 4)
    assert g.layer3.up is not None and g.layer4.up is None and g.layer2.up is None


def test_output_shape_range_and_intermediate_resolutions():
    g = ProgressiveGenerator(SIZES).eval()
    seen = {}
    for name in ["layer1", "layer2", "layer4", "layer10"]:
        getattr(g, name).register_forward_hook(lambda m, i, o, n=name: seen.__setitem__(n, o))
    x = g(torch.randn(3, 32) * 10)
    assert x.shape == (3, 3, 64, 64)
    assert x.min() >= -1 and x.max() <= 1
    assert {n: tuple(o.shape[-3:]) for n, o in seen.items()} == {
        "layer1": (16, 4, 4), "layer2": (16, 4, 4), "layer4": (16, 8, 8), "layer10": (4, 64, 64)
    }  # fmt: skip
    assert g.z_dim == 32 and g.resolution == 64


def test_state_dict_round_trip_reproduces_outputs():
    g = ProgressiveGenerator(SIZES).eval()
    assert sizes_from_state_dict(g.state_dict()) == SIZES
    h = ProgressiveGenerator.from_state_dict(g.state_dict()).eval()
    z = torch.randn(2, 32)
    assert torch.equal(g(z), h(z))


def test_bad_input_raises_helpful_errors():
    g = ProgressiveGenerator(SIZES)
    with pytest.raises(ValueError, match=r"\(N, 32\)"):
        g(torch.randn(2, 31))
    with pytest.raises(ValueError, match="sizes"):
        ProgressiveGenerator([32])
    with pytest.raises(KeyError, match="layer1.conv.weight"):
        ProgressiveGenerator.from_state_dict({"fc.weight": torch.zeros(1)})
