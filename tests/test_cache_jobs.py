"""The on-disk result cache and background jobs."""

from __future__ import annotations

import json
import re
import threading
import warnings

import numpy as np
import pytest

from gandissect_widgets.cache import FORMAT, ResultCache
from gandissect_widgets.jobs import Cancelled, Job


def test_cache_round_trip_and_key_separation(tmp_path):
    c = ResultCache.resolve(tmp_path)
    c.save({"kind": "a", "n": 1}, {"x": np.arange(4)})
    assert c.load({"kind": "a", "n": 1})["x"].tolist() == [0, 1, 2, 3]
    assert c.load({"kind": "a", "n": 2}) is None
    assert ResultCache.resolve(False) is None
    with pytest.raises(TypeError, match="True, False or a folder"):
        ResultCache.resolve(3)


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


def _ends_seen_around_the_end() -> dict[int, list[bool]]:
    """300 watchers attached from another thread: 0-99 before the job ends, 100-199 while it
    ends, 200-299 after. For each, the calls that saw the end (True: in the attaching thread)."""
    release, lock = threading.Event(), threading.Lock()
    ends: dict[int, list[bool]] = {}
    job = Job(lambda j: release.wait(5), total=1)

    def watcher(who):
        def seen(j):
            if not j.running:
                with lock:
                    ends.setdefault(who, []).append(threading.current_thread() is attacher)

        return seen

    def attach_many():
        for who in range(300):
            if who == 100:
                release.set()
            if who == 200:
                job.result(5)
            job.watch(watcher(who))

    attacher = threading.Thread(target=attach_many)
    attacher.start()
    attacher.join(10)
    job.result(5)
    for _ in range(500):
        with lock:
            if len(ends) == 300:
                break
        threading.Event().wait(0.01)
    threading.Event().wait(0.05)  # time for a second, wrong call to arrive
    with lock:
        return dict(ends)


def test_every_watcher_sees_the_end_once_even_when_attached_as_the_job_ends():
    """Each watcher sees the end exactly once, and never in the thread that attached it
    (which may hold a lock the watcher takes)."""
    for _ in range(20):
        ends = _ends_seen_around_the_end()
        assert sorted(ends) == list(range(300))
        assert all(calls == [False] for calls in ends.values()), ends


def test_a_failing_watcher_does_not_keep_the_end_from_the_others(monkeypatch):
    reported, seen, release = [], threading.Event(), threading.Event()
    monkeypatch.setattr(threading, "excepthook", reported.append)
    job = Job(lambda j: release.wait(5))

    def broken(j):
        raise RuntimeError("a broken watcher")

    job.watch(broken)
    job.watch(lambda j: seen.set())
    release.set()
    job.result(5)
    assert seen.wait(5)
    assert [str(r.exc_value) for r in reported] == ["a broken watcher"]  # reported, not lost


# ------------------------------------------------------------------ damaged files


def _write_raw(c: ResultCache, key: dict, **arrays) -> None:
    """A file at ``key``'s place with exactly ``arrays`` (no format field added)."""
    with open(c.path(key), "wb") as f:
        np.savez(f, **arrays)


def _key_array(key: dict):
    return np.array(json.dumps(key, sort_keys=True, default=str))


