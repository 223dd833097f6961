"""The base of widgets that show a Session: subscribe on creation, unsubscribe on close."""

from __future__ import annotations

import ipywidgets as w

from ._owner import Owner, closes_on_failure

__all__ = ["SessionWidget", "closes_on_failure", "parse_units"]


class SessionWidget(Owner, w.VBox):
    """A VBox bound to a Session: ``refresh()`` runs on every Session event until ``close()``.

    Subclasses build their children, then call ``self._bind(session)``; they decorate
    ``__init__`` with :func:`closes_on_failure`, so a constructor that raises leaves no
    subscription, models or worker thread behind. A worker goes in ``self._runner``.
    """

    def _bind(self, session) -> None:
        self.session = session
        self._quiet = False
        session.observe(self._on_session_event)

    def _on_session_event(self, event) -> None:
        if not self._quiet:
            self.refresh()

    def refresh(self) -> None:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def close(self) -> None:
        """Stop listening to the Session, stop the worker and close every model made here
        (so a re-run cell leaves no live comms or threads behind)."""
        if getattr(self, "session", None) is not None:
            self.session.unobserve(self._on_session_event)
        super().close()


def parse_units(text: str, count: int) -> list[int]:
    """'3, 7, 12-15' -> [3, 7, 12, 13, 14, 15]; ValueError naming the valid range.

    >>> parse_units("1, 4-6", 10)
    [1, 4, 5, 6]
    """
    units: list[int] = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise ValueError(f"cannot read {part!r} as a unit or range like 12-15") from None
        if not (0 <= a <= b < count):
            raise ValueError(f"units {part} are out of range: this layer has units 0-{count - 1}")
        units.extend(range(a, b + 1))
    return list(dict.fromkeys(units))
