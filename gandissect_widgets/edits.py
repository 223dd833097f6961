"""Edits of a model's behaviour and the one stack that holds them (undo, redo, save, load).

Two kinds of edit exist:

- output edits change a layer's output during the forward pass (:class:`Ablation`);
- weight edits change a layer's parameters in place (``Rewrite`` in rewrite.py), restored
  bit-exactly on undo.

>>> stack = EditStack()
>>> e = Ablation("layer4", [3, 7])
>>> stack.push(e) is e, [x.layer for x in stack.active]
(True, ['layer4'])
"""

from __future__ import annotations

import hashlib
import itertools

import torch
from torch import nn

__all__ = ["Edit", "Ablation", "WeightEdit", "EditStack"]

_ids = itertools.count(1)


class Edit:
    """Base class: an edit of one layer. Subclasses override what they change."""

    kind = "edit"
    changes_weights = False

    def __init__(self, layer: str):
        self.layer = layer
        self.id = next(_ids)

    def output_fn(self, session):
        """A function ``output -> new output`` for the layer, or None (weight edits)."""
        return None

    def apply(self, model: nn.Module) -> None:
        """Change the model's weights (weight edits only)."""

    def revert(self, model: nn.Module) -> None:
        """Undo :meth:`apply` bit-exactly (weight edits only)."""

    def describe(self) -> str:
        return f"{self.kind} on {self.layer}"

    def signature(self) -> str:
        """Text that identifies what the edit does (for fingerprints)."""
        return f"{type(self).__name__}:{self.layer}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} #{self.id}: {self.describe()}>"


class Ablation(Edit):
    """Set units of a layer towards a value: ``x*(1 - a*m) + v*a*m`` on the chosen units.

    ``a`` is ``strength`` in [0, 1], ``m`` an optional region mask (image pixels, resized to
    the layer's grid by the Session) and ``v`` the ``value``: a float, ``"mean"``, ``"high"``
    (the unit's high quantile, to insert a concept as GANPaint's draw does) or a per-unit tensor.

    >>> Ablation("layer4", [1, 2], strength=0.5).describe()
    'remove 2 units of layer4 at 50%'
    """

    kind = "ablation"

    def __init__(self, layer, units, strength=1.0, mask=None, value=0.0):
        super().__init__(layer)
        self.units = [int(u) for u in units]
        self.strength = float(strength)
        self.mask = mask
        self.value = value

    def output_fn(self, session):
        units = torch.tensor(self.units, dtype=torch.long)
        a = self.strength
        values = session._unit_values(self.layer, self.value, units)
        mask = None if self.mask is None else session._layer_mask(self.layer, self.mask)

        def fn(out):
            idx = units.to(out.device)
            x = out.index_select(1, idx)
            v = values.to(out.device, out.dtype).view(1, -1, 1, 1)
            w = a if mask is None else a * mask.to(out.device, out.dtype)[None, None]
            out = out.clone()
            out[:, idx] = x * (1 - w) + v * w
            return out

        return fn

    def signature(self):
        mask = "" if self.mask is None else hashlib.sha1(self.mask.numpy().tobytes()).hexdigest()
        value = self.value if not isinstance(self.value, torch.Tensor) else self.value.tolist()
        return f"Ablation:{self.layer}:{self.units}:{self.strength}:{value}:{mask}"

    def describe(self):
        verb = "remove" if isinstance(self.value, (int, float)) and self.value == 0 else "set"
        where = "" if self.mask is None else " in a region"
        return f"{verb} {len(self.units)} units of {self.layer} at {self.strength:.0%}{where}"


class WeightEdit(Edit):
    """Add ``delta`` to parameter ``param`` of ``layer``; undo restores the saved original.

    >>> lin = nn.Linear(2, 2)
    >>> e = WeightEdit("", "weight", torch.ones(2, 2))
    """

    kind = "weights"
    changes_weights = True

    def __init__(self, layer: str, param: str, delta: torch.Tensor):
        super().__init__(layer)
        self.param = param
        self.delta = delta.detach().clone()
        self._original: torch.Tensor | None = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_original"] = None  # a copy travels as its request and delta only
        return state

    def _parameter(self, model) -> torch.Tensor:
        owner = model.get_submodule(self.layer) if self.layer else model
        return owner.get_parameter(self.param)

    def apply(self, model):
        p = self._parameter(model)
        self._original = p.detach().clone()
        with torch.no_grad():
            p.copy_(self._original + self.delta.to(p.device, p.dtype))

    def revert(self, model):
        if self._original is None:
            return
        with torch.no_grad():
            self._parameter(model).copy_(self._original)
        self._original = None


class EditStack:
    """Active edits in order, plus the undone ones available to redo.

    ``key`` identifies the current state (the ids of the active edits): equal keys mean
    equal model behaviour, so caches keyed by it are reused after undo.
    """

    def __init__(self):
        self.active: list[Edit] = []
        self.undone: list[Edit] = []

    @property
    def key(self) -> tuple[int, ...]:
        return tuple(e.id for e in self.active)

    def push(self, edit: Edit, model: nn.Module | None = None) -> Edit:
        if edit.changes_weights and model is not None:
            edit.apply(model)
        self.active.append(edit)
        self.undone.clear()
        return edit

    def undo(self, model: nn.Module | None = None) -> Edit | None:
        if not self.active:
            return None
        edit = self.active.pop()
        if edit.changes_weights and model is not None:
            edit.revert(model)
        self.undone.append(edit)
        return edit

    def redo(self, model: nn.Module | None = None) -> Edit | None:
        if not self.undone:
            return None
        edit = self.undone.pop()
        if edit.changes_weights and model is not None:
            edit.apply(model)
        self.active.append(edit)
        return edit

    def output_edits(self, session) -> dict[str, list]:
        """layer -> output functions of the active output edits, in push order."""
        fns: dict[str, list] = {}
        for e in self.active:
            fn = e.output_fn(session)
            if fn is not None:
                fns.setdefault(e.layer, []).append(fn)
        return fns
