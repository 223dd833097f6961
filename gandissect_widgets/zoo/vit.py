"""A plain-PyTorch vision transformer, and loaders for torchvision's and timm's ViT weights.

One module tree serves the hamlet ViT and published ViTs: ``patch_embed`` (a strided conv, a
map layer), ``blocks.0`` .. ``blocks.{depth-1}`` (token layers (N, T, C): a class token, then
the patch grid row by row), inside each ``attn`` and ``mlp.fc1`` / ``mlp.act`` / ``mlp.fc2``
(``mlp.act`` holds the MLP's hidden units), ``norm``, ``pool`` (the class token, a vector layer
(N, C)) and ``head`` (the logits). ``model.token_grid`` is ``(prefix, h, w)``, which a Session
reads to see a token layer as an (N, C, h, w) map of its patch tokens.

No torchvision or timm import: :func:`vit_from_state_dict` renames either layout's keys to this
tree and reads the sizes from the weights.

Example:
    >>> net = VisionTransformer(image_size=32, patch_size=8, dim=16, depth=2, heads=2,
    ...                         mlp_dim=32, num_classes=3)
    >>> net(torch.zeros(2, 3, 32, 32)).shape, net.token_grid
    (torch.Size([2, 3]), (1, 4, 4))
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VisionTransformer", "vit_from_state_dict", "is_vit", "NORMALIZATION"]

#: (mean, std) of the network input in [0, 1] pixel units; None feeds [-1, 1] as is.
NORMALIZATION = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection and an output ``proj``."""

    def __init__(self, dim, heads):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be a multiple of heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, t, c = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, t, c))


class Mlp(nn.Module):
    """``fc1`` -> ``act`` (GELU; its output holds the hidden units) -> ``fc2``."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim, heads, mlp_dim, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ClassToken(nn.Module):
    """Picks the class token: (N, T, C) -> (N, C)."""

    def forward(self, x):
        return x[:, 0]


class VisionTransformer(nn.Module):
    """ViT: patch embedding, class token, learned positions, pre-norm blocks, class-token head.

    Takes images (N, 3, image_size, image_size) in [-1, 1]; ``normalization`` ("imagenet",
    "half" or None) maps them to the network's input inside ``forward``.

    Example:
        >>> net = VisionTransformer(image_size=16, patch_size=8, dim=8, depth=1, heads=2,
        ...                         mlp_dim=16, num_classes=2)
        >>> [name for name, _ in net.named_children()]
        ['patch_embed', 'blocks', 'norm', 'pool', 'head']
    """

    def __init__(
        self,
        image_size=224,
        patch_size=16,
        dim=768,
        depth=12,
        heads=12,
        mlp_dim=3072,
        num_classes=1000,
        eps=1e-6,
        normalization=None,
    ):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} must be a multiple of patch {patch_size}")
        self.image_size, self.patch_size = image_size, patch_size
        self.normalization = normalization
        if normalization is not None:
            if normalization not in NORMALIZATION:
                raise ValueError(
                    f"unknown normalization {normalization!r}; known: None, "
                    + ", ".join(NORMALIZATION)
                )
            mean, std = NORMALIZATION[normalization]
            self.register_buffer("_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        side = image_size // patch_size
        self.patch_embed = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + side * side, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_dim, eps) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.pool = ClassToken()
        self.head = nn.Linear(dim, num_classes)

    @property
    def token_grid(self):
        """``(prefix, h, w)``: one class token, then an h x w grid of patch tokens."""
        side = self.image_size // self.patch_size
        return (1, side, side)

    @property
    def layer_names(self):
        """The layers worth dissecting: every block's MLP hidden units and output."""
        return [
            name for i in range(len(self.blocks)) for name in (f"blocks.{i}.mlp.act", f"blocks.{i}")
        ]

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-1] != self.image_size:
            raise ValueError(
                f"expected images (N, 3, {self.image_size}, {self.image_size}) in [-1, 1]; "
                f"got {tuple(x.shape)}"
            )
        if self.normalization is not None:
            x = ((x + 1) / 2 - self._mean) / self._std
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.pool(self.norm(x)))


