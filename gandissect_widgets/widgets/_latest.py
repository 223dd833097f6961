"""Run renders in one worker thread where only the newest request matters.

A slider dragged quickly asks for many renders; while one runs, later requests replace each
other, so the worker never renders a stale value. The worker thread lives until ``close()`` (or
until the runner is garbage), so torch keeps its thread pool warm between renders.

After ``close()``, ``submit`` runs nothing and returns False: late requests to a closed
widget (a Session event already under way, a control set from code) are dropped, not errors.
When the interpreter exits, every runner still open is closed first: a render still inside
torch while Python shuts down would abort the process.

>>> runner = Latest()
>>> runner.submit(lambda: None), runner.wait()
(True, True)
>>> runner.close(), runner.submit(lambda: None)
(True, False)
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections.abc import Callable

_open: weakref.WeakSet[Latest] = weakref.WeakSet()  # closed at exit


class Latest:
    """Coalescing background runner: ``submit(fn)`` runs ``fn`` soon; pending ones are dropped."""

    def __init__(self, on_error: Callable[[BaseException], None] | None = None):
        self._pending: Callable | None = None
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._on_error = on_error
        self.skipped = 0
        self._worker = threading.Thread(
            target=_serve, args=(weakref.ref(self), self._cond), name="gw-latest", daemon=True
        )
        self._worker.start()
        _open.add(self)

    def submit(self, fn: Callable[[], object]) -> bool:
        """Run ``fn`` soon in the worker, replacing a pending request; False once closed."""
        with self._cond:
            if self._closed:
                return False
            if self._pending is not None:
                self.skipped += 1
            self._pending = fn
            self._busy = True
            self._cond.notify_all()
            return True

    @property
    def pending(self) -> bool:
        """True when a newer request waits (a running one may then skip its work)."""
        return self._pending is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: float = 2.0) -> bool:
        """Drop the pending request and end the worker, waiting up to ``timeout`` s for a
        running one to finish; True once the worker has ended. Closing twice is harmless."""
        with self._cond:
            self._closed = True
            self._pending = None
            self._cond.notify_all()
        if self._worker is threading.current_thread():  # closed from inside a request
            return False
        self._worker.join(timeout)
        return not self._worker.is_alive()

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


@atexit.register
def _close_open_runners(timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout  # one wait for all of them
    for runner in list(_open):
        runner.close(max(0.0, deadline - time.monotonic()))


def _serve(ref, cond: threading.Condition) -> None:
    """The worker: runs requests as they come; ends once its runner is closed or garbage."""
    while True:
        with cond:
            runner = ref()
            if runner is None:
                return
            fn = runner._next()
            if fn is None:
                if runner._closed:
                    return
                del runner
                cond.wait(1.0)
                continue
        try:
            fn()
        except BaseException as err:  # reported, the worker lives on
            if runner._on_error is not None:
                runner._on_error(err)
        del runner, fn
