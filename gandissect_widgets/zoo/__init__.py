"""Model zoo: load a generator, segmenter or classifier by name, with no network access.

Example:
    >>> from gandissect_widgets import zoo
    >>> g = zoo.load("hamlet")
    >>> seg = zoo.load_segmenter("hamlet")
    >>> clf = zoo.load_classifier("hamlet")
"""

from __future__ import annotations

from pathlib import Path

from ..checks import did_you_mean
from . import hamlet

_GENERATORS = {"hamlet": hamlet.load_generator}
_SEGMENTERS = {"hamlet": hamlet.load_segmenter}
_CLASSIFIERS = {"hamlet": hamlet.load_classifier, "hamlet-vit": hamlet.load_vit}


def _pick(table, name, what):
    if name not in table:
        raise KeyError(f"unknown {what} {name!r}; known {what}s are: {', '.join(sorted(table))}")
    return table[name]()


def load(name, **kwargs):
    """A model by name or path (eval mode, CPU).

    "hamlet" is the embedded generator; a catalogue name ("progan-church", "stylegan2-church",
    "vgg16-places365", ...) is downloaded once into the per-user cache; a file path is loaded
    with its layout detected (ProGAN, rosinality StyleGAN2, NVIDIA StyleGAN2-ADA ``.pkl`` or
    its G_ema state_dict, VGG16, ResNet), always ``weights_only=True`` (an ADA pickle with a
    restricted unpickler that never runs its code). A generator carries ``model.source``, the
    layout :meth:`Session.export <gandissect_widgets.Session.export>` writes back.
    ``kwargs`` go to :func:`checkpoints.load` (``cache_dir``, ``progress``).

    >>> g = load("hamlet")
    """
    from . import checkpoints

    if isinstance(name, str) and not name.strip():
        raise ValueError("model must be a zoo name (e.g. 'hamlet') or a checkpoint file; got ''")
    if name in _GENERATORS:
        g = _pick(_GENERATORS, name, "generator")
        weights = hamlet.WEIGHTS / "generator.safetensors"
        if name == "hamlet" and weights.exists():  # for export: the layout it came from
            g.source = checkpoints.safetensors_source(weights, "hamlet")
        return g

    if isinstance(name, str) and name not in checkpoints.CATALOGUE and not Path(name).exists():
        known = names()
        raise KeyError(
            f"unknown model {name!r}: not a file, and known names are: {', '.join(known)}"
            + did_you_mean(name, known)
        )
    return checkpoints.load(name, **kwargs).eval()


def names() -> list[str]:
    """The model names :func:`load` knows (generators and published checkpoints)."""
    from . import checkpoints

    return sorted([*_GENERATORS, *checkpoints.CATALOGUE])


def load_segmenter(name: str):
    """A segmenter by name: ``seg.segment(images)`` -> concept ids; names in ``seg.concepts``."""
    return _pick(_SEGMENTERS, name, "segmenter")


def load_classifier(name: str):
    """A classifier by name: float images (N,3,H,W) in [-1,1] -> logits."""
    return _pick(_CLASSIFIERS, name, "classifier")
