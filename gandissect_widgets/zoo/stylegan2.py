"""A StyleGAN2 generator in plain PyTorch that loads rosinality-format checkpoints.

No compiled extension: :func:`upfirdn2d`, :func:`fused_leaky_relu` and the modulated convolution
are written with standard torch ops, so the model runs on any device.

Module tree (direct children in generation order, as a Session lists them)::

    mapping            z -> w (pixel norm + equalised linear layers)
    layer0 .. layerN   StyledConv: modulate the input by the style, ``conv`` (a plain
                       nn.Conv2d holding the effective weight), demodulate, noise, bias + lReLU
    torgb              ModuleList of ToRGB (skip connections to the image)
    output             clamp to [-1, 1]

In an upsampling layer ``conv`` is an :class:`UpConv2d`: an nn.Conv2d whose weight acts on the
input with zeros inserted between pixels (computed as the equal transposed convolution), followed
by a blur; so every layer's ``conv`` holds an ordinary (out, in, k, k) weight a rewrite can edit,
and its input (the rewrite's keys) is the modulated feature map itself. The rosinality key names
(``conv1.conv.weight``, ``convs.0.conv.modulation.weight``,
``noises.noise_0``, ``to_rgbs.0.bias``, ...) map onto this tree in :func:`from_rosinality` and
back in :func:`rosinality_state_dict`.

The same generator runs NVIDIA StyleGAN2-ADA networks (:mod:`.ada_pickle` maps their keys):
``z_dim`` and ``mapping_dim`` may differ from ``style_dim``, ``mapping_lr`` is the mapping
layers' learning-rate multiplier (their run-time weight and bias gains), ``conv_clamp`` clamps
every layer's output to +-X as ADA's mixed-precision training configurations do, and
``architecture="orig"`` has one ToRGB at the last resolution instead of skip connections.
Everything runs in float32 (ADA's ``force_fp32``), with the fixed ``noise_const`` inputs.

Example:
    >>> g = StyleGAN2Generator(16, style_dim=8, n_mlp=2, channels=[8, 8, 4])
    >>> g(torch.randn(2, 8)).shape
    torch.Size([2, 3, 16, 16])
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "StyleGAN2Generator",
    "StyledConv",
    "UpConv2d",
    "ToRGB",
    "upfirdn2d",
    "fused_leaky_relu",
    "make_kernel",
    "from_rosinality",
    "rosinality_state_dict",
]

_SQRT2 = math.sqrt(2)
_BLUR = (1, 3, 3, 1)


# ---------------------------------------------------------------------------------- ported ops
def make_kernel(taps) -> torch.Tensor:
    """A normalised 2-D FIR kernel from 1-D taps (outer product) or a 2-D array.

    >>> make_kernel([1, 3, 3, 1]).sum().item()
    1.0
    """
    k = torch.as_tensor(taps, dtype=torch.float32)
    if k.dim() == 1:
        k = k[:, None] * k[None, :]
    return k / k.sum()


def _zero_stuff(x: torch.Tensor, factor: int, trailing: bool = True) -> torch.Tensor:
    """Insert ``factor - 1`` zeros after every pixel (none after the last unless trailing)."""
    n, c, h, w = x.shape
    out = x.new_zeros(n, c, h, factor, w, factor)
    out[:, :, :, 0, :, 0] = x
    out = out.view(n, c, h * factor, w * factor)
    if not trailing:
        out = out[:, :, : h * factor - factor + 1, : w * factor - factor + 1]
    return out


def _pad(x: torch.Tensor, p0: int, p1: int) -> torch.Tensor:
    """Pad both spatial axes by ``p0`` before and ``p1`` after; negative amounts crop."""
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    h, w = x.shape[-2:]
    return x[:, :, max(-p0, 0) : h - max(-p1, 0), max(-p0, 0) : w - max(-p1, 0)]


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up=1, down=1, pad=(0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve each channel with ``kernel``, then subsample.

    ``x`` is (N, C, H, W); ``pad`` = (before, after) on both axes. The output side is
    ``(H * up + before + after - kh) // down + 1``.

    >>> upfirdn2d(torch.ones(1, 1, 4, 4), make_kernel([1, 1]) * 4, up=2, pad=(1, 0)).shape
    torch.Size([1, 1, 8, 8])
    """
    n, c, h, w = x.shape
    if up > 1:
        x = _zero_stuff(x, up)
    x = _pad(x, int(pad[0]), int(pad[1]))
    weight = torch.flip(kernel, [0, 1]).to(x)[None, None].expand(c, 1, *kernel.shape)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, slope=0.2, scale=_SQRT2):
    """``leaky_relu(x + bias) * scale``, the bias added per channel (dim 1).

    >>> fused_leaky_relu(torch.tensor([[-1.0, 1.0]]), torch.zeros(2), scale=1.0)
    tensor([[-0.2000,  1.0000]])
    """
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return F.leaky_relu(x + bias.view(shape), slope) * scale


