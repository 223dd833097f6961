"""The embedded hamlet world and its three models, shipped in the package (no download, no GPU).

Example:
    >>> import torch
    >>> from gandissect_widgets.zoo import hamlet
    >>> images, concepts, scenes = hamlet.render(range(8))
    >>> g = hamlet.load_generator()
    >>> g(torch.randn(2, g.z_dim)).shape
    torch.Size([2, 3, 64, 64])
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from ..progan import ProgressiveGenerator
from .encoder import Encoder
from .nets import Classifier, Segmenter, vit_classifier
from .rule import example_rule
from .world import CONCEPTS, SCENES, TEST_SEED_START, render

__all__ = [
    "CONCEPTS", "SCENES", "TEST_SEED_START", "render",
    "load_generator", "load_segmenter", "load_classifier", "load_vit", "load_encoder",
    "example_rule",
]  # fmt: skip

WEIGHTS = Path(__file__).parent / "weights"


def _weights(name, path=None):
    path = Path(path) if path is not None else WEIGHTS / f"{name}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"hamlet {name} weights are missing: expected {path}")
    return {k: v.float() for k, v in load_file(str(path)).items()}


def _loaded(net, name, path=None):
    """``net`` with the weights ``name`` (or the file ``path``), in eval mode."""
    net.load_state_dict(_weights(name, path))
    return net.eval()


def load_generator(path=None) -> ProgressiveGenerator:
    """The hamlet ProGAN generator (eval, CPU): latents (N, 128) -> images (N,3,64,64) in [-1,1].

    ``path`` picks another safetensors file (e.g. a training checkpoint); the same holds for
    :func:`load_segmenter` and :func:`load_classifier`.

    Example:
        >>> load_generator().z_dim
        128
    """
    return ProgressiveGenerator.from_state_dict(_weights("generator", path)).eval()


def load_segmenter(path=None) -> Segmenter:
    """The hamlet segmenter (eval, CPU); ``seg.segment(images)`` -> concept ids (N,H,W).

    Example:
        >>> load_segmenter().concepts[0]
        'sky'
    """
    return _loaded(Segmenter(CONCEPTS), "segmenter", path)


def load_classifier(path=None) -> Classifier:
    """The hamlet scene classifier (eval, CPU): images (N,3,64,64) in [-1,1] -> logits over SCENES.

    Example:
        >>> import torch
        >>> load_classifier()(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 5])
    """
    return _loaded(Classifier(), "classifier", path)


def load_vit(path=None):
    """hamlet-vit, the scene classifier as a vision transformer (eval, CPU): patch 8 at 64 px,
    so its blocks output a class token and an 8x8 grid of patch tokens.

    Example:
        >>> import torch
        >>> load_vit()(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 5])
    """
    return _loaded(vit_classifier(), "vit", path)


def load_encoder(path=None) -> Encoder:
    """The hamlet encoder (eval, CPU): pictures (N,3,64,64) in [-1,1] -> latents (N, 128), the
    first guess of :func:`~gandissect_widgets.invert.fit_photo` (``encoder=``).

    Example:
        >>> import torch
        >>> load_encoder()(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 128])
    """
    return _loaded(Encoder(), "encoder", path).requires_grad_(False)
