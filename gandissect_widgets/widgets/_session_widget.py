"""The base of widgets that show a Session: one anywidget, its whole state in synced traits.

A Session widget subscribes to the Session on creation and unsubscribes on close. Its renders
run in one worker where the newest request wins (:class:`~._latest.Latest`). Buttons in the
view set ``_action`` = ``{"name": ..., "n": count, ...}`` (a trait, so every frontend, marimo
included, delivers it); ``_do_<name>(args)`` handles it.

Widgets on one Session do not slow each other: a widget whose control is being dragged marks
the Session busy (:func:`touch`), and the others, told of a change by a Session event, wait
until the drag has settled (:data:`SETTLE_S` without a new value) before they redraw.

Photos: a generator Session's widgets take image files dropped onto their sample grid (or
chosen with "add photo…"). Each is inverted in the background (``session.invert(...,
background=True)`` with the widget's ``invert_settings``), the view shows the progress and a
cancel button, and the photo's id is then appended to ``session.samples``: every widget that
shows the Session's samples (made without ``seeds=``) shows its reconstruction, "photo 0".
While it is being inverted, the fit so far stands in its place, "preview" (a new preview id
every ``preview_every`` seconds, the newest wins; with hamlet's encoder the first one within a
second), and the finished photo replaces it; a cancelled or failed photo leaves nothing.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import threading
import time
import weakref
from collections.abc import Mapping

import anywidget
import traitlets as t

from .. import checks
from ..sources import PHOTO_BASE, PREVIEW_BASE
from ._grid import lut_bytes
from ._latest import Latest
from ._owner import Owner, closes_on_failure
from ._photos import PhotoDrop, failed
from ._validate import InvalidValue, in_range

__all__ = [
    "SessionWidget", "closes_on_failure", "parse_units", "touch", "busy_for", "photo_captions",
    "check_invert_settings",
]  # fmt: skip

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


class SessionWidget(Owner, PhotoDrop, anywidget.AnyWidget):
    """An anywidget bound to a Session: ``refresh()`` runs on every Session event until
    ``close()``, after other widgets' drags have settled.

    Subclasses take their seeds with :meth:`_seeds_or_samples` (None: follow
    ``session.samples``), set their traits, then call ``self._bind(session)``; they decorate
    ``__init__`` with :func:`closes_on_failure`, so a constructor that raises leaves no
    subscription, models or worker thread behind.

    A photo dropped onto the view is inverted in the background and added to
    ``session.samples`` (see the module's docstring): ``invert_settings`` (a dict of
    :func:`~gandissect_widgets.invert.fit_photo` keyword arguments, e.g. ``dict(steps=100)``;
    a constructor argument, or set later; checked by :func:`check_invert_settings`) goes to
    ``session.invert``; ``photo_job`` is the running :class:`~gandissect_widgets.jobs.Job`;
    :meth:`cancel_photo` stops it.
    """

    photo_job = None
    _invert_settings: dict = {}
    _follows_samples = False

    _action = t.Dict().tag(sync=True)
    _lut = t.Bytes(b"").tag(sync=True)
    cmap = t.Unicode("inferno").tag(sync=True)
    opacity = t.Float(0.5).tag(sync=True)
    heat_mode = t.Unicode("highlight").tag(sync=True)
    status = t.Unicode("").tag(sync=True)
    status_kind = t.Unicode("").tag(sync=True)

    _check_opacity = in_range("opacity", low=0, high=1)

    @property
    def invert_settings(self) -> dict:
        """Keyword arguments of :func:`~gandissect_widgets.invert.fit_photo` for dropped photos
        (e.g. ``dict(steps=100, restarts=4)``); setting it checks them."""
        return self._invert_settings

    @invert_settings.setter
    def invert_settings(self, settings) -> None:
        self._invert_settings = check_invert_settings(settings, getattr(self, "session", None))

    def _bind(self, session, invert_settings=None) -> None:
        self.session = session
        self.invert_settings = invert_settings
        self._quiet = False
        self._photo_lock = threading.Lock()
        if self._runner is None:
            self._runner = Latest(on_error=self._show_error)
        if not self._lut:
            self._lut = lut_bytes(self.cmap)
        self._photo_queue: list = []
        self._photo_ids: list[int] = []
        self._photo_swaps: dict[int, int | None] = {}  # preview -> its successor (None: gone)
        self._photo_line = ("", 0)  # the photo being inverted, its progress in %
        self.accept_photos = session.kind == "generator"
        self.on_photo(self._invert_photo)
        self.on_msg(self._on_front_end_msg)
        session.observe(self._on_session_event)

    def _seeds_or_samples(self, seeds, session) -> list[int]:
        """``seeds`` as a list, or (None) the Session's samples, followed when they change."""
        self._follows_samples = seeds is None
        if seeds is None:
            return session.samples
        seeds = session.sources.check(checks.seeds(seeds))
        if not seeds:
            raise ValueError("seeds must not be empty: give seeds, or None to show session.samples")
        return seeds

    def _use_seeds(self, seeds: list[int]) -> None:
        """Show ``seeds`` from now on (called in the worker, before a redraw)."""
        self.seeds = list(seeds)

    # ------------------------------------------------------------ events
    @contextlib.contextmanager
    def _quietly(self):
        """Inside the block, the changes this widget makes to the Session itself do not reach
        its own event handler (the widget redraws once, by itself, after them)."""
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    def _unapply_now(self) -> None:
        """Take the edit this widget put on the Session (``_applied``, for the widgets with an
        Apply button) off it, if it is still there, and redraw. Runs in the worker."""
        applied = getattr(self, "_applied", None)
        if applied is not None and applied in self.session.edits:
            with self._quietly():
                self.session.replace(applied, None)
        self._applied = None
        self._render()

    def _on_session_event(self, event) -> None:
        if not self._quiet:
            self._runner.submit(self._when_settled(self._follow_and_refresh))

    def _follow_and_refresh(self) -> None:
        self._sync_seeds()
        self.refresh()

    def _sync_seeds(self) -> None:
        """In the worker, before a redraw: follow ``session.samples`` (or, with seeds of
        its own, add the photos dropped here)."""
        with self._photo_lock:
            mine, self._photo_ids = self._photo_ids, []
            swaps, self._photo_swaps = self._photo_swaps, {}
        if self._follows_samples:
            seeds = self.session.samples
        else:
            seeds = [*self.seeds, *(i for i in mine if i not in self.seeds)]
            for old, new in swaps.items():  # in the order they came: chains resolve
                seeds = [new if s == old else s for s in seeds if s != old or new is not None]
        if seeds != list(self.seeds):
            self._use_seeds(seeds)

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
        fn = fn or self.refresh
        self._runner.submit(lambda: (self._sync_seeds(), fn()))

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
        except Exception as err:  # noqa: BLE001 - a click never raises into the comm
            self._show_error(err)

    def _on_front_end_msg(self, _widget, content, buffers) -> None:
        try:
            if self.handle_photo_msg(content, buffers):
                return
            canvas = getattr(self, "canvas", None)
            if isinstance(content, dict) and canvas is not None:
                canvas.handle_msg(content)
        except Exception as err:  # noqa: BLE001 - a message never raises into the comm
            self._show_error(err)

    # ------------------------------------------------------------ photos
    def _invert_photo(self, picture, name: str) -> None:
        with self._photo_lock:
            if self.photo_job is not None and self.photo_job.running:
                self._photo_queue.append((picture, name))
                self._show_progress()
                return
            self._start_photo(picture, name)

    def _start_photo(self, picture, name: str) -> None:
        shown: list = [None]  # the preview id standing in for the photo

        def on_preview(_index, pid) -> None:
            with self._photo_lock:
                old, shown[0] = shown[0], pid
                self._swap_photo(old, pid)

        settings = {"progress": False, **self.invert_settings}
        job = self.session.invert(picture, background=True, on_preview=on_preview, **settings)
        self._photo_shown = shown
        self.photo_job = job
        self._photo_line = (name, 0)
        self._show_progress()

        def watch(job) -> None:  # after each step, and once at the end
            if not job.running:
                with self._photo_lock:
                    self._photo_done(job, name)
            elif int(job.progress * 100) != self._photo_line[1]:
                self._photo_line = (name, int(job.progress * 100))
                self._show_progress()

        job.watch(watch)  # a job that already ended calls it from a thread of its own

    def _show_progress(self) -> None:
        name, percent = self._photo_line
        waiting = f" ({len(self._photo_queue)} waiting)" if self._photo_queue else ""
        self._say_photo(f"inverting {name}\u2026 {percent}%{waiting}", "busy")

    def _photo_done(self, job, name: str) -> None:
        """The inversion of ``name`` ended (under the photo lock): add it, start the next."""
        from ..jobs import Cancelled

        preview, self._photo_shown[0] = self._photo_shown[0], None
        try:
            ids = job.result()
        except Cancelled:  # cancel_photo emptied the queue: what waits was dropped since
            self._swap_photo(preview, None)
            self._say_photo(f"inverting {name} was cancelled; nothing was added", "")
        except Exception as err:
            self._swap_photo(preview, None)
            self._photo_queue.clear()
            self._say_photo(failed(name, err), "error")
            return
        else:
            self._swap_photo(preview, ids[0])
            caption = photo_captions(ids)[0]
            self._say_photo(f"{name} added as {caption} (its reconstruction)", "done")
        while self._photo_queue:  # the next one that starts; one that cannot says why
            picture, following = self._photo_queue.pop(0)
            try:
                self._start_photo(picture, following)
                break
            except (ValueError, KeyError, TypeError, OSError) as err:
                self._say_photo(failed(following, err), "error")

    def _swap_photo(self, old, new) -> None:
        """(Under the photo lock.) Show sample ``new`` in place of ``old`` (a preview; None:
        append ``new``; ``new`` None: remove ``old``), here and in ``session.samples``; once
        closed, only take the preview away."""
        if old is None and new is None:
            return
        if self._runner.closed:
            if old is not None:
                self.session.replace_sample(old, None)
            return
        if old is None:
            self._photo_ids.append(new)  # shown here even with seeds of its own
        else:
            self._photo_swaps[old] = new
        self.session.replace_sample(old, new)

    def cancel_photo(self) -> None:
        """Stop inverting dropped photos (the running one and those waiting)."""
        with self._photo_lock:
            self._photo_queue.clear()
            if self.photo_job is not None and self.photo_job.running:
                self.photo_job.cancel()
                self._say_photo("cancelling\u2026", "busy")

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
    def set_state(self, sync_data) -> None:
        """State from the page; a value the widget refuses (rank 0, a unit out of range) is
        said in the status, and the page gets the value kept, instead of a silent change."""
        try:
            super().set_state(sync_data)
        except InvalidValue as err:
            self._say(f"{err}; kept the previous value", "error")
            self.send_state([k for k in sync_data if k in self.keys])

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
        if getattr(self, "_photo_lock", None) is not None:
            self.cancel_photo()
        super().close()


