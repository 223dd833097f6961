"""What changed, and who is told: Session events and the observers that receive them.

>>> told = []
>>> obs = Observers()
>>> obs.add(told.append)
>>> obs.emit(SessionEvent("edits"))
>>> told[0].kind
'edits'
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["SessionEvent", "Observers"]


@dataclass(frozen=True)
class SessionEvent:
    """What changed: ``kind`` is "edits", "weights", "samples" or "dissection" (a layer's
    dissection was stored, ``detail["layer"]``); ``edit`` the edit involved."""

    kind: str
    edit: object = None
    detail: dict = field(default_factory=dict)


class Observers:
    """Callbacks told about each change, in the order they subscribed. A callback that raises
    is reported with a RuntimeWarning; the others are still told and the change stands."""

    def __init__(self):
        self._lock = threading.Lock()
        self._callbacks: list[Callable] = []

    def add(self, callback: Callable[[SessionEvent], None]) -> None:
        with self._lock:
            if callback not in self._callbacks:
                self._callbacks.append(callback)

    def remove(self, callback) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def __iter__(self):
        with self._lock:
            return iter(list(self._callbacks))

    def __len__(self) -> int:
        return len(self._callbacks)

    def emit(self, event: SessionEvent) -> None:
        for cb in self:
            try:
                cb(event)
            except Exception as err:  # one broken observer must not break the change
                warnings.warn(
                    f"observer {cb!r} raised {type(err).__name__}: {err}; the change stands",
                    RuntimeWarning,
                    stacklevel=4,
                )
