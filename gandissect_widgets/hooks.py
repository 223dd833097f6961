"""The one forward-hook mechanism: retain, replace or edit a layer's output for one pass.

Every intervention in the toolkit goes through :func:`hooked`. Hooks live only inside the
``with`` block and are removed on the way out, also when the forward pass raises.

>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
>>> with hooked(net, retain=["0"], edit={"1": [lambda out: out * 0]}) as seen:
...     y = net(torch.ones(1, 2))
>>> float(y.abs().sum()), tuple(seen["0"].shape)
(0.0, (1, 2))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["StopForward", "hooked", "resolve", "module_names"]

Edit = Callable[[torch.Tensor], torch.Tensor]


class StopForward(Exception):
    """Raised inside a hook to end a forward pass once every wanted layer has been seen."""


def module_names(model: nn.Module) -> list[str]:
    """Every named module path of ``model`` (the root excluded), in definition order."""
    return [name for name, _ in model.named_modules() if name]


def resolve(model: nn.Module, name: str) -> nn.Module:
    """The submodule at dotted path ``name``, or a KeyError listing the valid paths.

    >>> resolve(torch.nn.Sequential(torch.nn.ReLU()), "0")
    ReLU()
    """
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = module_names(model)
        shown = ", ".join(names[:40]) + (", ..." if len(names) > 40 else "")
        raise KeyError(f"unknown layer {name!r}; module paths are: {shown}") from None


class _Seen(dict):
    """The retained tensors of a :func:`hooked` pass, by name; :meth:`emit` hands a layer's
    output to its hook as if the layer had just computed it (a pass resumed after it)."""

    def __init__(self):
        super().__init__()
        self.hooks: dict[str, Callable] = {}

    def emit(self, name: str, output: torch.Tensor) -> torch.Tensor:
        """``output`` of layer ``name`` after its edits (and retained, if asked for)."""
        hook = self.hooks.get(name)
        return output if hook is None else hook(None, (), output)


@contextmanager
def hooked(
    model: nn.Module,
    *,
    retain: Iterable[str] = (),
    retain_input: Iterable[str] = (),
    edit: Mapping[str, Sequence[Edit]] | None = None,
    stop_after_retained: bool = False,
    views: Mapping[str, object] | None = None,
):
    """Install forward hooks for the duration of a ``with`` block.

    - ``retain``: layers whose (edited) output is stored in the yielded dict under its name.
    - ``retain_input``: layers whose first input is stored under ``name + ":in"``.
    - ``edit``: layer -> functions applied in order to its output (each returns the new output).
    - ``stop_after_retained``: raise :class:`StopForward` once every retained layer has run,
      so work after the last needed layer is skipped; catch it around the forward call.
    - ``views``: layer -> a :class:`~gandissect_widgets.layerkinds.LayerView`; the layer's
      edits and retained value then see its map view, and the edited view is written back
      into the output's own shape (a token layer keeps its prefix tokens).
    """
    views = views or {}
    edit = {k: list(v) for k, v in (edit or {}).items() if v}
    retain, retain_input = set(retain), set(retain_input)
    seen = _Seen()
    wanted = {n for n in retain} | {n + ":in" for n in retain_input}
    handles = []

    def _maybe_stop():
        if stop_after_retained and wanted and wanted.issubset(seen):
            raise StopForward

    def _output_hook(name):
        view = views.get(name)

        def hook(module, inputs, output):
            fns = edit.get(name, ())
            seen_as = output if view is None else view.read(output)
            for fn in fns:
                seen_as = fn(seen_as)
            if fns:
                output = seen_as if view is None else view.write(output, seen_as)
            for fn in fns if view is not None else ():  # edits that also take prefix tokens
                if getattr(fn, "prefix_fn", None) is not None:
                    output = view.edit_prefix(output, fn.prefix_fn)
            if name in retain:
                seen[name] = seen_as
            _maybe_stop()
            return output

        return hook

    def _input_hook(name):
        def hook(module, inputs):
            seen[name + ":in"] = inputs[0]
            _maybe_stop()

        return hook

    try:
        for name in sorted(set(edit) | retain):
            seen.hooks[name] = _output_hook(name)
            handles.append(resolve(model, name).register_forward_hook(seen.hooks[name]))
        for name in sorted(retain_input):
            handles.append(resolve(model, name).register_forward_pre_hook(_input_hook(name)))
        yield seen
    finally:
        for h in handles:
            h.remove()