# what invert_photos sets itself: its bar and the Job's steps and cancel
_NOT_SETTINGS = ("progress", "cancel", "preview")


def check_invert_settings(settings, session=None) -> dict:
    """``settings`` (a dict of :func:`~gandissect_widgets.invert.fit_photo` keyword arguments;
    None: {}) as a new dict; ValueError naming the valid keys, or (with ``session``) the valid
    layers. The other values are checked by ``fit_photo`` when a photo arrives.

    >>> check_invert_settings(dict(steps=10, restarts=1))
    {'steps': 10, 'restarts': 1}
    >>> check_invert_settings(dict(step=10))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: invert_settings has an unknown key 'step'; valid keys: layer, steps, ...
    """
    from ..invert import fit_photo

    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise TypeError(
            "invert_settings must be a dict of fit_photo keyword arguments, e.g. "
            f"dict(steps=100); got {type(settings).__name__}"
        )
    valid = [
        name
        for name, p in inspect.signature(fit_photo).parameters.items()
        if p.kind is p.KEYWORD_ONLY and name not in _NOT_SETTINGS
    ]
    unknown = [key for key in settings if key not in valid]
    if unknown:
        keys = ", ".join(repr(k) for k in unknown)
        raise ValueError(
            f"invert_settings has an unknown key{'s' if len(unknown) > 1 else ''} {keys}; "
            f"valid keys: {', '.join(valid)}"
        )
    settings = dict(settings)
    if session is not None and "layer" in settings:
        settings["layer"] = session.check_layer(settings["layer"])
    return settings


