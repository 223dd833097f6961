"""Edits of a model's behaviour, the immutable model State they form, and the one EditStack.

Two kinds of edit exist:

- output edits change a layer's output during the forward pass (:class:`Ablation`);
- weight edits add a delta to one parameter (:class:`WeightEdit`, ``Rewrite``); the Runner puts
  them into the model when a computation needs them and restores the weights bit-exactly.

An edit is immutable once made; every value it needs (an ablation's per-unit levels included)
is fixed when it is created. A :class:`State` is a tuple of distinct edits: equal keys, equal
outputs, whatever happened before.

>>> stack = EditStack()
>>> e = Ablation("layer4", [3, 7])
>>> stack.push(e).key == (e.uid,)
True
>>> stack.undo().key
()
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["Edit", "Ablation", "WeightEdit", "State", "EditStack"]

_numbers = itertools.count(1)


class Edit:
    """Base class: an edit of one layer. ``id`` numbers edits for people, ``uid`` for caches."""

    kind = "edit"
    changes_weights = False

    def __init__(self, layer: str):
        self.layer = layer
        self.id = next(_numbers)
        self.uid = uuid.uuid4().hex  # unique across processes: keys of cached results

    def output_fn(self):
        """A function ``output -> new output`` for the layer, or None (weight edits)."""
        return None

    def describe(self) -> str:
        return f"{self.kind} on {self.layer}"

    def signature(self) -> str:
        """Text that identifies what the edit does (for fingerprints)."""
        return f"{type(self).__name__}:{self.layer}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} #{self.id}: {self.describe()}>"


def _digest(t) -> str:
    data = np.ascontiguousarray(torch.as_tensor(t).detach().cpu().numpy())
    return hashlib.sha1(f"{data.dtype}{data.shape}".encode() + data.tobytes()).hexdigest()[:16]


class Ablation(Edit):
    """Set units of a layer towards a value: ``x*(1 - a*m) + v*a*m`` on the chosen units.

    ``a`` is ``strength`` in [0, 1], ``m`` an optional region mask (float (H, W) in image pixels,
    resized to the layer's grid) and ``v`` the ``value``: a number, a per-unit tensor, or
    ``"mean"`` / ``"high"`` (the unit's mean or high quantile, to insert a concept as GANPaint's
    draw does). Named levels are fixed when the Session checks the edit (``session.ablation``),
    so the edit computes the same thing forever after. Make ablations with ``session.ablation``.

    >>> Ablation("layer4", [1, 2], strength=0.5).describe()
    'remove 2 units of layer4 at 50%'
    """

    kind = "ablation"

    def __init__(self, layer, units, strength=1.0, mask=None, value=0.0, prefix=False):
        super().__init__(layer)
        self.prefix = bool(prefix)  # token layers: also edit the class (prefix) tokens
        self.units = [int(u) for u in units]
        self.strength = float(strength)
        self.mask = mask
        self.value = value
        self.values: torch.Tensor | None = None  # per-unit float32, fixed once
        if not isinstance(value, str):
            v = torch.as_tensor(value, dtype=torch.float32).detach().cpu()
            self.values = v.repeat(len(self.units)) if v.dim() == 0 else v.clone()
        self._masks: dict = {}

    def fix_levels(self, levels: torch.Tensor) -> None:
        """Fix the per-unit values of a named level (the Session does this once, on checking)."""
        if self.values is None:
            self.values = torch.as_tensor(levels, dtype=torch.float32).detach().cpu().clone()

    def _grid_mask(self, grid) -> torch.Tensor:
        found = self._masks.get(grid)
        if found is None:
            from .render import resize_mask

            found = self._masks[grid] = resize_mask(self.mask, grid)
        return found

    def output_fn(self):
        if self.values is None:
            raise ValueError(f"{self!r}: its {self.value!r} levels were never fixed by a Session")
        units = torch.tensor(self.units, dtype=torch.long)
        a, values = self.strength, self.values

        def fn(out):
            idx = units.to(out.device)
            x = out.index_select(1, idx)
            v = values.to(out.device, out.dtype).view(1, -1, 1, 1)
            if self.mask is None:
                w = a
            else:
                w = a * self._grid_mask(tuple(out.shape[-2:])).to(out.device, out.dtype)[None, None]
            out = out.clone()
            out[:, idx] = x * (1 - w) + v * w
            return out

        if self.prefix:  # the prefix tokens have no place in the image: no mask there

            def prefix_fn(out):
                idx = units.to(out.device)
                v = values.to(out.device, out.dtype).view(1, -1, 1, 1)
                out = out.clone()
                out[:, idx] = out.index_select(1, idx) * (1 - a) + v * a
                return out

            fn.prefix_fn = prefix_fn
        return fn

    def signature(self):
        mask = "" if self.mask is None else _digest(torch.as_tensor(self.mask))
        values = "" if self.values is None else _digest(self.values)
        tokens = ":prefix" if self.prefix else ""
        return (
            f"Ablation:{self.layer}:{self.units}:{self.strength}:{self.value}:{values}:{mask}"
            + tokens
        )

    def describe(self):
        verb = "remove" if isinstance(self.value, (int, float)) and self.value == 0 else "set"
        where = "" if self.mask is None else " in a region"
        where += " and the class token" if self.prefix else ""
        units = f"{len(self.units)} unit{'s' if len(self.units) != 1 else ''}"
        return f"{verb} {units} of {self.layer} at {self.strength:.0%}{where}"


class WeightEdit(Edit):
    """Add ``delta`` to parameter ``param`` of module ``layer`` ("" for the model itself).

    The edit holds no model state: :meth:`apply` returns the original, which :meth:`revert`
    puts back bit-exactly.

    >>> lin = nn.Linear(2, 2)
    >>> e = WeightEdit("", "weight", torch.ones(2, 2))
    >>> before = lin.weight.clone(); saved = e.apply(lin); e.revert(lin, saved)
    >>> torch.equal(lin.weight, before)
    True
    """

    kind = "weights"
    changes_weights = True

    def __init__(self, layer: str, param: str, delta: torch.Tensor):
        super().__init__(layer)
        self.param = param
        self.delta = delta.detach().clone()

    def parameter(self, model: nn.Module) -> torch.Tensor:
        """The parameter this edit changes (KeyError naming the valid ones when missing)."""
        try:
            owner = model.get_submodule(self.layer) if self.layer else model
        except AttributeError:
            raise KeyError(f"{self!r}: the model has no module {self.layer!r}") from None
        try:
            return owner.get_parameter(self.param)
        except AttributeError:
            names = [n for n, _ in owner.named_parameters()]
            raise KeyError(
                f"{self!r}: module {self.layer!r} has no parameter {self.param!r}; "
                f"its parameters are: {', '.join(names)}"
            ) from None

    def check(self, model: nn.Module) -> None:
        """Refuse an edit that cannot apply to ``model`` as it stands (ValueError, KeyError)."""
        p = self.parameter(model)
        if tuple(self.delta.shape) != tuple(p.shape):
            raise ValueError(
                f"{self!r}: delta shape {tuple(self.delta.shape)} does not match "
                f"{self.layer}.{self.param} of shape {tuple(p.shape)}"
            )
        if not torch.isfinite(self.delta).all():
            raise ValueError(f"{self!r}: the delta holds NaN or infinite values")

    def apply(self, model: nn.Module) -> torch.Tensor:
        """Add the delta in place; returns the original to hand to :meth:`revert`."""
        p = self.parameter(model)
        original = p.detach().clone()
        with torch.no_grad():
            p.copy_(original + self.delta.to(p.device, p.dtype))
        return original

    def revert(self, model: nn.Module, original: torch.Tensor) -> None:
        with torch.no_grad():
            self.parameter(model).copy_(original)

    def signature(self):
        return f"{type(self).__name__}:{self.layer}:{self.param}:{_digest(self.delta)}"


@dataclass(frozen=True)
class State:
    """The model's behaviour: distinct edits, oldest first. ``key`` identifies it for caches."""

    edits: tuple[Edit, ...] = ()

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(e.uid for e in self.edits)

    @property
    def weight_edits(self) -> tuple[Edit, ...]:
        return tuple(e for e in self.edits if e.changes_weights)

    def output_fns(self) -> dict[str, list]:
        """layer -> output functions of the output edits, in order."""
        fns: dict[str, list] = {}
        for e in self.edits:
            fn = e.output_fn()
            if fn is not None:
                fns.setdefault(e.layer, []).append(fn)
        return fns

    def plus(self, edit: Edit) -> State:
        return self if edit in self.edits else State((*self.edits, edit))

    def minus(self, edit: Edit) -> State:
        return State(tuple(e for e in self.edits if e is not edit))

    def weights_only(self) -> State:
        return State(self.weight_edits)


class EditStack:
    """The active edits (a :class:`State`) and the undone ones available to redo.

    Every operation returns the new State and changes nothing when it raises; callers
    (the Session) hold the lock and check edits before.
    """

    def __init__(self):
        self.state = State()
        self.undone: list[Edit] = []

    @property
    def key(self):
        return self.state.key

    @property
    def active(self) -> list[Edit]:
        return list(self.state.edits)

    def copy(self) -> EditStack:
        """A stack with the same state and redo list (to try a change on)."""
        other = EditStack()
        other.state, other.undone = self.state, list(self.undone)
        return other

    def _refuse_active(self, edit: Edit) -> None:
        if edit in self.state.edits:
            raise ValueError(f"{edit!r} is already active; an edit can be on the stack only once")

    def push(self, edit: Edit) -> State:
        self._refuse_active(edit)
        self.state = State((*self.state.edits, edit))
        self.undone.clear()
        return self.state

    def undo(self) -> State:
        if self.state.edits:
            *rest, edit = self.state.edits
            self.state = State(tuple(rest))
            self.undone.append(edit)
        return self.state

    def redo(self) -> State:
        if self.undone:
            edit = self.undone[-1]
            self._refuse_active(edit)
            self.undone.pop()
            self.state = State((*self.state.edits, edit))
        return self.state

    def replace(self, old: Edit, new: Edit | None) -> State:
        """Swap active ``old`` for ``new`` in place (``new=None`` removes it)."""
        edits = list(self.state.edits)
        i = edits.index(old)
        if new is None:
            del edits[i]
        else:
            if new is not old:
                self._refuse_active(new)
            edits[i] = new
        self.state = State(tuple(edits))
        return self.state

    def reset(self) -> State:
        self.state = State()
        self.undone.clear()
        return self.state
