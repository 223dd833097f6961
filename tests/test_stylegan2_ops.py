"""Each ported StyleGAN2 op against a plain reference formulation, on small tensors.

The references follow the published definitions directly (explicit loops, weight modulation with
grouped convolutions, transposed convolutions), independent of the module's own code paths.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gandissect_widgets.zoo import stylegan2 as sg

SQ2 = math.sqrt(2)


def ref_upfirdn(x, kernel, up, down, p0, p1):
    """Definition: zero-insert, pad (negative crops), true convolution, keep every down-th."""
    n, c, h, w = x.shape
    u = torch.zeros(n, c, h * up, w * up)
    u[:, :, ::up, ::up] = x
    size_h, size_w = h * up + p0 + p1, w * up + p0 + p1
    padded = torch.zeros(n, c, size_h, size_w)
    for i in range(size_h):
        for j in range(size_w):
            si, sj = i - p0, j - p0
            if 0 <= si < h * up and 0 <= sj < w * up:
                padded[:, :, i, j] = u[:, :, si, sj]
    kh, kw = kernel.shape
    oh, ow = (size_h - kh) // down + 1, (size_w - kw) // down + 1
    out = torch.zeros(n, c, oh, ow)
    for a in range(kh):
        for b in range(kw):
            rows = slice(a, a + (oh - 1) * down + 1, down)
            cols = slice(b, b + (ow - 1) * down + 1, down)
            out += padded[:, :, rows, cols] * kernel[kh - 1 - a, kw - 1 - b]
    return out


@pytest.mark.parametrize(
    "up,down,p0,p1", [(1, 1, 0, 0), (2, 1, 2, 1), (1, 2, 1, 1), (2, 2, -1, 2), (1, 1, -1, -1)]
)
def test_upfirdn2d_matches_definition(up, down, p0, p1):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 6)
    kernel = torch.rand(3, 4)  # asymmetric: catches a missing flip
    got = sg.upfirdn2d(x, kernel, up=up, down=down, pad=(p0, p1))
    torch.testing.assert_close(got, ref_upfirdn(x, kernel, up, down, p0, p1))


def test_up_conv_is_conv_of_zero_stuffed_input():
    torch.manual_seed(5)
    conv = sg.UpConv2d(3, 4, 3, padding=2, bias=False)
    x = torch.randn(2, 3, 5, 5)
    stuffed = torch.zeros(2, 3, 9, 9)
    stuffed[:, :, ::2, ::2] = x
    expected = F.conv2d(stuffed, conv.weight, padding=2)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), expected)
        lam = torch.randn(4, 3, 3, 3)  # the same rule for any weight passed in (rewriting)
        torch.testing.assert_close(
            conv._conv_forward(x, lam, None), F.conv2d(stuffed, lam, padding=2)
        )


def test_make_kernel_is_normalised_outer_product():
    k = sg.make_kernel([1, 3, 3, 1])
    expected = torch.tensor([1.0, 3, 3, 1])[:, None] * torch.tensor([1.0, 3, 3, 1])[None] / 64
    torch.testing.assert_close(k, expected)


def test_fused_leaky_relu_matches_formula():
    torch.manual_seed(1)
    x, b = torch.randn(2, 4, 3, 3), torch.randn(4)
    y = x + b[None, :, None, None]
    expected = torch.where(y >= 0, y, 0.2 * y) * SQ2
    torch.testing.assert_close(sg.fused_leaky_relu(x, b), expected)
    x2 = torch.randn(5, 4)  # 2-D input (mapping network)
    y2 = x2 + b
    torch.testing.assert_close(sg.fused_leaky_relu(x2, b), torch.where(y2 >= 0, y2, 0.2 * y2) * SQ2)


def ref_modconv(x, weight5, mod_w, mod_b, w, *, demodulate=True, up=False, blur=None):
    """rosinality's fused path: per-sample weights W * s, demodulated, one grouped conv."""
    n, c_in, h, wd = x.shape
    _, c_out, _, k, _ = weight5.shape
    style = F.linear(w, mod_w / math.sqrt(mod_w.shape[1])) + mod_b
    weight = weight5 / math.sqrt(c_in * k * k) * style.view(n, 1, c_in, 1, 1)
    if demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(n, c_out, 1, 1, 1)
    xg = x.reshape(1, n * c_in, h, wd)
    if up:
        wt = weight.transpose(1, 2).reshape(n * c_in, c_out, k, k)
        out = F.conv_transpose2d(xg, wt, stride=2, groups=n)
        out = out.view(n, c_out, *out.shape[-2:])
        return ref_upfirdn(out, blur, 1, 1, 1, 1)
    out = F.conv2d(xg, weight.reshape(n * c_out, c_in, k, k), padding=k // 2, groups=n)
    return out.view(n, c_out, h, wd)


def _layer_ref(sd, prefix, noise, x, w, up):
    blur = sd.get(f"{prefix}.conv.blur.kernel")
    y = ref_modconv(
        x,
        sd[f"{prefix}.conv.weight"],
        sd[f"{prefix}.conv.modulation.weight"],
        sd[f"{prefix}.conv.modulation.bias"],
        w,
        up=up,
        blur=blur,
    )
    y = y + sd[f"{prefix}.noise.weight"] * noise
    y = y + sd[f"{prefix}.activate.bias"].view(1, -1, 1, 1)
    return torch.where(y >= 0, y, 0.2 * y) * SQ2


def _rgb_ref(sd, prefix, x, w, skip):
    y = ref_modconv(
        x,
        sd[f"{prefix}.conv.weight"],
        sd[f"{prefix}.conv.modulation.weight"],
        sd[f"{prefix}.conv.modulation.bias"],
        w,
        demodulate=False,
    )
    y = y + sd[f"{prefix}.bias"]
    if skip is not None:
        y = y + ref_upfirdn(skip, sd[f"{prefix}.upsample.kernel"], 2, 1, 2, 1)
    return y


def ref_generate(ckpt, z, truncation=1.0):
    """The whole rosinality generator forward, from the checkpoint dict alone."""
    sd = ckpt["g_ema"]
    x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
    i = 1
    while f"style.{i}.weight" in sd:
        wt, b = sd[f"style.{i}.weight"], sd[f"style.{i}.bias"]
        y = F.linear(x, wt * 0.01 / math.sqrt(wt.shape[1])) + b * 0.01
        x = torch.where(y >= 0, y, 0.2 * y) * SQ2
        i += 1
    w = ckpt["latent_avg"] + truncation * (x - ckpt["latent_avg"])
    out = sd["input.input"].repeat(len(z), 1, 1, 1)
    out = _layer_ref(sd, "conv1", sd["noises.noise_0"], out, w, up=False)
    skip = _rgb_ref(sd, "to_rgb1", out, w, None)
    j = 0
    while f"to_rgbs.{j}.bias" in sd:
        out = _layer_ref(sd, f"convs.{2 * j}", sd[f"noises.noise_{2 * j + 1}"], out, w, up=True)
        out = _layer_ref(sd, f"convs.{2 * j + 1}", sd[f"noises.noise_{2 * j + 2}"], out, w, False)
        skip = _rgb_ref(sd, f"to_rgbs.{j}", out, w, skip)
        j += 1
    return skip


def _random_ckpt(resolution=16, style_dim=8, channels=(8, 6, 4)):
    torch.manual_seed(2)
    g = sg.StyleGAN2Generator(resolution, style_dim=style_dim, n_mlp=2, channels=list(channels))
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith(("noise_strength", "bias")):
                p.normal_(0, 0.3)  # non-zero so that noise and biases are exercised
        g.latent_avg.normal_()
    return sg.rosinality_state_dict(g)


@pytest.mark.parametrize("up", [False, True])
def test_styled_conv_matches_weight_modulation(up):
    ckpt = _random_ckpt()
    g = sg.from_rosinality(ckpt)
    sd = ckpt["g_ema"]
    layer, prefix, idx = (g.layer1, "convs.0", 1) if up else (g.layer2, "convs.1", 2)
    torch.manual_seed(3)
    x = torch.randn(3, layer.conv.in_channels, 4 if up else 8, 4 if up else 8)
    w = torch.randn(3, 8)
    with torch.no_grad():
        got = layer(x, w)
    expected = _layer_ref(sd, prefix, sd[f"noises.noise_{idx}"], x, w, up)
    assert got.shape == (3, layer.conv.out_channels, 8, 8)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_rosinality_checkpoint_keys_and_kernels():
    ckpt = _random_ckpt()
    sd = ckpt["g_ema"]
    assert sd["conv1.conv.weight"].shape == (1, 8, 8, 3, 3)
    assert sd["convs.0.conv.weight"].shape == (1, 6, 8, 3, 3)
    assert sd["to_rgbs.1.conv.weight"].shape == (1, 3, 4, 1, 1)
    assert sd["to_rgb1.bias"].shape == (1, 3, 1, 1)
    assert sd["noises.noise_4"].shape == (1, 1, 16, 16)
    assert sd["input.input"].shape == (1, 8, 4, 4)
    taps = torch.tensor([1.0, 3, 3, 1])
    torch.testing.assert_close(sd["convs.0.conv.blur.kernel"], taps[:, None] * taps / 16)
    torch.testing.assert_close(sd["to_rgbs.0.upsample.kernel"], taps[:, None] * taps / 16)
    assert "convs.1.conv.blur.kernel" not in sd and ckpt["latent_avg"].shape == (8,)


@pytest.mark.parametrize("truncation", [1.0, 0.5])
def test_generator_matches_reference_forward(truncation):
    ckpt = _random_ckpt()
    g = sg.from_rosinality(ckpt)
    g.truncation = truncation
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got = g(z)
    expected = ref_generate(ckpt, z, truncation).clamp(-1, 1)
    assert got.shape == (2, 3, 16, 16)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_export_import_round_trip_is_exact():
    ckpt = _random_ckpt()
    again = sg.rosinality_state_dict(sg.from_rosinality(ckpt))
    assert again["g_ema"].keys() == ckpt["g_ema"].keys()
    for k, v in ckpt["g_ema"].items():
        torch.testing.assert_close(again["g_ema"][k], v, rtol=1e-6, atol=1e-6)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="power of two"):
        sg.StyleGAN2Generator(24)
    with pytest.raises(ValueError, match="one width per resolution"):
        sg.StyleGAN2Generator(16, style_dim=4, n_mlp=1, channels=[4, 4])
    g = sg.StyleGAN2Generator(8, style_dim=4, n_mlp=1, channels=[4, 4])
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        g(torch.zeros(2, 5))
    with pytest.raises(KeyError, match="style.1.weight"):
        sg.from_rosinality({"g_ema": {"foo": torch.zeros(1)}})
