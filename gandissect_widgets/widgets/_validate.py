"""Trait validators shared by the widgets, raising ValueError that names what is valid."""

from __future__ import annotations

import math

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