def _damage_truncate(c, key):
    path = c.save(key, {"x": np.arange(1000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _damage_garbage(c, key):
    c.path(key).write_bytes(b"not a zip file")


def _damage_no_format(c, key):  # written before the format field existed
    _write_raw(c, key, __key__=_key_array(key), x=np.arange(4))


def _damage_other_format(c, key):
    _write_raw(c, key, __key__=_key_array(key), __format__=np.array(FORMAT + 1), x=np.arange(4))


def _damage_other_key(c, key):
    c.save(key, {"x": np.arange(4)})
    c.path({"kind": "b"}).unlink(missing_ok=True)
    c.save({"kind": "b"}, {"x": np.arange(4)}).replace(c.path(key))


def _damage_missing_array(c, key):
    c.save(key, {"y": np.arange(4)})


def _damage_wrong_shape(c, key):
    c.save(key, {"x": np.arange(5)})


def _damage_wrong_ndim(c, key):
    c.save(key, {"x": np.zeros((4, 1))})


def _damage_nan(c, key):
    c.save(key, {"x": np.array([0.0, 1.0, np.nan, 3.0])})


def _damage_inf_in_other_array(c, key):
    c.save(key, {"x": np.arange(4), "y": np.array([np.inf], np.float32)})


DAMAGES = {
    "truncate": (_damage_truncate, r"is unreadable \("),
    "garbage": (_damage_garbage, r"is unreadable \("),
    "no_format": (_damage_no_format, r"is of an older format \(no format version\)"),
    "other_format": (_damage_other_format, rf"is of format {FORMAT + 1}; this version reads"),
    "other_key": (_damage_other_key, "was written for another key"),
    "missing_array": (_damage_missing_array, "lacks the array 'x'"),
    "wrong_shape": (_damage_wrong_shape, r"holds 'x' of shape \(5,\), expected \(4,\)"),
    "wrong_ndim": (_damage_wrong_ndim, r"holds 'x' of shape \(4, 1\), expected \(4,\)"),
    "nan": (_damage_nan, r"holds non-finite values \(NaN or infinity\) in 'x'"),
    "inf": (_damage_inf_in_other_array, r"holds non-finite values \(NaN or infinity\) in 'y'"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_cache_file_warns_is_removed_and_recomputed(tmp_path, damage):
    make, problem = DAMAGES[damage]
    c = ResultCache(tmp_path)
    key = {"kind": "a"}
    make(c, key)
    path = c.path(key)
    assert path.exists()
    with pytest.warns(UserWarning) as caught:
        assert c.load(key, expect={"x": (4,)}) is None
    (warning,) = caught
    message = str(warning.message)
    assert message.startswith(f"cache file {path} ")  # names the file
    assert re.search(problem, message), message
    assert message.endswith("removed it to recompute")
    assert not path.exists()
    # recomputing works as usual: save, then load without a warning
    c.save(key, {"x": np.arange(4.0)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert c.load(key, expect={"x": (4,)})["x"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_expected_shapes_allow_free_dimensions(tmp_path):
    c = ResultCache(tmp_path)
    key = {"kind": "d"}
    arrays = {"iou": np.zeros((8, 5)), "thresholds": np.ones(8, np.float32), "n": np.array(3)}
    c.save(key, arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hit = c.load(key, expect={"iou": (8, None), "thresholds": (8,), "n": ()})
    assert set(hit) == {"iou", "thresholds", "n"}  # the key and format fields are not returned
    assert hit["iou"].shape == (8, 5) and int(hit["n"]) == 3
    with pytest.warns(UserWarning, match=r"'iou' of shape \(8, 5\), expected \(9, any\)"):
        assert c.load(key, expect={"iou": (9, None)}) is None


def test_saved_files_carry_the_format_version(tmp_path):
    c = ResultCache(tmp_path)
    path = c.save({"kind": "v"}, {"x": np.arange(2)})
    with np.load(path) as f:
        assert int(f["__format__"]) == FORMAT
    with pytest.raises(ValueError, match="reserved"):
        c.save({"kind": "v"}, {"__format__": np.arange(2)})


# ------------------------------------------------------------------ unwritable folders


def _under_a_file(tmp_path):
    """A folder that can never be created, even by root: its parent is a regular file."""
    (tmp_path / "afile").write_text("x")
    return tmp_path / "afile" / "sub"


def _read_only(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    probe = folder / "probe"
    try:
        probe.write_text("x")  # root writes anyway: nothing to test then
    except PermissionError:
        return folder / "cache"
    probe.unlink()
    folder.chmod(0o700)
    pytest.skip("a read-only folder is writable here (running as root)")


@pytest.mark.parametrize("where", [_under_a_file, _read_only, "a file"])
def test_unwritable_cache_folder_is_an_error_at_once(tmp_path, monkeypatch, where):
    if where == "a file":
        folder = tmp_path / "cachefile"
        folder.write_text("x")
    else:
        folder = where(tmp_path)
    message = rf"cache folder '{re.escape(str(folder))}' is not writable \(.+\); pass cache=False"
    with pytest.raises(PermissionError, match=message):
        ResultCache.resolve(folder)
    with pytest.raises(PermissionError, match=message):
        ResultCache.resolve(str(folder))
    with pytest.raises(PermissionError, match=message):
        ResultCache(folder)
    monkeypatch.setenv("GANDISSECT_CACHE", str(folder))
    with pytest.raises(PermissionError, match="GANDISSECT_CACHE"):
        ResultCache.resolve(True)
    assert not folder.is_dir()


def test_writable_cache_folder_is_created_and_left_clean(tmp_path):
    folder = tmp_path / "new" / "cache"
    c = ResultCache.resolve(folder)
    assert folder.is_dir() and list(folder.iterdir()) == []  # the probe file is gone
    assert ResultCache.resolve(c) is c


def test_one_torch_thread_blocks_overlapping_in_two_threads_restore_the_count():
    """A enters, B enters, A leaves, B leaves: the count before A is back (it was left at 1)."""
    import threading

    import torch

    from gandissect_widgets.jobs import one_torch_thread

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def a():
        with one_torch_thread():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def b():
        a_in.wait(5)
        with one_torch_thread():
            b_in.set()
            a_out.wait(5)

    try:
        threads = [threading.Thread(target=f) for f in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert torch.get_num_threads() == 2
        seen = []
        t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        t.start()
        t.join()
        assert seen == [2]  # a thread started afterwards gets the count too
    finally:
        torch.set_num_threads(before)