def _demodulation(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """1 / |W * s| per sample and output channel: (N, C_out)."""
    return torch.rsqrt(styles.square() @ weight.square().sum((2, 3)).t() + 1e-8)


# ---------------------------------------------------------------------------------- modules
class _PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(x.square().mean(1, keepdim=True) + 1e-8)


class _EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weights scaled at run time, as rosinality)."""

    def __init__(self, in_dim, out_dim, *, bias_init=0.0, lr_mul=1.0, activate=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x):
        out = F.linear(x, self.weight * self.scale)
        if self.activate:
            return fused_leaky_relu(out, self.bias * self.lr_mul)
        return out + self.bias * self.lr_mul


class UpConv2d(nn.Conv2d):
    """A convolution of the input with zeros inserted after every pixel (x2 upsampling).

    The weight has the plain (out, in, k, k) layout and semantics of
    ``conv2d(zero_stuffed(x), weight, padding=k - 1)``, but the work is done as the equal
    stride-2 transposed convolution, without materialising the zeros.
    """

    def _conv_forward(self, x, weight, bias):
        return F.conv_transpose2d(x, weight.flip([2, 3]).transpose(0, 1), bias, stride=2)


def _up_pads(n_taps: int, kernel_size: int) -> tuple[int, int]:
    """Blur padding after a stride-2 transposed conv of ``kernel_size`` (rosinality's rule)."""
    p = (n_taps - 2) - (kernel_size - 1)
    return (p + 1) // 2 + 1, p // 2 + 1


class StyledConv(nn.Module):
    """One synthesis layer: style-modulated conv, demodulation, fixed noise, bias and lReLU.

    ``conv.weight`` is the effective (already scaled) weight W; the layer computes
    ``demod(conv(x * s))`` with ``s = modulation(w)``, equal to a conv with weights ``W * s``
    normalised per output channel. ``noise`` is a fixed buffer so outputs are deterministic.

    >>> layer = StyledConv(4, 6, style_dim=8, resolution=8, upsample=True)
    >>> layer(torch.randn(2, 4, 4, 4), torch.randn(2, 8)).shape
    torch.Size([2, 6, 8, 8])
    """

    def __init__(
        self,
        in_ch,
        out_ch,
        style_dim,
        resolution,
        kernel_size=3,
        upsample=False,
        blur=_BLUR,
        clamp=None,
    ):
        super().__init__()
        self.clamp = None if clamp is None else float(clamp)
        self.modulation = _EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.upsample = upsample
        conv = UpConv2d if upsample else nn.Conv2d
        pad = kernel_size - 1 if upsample else kernel_size // 2
        self.conv = conv(in_ch, out_ch, kernel_size, padding=pad, bias=False)
        nn.init.normal_(self.conv.weight, std=1 / math.sqrt(in_ch * kernel_size**2))
        if upsample:
            self.register_buffer("blur_kernel", make_kernel(blur) * 4)
            self.blur_pad = _up_pads(self.blur_kernel.shape[0], kernel_size)
        self.noise_strength = nn.Parameter(torch.zeros(1))
        self.register_buffer("noise", torch.randn(1, 1, resolution, resolution))
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x, w):
        s = self.modulation(w)
        y = (
            self.conv(x * s[:, :, None, None])
            * _demodulation(self.conv.weight, s)[:, :, None, None]
        )
        if self.upsample:
            y = upfirdn2d(y, self.blur_kernel, pad=self.blur_pad)
        out = fused_leaky_relu(y + self.noise_strength * self.noise, self.bias)
        return out if self.clamp is None else out.clamp(-self.clamp, self.clamp)


