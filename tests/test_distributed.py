"""Sharded dissection on real executors equals one pass; a killed worker loses nothing."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import pytest
import shard_recipes
import torch

TESTS = str(Path(__file__).parent)


@pytest.fixture(scope="module", autouse=True)
def _workers_find_recipes():
    """Worker processes import the recipes module from this folder."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (TESTS, str(Path(TESTS).parent), old) if p
    )
    yield
    if old is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = old


def _single(recipe, n, edits=()):
    s = recipe()
    for e in edits:
        s.push(e)
    return s.dissect("layer2", n=n, batch_size=4, cache=False, progress=False)


def _assert_same(a, b):
    torch.testing.assert_close(a.thresholds, b.thresholds)  # few values: the sketch is exact
    assert torch.equal(a.iou, b.iou)
    assert torch.equal(a.top_seeds, b.top_seeds) and torch.equal(a.top_values, b.top_values)
    torch.testing.assert_close(a.mean, b.mean)


def test_process_pool_equals_single_pass():
    s = shard_recipes.tiny_session()
    s.recipe = shard_recipes.tiny_session
    edit = s.ablate("layer1", [0, 3])
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        sharded = s.dissect("layer2", n=48, batch_size=4, cache=False, executor=pool, shard_size=12)
    _assert_same(sharded, _single(shard_recipes.tiny_session, 48, [edit]))


class FlakyExecutor:
    """Runs calls inline; the first try of chosen shards dies as a lost worker would."""

    def __init__(self, die_on):
        self.die_on, self.calls = set(die_on), []

    def submit(self, fn, shard):
        f = Future()
        self.calls.append(shard[0])
        if shard[0] in self.die_on:
            self.die_on.discard(shard[0])
            f.set_exception(RuntimeError("worker lost"))
        else:
            f.set_result(fn(shard))
        return f


def test_failed_shard_is_retried_once_and_counted_once():
    s = shard_recipes.tiny_session()
    s.recipe = shard_recipes.tiny_session
    flaky = FlakyExecutor(die_on=[8, 24])
    d = s.dissect("layer2", n=32, batch_size=4, cache=False, executor=flaky, shard_size=8)
    # shard 8 ran twice in pass 1 (once lost), once in pass 2; shard 0 once per pass
    assert flaky.calls.count(8) == 3 and flaky.calls.count(0) == 2
    _assert_same(d, _single(shard_recipes.tiny_session, 32))


def test_request_errors_are_not_retried():
    s = shard_recipes.tiny_session()
    with pytest.raises(ValueError, match="recipe"):
        s.dissect("layer2", n=8, cache=False, executor=FlakyExecutor([]))


def test_dask_cluster_with_a_killed_worker():
    distributed_mod = pytest.importorskip(
        "distributed", reason="dask[distributed] is an optional extra"
    )
    cluster = distributed_mod.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    )
    client = distributed_mod.Client(cluster)
    try:
        s = shard_recipes.slow_tiny_session()
        s.recipe = shard_recipes.slow_tiny_session
        job = s.dissect(
            "layer2",
            n=48,
            batch_size=4,
            cache=False,
            executor=client.get_executor(),
            shard_size=8,
            background=True,
        )
        deadline = time.time() + 60
        while time.time() < deadline and not any(client.processing().values()):
            time.sleep(0.05)
        time.sleep(0.6)  # well inside a shard (each takes about 0.3 s per forward pass)
        busy = [w for w, tasks in client.processing().items() if tasks]
        pids = client.run(os.getpid)
        os.kill(pids[busy[0]], signal.SIGKILL)
        d = job.result(120)
    finally:
        client.close()
        cluster.close()
    _assert_same(d, _single(shard_recipes.slow_tiny_session, 48))
