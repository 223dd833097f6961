"""Long work in a background thread, with progress, cancel and a result.

>>> job = Job(lambda job: sum(job.step() or i for i in range(3)), total=3)
>>> job.result()
3
>>> job.progress
1.0
"""

from __future__ import annotations

import atexit
import contextlib
import sys
import threading
import time
import weakref
from collections.abc import Callable

__all__ = ["Job", "Cancelled", "progress_bar", "one_torch_thread", "one_thread"]


def one_thread(get: Callable[[], int], put: Callable[[int], object]):
    """A context manager (and decorator) that sets a thread count to 1 (``put(1)``) for its
    block and restores the count read by ``get()`` once the last of the blocks overlapping
    in several threads ends: each thread that starts a block finds the count already at 1,
    so restoring what it found would leave it there.

    >>> counts = [4]
    >>> block = one_thread(lambda: counts[0], lambda n: counts.__setitem__(0, n))
    >>> with block():
    ...     with block():
    ...         inside = counts[0]
    >>> inside, counts[0]
    (1, 4)
    """
    lock, users = threading.Lock(), [0, None]  # blocks running, the count to restore after

    @contextlib.contextmanager
    def block():
        with lock:
            if users[0] == 0:
                users[1] = get()
            users[0] += 1
            put(1)
        try:
            yield
        finally:
            with lock:
                users[0] -= 1
                if users[0] == 0:
                    put(users[1])

    return block


def _torch_threads(n: int | None = None):
    import torch

    return torch.get_num_threads() if n is None else torch.set_num_threads(n)


_one_torch_block = one_thread(_torch_threads, _torch_threads)


@contextlib.contextmanager
def one_torch_thread():
    """Run a block (or, as a decorator, a function) on one torch thread, then restore the count.

    For loops of many small tensor operations (an optimisation on one picture): there, two
    threads hand work over at every operation, and while another process keeps one of two
    cores busy each hand-over waits for the scheduler (a photo fit: 5.7 s on one thread,
    about 200 s on two). Blocks overlapping in several threads restore the count once the
    last one ends.

    >>> import torch
    >>> with one_torch_thread():
    ...     torch.get_num_threads()
    1
    """
    with _one_torch_block():
        yield


def progress_bar(total: int | None, desc: str, enabled: bool = True, unit: str = "it"):
    """A tqdm bar for a loop that leaves nothing behind once closed. In a notebook the bar's
    output is emptied when it closes, so a saved or exported page shows no bar frozen at the
    state it was displayed in ("0%"); in a terminal its line is cleared. Use it in ``with``
    or call ``close()``.

    >>> with progress_bar(3, "demo", enabled=False) as bar:
    ...     bar.update(3)
    """
    from tqdm.auto import tqdm
    from tqdm.notebook import tqdm as notebook_tqdm

    if not (enabled and issubclass(tqdm, notebook_tqdm)):
        return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=not enabled)
    from IPython.display import display

    bar = notebook_tqdm(total=total, desc=desc, unit=unit, leave=False, display=False)
    handle = display(bar.container, display_id=True)
    close = bar.close

    def close_and_empty():
        close()
        handle.update({"text/plain": ""}, raw=True)

    bar.close = close_and_empty
    return bar


_running: weakref.WeakSet[Job] = weakref.WeakSet()
_exiting = threading.Event()  # set at exit: jobs started from then on start cancelled


@atexit.register
def _cancel_running_jobs(timeout: float = 10.0) -> None:
    """At exit, cancel the jobs still running and wait for them to stop, within ``timeout`` s
    in all: a job's thread still inside torch while Python shuts down would abort the process.
    A job that ends may start another (a widget's next queued photo): that one starts
    cancelled, and is waited for too."""
    _exiting.set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = [job for job in list(_running) if job.running]
        if not jobs:
            return
        for job in jobs:
            job.cancel()
        for job in jobs:
            job._thread.join(max(0.0, deadline - time.monotonic()))


class Cancelled(Exception):
    """The job was cancelled before it finished."""


class Job:
    """Run ``work(job)`` in a daemon thread. ``work`` calls ``job.step()`` once per unit of
    work (a batch): that advances ``progress`` and raises :class:`Cancelled` after ``cancel()``,
    so cancelling takes effect within one batch.
    """

    def __init__(self, work: Callable[[Job], object], total: int | None = None, name: str = "job"):
        self.name = name
        self.total = total
        self.done = 0
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._result = None
        self._error: BaseException | None = None
        self._watchers: list[Callable[[Job], None]] = []
        self._watch_lock = threading.Lock()  # an ending job and a new watcher: one call, not two
        self._thread = threading.Thread(target=self._main, args=(work,), daemon=True, name=name)
        if _exiting.is_set():
            self._cancel.set()
        _running.add(self)
        self._thread.start()

    def _main(self, work):
        try:
            self._result = work(self)
        except BaseException as err:  # handed to result()
            self._error = err
        finally:
            with self._watch_lock:
                self._finished.set()
                watchers = list(self._watchers)
            for cb in watchers:  # each sees the end, whatever the one before it raised
                try:
                    cb(self)
                except Exception:  # noqa: BLE001 - reported like an error in a thread
                    threading.excepthook(threading.ExceptHookArgs((*sys.exc_info(), self._thread)))

    def step(self, n: int = 1) -> None:
        """Count ``n`` units of work done; raises :class:`Cancelled` once cancel was asked."""
        if self._cancel.is_set():
            raise Cancelled(f"{self.name} was cancelled")
        self.done += n
        self._notify()

    def _notify(self):
        for cb in list(self._watchers):
            cb(self)

    def watch(self, callback: Callable[[Job], None]) -> None:
        """Call ``callback(job)`` after every later step and once when the job ends, from the
        job's thread; a job that has already ended calls it once from a new thread. So every
        watcher sees the end exactly once, and never in the caller's thread (which may hold a
        lock the callback takes).

        >>> job = Job(lambda job: 42)
        >>> job.result()
        42
        >>> seen = threading.Event()
        >>> job.watch(lambda j: seen.set())
        >>> seen.wait(5)
        True
        """
        with self._watch_lock:
            if not self._finished.is_set():
                self._watchers.append(callback)
                return
        threading.Thread(target=callback, args=(self,), daemon=True, name=self.name).start()

    @property
    def progress(self) -> float:
        """Share of the work done, in [0, 1] (1.0 once finished successfully)."""
        if self._finished.is_set() and self._error is None:
            return 1.0
        return min(self.done / self.total, 1.0) if self.total else 0.0

    @property
    def running(self) -> bool:
        return not self._finished.is_set()

    @property
    def cancelled(self) -> bool:
        return isinstance(self._error, Cancelled)

    def cancel(self) -> None:
        """Ask the work to stop at its next step."""
        self._cancel.set()

    def result(self, timeout: float | None = None):
        """Wait for the work and return its value; re-raises its error (Cancelled included)."""
        if not self._finished.wait(timeout):
            raise TimeoutError(f"{self.name} still running after {timeout} s")
        if self._error is not None:
            raise self._error
        return self._result

    def __repr__(self):
        state = "running" if self.running else ("cancelled" if self.cancelled else "done")
        return f"<Job {self.name}: {state}, {self.progress:.0%}>"