class ToRGB(nn.Module):
    """Style-modulated 1x1 conv to RGB (no demodulation) plus the upsampled skip image.

    ``clamp`` (ADA's conv_clamp) clamps this layer's own output before the skip is added.
    """

    def __init__(self, in_ch, style_dim, upsample=True, blur=_BLUR, clamp=None):
        super().__init__()
        self.clamp = None if clamp is None else float(clamp)
        self.modulation = _EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.conv = nn.Conv2d(in_ch, 3, 1, bias=False)
        nn.init.normal_(self.conv.weight, std=1 / math.sqrt(in_ch))
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        if upsample:
            self.register_buffer("upsample_kernel", make_kernel(blur) * 4)
            p = self.upsample_kernel.shape[0] - 2
            self.upsample_pad = ((p + 1) // 2 + 1, p // 2)

    def forward(self, x, w, skip=None):
        out = self.conv(x * self.modulation(w)[:, :, None, None]) + self.bias
        if self.clamp is not None:
            out = out.clamp(-self.clamp, self.clamp)
        if skip is not None:
            out = out + upfirdn2d(skip, self.upsample_kernel, up=2, pad=self.upsample_pad)
        return out


def _default_channels(resolution, channel_multiplier):
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    return [
        table[r] * (channel_multiplier if r >= 64 else 1)
        for r in (4 * 2**i for i in range(int(math.log2(resolution)) - 1))
    ]


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 generator: latents z (N, z_dim) -> images (N, 3, R, R) in [-1, 1].

    ``channels`` lists the widths at 4x4, 8x8, ..., RxR (default: rosinality's table times
    ``channel_multiplier``). ``truncation`` (attribute, default 1.0) pulls w towards the
    ``latent_avg`` buffer. Keyword-only options for StyleGAN2-ADA networks: ``z_dim``
    (default ``style_dim``), ``mapping_dim`` (width of the hidden mapping layers, default
    ``style_dim``), ``mapping_lr`` (0.01), ``conv_clamp`` (None), ``architecture`` ("skip" or
    "orig") and ``blur`` (the resampling filter's taps, default [1, 3, 3, 1]).

    Example:
        >>> g = StyleGAN2Generator(16, style_dim=8, n_mlp=2, channels=[8, 8, 4])
        >>> [n for n, _ in g.named_children()]
        ['mapping', 'layer0', 'layer1', 'layer2', 'layer3', 'layer4', 'torgb', 'output']
    """

    def __init__(
        self,
        resolution: int = 256,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        channels=None,
        *,
        z_dim: int | None = None,
        mapping_dim: int | None = None,
        mapping_lr: float = 0.01,
        conv_clamp: float | None = None,
        architecture: str = "skip",
        blur=_BLUR,
    ):
        super().__init__()
        if resolution < 4 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 4; got {resolution}")
        if architecture not in ("skip", "orig"):
            raise ValueError(f'architecture must be "skip" or "orig"; got {architecture!r}')
        z_dim = style_dim if z_dim is None else int(z_dim)
        mapping_dim = style_dim if mapping_dim is None else int(mapping_dim)
        if n_mlp < 1 and z_dim != style_dim:
            raise ValueError(f"without mapping layers z_dim ({z_dim}) must equal style_dim")
        n_res = int(math.log2(resolution)) - 1
        chans = list(channels) if channels is not None else None
        if chans is None:
            chans = _default_channels(resolution, channel_multiplier)
        if len(chans) != n_res:
            raise ValueError(
                f"channels needs one width per resolution 4..{resolution} ({n_res} values); "
                f"got {len(chans)}"
            )
        dims = [z_dim] + [mapping_dim] * (n_mlp - 1) + [style_dim]
        self.mapping = nn.Sequential(
            _PixelNorm(),
            *[
                _EqualLinear(dims[i], dims[i + 1], lr_mul=mapping_lr, activate=True)
                for i in range(n_mlp)
            ],
        )
        d, kw = style_dim, dict(blur=blur, clamp=conv_clamp)
        self.const = nn.Parameter(torch.randn(1, chans[0], 4, 4))
        self.layer0 = StyledConv(chans[0], chans[0], d, 4, **kw)
        rgbs = [ToRGB(chans[0], d, upsample=False, **kw)]
        for i, (c_in, c_out) in enumerate(zip(chans[:-1], chans[1:])):
            res = 8 * 2**i
            self.add_module(
                f"layer{2 * i + 1}", StyledConv(c_in, c_out, d, res, upsample=True, **kw)
            )
            self.add_module(f"layer{2 * i + 2}", StyledConv(c_out, c_out, d, res, **kw))
            rgbs.append(ToRGB(c_out, d, **kw))
        if architecture == "orig":
            rgbs = [ToRGB(chans[-1], d, upsample=False, **kw)]
        self.torgb = nn.ModuleList(rgbs)
        self.output = nn.Hardtanh()
        self.register_buffer("latent_avg", torch.zeros(style_dim))
        self.truncation = 1.0
        self.z_dim = z_dim
        self.style_dim = style_dim
        self.mapping_dim = mapping_dim
        self.mapping_lr = float(mapping_lr)
        self.conv_clamp = None if conv_clamp is None else float(conv_clamp)
        self.architecture = architecture
        self.resolution = resolution
        self.channels = chans
        self.n_layers = 2 * n_res - 1

    def styles(self, z: torch.Tensor) -> torch.Tensor:
        """The (truncated) intermediate latents w (N, style_dim) for latents z."""
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"expected latents of shape (N, {self.z_dim}); got {tuple(z.shape)}")
        w = self.mapping(z)
        if self.truncation != 1:
            w = torch.lerp(self.latent_avg.to(w), w, float(self.truncation))
        return w

    def synthesize(self, w: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, R, R) from intermediate latents w (N, style_dim)."""
        skip = self.architecture == "skip"
        x = self.layer0(self.const.expand(w.shape[0], -1, -1, -1), w)
        image = self.torgb[0](x, w) if skip else None
        for i in range(1, self.n_layers, 2):
            x = getattr(self, f"layer{i}")(x, w)
            x = getattr(self, f"layer{i + 1}")(x, w)
            if skip:
                image = self.torgb[(i + 1) // 2](x, w, image)
        return self.output(image if skip else self.torgb[0](x, w))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.synthesize(self.styles(z))


# ---------------------------------------------------------------------------------- rosinality
def _rosinality_layer(i: int) -> str:
    return "conv1" if i == 0 else f"convs.{i - 1}"


def _rosinality_rgb(j: int) -> str:
    return "to_rgb1" if j == 0 else f"to_rgbs.{j - 1}"


def _key_map(g: StyleGAN2Generator) -> dict[str, str]:
    """Our state_dict key -> rosinality key (weights needing rescaling handled separately)."""
    m = {"const": "input.input"}
    for i in range(1, len(g.mapping)):
        m[f"mapping.{i}.weight"] = f"style.{i}.weight"
        m[f"mapping.{i}.bias"] = f"style.{i}.bias"
    for i in range(g.n_layers):
        r = _rosinality_layer(i)
        m.update(
            {
                f"layer{i}.modulation.weight": f"{r}.conv.modulation.weight",
                f"layer{i}.modulation.bias": f"{r}.conv.modulation.bias",
                f"layer{i}.conv.weight": f"{r}.conv.weight",
                f"layer{i}.noise_strength": f"{r}.noise.weight",
                f"layer{i}.noise": f"noises.noise_{i}",
                f"layer{i}.bias": f"{r}.activate.bias",
            }
        )
        if i % 2:
            m[f"layer{i}.blur_kernel"] = f"{r}.conv.blur.kernel"
    for j in range(len(g.torgb)):
        r = _rosinality_rgb(j)
        m.update(
            {
                f"torgb.{j}.modulation.weight": f"{r}.conv.modulation.weight",
                f"torgb.{j}.modulation.bias": f"{r}.conv.modulation.bias",
                f"torgb.{j}.conv.weight": f"{r}.conv.weight",
                f"torgb.{j}.bias": f"{r}.bias",
            }
        )
        if j:
            m[f"torgb.{j}.upsample_kernel"] = f"{r}.upsample.kernel"
    return m


def _is_up_conv(key: str) -> bool:
    m = re.fullmatch(r"layer(\d+)\.conv\.weight", key)
    return bool(m) and int(m.group(1)) % 2 == 1


def _rosinality_incompatible(g: StyleGAN2Generator) -> list[str]:
    """Why ``g`` cannot be written in rosinality's layout (empty when it can)."""
    why = []
    if g.z_dim != g.style_dim or g.mapping_dim != g.style_dim:
        why.append(
            f"its mapping widths (z {g.z_dim}, hidden {g.mapping_dim}, w {g.style_dim}) differ "
            "(rosinality's mapping has style_dim everywhere)"
        )
    if g.architecture != "skip":
        why.append(f'its architecture is "{g.architecture}" (rosinality has skip connections)')
    return why


def _gain_ratio(have: float, want: float) -> float | None:
    """``have / want``, or None when they agree to float precision (then values copy as is)."""
    r = have / want
    return None if abs(r - 1) < 1e-9 else r


def rosinality_state_dict(g: StyleGAN2Generator, state: dict | None = None) -> dict:
    """The checkpoint rosinality's code writes: ``{"g_ema": state_dict, "latent_avg": w_avg}``.

    ``state`` (our ``state_dict()`` keys, e.g. edited weights) replaces ``g``'s own values.
    Mapping layers trained with another learning-rate multiplier than rosinality's 0.01 are
    rescaled so that rosinality's run-time gains give the same function. A generator the
    layout cannot hold (ADA mapping widths, "orig" architecture) raises ValueError; rosinality
    has no ``conv_clamp``, which is left out (callers warn).

    >>> g = StyleGAN2Generator(8, style_dim=4, n_mlp=1, channels=[4, 4])
    >>> sorted(rosinality_state_dict(g)["g_ema"])[:3]
    ['conv1.activate.bias', 'conv1.conv.modulation.bias', 'conv1.conv.modulation.weight']
    """
    why = _rosinality_incompatible(g)
    if why:
        raise ValueError(
            "this generator cannot be written as a rosinality checkpoint: "
            + "; ".join(why)
            + ". Write it as .safetensors (StyleGAN2-ADA layout) instead"
        )
    ours = g.state_dict() if state is None else state
    out = {}
    for key, rkey in _key_map(g).items():
        v = ours[key].detach().clone()
        if key.endswith("conv.weight"):
            if _is_up_conv(key):
                v = torch.flip(v, [2, 3])
            v = (v * math.sqrt(v.shape[1] * v.shape[2] * v.shape[3]))[None]
        elif key.startswith("mapping."):
            layer = g.mapping[int(key.split(".")[1])]
            if key.endswith("weight"):
                r = _gain_ratio(layer.scale, 0.01 / math.sqrt(layer.weight.shape[1]))
            else:
                r = _gain_ratio(layer.lr_mul, 0.01)
            v = v if r is None else v * r
        out[rkey] = v
    return {"g_ema": out, "latent_avg": ours["latent_avg"].detach().clone()}


def _strip_module(sd: dict) -> dict:
    return {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}


def _shapes_from_rosinality(sd: dict) -> dict:
    try:
        n_mlp = len([k for k in sd if re.fullmatch(r"style\.\d+\.weight", k)])
        style_dim = int(sd["style.1.weight"].shape[1])
        chans = [int(sd["input.input"].shape[1])]
        n_rgbs = len([k for k in sd if re.fullmatch(r"to_rgbs\.\d+\.bias", k)])
        for j in range(n_rgbs):
            chans.append(int(sd[f"convs.{2 * j}.conv.weight"].shape[1]))
    except KeyError as e:
        raise KeyError(
            f"not a rosinality StyleGAN2 generator state_dict: missing {e}; expected keys "
            "style.1.weight, input.input, conv1.conv.weight, convs.N.conv.weight, to_rgbs.N.bias"
        ) from None
    return dict(resolution=4 * 2**n_rgbs, style_dim=style_dim, n_mlp=n_mlp, channels=chans)


def from_rosinality(checkpoint: dict) -> StyleGAN2Generator:
    """A generator from a rosinality checkpoint (``{"g_ema": ..., "latent_avg": ...}``) or from
    a bare ``g_ema`` state_dict; sizes are read from the weights.

    >>> g = StyleGAN2Generator(8, style_dim=4, n_mlp=1, channels=[4, 4])
    >>> from_rosinality(rosinality_state_dict(g)).channels
    [4, 4]
    """
    sd = _strip_module(checkpoint["g_ema"] if "g_ema" in checkpoint else checkpoint)
    shapes = _shapes_from_rosinality(sd)
    g = StyleGAN2Generator(**shapes)
    ours = g.state_dict()
    new = {}
    for key, rkey in _key_map(g).items():
        if rkey not in sd:
            if key.endswith(("noise", "kernel")):  # optional buffers: keep the defaults
                new[key] = ours[key]
                continue
            raise KeyError(f"StyleGAN2 checkpoint lacks {rkey!r} (needed for {key!r})")
        v = sd[rkey].float()
        if key.endswith("conv.weight"):
            v = v[0] / math.sqrt(v.shape[2] * v.shape[3] * v.shape[4])
            if _is_up_conv(key):
                v = torch.flip(v, [2, 3])
        if v.shape != ours[key].shape:
            raise ValueError(
                f"StyleGAN2 checkpoint {rkey!r} has shape {tuple(v.shape)}; "
                f"expected {tuple(ours[key].shape)}"
            )
        new[key] = v
    avg = checkpoint.get("latent_avg") if "g_ema" in checkpoint else None
    new["latent_avg"] = avg.float().reshape(-1) if avg is not None else ours["latent_avg"]
    g.load_state_dict(new)
    return g.eval()
