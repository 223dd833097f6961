"""Model zoo: load a generator, segmenter or classifier by name, with no network access.

Example:
    >>> from gandissect_widgets import zoo
    >>> g = zoo.load("hamlet")
    >>> seg = zoo.load_segmenter("hamlet")
    >>> clf = zoo.load_classifier("hamlet")
"""

from __future__ import annotations

from . import hamlet

_GENERATORS = {"hamlet": hamlet.load_generator}
_SEGMENTERS = {"hamlet": hamlet.load_segmenter}
_CLASSIFIERS = {"hamlet": hamlet.load_classifier}


def _pick(table, name, what):
    if name not in table:
        raise KeyError(f"unknown {what} {name!r}; known {what}s are: {', '.join(sorted(table))}")
    return table[name]()


def load(name: str):
    """A generator by name (eval mode, CPU), e.g. ``load("hamlet")``."""
    return _pick(_GENERATORS, name, "generator")


def load_segmenter(name: str):
    """A segmenter by name: ``seg.segment(images)`` -> concept ids; names in ``seg.concepts``."""
    return _pick(_SEGMENTERS, name, "segmenter")


def load_classifier(name: str):
    """A classifier by name: float images (N,3,H,W) in [-1,1] -> logits."""
    return _pick(_CLASSIFIERS, name, "classifier")
