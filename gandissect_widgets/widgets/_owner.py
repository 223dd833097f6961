"""Widgets free what they hold: ``close()`` closes every model a widget made, and a
constructor that fails closes what it had made so far.

ipywidgets registers every model it creates (children, but also each ``Layout`` and style
such as ``ButtonStyle``) until it is closed; a widget that closes only itself leaves those
registered. :class:`Owner` closes the whole tree: the widget, its children, their layouts and
styles, any widget held in an attribute, and ``_runner`` (a :class:`~._latest.Latest`).

>>> import ipywidgets as w
>>> from ipywidgets.widgets.widget import _instances
>>> class Panel(Owner, w.VBox):
...     @closes_on_failure
...     def __init__(self):
...         self.button = w.Button(description="go")
...         super().__init__([self.button])
>>> before = len(_instances)
>>> Panel().close(); len(_instances) == before
True
"""

from __future__ import annotations

import contextlib
import functools

from ipywidgets import Widget


def owned_models(*roots) -> list[Widget]:
    """``roots`` and every widget model reachable from their synced traits (children,
    layouts, styles), each once.

    >>> import ipywidgets as w
    >>> models = owned_models(w.Button())
    >>> sorted(type(m).__name__ for m in models)
    ['Button', 'ButtonStyle', 'Layout']
    >>> for m in models:
    ...     m.close()
    """
    found: dict[int, Widget] = {}
    stack = [r for r in roots if isinstance(r, Widget)]
    while stack:
        model = stack.pop()
        if id(model) in found:
            continue
        found[id(model)] = model
        for name in model.keys:
            if not model.trait_has_value(name):  # a default not made yet: nothing to close
                continue
            value = getattr(model, name)
            if isinstance(value, Widget):
                stack.append(value)
            elif isinstance(value, (list, tuple)):
                stack.extend(v for v in value if isinstance(v, Widget))
    return list(found.values())


class Owner:
    """Mixin for a widget that owns the models it made: put it before the ipywidgets base.

    A widget held in an attribute counts as made here, so hold someone else's widget through
    a callback, never an attribute. Closing twice is harmless.
    """

    _runner = None

    def close(self) -> None:
        """Stop the worker thread (if any) and close this widget and every model it made."""
        if self._runner is not None:
            self._runner.close()
        held = [v for v in vars(self).values() if isinstance(v, Widget)]
        for model in owned_models(self, *held):
            if model is not self:
                model.close()
        super().close()


def closes_on_failure(init):
    """Wrap an ``Owner``'s ``__init__``: if it raises, ``close()`` what was made, re-raise."""

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        try:
            init(self, *args, **kwargs)
        except BaseException:
            with contextlib.suppress(Exception):  # the constructor's error is the one to see
                self.close()
            raise

    return wrapper
