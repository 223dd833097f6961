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


# ------------------------------------------------------------------------------------- ViT
def torchvision_vit_layout(dim=768, depth=12, mlp=3072, classes=1000, patch=16, image=224):
    """torchvision ``VisionTransformer.state_dict()`` (``vit_b_16`` with the defaults):
    ``conv_proj``, ``class_token``, ``encoder.pos_embedding``, per layer
    ``encoder.layers.encoder_layer_{i}`` with ``ln_1``, ``self_attention`` (an
    ``nn.MultiheadAttention``: ``in_proj_weight`` (3*dim, dim) = [q; k; v], ``out_proj``),
    ``ln_2``, ``mlp.0`` and ``mlp.3`` (Linear, GELU, Dropout, Linear, Dropout); ``encoder.ln``,
    ``heads.head``."""
    tokens = (image // patch) ** 2 + 1
    layout = {
        "class_token": (1, 1, dim),
        "conv_proj.weight": (dim, 3, patch, patch), "conv_proj.bias": (dim,),
        "encoder.pos_embedding": (1, tokens, dim),
    }  # fmt: skip
    for i in range(depth):
        p = f"encoder.layers.encoder_layer_{i}."
        layout.update({
            p + "ln_1.weight": (dim,), p + "ln_1.bias": (dim,),
            p + "self_attention.in_proj_weight": (3 * dim, dim),
            p + "self_attention.in_proj_bias": (3 * dim,),
            p + "self_attention.out_proj.weight": (dim, dim),
            p + "self_attention.out_proj.bias": (dim,),
            p + "ln_2.weight": (dim,), p + "ln_2.bias": (dim,),
            p + "mlp.0.weight": (mlp, dim), p + "mlp.0.bias": (mlp,),
            p + "mlp.3.weight": (dim, mlp), p + "mlp.3.bias": (dim,),
        })  # fmt: skip
    layout.update({
        "encoder.ln.weight": (dim,), "encoder.ln.bias": (dim,),
        "heads.head.weight": (classes, dim), "heads.head.bias": (classes,),
    })  # fmt: skip
    return layout


def timm_vit_layout(dim=384, depth=12, mlp=1536, classes=1000, patch=16, image=224):
    """timm ``VisionTransformer.state_dict()`` (``vit_small_patch16_224`` with the defaults):
    ``cls_token``, ``pos_embed``, ``patch_embed.proj``, per block ``blocks.{i}`` with ``norm1``,
    ``attn.qkv`` (fused, (3*dim, dim)), ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``;
    ``norm``, ``head``."""
    tokens = (image // patch) ** 2 + 1
    layout = {
        "cls_token": (1, 1, dim), "pos_embed": (1, tokens, dim),
        "patch_embed.proj.weight": (dim, 3, patch, patch), "patch_embed.proj.bias": (dim,),
    }  # fmt: skip
    for i in range(depth):
        p = f"blocks.{i}."
        layout.update({
            p + "norm1.weight": (dim,), p + "norm1.bias": (dim,),
            p + "attn.qkv.weight": (3 * dim, dim), p + "attn.qkv.bias": (3 * dim,),
            p + "attn.proj.weight": (dim, dim), p + "attn.proj.bias": (dim,),
            p + "norm2.weight": (dim,), p + "norm2.bias": (dim,),
            p + "mlp.fc1.weight": (mlp, dim), p + "mlp.fc1.bias": (mlp,),
            p + "mlp.fc2.weight": (dim, mlp), p + "mlp.fc2.bias": (dim,),
        })  # fmt: skip
    layout.update({
        "norm.weight": (dim,), "norm.bias": (dim,),
        "head.weight": (classes, dim), "head.bias": (classes,),
    })  # fmt: skip
    return layout


def vit_state_dict(layout, seed=0):
    """Random values in a ViT layout: weights N(0, 0.02), norms' scales near 1."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in layout.items():
        v = torch.randn(shape, generator=gen) * 0.02
        if ("ln" in k or "norm" in k) and k.endswith("weight"):
            v = v + 1
        out[k] = v
    return out


def torchvision_vit_forward(sd, x, heads):
    """torchvision's ViT forward on normalised images ``x``: patches, class token first,
    positions, pre-norm layers (torch's multi-head attention), final LayerNorm, class token."""
    n = x.shape[0]
    dim = sd["conv_proj.weight"].shape[0]
    patch = sd["conv_proj.weight"].shape[-1]
    h = F.conv2d(x, sd["conv_proj.weight"], sd["conv_proj.bias"], stride=patch)
    h = h.reshape(n, dim, -1).permute(0, 2, 1)
    h = torch.cat([sd["class_token"].expand(n, -1, -1), h], 1) + sd["encoder.pos_embedding"]
    i = 0
    while f"encoder.layers.encoder_layer_{i}.ln_1.weight" in sd:
        p = f"encoder.layers.encoder_layer_{i}."
        y = F.layer_norm(h, (dim,), sd[p + "ln_1.weight"], sd[p + "ln_1.bias"], eps=1e-6)
        y = y.transpose(0, 1)  # (T, N, dim): MultiheadAttention's sequence-first layout
        a, _ = F.multi_head_attention_forward(
            y, y, y, dim, heads,
            sd[p + "self_attention.in_proj_weight"], sd[p + "self_attention.in_proj_bias"],
            None, None, False, 0.0,
            sd[p + "self_attention.out_proj.weight"], sd[p + "self_attention.out_proj.bias"],
            training=False, need_weights=False,
        )  # fmt: skip
        h = h + a.transpose(0, 1)
        y = F.layer_norm(h, (dim,), sd[p + "ln_2.weight"], sd[p + "ln_2.bias"], eps=1e-6)
        y = F.gelu(F.linear(y, sd[p + "mlp.0.weight"], sd[p + "mlp.0.bias"]))
        h = h + F.linear(y, sd[p + "mlp.3.weight"], sd[p + "mlp.3.bias"])
        i += 1
    h = F.layer_norm(h, (dim,), sd["encoder.ln.weight"], sd["encoder.ln.bias"], eps=1e-6)
    return F.linear(h[:, 0], sd["heads.head.weight"], sd["heads.head.bias"])


def timm_vit_forward(sd, x, heads):
    """timm's ViT forward on normalised images ``x``, attention written out: softmax(q k^T /
    sqrt(d)) v per head, with q, k, v split from the fused ``qkv`` as (3, heads, head_dim)."""
    n = x.shape[0]
    dim = sd["patch_embed.proj.weight"].shape[0]
    patch = sd["patch_embed.proj.weight"].shape[-1]
    h = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch)
    h = h.flatten(2).transpose(1, 2)
    h = torch.cat([sd["cls_token"].expand(n, -1, -1), h], 1) + sd["pos_embed"]
    d = dim // heads
    i = 0
    while f"blocks.{i}.norm1.weight" in sd:
        p = f"blocks.{i}."
        y = F.layer_norm(h, (dim,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps=1e-6)
        qkv = F.linear(y, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"])
        qkv = qkv.reshape(n, -1, 3, heads, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1) / math.sqrt(d)).softmax(-1)
        y = (attn @ v).transpose(1, 2).reshape(n, -1, dim)
        h = h + F.linear(y, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        y = F.layer_norm(h, (dim,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps=1e-6)
        y = F.gelu(F.linear(y, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"]))
        h = h + F.linear(y, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
        i += 1
    h = F.layer_norm(h, (dim,), sd["norm.weight"], sd["norm.bias"], eps=1e-6)
    return F.linear(h[:, 0], sd["head.weight"], sd["head.bias"])
