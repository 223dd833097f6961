"""Rewriting a generator's rules: rank-one constrained edits of one convolution (or of one
linear map over a token layer's tokens).

Following Bau et al., "Rewriting a Deep Generative Model" (ECCV 2020), a conv layer is read as
an associative memory: its input feature at a position is a *key*, the block's output a
*value*. The user copies values from a region of one sample, pastes them into another and
paints *context* examples of where the new rule applies. The conv weight then changes only
along a few input directions ``D`` picked out by the context keys (whitened by the keys'
second moment ``C = E[k k^T]``), ``dW[o, i, a, b] = sum_r Lambda[o, r, a, b] D[r, i]``, with
``Lambda`` fitted so that the pasted region is reproduced (L1 loss).

A token layer (N, T, C), T = prefix + h*w, whose block is (or has exactly one child) an
``nn.Linear`` applied to its tokens is rewritten the same way: its input tokens seen as an
(N, C_in, h, w) map are the keys, its output's patch tokens the values, and the Linear is a 1x1
convolution of that map (``dW = Lambda D``, ``Lambda`` (C_out, r)); painted masks are resized to
the token grid. The prefix (class, register) tokens are no keys or values of the fit, but they
pass through the same Linear, so its weight change reaches them too. Other layers raise a
ValueError saying what is valid (:func:`conv_of`).

The package: ``edit`` (the Rewrite edit and its file), ``request`` (checks), ``keys`` (key
statistics and directions), ``fit`` (the optimisation), ``search`` (where a rule applies).

>>> import gandissect_widgets as gw
>>> from gandissect_widgets import rewrite as rw
>>> s = gw.Session.from_zoo("hamlet")     # roof3 etc.: masks painted on samples 3, 9 and 1
>>> edit = rw.rewrite(s, "layer6", context=[(3, roof3), (9, roof9)],
...                   copy=(1, tree1), paste=(3, (20, 30)), steps=50, stat_samples=100)
>>> edit.save("trees-on-roofs.npz"); s.undo() is edit
PosixPath('trees-on-roofs.npz')
True
>>> s.push(rw.load_edit("trees-on-roofs.npz")).describe()
'rewrite layer6 (rank 1)'
"""

from __future__ import annotations

from .edit import Rewrite, load_edit
from .fit import DEFAULT_LR, DEFAULT_STEPS, make_rewrite, rule_hint
from .keys import rule_directions, second_moment
from .request import conv_of
from .search import ContextMatches, context_matches

__all__ = [
    "Rewrite", "ContextMatches", "rewrite", "make_rewrite", "context_matches", "second_moment",
    "rule_directions", "load_edit", "conv_of", "DEFAULT_STEPS", "DEFAULT_LR", "rule_hint",
]  # fmt: skip


def rewrite(session, layer: str, context, copy=None, paste=None, **kwargs) -> Rewrite | None:
    """Change ``layer``'s conv (or a token layer's Linear) so that ``copy`` pasted at ``paste``
    holds wherever ``context``.

    - ``context``: [(seed, mask), ...] painted examples of where the rule applies.
    - ``copy``: (seed, mask) the region to copy; ``paste``: (seed, mask) or (seed, (y, x))
      where it goes (a mask centres the copy on the painted box, (y, x) on that pixel).
    - ``rank``, ``steps``, ``lr``: the edit's rank and its optimisation (Adam on Lambda).
    - ``stat_samples``, ``cache``: samples for the key statistics C and where to keep them.
    - ``progress(step, loss)`` is called every 10 steps; setting ``cancel`` stops early.

    Masks are image-pixel arrays (H, W), float in [0, 1], bool or uint8. Returns the pushed
    edit (undo with ``session.undo()``), or None when cancelled. Bad input raises before any
    weight changes.

    >>> edit = rewrite(s, "layer6", context=[(3, roof3)], copy=(1, tree1),
    ...                paste=(3, (20, 30)), rank=1, steps=50, stat_samples=100)
    >>> s.edits == [edit]
    True
    """
    edit = make_rewrite(session, layer, context, copy, paste, **kwargs)
    return None if edit is None else session.push(edit)
