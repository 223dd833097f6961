"""Run renders in one worker thread where only the newest request matters.

A slider dragged quickly asks for many renders; while one runs, later requests replace each
other, so the worker never renders a stale value. The worker thread lives as long as the
runner, so torch keeps its thread pool warm between renders.

>>> runner = Latest()
>>> runner.submit(lambda: None); runner.wait()
True
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable


class Latest:
    """Coalescing background runner: ``submit(fn)`` runs ``fn`` soon; pending ones are dropped."""

    def __init__(self, on_error: Callable[[BaseException], None] | None = None):
        self._pending: Callable | None = None
        self._cond = threading.Condition()
        self._busy = False
        self._on_error = on_error
        self.skipped = 0
        worker = threading.Thread(target=_serve, args=(weakref.ref(self), self._cond), daemon=True)
        worker.start()

    def submit(self, fn: Callable[[], object]) -> None:
        with self._cond:
            if self._pending is not None:
                self.skipped += 1
            self._pending = fn
            self._busy = True
            self._cond.notify_all()

    def _next(self) -> Callable | None:
        """The newest request, or None (and idle) when there is none. Caller holds the lock."""
        fn, self._pending = self._pending, None
        if fn is None:
            self._busy = False
            self._cond.notify_all()
        return fn

    def wait(self, timeout: float | None = 30) -> bool:
        """Block until nothing is pending or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy, timeout)


def _serve(ref, cond: threading.Condition) -> None:
    """The worker: runs requests as they come; ends once its runner is garbage."""
    while True:
        with cond:
            runner = ref()
            if runner is None:
                return
            fn = runner._next()
            if fn is None:
                del runner
                cond.wait(1.0)
                continue
        try:
            fn()
        except BaseException as err:  # reported, the worker lives on
            if runner._on_error is not None:
                runner._on_error(err)
        del runner, fn
