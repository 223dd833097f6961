"""Published checkpoint layouts, written out key by key, and plain-torch reference forwards.

Loader tests build their checkpoints from these tables (random values, saved with torch.save),
never from the package's own exporters, and compare the loaded models with the references
below, which follow the published code's definitions and share nothing with the package.

- ProGAN: D. Bau's port of Karras et al.'s Progressive GAN (``netdissect/proggan.py`` of
  GAN Dissection): ``layer1`` is a 4x4 conv on the 1x1 latent (padding 3); then per resolution
  an upsampling 3x3 conv (odd layers from 3) and a 3x3 conv; every conv is bias-free with its bias
  in ``wscale.b``; ``output_RxR`` is a 1x1 conv to RGB.
- StyleGAN2: rosinality/stylegan2-pytorch ``Generator.state_dict()`` (``model.py``), saved by its
  ``convert_weight.py`` as ``{"g_ema": state_dict, "latent_avg": w_avg}``.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------- ProGAN
#: z 32; channels 16 at 4x4 and 8x8, 8 at 16x16 and 32x32, 4 at 64x64
PROGAN_64 = {
    "layer1.conv.weight": (16, 32, 4, 4), "layer1.wscale.b": (16,),
    "layer2.conv.weight": (16, 16, 3, 3), "layer2.wscale.b": (16,),
    "layer3.conv.weight": (16, 16, 3, 3), "layer3.wscale.b": (16,),
    "layer4.conv.weight": (16, 16, 3, 3), "layer4.wscale.b": (16,),
    "layer5.conv.weight": (8, 16, 3, 3), "layer5.wscale.b": (8,),
    "layer6.conv.weight": (8, 8, 3, 3), "layer6.wscale.b": (8,),
    "layer7.conv.weight": (8, 8, 3, 3), "layer7.wscale.b": (8,),
    "layer8.conv.weight": (8, 8, 3, 3), "layer8.wscale.b": (8,),
    "layer9.conv.weight": (4, 8, 3, 3), "layer9.wscale.b": (4,),
    "layer10.conv.weight": (4, 4, 3, 3), "layer10.wscale.b": (4,),
    "output_64x64.conv.weight": (3, 4, 1, 1), "output_64x64.wscale.b": (3,),
}  # fmt: skip

#: z 16; channels 16 at 4x4, 8 at 8x8 and 16x16
PROGAN_16 = {
    "layer1.conv.weight": (16, 16, 4, 4), "layer1.wscale.b": (16,),
    "layer2.conv.weight": (16, 16, 3, 3), "layer2.wscale.b": (16,),
    "layer3.conv.weight": (8, 16, 3, 3), "layer3.wscale.b": (8,),
    "layer4.conv.weight": (8, 8, 3, 3), "layer4.wscale.b": (8,),
    "layer5.conv.weight": (8, 8, 3, 3), "layer5.wscale.b": (8,),
    "layer6.conv.weight": (8, 8, 3, 3), "layer6.wscale.b": (8,),
    "output_16x16.conv.weight": (3, 8, 1, 1), "output_16x16.wscale.b": (3,),
}  # fmt: skip


def progan_state_dict(layout, seed=0):
    """Random values in a ProGAN layout: unit-normal conv weights (as wscale expects), biases
    N(0, 0.2)."""
    gen = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(shape, generator=gen) * (1.0 if k.endswith("weight") else 0.2)
        for k, shape in layout.items()
    }


def _pixel_norm(x):
    return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)


def progan_reference(sd, z):
    """The published forward: per block pixel norm, (nearest x2 upsample on odd layers from 3),
    conv, times sqrt(2 / fan_in) plus ``wscale.b``, leaky ReLU 0.2; the output block scales by
    1 / sqrt(fan_in) (gain 1). Unclamped."""
    x, i = z[:, :, None, None], 1
    while f"layer{i}.conv.weight" in sd:
        w, b = sd[f"layer{i}.conv.weight"], sd[f"layer{i}.wscale.b"]
        x = _pixel_norm(x)
        if i >= 3 and i % 2:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.conv2d(x, w, padding=3 if i == 1 else 1) * math.sqrt(2 / w[0].numel())
        x = F.leaky_relu(x + b[:, None, None], 0.2)
        i += 1
    (out,) = [k[: -len(".conv.weight")] for k in sd if re.fullmatch(r"output_.*\.conv\.weight", k)]
    w, b = sd[f"{out}.conv.weight"], sd[f"{out}.wscale.b"]
    return F.conv2d(_pixel_norm(x), w) / math.sqrt(w.shape[1]) + b[:, None, None]


# ---------------------------------------------------------------------------------- StyleGAN2
def _styled(prefix, c_in, c_out, style_dim, up=False):
    keys = {
        f"{prefix}.conv.weight": (1, c_out, c_in, 3, 3),
        f"{prefix}.conv.modulation.weight": (c_in, style_dim),
        f"{prefix}.conv.modulation.bias": (c_in,),
        f"{prefix}.noise.weight": (1,),
        f"{prefix}.activate.bias": (c_out,),
    }
    if up:
        keys[f"{prefix}.conv.blur.kernel"] = (4, 4)
    return keys


#: size 16, style_dim 6, n_mlp 2; widths 10 at 4x4, 8 at 8x8, 5 at 16x16 (all different, so a
#: swapped in/out axis cannot load). The same key list, written out once in full:
ROSINALITY_16 = {
    "style.1.weight": (6, 6), "style.1.bias": (6,),
    "style.2.weight": (6, 6), "style.2.bias": (6,),
    "input.input": (1, 10, 4, 4),
    "conv1.conv.weight": (1, 10, 10, 3, 3),
    "conv1.conv.modulation.weight": (10, 6), "conv1.conv.modulation.bias": (10,),
    "conv1.noise.weight": (1,), "conv1.activate.bias": (10,),
    "to_rgb1.conv.weight": (1, 3, 10, 1, 1),
    "to_rgb1.conv.modulation.weight": (10, 6), "to_rgb1.conv.modulation.bias": (10,),
    "to_rgb1.bias": (1, 3, 1, 1),
    "convs.0.conv.weight": (1, 8, 10, 3, 3), "convs.0.conv.blur.kernel": (4, 4),
    "convs.0.conv.modulation.weight": (10, 6), "convs.0.conv.modulation.bias": (10,),
    "convs.0.noise.weight": (1,), "convs.0.activate.bias": (8,),
    "convs.1.conv.weight": (1, 8, 8, 3, 3),
    "convs.1.conv.modulation.weight": (8, 6), "convs.1.conv.modulation.bias": (8,),
    "convs.1.noise.weight": (1,), "convs.1.activate.bias": (8,),
    "convs.2.conv.weight": (1, 5, 8, 3, 3), "convs.2.conv.blur.kernel": (4, 4),
    "convs.2.conv.modulation.weight": (8, 6), "convs.2.conv.modulation.bias": (8,),
    "convs.2.noise.weight": (1,), "convs.2.activate.bias": (5,),
    "convs.3.conv.weight": (1, 5, 5, 3, 3),
    "convs.3.conv.modulation.weight": (5, 6), "convs.3.conv.modulation.bias": (5,),
    "convs.3.noise.weight": (1,), "convs.3.activate.bias": (5,),
    "to_rgbs.0.upsample.kernel": (4, 4), "to_rgbs.0.conv.weight": (1, 3, 8, 1, 1),
    "to_rgbs.0.conv.modulation.weight": (8, 6), "to_rgbs.0.conv.modulation.bias": (8,),
    "to_rgbs.0.bias": (1, 3, 1, 1),
    "to_rgbs.1.upsample.kernel": (4, 4), "to_rgbs.1.conv.weight": (1, 3, 5, 1, 1),
    "to_rgbs.1.conv.modulation.weight": (5, 6), "to_rgbs.1.conv.modulation.bias": (5,),
    "to_rgbs.1.bias": (1, 3, 1, 1),
    "noises.noise_0": (1, 1, 4, 4),
    "noises.noise_1": (1, 1, 8, 8), "noises.noise_2": (1, 1, 8, 8),
    "noises.noise_3": (1, 1, 16, 16), "noises.noise_4": (1, 1, 16, 16),
}  # fmt: skip


def rosinality_layout(size=256, style_dim=512, n_mlp=8, channel_multiplier=2, widths=None):
    """The key -> shape table of rosinality's ``Generator(size, style_dim, n_mlp,
    channel_multiplier)`` by its construction rules (widths 512 up to 32x32, then 256, 128, 64,
    32, 16 times ``channel_multiplier`` at 64..1024; ``widths`` {resolution: channels} replaces
    that table)."""
    if widths is None:
        widths = {4: 512, 8: 512, 16: 512, 32: 512}
        widths.update({64 * 2**i: (256 >> i) * channel_multiplier for i in range(5)})
    layout = {}
    for i in range(1, n_mlp + 1):
        layout.update(
            {f"style.{i}.weight": (style_dim, style_dim), f"style.{i}.bias": (style_dim,)}
        )
    c = widths[4]
    layout["input.input"] = (1, c, 4, 4)
    layout.update(_styled("conv1", c, c, style_dim))
    layout.update({"to_rgb1.conv.weight": (1, 3, c, 1, 1),
                   "to_rgb1.conv.modulation.weight": (c, style_dim),
                   "to_rgb1.conv.modulation.bias": (c,), "to_rgb1.bias": (1, 3, 1, 1)})  # fmt: skip
    for j, res in enumerate(4 * 2**k for k in range(1, int(math.log2(size)) - 1)):
        out = widths[res]
        layout.update(_styled(f"convs.{2 * j}", c, out, style_dim, up=True))
        layout.update(_styled(f"convs.{2 * j + 1}", out, out, style_dim))
        layout.update({f"to_rgbs.{j}.upsample.kernel": (4, 4),
                       f"to_rgbs.{j}.conv.weight": (1, 3, out, 1, 1),
                       f"to_rgbs.{j}.conv.modulation.weight": (out, style_dim),
                       f"to_rgbs.{j}.conv.modulation.bias": (out,),
                       f"to_rgbs.{j}.bias": (1, 3, 1, 1)})  # fmt: skip
        c = out
    n_layers = (int(math.log2(size)) - 2) * 2 + 1
    for i in range(n_layers):
        layout[f"noises.noise_{i}"] = (1, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2))
    return layout


def _blur_kernel():
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    return taps[:, None] * taps[None, :] / 64 * 4  # make_kernel([1, 3, 3, 1]) * factor ** 2


def rosinality_checkpoint(layout, seed=0):
    """``{"g_ema": ..., "latent_avg": ...}`` with random values in ``layout``: unit-normal
    weights (equalised learning rate), modulation biases near 1, other biases and noise
    strengths N(0, 0.3) (non-zero, so they matter), blur kernels as published."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in layout.items():
        if k.endswith("kernel"):
            sd[k] = _blur_kernel()
        elif k.endswith("modulation.bias"):
            sd[k] = 1 + 0.1 * torch.randn(shape, generator=gen)
        elif k.endswith(("bias", "noise.weight")):
            sd[k] = 0.3 * torch.randn(shape, generator=gen)
        else:
            sd[k] = torch.randn(shape, generator=gen)
    style_dim = layout["style.1.weight"][1]
    return {"g_ema": sd, "latent_avg": torch.randn(style_dim, generator=gen)}