def sample_name(seed, short: bool = False) -> str:
    """How a person reads a sample id: "photo k" for a dropped photo, else "sample #s"
    ("#s" with ``short``); a photo's id itself is a large number nobody should see.

    >>> sample_name(3), sample_name(3, short=True), sample_name(PHOTO_BASE + 1)
    ('sample #3', '#3', 'photo 1')
    """
    seed = int(seed)
    if seed >= PHOTO_BASE:
        return f"photo {seed - PHOTO_BASE}"
    return f"#{seed}" if short else f"sample #{seed}"


def photo_captions(seeds) -> list[str]:
    """Captions "photo k" for the photo ids among ``seeds`` ("preview" for a photo still being
    inverted), "" for the others; [] if none.

    >>> photo_captions([3, PHOTO_BASE + 1, PREVIEW_BASE + 5])
    ['', 'photo 1', 'preview']
    """
    seeds = [int(s) for s in seeds]
    if all(s < PHOTO_BASE for s in seeds):
        return []
    return [
        "preview" if s >= PREVIEW_BASE else f"photo {s - PHOTO_BASE}" if s >= PHOTO_BASE else ""
        for s in seeds
    ]


def parse_units(text: str, count: int) -> list[int]:
    """'3, 7, 12-15' -> [3, 7, 12, 13, 14, 15]; commas, semicolons or spaces separate units.
    ValueError naming the valid range.

    >>> parse_units("1, 4-6", 10), parse_units("3 7  2 - 4", 10)
    ([1, 4, 5, 6], [3, 7, 2, 4])
    """
    units: list[int] = []
    text = re.sub(r"\s*-\s*", "-", text.strip())
    for part in re.split(r"[,;\s]+", text):
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
