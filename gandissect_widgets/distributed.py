"""Run statistic passes as shards on any ``concurrent.futures.Executor`` and merge them.

Because every statistic merges exactly (stats.py), seeds split into shards that run anywhere:
a local ``ProcessPoolExecutor``, or a Dask cluster through ``Client.get_executor()``
(Ray: ``ray.util.multiprocessing.Pool`` or any executor adaptor works the same). Workers
rebuild the Session from its ``recipe`` (a small picklable callable, e.g. a zoo name) plus the
active edits; the model itself is never pickled.

>>> from dask.distributed import Client, LocalCluster             # doctest: +SKIP
>>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))  # doctest: +SKIP
>>> session.dissect("layer4", n=10_000, executor=client.get_executor())  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import pickle
from concurrent.futures import Executor, Future
from functools import partial

import torch

from . import passes, stats
from .edits import State

__all__ = ["run_shards", "shard_seeds"]

_SESSIONS: dict[str, object] = {}  # per worker process: recipe digest -> Session
RETRIES = 3


def shard_seeds(seeds: list[int], shard_size: int) -> list[list[int]]:
    """Split ``seeds`` into consecutive shards of at most ``shard_size``."""
    return [seeds[i : i + shard_size] for i in range(0, len(seeds), shard_size)]


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


def first_pass_shard(seeds, *, recipe, edits, layer, batch_size, k):
    """Worker side of dissection pass 1: state dicts of the quantile sketch, top-k, moments."""
    torch.set_num_threads(1)
    session, state = _worker_session(recipe, edits)
    (q, top, mom), _, _ = passes.first_pass(
        session, state, layer, seeds, batch_size, k, seed=seeds[0]
    )
    return q.state_dict(), top.state_dict(), mom.state_dict()


def second_pass_shard(seeds, *, recipe, edits, layer, batch_size, thresholds):
    """Worker side of dissection pass 2: the IoU counts' state dict."""
    torch.set_num_threads(1)
    session, state = _worker_session(recipe, edits)
    concepts, segment = passes.concept_source(session)
    iou = passes.second_pass(
        session, state, layer, seeds, batch_size, thresholds, segment, len(concepts)
    )
    return iou.state_dict()


def run_shards(executor: Executor, fn, shards: list, step=None, retries: int = RETRIES) -> list:
    """``[fn(shard) for shard in shards]`` on ``executor``, in shard order.

    A shard whose worker died is resubmitted, up to ``retries`` times; only one finished
    result per shard is kept, so nothing is lost and nothing is counted twice. Errors in the
    request itself (ValueError, TypeError, KeyError) are raised at once.
    """
    results: list = [None] * len(shards)
    tries = [0] * len(shards)
    pending: dict[int, Future] = {i: executor.submit(fn, s) for i, s in enumerate(shards)}
    while pending:
        for i, future in list(pending.items()):
            try:
                results[i] = future.result()
            except (ValueError, TypeError, KeyError):
                raise
            except Exception:
                if tries[i] >= retries:
                    raise
                tries[i] += 1
                pending[i] = executor.submit(fn, shards[i])
                continue
            del pending[i]
            if step is not None:
                step()
    return results


def dissect_sharded(
    session, state, layer, seeds, bs, quantile, concepts, k, executor, shard_size, step=None
):
    """Both dissection passes at ``state``, sharded over ``executor`` and merged here:
    (quantile sketch, top-k, moments, IoU counts, thresholds)."""
    recipe = session.recipe
    if recipe is None:
        raise ValueError(
            "an executor needs a Session that workers can rebuild: make it with "
            "Session.from_zoo(...) or set session.recipe to a picklable callable returning it"
        )
    edits = list(state.edits)
    shards = shard_seeds(seeds, shard_size)
    common = dict(recipe=recipe, edits=edits, layer=layer, batch_size=bs)
    first = run_shards(executor, partial(first_pass_shard, k=k, **common), shards, step)
    q, top, mom = stats.Quantile(), stats.TopK(k=k), stats.Moments()
    for qs, ts, ms in first:
        q.merge(stats.Quantile().load_state_dict(qs))
        top.merge(stats.TopK(k=k).load_state_dict(ts))
        mom.merge(stats.Moments().load_state_dict(ms))
    thresholds = q.quantile(quantile).float()
    second = run_shards(
        executor, partial(second_pass_shard, thresholds=thresholds, **common), shards, step
    )
    iou = stats.IoU(thresholds, len(concepts))
    for state in second:
        iou.merge(stats.IoU(thresholds, len(concepts)).load_state_dict(state))
    return q, top, mom, iou, thresholds
