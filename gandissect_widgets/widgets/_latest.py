"""Run renders in one worker thread where only the newest request matters.

A slider dragged quickly asks for many renders; while one runs, later requests replace each
other, so the worker never renders a stale value.

>>> runner = Latest()
>>> runner.submit(lambda: None); runner.wait()
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Latest:
    """Coalescing background runner: ``submit(fn)`` runs ``fn`` soon; pending ones are dropped."""

    def __init__(self, on_error: Callable[[BaseException], None] | None = None):
        self._pending: Callable | None = None
        self._cond = threading.Condition()
        self._busy = False
        self._on_error = on_error
        self.skipped = 0

    def submit(self, fn: Callable[[], object]) -> None:
        with self._cond:
            if self._pending is not None:
                self.skipped += 1
            self._pending = fn
            if not self._busy:
                self._busy = True
                threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            with self._cond:
                fn, self._pending = self._pending, None
                if fn is None:
                    self._busy = False
                    self._cond.notify_all()
                    return
            try:
                fn()
            except BaseException as err:  # reported, the worker lives on
                if self._on_error is not None:
                    self._on_error(err)

    def wait(self, timeout: float | None = 30) -> bool:
        """Block until nothing is pending or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy, timeout)
