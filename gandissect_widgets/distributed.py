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

from . import stats

__all__ = ["run_shards", "shard_seeds"]

_SESSIONS: dict[str, object] = {}  # per worker process: recipe digest -> Session
RETRIES = 3


def shard_seeds(seeds: list[int], shard_size: int) -> list[list[int]]:
    """Split ``seeds`` into consecutive shards of at most ``shard_size``."""
    return [seeds[i : i + shard_size] for i in range(0, len(seeds), shard_size)]


def _worker_session(recipe, edits):
    """The Session for ``recipe`` in this process (built once), with exactly ``edits`` active."""
    key = hashlib.sha256(pickle.dumps(recipe)).hexdigest()
    session = _SESSIONS.get(key)
    if session is None:
        session = _SESSIONS[key] = recipe()
    session.reset()
    for edit in edits:
        session.push(edit)
    return session


def first_pass_shard(seeds, *, recipe, edits, layer, batch_size, k):
    """Worker side of dissection pass 1: state dicts of the quantile sketch, top-k, moments."""
    from .dissect import _first_pass

    torch.set_num_threads(1)
    session = _worker_session(recipe, edits)
    (q, top, mom), _, _ = _first_pass(session, layer, seeds, batch_size, k, seed=seeds[0])
    return q.state_dict(), top.state_dict(), mom.state_dict()


def second_pass_shard(seeds, *, recipe, edits, layer, batch_size, thresholds):
    """Worker side of dissection pass 2: the IoU counts' state dict."""
    from .dissect import _second_pass, _segmenter_of

    torch.set_num_threads(1)
    session = _worker_session(recipe, edits)
    concepts, segment = _segmenter_of(session, None)
    iou = _second_pass(session, layer, seeds, batch_size, thresholds, segment, len(concepts))
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
    session, layer, seeds, bs, quantile, concepts, k, executor, shard_size, step=None
):
    """Dissection with both passes sharded over ``executor``; merged on the caller's side."""
    from .dissect import _result

    recipe = session.recipe
    if recipe is None:
        raise ValueError(
            "an executor needs a Session that workers can rebuild: make it with "
            "Session.from_zoo(...) or set session.recipe to a picklable callable returning it"
        )
    edits = list(session.edits)
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
    return _result(layer, concepts, seeds, quantile, q, top, mom, iou, thresholds)
