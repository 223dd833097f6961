"""The on-disk result cache and background jobs."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from gandissect_widgets.cache import ResultCache
from gandissect_widgets.jobs import Cancelled, Job


def test_cache_round_trip_and_key_separation(tmp_path):
    c = ResultCache.resolve(tmp_path)
    c.save({"kind": "a", "n": 1}, {"x": np.arange(4)})
    assert c.load({"kind": "a", "n": 1})["x"].tolist() == [0, 1, 2, 3]
    assert c.load({"kind": "a", "n": 2}) is None
    assert ResultCache.resolve(False) is None
    with pytest.raises(TypeError, match="True, False or a folder"):
        ResultCache.resolve(3)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_cache_file_warns_and_is_removed(tmp_path, damage):
    c = ResultCache(tmp_path)
    key = {"kind": "a"}
    path = c.save(key, {"x": np.arange(1000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a zip file")
    with pytest.warns(UserWarning, match="unreadable"):
        assert c.load(key) is None
    assert not path.exists()


def test_job_result_progress_and_cancel():
    job = Job(lambda j: [j.step() for _ in range(4)] and "ok", total=4)
    assert job.result(5) == "ok" and job.progress == 1.0

    gate = threading.Event()

    def slow(j):
        for _ in range(1000):
            gate.wait(0.01)
            j.step()

    job = Job(slow, total=1000)
    job.cancel()
    with pytest.raises(Cancelled):
        job.result(5)
    assert job.cancelled and job.done < 1000


def test_job_error_is_reraised():
    def fail(j):
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        Job(fail).result(5)
