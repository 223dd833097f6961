"""Sharded dissection: in-process, process pools and Dask give the same bits; lost workers are
retried, errors of the shard's own code are not; a killed worker loses nothing."""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
import shard_recipes
import torch

from gandissect_widgets import distributed

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


@pytest.fixture(scope="module")
def pools():
    """Spawned process pools of 1 and 2 workers."""
    ctx = multiprocessing.get_context("spawn")
    made = {n: ProcessPoolExecutor(n, mp_context=ctx) for n in (1, 2)}
    yield made
    for pool in made.values():
        pool.shutdown(cancel_futures=True)


@pytest.fixture(scope="module")
def dask_client():
    """A Dask LocalCluster of 2 single-threaded worker processes."""
    dd = pytest.importorskip("distributed", reason="dask[distributed] is an optional extra")
    cluster = dd.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    )
    client = dd.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _session(recipe=shard_recipes.tiny_session, edits=()):
    s = recipe()
    s.recipe = recipe
    for e in edits:
        s.push(e)
    return s


def _table(d):
    return {
        "labels": d.labels,
        "iou": d.iou,
        "thresholds": d.thresholds,
        "top_seeds": d.top_seeds,
        "top_values": d.top_values,
        "mean": d.mean,
        "method": d.threshold_method,
        "rank_error": d.rank_error,
    }


def _assert_identical(a, b):
    ta, tb = _table(a), _table(b)
    for key, value in ta.items():
        if isinstance(value, torch.Tensor):
            assert value.dtype == tb[key].dtype and torch.equal(value, tb[key]), key
        else:
            assert value == tb[key], key


@pytest.mark.parametrize("exact_mb", [256, 0], ids=["exact", "sketch"])
def test_same_bits_in_process_on_1_and_2_workers_and_dask(pools, dask_client, exact_mb):
    edit = _session().ablation("layer1", [0, 3])
    s = _session(edits=[edit])
    # layer3: 8 units at 16x16, 24 samples per shard = 6144 values, beyond the sketch's
    # capacity (4096): the sketch compacts inside every shard and again when shards merge
    run = functools.partial(
        s.dissect,
        "layer3",
        n=96,
        batch_size=8,
        shard_size=24,
        cache=False,
        progress=False,
        exact_mb=exact_mb,
    )
    here = run()
    assert here.threshold_method == ("exact" if exact_mb else "sketch")
    assert (here.rank_error > 0) == (not exact_mb)
    executors = {"1 worker": pools[1], "2 workers": pools[2], "dask": dask_client.get_executor()}
    for name, executor in executors.items():
        _assert_identical(here, run(executor=executor)), name
    # the same sample set cut into other shards is still the same dissection (exactly so when
    # the thresholds are exact; within the sketch's error otherwise)
    other = run(shard_size=40)
    assert other.labels == here.labels or not exact_mb
    if exact_mb:
        assert torch.equal(other.thresholds, here.thresholds)
        assert torch.equal(other.iou, here.iou)


class FlakyExecutor:
    """Runs calls inline; the first try of chosen shards (by index) fails with ``error``."""

    def __init__(self, fail_on=(), error=None):
        self.fail_on, self.error, self.calls = set(fail_on), error, []

    def submit(self, fn, shard):
        f = Future()
        index = shard[0]
        self.calls.append(index)
        if index in self.fail_on:
            self.fail_on.discard(index)
            f.set_exception(self.error)
        else:
            try:
                f.set_result(fn(shard))
            except Exception as err:
                f.set_exception(err)
        return f


class KilledWorker(Exception):
    """Stands for distributed.scheduler.KilledWorker: recognised by its class name."""


class CommClosedError(OSError):
    """Stands for distributed.comm.core.CommClosedError."""


@pytest.mark.parametrize(
    "error",
    [BrokenProcessPool("a child process terminated abruptly"), KilledWorker(), CommClosedError()],
    ids=lambda e: type(e).__name__,
)
def test_lost_worker_shard_is_retried_once_and_counted_once(error):
    s = _session()
    flaky = FlakyExecutor(fail_on=[1, 3], error=error)
    d = s.dissect("layer2", n=32, batch_size=4, cache=False, executor=flaky, shard_size=8)
    # 4 shards; shards 1 and 3 ran twice in pass 1 (once lost), once in pass 2
    assert sorted(flaky.calls) == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    _assert_identical(
        d, _session().dissect("layer2", n=32, batch_size=4, shard_size=8, cache=False)
    )


def test_shard_code_errors_are_raised_at_once_not_retried(pools):
    s = shard_recipes.failing_session()
    s.recipe = shard_recipes.failing_session
    inline = FlakyExecutor()
    with pytest.raises(RuntimeError, match="bug in the model"):
        s.dissect("layer2", n=32, batch_size=4, cache=False, executor=inline, shard_size=8)
    assert inline.calls == [0, 1, 2, 3]  # each shard submitted once; none again

    class Counting:
        def __init__(self, pool):
            self.pool, self.calls = pool, []

        def submit(self, fn, shard):
            self.calls.append(shard[0])
            return self.pool.submit(fn, shard)

    counting = Counting(pools[2])
    with pytest.raises(RuntimeError, match="bug in the model"):
        s.dissect("layer2", n=32, batch_size=4, cache=False, executor=counting, shard_size=8)
    assert counting.calls == [0, 1, 2, 3]


def test_a_broken_pool_that_cannot_retry_says_so():
    class Broken(FlakyExecutor):
        def submit(self, fn, shard):
            if self.calls:
                raise BrokenProcessPool("the pool is not usable anymore")
            return super().submit(fn, shard)

    s = _session()
    broken = Broken(fail_on=[0], error=BrokenProcessPool("a child process terminated"))
    with pytest.raises(RuntimeError, match="shard 0 lost its worker.*cannot run it again"):
        s.dissect("layer2", n=8, batch_size=4, cache=False, executor=broken, shard_size=8)


def test_executor_needs_a_recipe():
    s = shard_recipes.tiny_session()
    with pytest.raises(ValueError, match="recipe"):
        s.dissect("layer2", n=8, cache=False, executor=FlakyExecutor())


def test_retry_only_for_lost_workers():
    assert distributed.is_lost_worker(BrokenProcessPool())
    assert distributed.is_lost_worker(KilledWorker()) and distributed.is_lost_worker(
        CommClosedError()
    )
    for err in (RuntimeError("x"), ValueError(), MemoryError(), OSError()):
        assert not distributed.is_lost_worker(err)


def test_dask_worker_killed_inside_a_shard(dask_client, tmp_path):
    recipe = functools.partial(shard_recipes.gated_session, str(tmp_path))
    s = _session(recipe)
    job = s.dissect(
        "layer2",
        n=48,
        batch_size=4,
        cache=False,
        executor=dask_client.get_executor(),
        shard_size=8,
        background=True,
        progress=False,
    )
    # a worker announces that it is inside a shard, and waits there until released
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("started-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    started = sorted(tmp_path.glob("started-*"), key=lambda p: p.stat().st_mtime)
    assert started, "no worker started a shard within 120 s"
    victim = int(started[0].name.split("-")[1])
    assert victim in dask_client.run(os.getpid).values()  # a worker of the cluster
    os.kill(victim, signal.SIGKILL)
    (tmp_path / "release").touch()
    d = job.result(120)
    assert victim not in dask_client.run(os.getpid).values()  # gone; its shard ran elsewhere
    _assert_identical(
        d, _session().dissect("layer2", n=48, batch_size=4, shard_size=8, cache=False)
    )
