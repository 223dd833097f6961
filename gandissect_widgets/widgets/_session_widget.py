"""The base of widgets that show a Session: one anywidget, its whole state in synced traits.

A Session widget subscribes to the Session on creation and unsubscribes on close. Its renders
run in one worker where the newest request wins (:class:`~._latest.Latest`). Buttons in the
view set ``_action`` = ``{"name": ..., "n": count, ...}`` (a trait, so every frontend, marimo
included, delivers it); ``_do_<name>(args)`` handles it.

Widgets on one Session do not slow each other: a widget whose control is being dragged marks
the Session busy (:func:`touch`), and the others, told of a change by a Session event, wait
until the drag has settled (:data:`SETTLE_S` without a new value) before they redraw.
"""

from __future__ import annotations

import threading
import time
import weakref

import anywidget
import traitlets as t

from ._grid import lut_bytes
from ._latest import Latest
from ._owner import Owner, closes_on_failure
from ._validate import InvalidValue

__all__ = ["SessionWidget", "closes_on_failure", "parse_units", "touch", "busy_for"]

SETTLE_S = 0.3  # a drag has settled after this long without a new value
MAX_DEFER_S = 10.0  # a redraw waits at most this long for others to settle

_activity: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # session -> (widget, t)
_activity_lock = threading.Lock()


def touch(session, widget) -> None:
    """``widget`` is being driven (a slider moves): others on ``session`` defer redraws."""
    with _activity_lock:
        _activity[session] = (id(widget), time.monotonic())


def busy_for(session, widget) -> float:
    """Seconds until another widget's interaction on ``session`` has settled (0: settled)."""
    with _activity_lock:
        who, when = _activity.get(session, (None, 0.0))
    if who == id(widget):
        return 0.0
    return max(0.0, when + SETTLE_S - time.monotonic())


class SessionWidget(Owner, anywidget.AnyWidget):
    """An anywidget bound to a Session: ``refresh()`` runs on every Session event until
    ``close()``, after other widgets' drags have settled.

    Subclasses set their traits, then call ``self._bind(session)``; they decorate
    ``__init__`` with :func:`closes_on_failure`, so a constructor that raises leaves no
    subscription, models or worker thread behind.
    """

    _action = t.Dict().tag(sync=True)
    _lut = t.Bytes(b"").tag(sync=True)
    cmap = t.Unicode("inferno").tag(sync=True)
    opacity = t.Float(0.5).tag(sync=True)
    heat_mode = t.Unicode("highlight").tag(sync=True)
    status = t.Unicode("").tag(sync=True)
    status_kind = t.Unicode("").tag(sync=True)

    def _bind(self, session) -> None:
        self.session = session
        self._quiet = False
        if self._runner is None:
            self._runner = Latest(on_error=self._show_error)
        if not self._lut:
            self._lut = lut_bytes(self.cmap)
        self.on_msg(self._on_front_end_msg)
        session.observe(self._on_session_event)

    # ------------------------------------------------------------ events
    def _on_session_event(self, event) -> None:
        if not self._quiet:
            self._runner.submit(self._when_settled(self.refresh))

    def _when_settled(self, fn):
        """``fn``, run once other widgets' interactions on the Session have settled."""

        def run():
            runner = self._runner
            deadline = time.monotonic() + MAX_DEFER_S
            while not runner.closed and time.monotonic() < deadline:
                left = busy_for(self.session, self)
                if left <= 0:
                    break
                time.sleep(min(left, 0.05))
            if not runner.closed and not runner.pending:  # else the newer request draws
                fn()

        return run

    def refresh(self) -> None:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def schedule(self, fn=None) -> None:
        """Run ``fn`` (default: ``refresh``) in the worker; the newest request wins."""
        self._runner.submit(fn or self.refresh)

    def wait(self, timeout: float = 30) -> bool:
        """Block until the newest render is done; False on timeout."""
        return self._runner.wait(timeout)

    def press(self, name: str, **args) -> None:
        """Do what the view's button ``name`` does (as a click in the page would)."""
        n = int(self._action.get("n", 0)) + 1
        self._action = {"name": name, "n": n, **args}

    @t.observe("_action")
    def _on_action(self, change) -> None:
        action = dict(change["new"] or {})
        name = action.pop("name", None)
        action.pop("n", None)
        handler = getattr(self, f"_do_{name}", None) if name else None
        if handler is None:
            return
        try:
            handler(**action)
        except (ValueError, KeyError, TypeError, OSError) as err:
            self._show_error(err)

    def _on_front_end_msg(self, _widget, content, _buffers) -> None:
        canvas = getattr(self, "canvas", None)
        if isinstance(content, dict) and canvas is not None:
            canvas.handle_msg(content)

    @t.observe("cmap")
    def _on_cmap(self, change) -> None:
        self._lut = lut_bytes(change["new"])

    @t.validate("heat_mode")
    def _check_heat_mode(self, proposal) -> str:
        modes = ("highlight", "colormap")
        if proposal["value"] not in modes:
            raise InvalidValue(f"heat_mode must be one of {modes}; got {proposal['value']!r}")
        return proposal["value"]

    # ------------------------------------------------------------ status
    def _say(self, text: str, kind: str = "") -> None:
        with self.hold_sync():
            self.status, self.status_kind = text, kind

    def _show_error(self, err: BaseException) -> None:
        msg = str(err).strip("'\"")
        self._say(f"{type(err).__name__}: {msg}", "error")

    def close(self) -> None:
        """Stop listening to the Session, stop the worker and close the model (so a re-run
        cell leaves no live comms or threads behind)."""
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