# ----------------------------------------------------------------------- published layouts

_TORCHVISION = [  # torchvision.models.VisionTransformer
    (r"^conv_proj\.", "patch_embed."),
    (r"^class_token$", "cls_token"),
    (r"^encoder\.pos_embedding$", "pos_embed"),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.ln_1\.", r"blocks.\1.norm1."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.ln_2\.", r"blocks.\1.norm2."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.self_attention\.in_proj_", r"blocks.\1.attn.qkv."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.self_attention\.out_proj\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.mlp\.(0|linear_1)\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.mlp\.(3|linear_2)\.", r"blocks.\1.mlp.fc2."),
    (r"^encoder\.ln\.", "norm."),
    (r"^heads\.head\.", "head."),
]


def is_vit(sd: dict) -> str | None:
    """``"torchvision"``, ``"timm"`` or ``"native"`` when ``sd`` is a ViT state_dict, else None."""
    if "conv_proj.weight" in sd and "encoder.pos_embedding" in sd:
        return "torchvision"
    if "patch_embed.proj.weight" in sd and "pos_embed" in sd:
        return "timm"
    if "patch_embed.weight" in sd and "pos_embed" in sd and "blocks.0.attn.qkv.weight" in sd:
        return "native"
    return None


def _renamed(sd, layout):
    if layout == "native":
        return dict(sd)
    if layout == "timm":
        out = {}
        for k, v in sd.items():
            k = re.sub(r"^patch_embed\.proj\.", "patch_embed.", k)
            out[k] = v
        return out
    out = {}
    for k, v in sd.items():
        new = k
        for pattern, repl in _TORCHVISION:
            new = re.sub(pattern, repl, new)
        out[new] = v
    return out


def vit_from_state_dict(sd: dict, normalization="imagenet", heads=None) -> VisionTransformer:
    """A :class:`VisionTransformer` holding a torchvision or timm ViT state_dict.

    Sizes come from the weights; ``heads`` defaults to ``dim // 64`` (true of ViT-Ti/S/B/L/H).
    torchvision's ViTs expect "imagenet" normalization, timm's augreg ViTs "half".

    Example:
        >>> net = VisionTransformer(image_size=32, patch_size=16, dim=128, depth=1, heads=2,
        ...                         mlp_dim=64, num_classes=4)
        >>> vit_from_state_dict(net.state_dict(), normalization=None).token_grid
        (1, 2, 2)
    """
    layout = is_vit(sd)
    if layout is None:
        raise ValueError(
            "not a ViT state_dict: expected torchvision keys (conv_proj.weight, "
            "encoder.pos_embedding, ...) or timm keys (patch_embed.proj.weight, pos_embed, ...)"
        )
    sd = _renamed(sd, layout)
    dropped = [k for k in sd if k.startswith(("fc_norm.", "head_drop", "pre_logits."))]
    if dropped:
        raise ValueError(f"unsupported ViT variant: keys {dropped[:3]} (global-pool heads)")
    dim, _, patch, _ = sd["patch_embed.weight"].shape
    tokens = sd["pos_embed"].shape[1]
    side = math.isqrt(tokens - 1)
    if side * side != tokens - 1:
        raise ValueError(f"pos_embed has {tokens} tokens; expected 1 + a square number")
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    net = VisionTransformer(
        image_size=side * patch,
        patch_size=patch,
        dim=dim,
        depth=depth,
        heads=heads or max(1, dim // 64),
        mlp_dim=sd["blocks.0.mlp.fc1.weight"].shape[0],
        num_classes=sd["head.weight"].shape[0],
        normalization=normalization,
    )
    net.load_state_dict(sd)
    return net.eval()
