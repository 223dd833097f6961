"""The ProGAN generator: published layer names and state_dict layout, shapes, loading."""

import pytest
import torch
from published_layouts import PROGAN_64, progan_reference, progan_state_dict

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


def test_published_layout_loads_and_matches_reference_forward():
    sd = progan_state_dict(PROGAN_64)  # built key by key, not by our class
    g = ProgressiveGenerator.from_state_dict(sd).eval()
    assert g.sizes == SIZES and g.resolution == 64
    seen = []
    g.output_64x64.clamp.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = g(z)
    expected = progan_reference(sd, z)
    torch.testing.assert_close(seen[0], expected, rtol=1e-5, atol=1e-5)  # before the clamp
    torch.testing.assert_close(out, expected.clamp(-1, 1), rtol=1e-5, atol=1e-5)
    assert ((expected > -1) & (expected < 1)).float().mean() > 0.2  # the clamp hides little


def test_published_lsun_256_layout_reads_its_sizes():
    # the LSUN 256x256 checkpoints: z 512; 512 channels at 4..32 px, then 256, 128, 64, 32
    widths = [512, 512, 512, 512, 256, 128, 64, 32]
    layout = {"layer1.conv.weight": (512, 512, 4, 4), "layer1.wscale.b": (512,),
              "layer2.conv.weight": (512, 512, 3, 3), "layer2.wscale.b": (512,)}  # fmt: skip
    for r, (c_in, c_out) in enumerate(zip(widths[1:-1], widths[2:], strict=True)):
        layout[f"layer{2 * r + 3}.conv.weight"] = (c_out, c_in, 3, 3)
        layout[f"layer{2 * r + 3}.wscale.b"] = (c_out,)
        layout[f"layer{2 * r + 4}.conv.weight"] = (c_out, c_out, 3, 3)
        layout[f"layer{2 * r + 4}.wscale.b"] = (c_out,)
    layout.update({"output_256x256.conv.weight": (3, 32, 1, 1), "output_256x256.wscale.b": (3,)})
    assert len(layout) == 2 * 14 + 2
    sd = {k: torch.zeros(shape) for k, shape in layout.items()}
    assert sizes_from_state_dict(sd) == widths
    g = ProgressiveGenerator.from_state_dict(sd)
    assert g.resolution == 256 and [n for n, _ in g.named_children()][-1] == "output_256x256"
    assert {k: tuple(v.shape) for k, v in g.state_dict().items()} == layout


def test_fast_upsampling_gives_nn_upsample_values_bit_for_bit():
    from gandissect_widgets.zoo.progan import _upsample2

    up = torch.nn.Upsample(scale_factor=2, mode="nearest")
    for shape in [(1, 1, 1, 1), (3, 5, 4, 7), (8, 32, 16, 16)]:
        x = torch.randn(shape)
        assert torch.equal(_upsample2(x), up(x))
