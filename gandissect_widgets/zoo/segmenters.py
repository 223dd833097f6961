"""Segmenters: any model that labels every pixel of an image batch with a concept.

A segmenter is any object with ``concepts`` (names) and ``segment(images)`` returning concept
ids (N, H, W) int64; :class:`Segmenter` is that protocol. :func:`as_image_tensor` turns the
toolkit's two image forms into one, and :class:`SegFormerADE20K` adapts a SegFormer trained on
ADE20K (150 concepts) through the optional ``transformers`` package.

Example:
    >>> class Sky:
    ...     concepts = ["other", "sky"]
    ...     def segment(self, images):
    ...         x = as_image_tensor(images)
    ...         return (x[:, 2] > x[:, 0]).long()
    >>> isinstance(Sky(), Segmenter)
    True
    >>> Sky().segment(np.zeros((2, 8, 8, 3), np.uint8)).shape
    torch.Size([2, 8, 8])
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Segmenter", "as_image_tensor", "check_segmentation", "SegFormerADE20K"]


@runtime_checkable
class Segmenter(Protocol):
    """Labels pixels: ``segment(images)`` -> int64 (N, H, W) indices into ``concepts``.

    ``images`` are uint8 numpy (N, H, W, 3) or float tensors (N, 3, H, W) in [-1, 1].
    """

    concepts: list[str]

    def segment(self, images) -> torch.Tensor: ...


def as_image_tensor(images) -> torch.Tensor:
    """uint8 numpy/tensor (N, H, W, 3) or float tensor (N, 3, H, W) in [-1, 1] -> float
    tensor (N, 3, H, W) in [-1, 1].

    >>> as_image_tensor(np.full((1, 2, 2, 3), 255, np.uint8)).amin().item()
    1.0
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"images must be a numpy array or a torch tensor; got {type(images).__name__}"
        )
    if images.dtype == torch.uint8:
        if images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"uint8 images must be (N, H, W, 3); got {tuple(images.shape)}")
        return images.permute(0, 3, 1, 2).float() / 127.5 - 1
    if not images.is_floating_point() or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(
            "images must be uint8 (N, H, W, 3) or float (N, 3, H, W) in [-1, 1]; "
            f"got {images.dtype} {tuple(images.shape)}"
        )
    return images.float()


def check_segmentation(segmenter, images) -> torch.Tensor:
    """Run ``segmenter`` on ``images`` and check its answer fits the protocol; returns it.

    Raises TypeError/ValueError saying what is wrong (missing methods, shape, dtype, range).
    """
    if not isinstance(segmenter, Segmenter):
        raise TypeError(
            f"{type(segmenter).__name__} is not a segmenter: it needs a 'concepts' list and a "
            "segment(images) method"
        )
    x = as_image_tensor(images)
    out = segmenter.segment(images)
    n, _, h, w = x.shape
    if not isinstance(out, torch.Tensor) or out.dtype != torch.int64:
        raise TypeError(f"segment() must return an int64 tensor; got {getattr(out, 'dtype', out)}")
    if tuple(out.shape) != (n, h, w):
        raise ValueError(f"segment() must return shape {(n, h, w)}; got {tuple(out.shape)}")
    if out.numel() and (out.min() < 0 or out.max() >= len(segmenter.concepts)):
        raise ValueError(
            f"segment() ids must lie in 0..{len(segmenter.concepts) - 1} (one per concept); "
            f"got {int(out.min())}..{int(out.max())}"
        )
    return out


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class SegFormerADE20K:
    """The 150 ADE20K concepts, from a SegFormer via Hugging Face ``transformers``.

    Needs the optional extra: ``pip install "gandissect-widgets[segformer]"``. The weights come
    from the Hugging Face hub on first use (or a local folder given as ``model``).

    Example (not run in the tests: it needs a CUDA GPU and the downloaded weights):
        >>> seg = SegFormerADE20K(device="cuda")              # doctest: +SKIP
        >>> seg.concepts[:3]                                   # doctest: +SKIP
        ['wall', 'building', 'sky']
    """

    DEFAULT = "nvidia/segformer-b0-finetuned-ade-512-512"

    def __init__(self, model: str = DEFAULT, device="cpu", size: int = 512, batch_size: int = 8):
        try:
            from transformers import SegformerForSemanticSegmentation
        except ImportError as e:
            raise ImportError(
                "SegFormerADE20K needs the 'transformers' package, which is not installed: "
                'pip install "gandissect-widgets[segformer]" (or pip install transformers)'
            ) from e
        self.net = SegformerForSemanticSegmentation.from_pretrained(model).to(device).eval()
        labels = self.net.config.id2label
        self.concepts = [labels[i] for i in range(len(labels))]
        self.device = torch.device(device)
        self.size = int(size)
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def segment(self, images) -> torch.Tensor:
        """Concept ids (N, H, W) int64 at the images' own resolution."""
        x = as_image_tensor(images)
        h, w = x.shape[-2:]
        mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
        out = []
        for i in range(0, len(x), self.batch_size):
            b = ((x[i : i + self.batch_size] + 1) / 2 - mean) / std
            b = F.interpolate(b, size=(self.size, self.size), mode="bilinear", align_corners=False)
            logits = self.net(pixel_values=b.to(self.device)).logits
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            out.append(logits.argmax(1).cpu())
        return torch.cat(out) if out else torch.zeros(0, h, w, dtype=torch.int64)
