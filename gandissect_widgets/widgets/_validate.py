"""Trait validators shared by the widgets, raising ValueError that names what is valid."""

from __future__ import annotations

import math
import operator

import traitlets as t


class InvalidValue(t.TraitError, ValueError):
    """A bad trait value: a ValueError for callers, a TraitError so traitlets rolls back
    the other values set with it (e.g. in one front-end update)."""


def in_range(*names: str, low: float, high: float | None = None):
    """A traitlets validator for ``names`` accepting ``low <= value`` (``<= high`` if given).

    >>> class W(t.HasTraits):
    ...     opacity = t.Float(0.5)
    ...     _check = in_range("opacity", low=0, high=1)
    >>> W(opacity=0.2).opacity
    0.2
    """

    @t.validate(*names)
    def _check(self, proposal):
        value = proposal["value"]
        if not math.isfinite(value) or value < low or (high is not None and value > high):
            valid = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise InvalidValue(f"{proposal['trait'].name} must be {valid}; got {value}")
        return value

    return _check


def fixed(name: str):
    """A traitlets validator that lets ``name`` be set once (when the widget is made) and
    refuses a later change, saying to make a new widget: the widget's data follow from it.

    >>> class W(t.HasTraits):
    ...     layer = t.Unicode("")
    ...     _check = fixed("layer")
    >>> w = W(layer="layer6")
    >>> try:
    ...     w.layer = "layer4"
    ... except InvalidValue as err:
    ...     print(err)
    layer is fixed when a W is made (here 'layer6'); make a new one: W(session, 'layer4')
    """

    @t.validate(name)
    def _check(self, proposal):
        old, value = getattr(self, name), proposal["value"]
        if old and value != old:
            kind = type(self).__name__
            raise InvalidValue(
                f"{name} is fixed when a {kind} is made (here {old!r}); make a new one: "
                f"{kind}(session, {value!r})"
            )
        return value

    return _check


def check_session(session, widget: str) -> None:
    """Refuse anything but a Session as a widget's first argument, saying what to pass.

    >>> try:
    ...     check_session("layer6", "UnitBrowser")
    ... except TypeError as err:
    ...     print(str(err).split(" (e.g.")[0])
    UnitBrowser(session, layer, ...): session must be a gandissect_widgets.Session
    """
    from ..session import Session

    if not isinstance(session, Session):
        raise TypeError(
            f"{widget}(session, layer, ...): session must be a gandissect_widgets.Session "
            f"(e.g. gw.Session.from_zoo('hamlet')); got {session!r}"
        )


class UnitsText(t.Unicode):
    """Unit numbers as the page's text box holds them, ``"3, 12"``; a list (or any sequence) of
    ints is taken too and written that way.

    >>> class W(t.HasTraits):
    ...     units = UnitsText("")
    >>> W(units=[3, 12]).units
    '3, 12'
    """

    def validate(self, obj, value):
        if not isinstance(value, (str, bytes)) and hasattr(value, "__iter__"):
            try:
                value = ", ".join(str(operator.index(u)) for u in value)
            except TypeError:
                raise InvalidValue(
                    f"units must be unit numbers, as a list of ints or text like '3, 12'; "
                    f"got {value!r}"
                ) from None
        return super().validate(obj, value)