def _true_conv(x, kernel, p0, p1):
    """upfirdn2d without up/down: pad (p0 before, p1 after), convolve each channel with the
    flipped kernel."""
    c = x.shape[1]
    k = torch.flip(kernel, [0, 1])[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(F.pad(x, [p0, p1, p0, p1]), k, groups=c)


def rosinality_reference(ckpt, z, truncation=1.0):
    """rosinality's ``Generator(z, truncation=t, truncation_latent=latent_avg,
    randomize_noise=False)`` (the stored noises), one style for all layers, written with
    per-sample weight modulation. Returns the image before any clamp."""
    sd, lrelu_gain = ckpt["g_ema"], math.sqrt(2)

    def fused_lrelu(x, bias):
        return F.leaky_relu(x + bias.view(1, -1, *[1] * (x.dim() - 2)), 0.2) * lrelu_gain

    w, i = _pixel_norm(z), 1
    while f"style.{i}.weight" in sd:  # EqualLinear, lr_mul 0.01
        weight = sd[f"style.{i}.weight"]
        w = fused_lrelu(w @ (weight * 0.01 / math.sqrt(weight.shape[1])).t(),
                        sd[f"style.{i}.bias"] * 0.01)  # fmt: skip
        i += 1
    if truncation != 1:
        w = ckpt["latent_avg"] + truncation * (w - ckpt["latent_avg"])

    def modulated_conv(prefix, x, demodulate, up=False):
        weight = sd[f"{prefix}.conv.weight"][0]
        weight = weight / math.sqrt(weight[0].numel())
        mod = sd[f"{prefix}.conv.modulation.weight"]
        style = w @ (mod / math.sqrt(mod.shape[1])).t() + sd[f"{prefix}.conv.modulation.bias"]
        out = []
        for n in range(len(z)):
            wn = weight * style[n][None, :, None, None]
            if demodulate:
                wn = wn * torch.rsqrt(wn.pow(2).sum((1, 2, 3), keepdim=True) + 1e-8)
            if up:  # transposed conv, stride 2, then blur with pads (1, 1)
                y = F.conv_transpose2d(x[n : n + 1], wn.transpose(0, 1), stride=2)
                out.append(_true_conv(y, sd[f"{prefix}.conv.blur.kernel"], 1, 1))
            else:
                out.append(F.conv2d(x[n : n + 1], wn, padding=wn.shape[-1] // 2))
        return torch.cat(out)

    def styled_conv(prefix, noise, x, up=False):
        y = modulated_conv(prefix, x, True, up) + sd[f"{prefix}.noise.weight"] * noise
        return fused_lrelu(y, sd[f"{prefix}.activate.bias"])

    def to_rgb(prefix, x, skip=None):
        y = modulated_conv(prefix, x, False) + sd[f"{prefix}.bias"]
        if skip is not None:  # upfirdn2d(skip, kernel, up=2, pad=(2, 1))
            stuffed = torch.zeros(*skip.shape[:2], skip.shape[2] * 2, skip.shape[3] * 2)
            stuffed[:, :, ::2, ::2] = skip
            y = y + _true_conv(stuffed, sd[f"{prefix}.upsample.kernel"], 2, 1)
        return y

    x = sd["input.input"].expand(len(z), -1, -1, -1)
    x = styled_conv("conv1", sd["noises.noise_0"], x)
    image, j = to_rgb("to_rgb1", x), 0
    while f"to_rgbs.{j}.bias" in sd:
        x = styled_conv(f"convs.{2 * j}", sd[f"noises.noise_{2 * j + 1}"], x, up=True)
        x = styled_conv(f"convs.{2 * j + 1}", sd[f"noises.noise_{2 * j + 2}"], x)
        image = to_rgb(f"to_rgbs.{j}", x, image)
        j += 1
    return image
