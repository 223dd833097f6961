"""Run statistic passes as shards on any ``concurrent.futures.Executor`` and merge them.

Seeds split into shards fixed by the sample set and a shard size (:func:`passes.shards`); each
shard runs :func:`passes.first_pass` / :func:`passes.second_pass`, the same code the in-process
path runs, anywhere: a local ``ProcessPoolExecutor``, or a Dask cluster through
``Client.get_executor()`` (Ray: ``ray.util.multiprocessing.Pool`` or any executor adaptor works
the same).  Shards merge here in a fixed tree order, so the result is the same bits however
many workers ran them.  Workers rebuild the Session from its ``recipe`` (a small picklable
callable, e.g. a zoo name) plus the State's edits; the model itself is never pickled.

Not run in the tests (it starts a Dask cluster; tests/test_distributed.py runs small ones):

>>> from dask.distributed import Client, LocalCluster             # doctest: +SKIP
>>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))  # doctest: +SKIP
>>> session.dissect("layer4", n=10_000, executor=client.get_executor())  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import pickle
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from functools import partial

import torch

from . import passes, stats
from .edits import State

__all__ = ["run_shards", "shard_seeds", "is_lost_worker", "LOST_WORKER"]

_SESSIONS: dict[str, object] = {}  # per worker process: recipe digest -> Session
RETRIES = 3
# Errors that mean the worker (not the shard's code) is gone, by class name so that Dask stays
# optional: concurrent.futures' process pool, Dask's scheduler and its comms.
LOST_WORKER = frozenset({"BrokenProcessPool", "KilledWorker", "CommClosedError"})


def shard_seeds(seeds: list[int], shard_size: int) -> list[list[int]]:
    """Split ``seeds`` into consecutive shards of at most ``shard_size``."""
    return passes.batches(seeds, shard_size)


def is_lost_worker(err: BaseException) -> bool:
    """Whether ``err`` says a worker was lost (see :data:`LOST_WORKER`), not that the work
    itself failed."""
    return any(cls.__name__ in LOST_WORKER for cls in type(err).__mro__)


def _worker_session(recipe, edits):
    """(the Session for ``recipe`` in this process, built once; the State of ``edits`` on it).

    The Session's own stack is never touched, so shards may share it from several threads.
    """
    key = hashlib.sha256(pickle.dumps(recipe)).hexdigest()
    session = _SESSIONS.get(key)
    if session is None:
        session = _SESSIONS.setdefault(key, recipe())
    state = State()
    for edit in edits:
        state = state.plus(session.check_edit(edit, state))
    return session, state


def first_pass_shard(shard, *, recipe, edits, layer, batch_size, k, levels):
    """Worker side of dissection pass 1 on ``shard`` = (index, seeds): the state dicts of its
    threshold statistic, top-k and moments."""
    torch.set_num_threads(1)
    session, state = _worker_session(recipe, edits)
    index, seeds = shard
    parts, _, _ = passes.first_pass(session, state, layer, index, seeds, batch_size, k, levels)
    return tuple(p.state_dict() for p in parts)


def second_pass_shard(shard, *, recipe, edits, layer, batch_size, thresholds):
    """Worker side of dissection pass 2 on ``shard`` = (index, seeds): the IoU counts' state
    dict."""
    torch.set_num_threads(1)
    session, state = _worker_session(recipe, edits)
    concepts, segment = passes.concept_source(session)
    iou = passes.second_pass(
        session, state, layer, shard[1], batch_size, thresholds, segment, len(concepts)
    )
    return iou.state_dict()


def run_shards(executor: Executor, fn, shards: list, step=None, retries: int = RETRIES) -> list:
    """``[fn(shard) for shard in shards]`` on ``executor``, in shard order.

    A shard whose worker was lost (:func:`is_lost_worker`) is submitted again, up to
    ``retries`` times; only one finished result per shard is kept, so nothing is lost and
    nothing is counted twice.  Any other error comes from the shard's own code and would
    happen again: it is raised at once and the shards not yet started are cancelled.  When the
    executor cannot take work any more (a ``ProcessPoolExecutor`` whose process died is broken
    for good), a RuntimeError says so, chained to the lost-worker error.
    """
    results: list = [None] * len(shards)
    tries = [0] * len(shards)
    pending: dict[Future, int] = {executor.submit(fn, s): i for i, s in enumerate(shards)}
    try:
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in done:
                i = pending.pop(future)
                err = future.exception()
                if err is None:
                    results[i] = future.result()
                    if step is not None:
                        step()
                    continue
                if not is_lost_worker(err) or tries[i] >= retries:
                    raise err
                tries[i] += 1
                try:
                    pending[executor.submit(fn, shards[i])] = i
                except Exception as again:
                    raise RuntimeError(
                        f"shard {i} lost its worker and {type(executor).__name__} cannot run it "
                        f"again ({type(again).__name__}: {again}); start a new executor and run "
                        "the job again"
                    ) from err
    finally:
        for future in pending:
            future.cancel()
    return results


def dissect_sharded(session, state, layer, seeds, bs, levels, concepts, k, executor, size, step):
    """Both dissection passes at ``state``, sharded over ``executor`` and merged here:
    (threshold statistic, top-k, moments, IoU counts, thresholds)."""
    recipe = session.recipe
    if recipe is None:
        raise ValueError(
            "an executor needs a Session that workers can rebuild: make it with "
            "Session.from_zoo(...) or set session.recipe to a picklable callable returning it"
        )
    parts = passes.shards(seeds, size)
    common = dict(recipe=recipe, edits=list(state.edits), layer=layer, batch_size=bs)
    first = run_shards(
        executor, partial(first_pass_shard, k=k, levels=levels, **common), parts, step
    )
    kinds = (levels.kind, stats.TopK, stats.Moments)
    level, top, mom = passes.merge_first(
        [tuple(kind.__new__(kind).load_state_dict(s) for kind, s in zip(kinds, f)) for f in first]
    )
    thresholds = levels.thresholds(level)
    second = run_shards(
        executor, partial(second_pass_shard, thresholds=thresholds, **common), parts, step
    )
    iou = stats.merge_tree([stats.IoU.__new__(stats.IoU).load_state_dict(s) for s in second])
    return level, top, mom, iou, thresholds
