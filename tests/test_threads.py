"""Threads on ONE Session: every result equals a serial computation at the state it was for.

One writer thread is the only one to change the stack (ablate, push weight edits and a
rewrite, undo, redo, replace, reset), checking each change against a list model and writing
every new stack State into ``history``. Reader threads meanwhile generate, read activations and
unit levels, plainly and inside ``temporarily`` / ``excluding`` blocks of their own edits; a
dissector runs background dissections (cancelling one); a fitter fits rewrites (one inside a
``temporarily`` block of an ablation on the fitted layer). Nothing sleeps for correctness:
threads start at a Barrier and the second dissection waits for an Event of the writer.

A call made without an explicit state sees the stack at some moment of the call, so its
result must equal the serial result of one of the states the writer published between just
before the call and just after it (with the thread's own view applied). Afterwards every
result is checked against a FRESH Session without a cache, the finished dissection against
a serial dissection at the state recorded when it started, every fit against a serial fit
at the weights it names, and the final stack against a replay.
"""

from __future__ import annotations

import threading
import traceback
from contextlib import ExitStack, nullcontext

import numpy as np
import pytest
import torch
from conftest import ThresholdSegmenter, TinyGenerator

from gandissect_widgets import Session
from gandissect_widgets import rewrite as rw
from gandissect_widgets.cache import weights_fingerprint
from gandissect_widgets.edits import Ablation, State, WeightEdit
from gandissect_widgets.jobs import Cancelled

UNITS = {"layer1": 32, "layer2": 16, "layer3": 8}
FINAL_SEEDS = [0, 3, 7, 11]
FIT = {"steps": 12, "stat_samples": 16, "cache": False}
DISSECT = {"n": 24, "background": True, "cache": False, "progress": False}
N_READERS = 3
READER_OPS = 60
WRITER_OPS = 60
JOIN_S = 120


def _box(y0, y1, x0, x1):
    m = np.zeros((16, 16), np.float32)
    m[y0:y1, x0:x1] = 1
    return m


REQUESTS = [
    {
        "context": [(1, _box(4, 10, 4, 10)), (2, _box(6, 12, 2, 8))],
        "copy": (3, _box(2, 8, 2, 8)),
        "paste": (1, _box(8, 14, 8, 14)),
    },
    {
        "context": [(2, _box(4, 12, 4, 12))],
        "copy": (5, _box(1, 7, 9, 15)),
        "paste": (2, (8.0, 8.0)),
    },
]


def _session(cache_mb: float = 0, **kwargs) -> Session:
    return Session(TinyGenerator(), device="cpu", batch_size=8, cache_mb=cache_mb, **kwargs)


def _replay(edits, **kwargs) -> Session:
    """A fresh Session without cache with ``edits`` pushed in order (each push checked)."""
    s = _session(**kwargs)
    for e in edits:
        s.push(e)
    assert s.edits == list(edits)
    return s


def _weight_edit(rng, layer="layer2.1", shape=(16, 32, 3, 3)) -> WeightEdit:
    delta = torch.from_numpy(rng.normal(0, 0.02, size=shape).astype(np.float32))
    return WeightEdit(layer, "weight", delta)


def _seeds(rng) -> list[int]:
    return sorted(rng.choice(12, size=int(rng.integers(1, 5)), replace=False).tolist())


def _view(state: State, views) -> State:
    for add, edit in views:
        state = state.plus(edit) if add else state.minus(edit)
    return state


class _Run:
    """What the threads share: the Session, the writer's published states, the records."""

    def __init__(self, seed: int):
        self.seed = seed
        self.s = _session(cache_mb=0.25, segmenter=ThresholdSegmenter())
        self.pristine = {n: p.detach().clone() for n, p in self.s.model.named_parameters()}
        self.rewrite = rw.make_rewrite(_session(), "layer2", **REQUESTS[0], **FIT)
        self.history: list[State] = [self.s.stack.state]  # appended by the writer only
        self.pool: list = []  # the writer's edits, for the readers' excluding blocks
        self.records: list[dict] = []  # what, seeds, explicit state or window, output
        self.levels: list[tuple[str, dict]] = []
        self.dissections: list[tuple[State, object]] = []
        self.cancelled = 0
        self.fits: list[tuple[dict, tuple[int, int], object]] = []
        self.events: list = []
        self.changes = 0
        self.errors: list[str] = []
        self.barrier = threading.Barrier(N_READERS + 3)
        self.writer_halfway = threading.Event()
        self.model_active: list = []
        # the stack's events (a finished dissection is told too, as kind "dissection")
        self.s.observe(lambda e: e.kind == "dissection" or self.events.append(e))

    # ------------------------------------------------------------------ recording
    def call(self, what: str, seeds, views=(), state: State | None = None):
        """Run one call; record the states it may have seen (a window of ``history``)."""
        n0 = len(self.history)
        if what == "<image>":
            out = self.s.generate(seeds, state=state)
        else:
            out = self.s.activations(what, seeds, state=state)
        n1 = len(self.history)
        # the stack was history[n0 - 1] when the call began, or a state the writer had made
        # but not yet published; it saw one of history[n0 - 1 : n1 + 1] (resolved at the end)
        window = None if state is not None else (n0, n1, tuple(views))
        self.records.append(
            {"what": what, "seeds": list(seeds), "state": state, "window": window, "out": out}
        )
        return out

    def seen(self, record) -> list[State]:
        """The states a recorded call may have seen."""
        if record["window"] is None:
            return [record["state"]]
        n0, n1, views = record["window"]
        return [_view(h, views) for h in self.history[n0 - 1 : n1 + 1]]

    def guarded(self, fn, *args):
        try:
            self.barrier.wait(timeout=60)
            fn(*args)
        except BaseException:  # every thread's failure is reported by the test
            self.errors.append(f"{threading.current_thread().name}:\n{traceback.format_exc()}")
        finally:
            if fn == self.writer:
                self.writer_halfway.set()  # never leave the dissector waiting

    # ------------------------------------------------------------------ threads
    def writer(self):
        rng = np.random.default_rng(self.seed * 1000)
        s, active, undone = self.s, self.model_active, []
        kinds = ["ablate", "weights", "rewrite", "undo", "redo", "replace", "reset"]
        p = np.array([5, 1.5, 1, 2, 1.5, 2, 0.3])
        for i in range(WRITER_OPS):
            if i == WRITER_OPS // 2:
                self.writer_halfway.set()
            op = kinds[rng.choice(len(kinds), p=p / p.sum())]
            before = s.stack.state.key
            if op == "ablate":
                layer = str(rng.choice(sorted(UNITS)))
                units = rng.choice(UNITS[layer], size=int(rng.integers(1, 4)), replace=False)
                value = (
                    str(rng.choice(["mean", "high"]))
                    if layer != "layer3" and rng.random() < 0.4
                    else float(rng.normal())
                )
                mask = None if rng.random() < 0.5 else _box(0, 16, 0, 8)
                e = s.ablate(layer, units.tolist(), float(rng.random()), mask, value)
                self.pool.append(e)
                active.append(e)
                undone.clear()
            elif op == "weights":
                e = s.push(_weight_edit(rng))
                self.pool.append(e)
                active.append(e)
                undone.clear()
            elif op == "rewrite":
                r = self.rewrite
                if r in active:
                    with pytest.raises(ValueError, match="already active"):
                        s.push(r)
                elif any(x.changes_weights for x in active):
                    # made for other weights: refused, and no reader ever sees it
                    with pytest.raises(ValueError, match="fingerprint"):
                        s.push(r)
                else:
                    s.push(r)
                    self.pool.append(r)
                    active.append(r)
                    undone.clear()
            elif op == "undo":
                got = s.undo()
                if active:
                    assert got is active[-1]
                    undone.append(active.pop())
                else:
                    assert got is None
            elif op == "redo":
                got = s.redo()
                if undone:
                    assert got is undone[-1]
                    active.append(undone.pop())
                else:
                    assert got is None
            elif op == "replace":
                olds = [x for x in active if isinstance(x, Ablation)]
                if olds:
                    old = olds[int(rng.integers(len(olds)))]
                    layer = str(rng.choice(sorted(UNITS)))
                    new = s.ablation(layer, [int(rng.integers(UNITS[layer]))], 1.0, None, 0.5)
                    assert s.replace(old, new) is new
                    active[active.index(old)] = new
                    self.pool.append(new)
            else:
                s.reset()
                active.clear()
                undone.clear()
            assert s.edits == active, (op, s.edits, active)
            assert list(s.stack.undone) == undone
            if s.stack.state.key != before:
                self.history.append(s.stack.state)
                self.changes += 1

    def reader(self, k: int):
        rng = np.random.default_rng(self.seed * 1000 + 1 + k)
        s = self.s
        ops = ["generate", "explicit", "activations", "temporarily", "excluding", "nested"]
        ops += ["levels"]
        for _ in range(READER_OPS):
            op = ops[int(rng.integers(len(ops)))]
            seeds = _seeds(rng)
            layer = str(rng.choice(sorted(UNITS)))
            what = "<image>" if rng.random() < 0.5 else layer
            if op == "generate":
                self.call("<image>", seeds)
            elif op == "explicit":
                self.call(what, seeds, state=s.state)
            elif op == "activations":
                self.call(layer, seeds)
            elif op == "levels":
                lv_layer = str(rng.choice(["layer1", "layer2"]))
                self.levels.append((lv_layer, s.unit_levels(lv_layer)))
            else:
                views = []
                with ExitStack() as blocks:
                    if op in ("temporarily", "nested"):
                        e = self._own_edit(rng)
                        assert blocks.enter_context(s.temporarily(e)) is e
                        views.append((True, e))
                    if op in ("excluding", "nested") and self.pool:
                        e = self.pool[int(rng.integers(len(self.pool)))]
                        blocks.enter_context(s.excluding(e))
                        views.append((False, e))
                    self.call(what, seeds, views)
                with s.lock:  # the writer changes the stack under the lock only
                    assert s.state.key == s.stack.state.key, "a view outlived its block"

    def _own_edit(self, rng):
        if rng.random() < 0.25:
            return _weight_edit(rng, "layer3.1", (8, 16, 3, 3))
        layer = str(rng.choice(sorted(UNITS)))
        units = rng.choice(UNITS[layer], size=int(rng.integers(1, 4)), replace=False).tolist()
        value = str(rng.choice(["mean", "high"])) if layer != "layer3" else 1.5
        return self.s.ablation(layer, units, float(rng.random()), None, value)

    def dissector(self):
        s = self.s
        with s.lock:  # no change of the stack between reading the state and starting
            state = s.state
            job = s.dissect("layer3", **DISSECT)
        job.cancel()
        try:
            self.dissections.append((state, job.result(timeout=60)))
        except Cancelled:
            self.cancelled += 1
        assert not job.running
        assert self.writer_halfway.wait(timeout=60)
        with s.lock:
            state = s.state
            job = s.dissect("layer3", **DISSECT)
        self.dissections.append((state, job.result(timeout=60)))

    def fitter(self):
        s = self.s
        for j, request in enumerate(REQUESTS):
            block = s.temporarily(s.ablation("layer2", range(16))) if j == 0 else nullcontext()
            with block:
                n0 = len(self.history)
                r = rw.make_rewrite(s, "layer2", **request, **FIT)
                n1 = len(self.history)
            self.fits.append((request, (n0, n1), r))
            try:
                with s.temporarily(r):
                    self.call("<image>", FINAL_SEEDS, [(True, r)])
                    self.call("layer3", FINAL_SEEDS, [(True, r)])
            except ValueError as err:  # the writer's weight edits differ from the fit's
                assert "fingerprint" in str(err)


class _Reference:
    """Serial results at explicit States from one fresh Session without cache."""

    def __init__(self):
        self.s = _session()
        self.memo: dict = {}

    def __call__(self, what, seeds, state: State):
        """The result at ``state``, or None for a state no call can see (a rewrite on other
        weights than it was fitted on: such a view is refused, as push refuses it)."""
        key = (what, tuple(seeds), state.key)
        if key not in self.memo:
            try:
                if what == "<image>":
                    self.memo[key] = self.s.generate(seeds, state=state)
                else:
                    self.memo[key] = self.s.activations(what, seeds, state=state)
            except ValueError as err:
                assert "fingerprint" in str(err)
                self.memo[key] = None
        return self.memo[key]


def _matches(what, out, expected) -> bool:
    if expected is None:
        return False
    if what == "<image>":
        return np.array_equal(out, expected)
    return torch.equal(out, expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_threads_on_one_session_match_serial_references(seed):
    run = _Run(seed)
    threads = [threading.Thread(target=run.guarded, args=(run.writer,), name="writer")]
    threads += [
        threading.Thread(target=run.guarded, args=(run.reader, k), name=f"reader{k}")
        for k in range(N_READERS)
    ]
    threads.append(threading.Thread(target=run.guarded, args=(run.dissector,), name="dissector"))
    threads.append(threading.Thread(target=run.guarded, args=(run.fitter,), name="fitter"))
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_S)
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"deadlock: {alive} still running after {JOIN_S} s"
    assert not run.errors, "\n".join(run.errors)
    s = run.s

    # the stack: the writer's model, one event per change, and a replay's outputs and weights
    assert s.edits == run.model_active
    assert len(run.events) == run.changes
    assert s.state.key == s.stack.state.key == run.history[-1].key
    final = _replay(s.edits)
    np.testing.assert_array_equal(s.generate(FINAL_SEEDS), final.generate(FINAL_SEEDS))
    ref_params = dict(final.model.named_parameters())
    for n, p in s.model.named_parameters():
        assert torch.equal(p, ref_params[n]), f"{n} differs from the replay's"
    if not any(e.changes_weights for e in s.edits):
        assert all(torch.equal(p, run.pristine[n]) for n, p in s.model.named_parameters())

    # every call equals the serial result at one of the states it may have seen
    ref = _Reference()
    assert len(run.records) >= N_READERS * READER_OPS // 2
    for rec in run.records:
        states = run.seen(rec)
        found = [
            _matches(rec["what"], rec["out"], ref(rec["what"], rec["seeds"], st)) for st in states
        ]
        assert any(found), (
            f"{rec['what']} of seeds {rec['seeds']} matches none of the {len(states)} states "
            "it may have seen"
        )

    # unit levels: computed once per layer, from the unedited model
    for layer in {lv for lv, _ in run.levels}:
        got = [levels for lv, levels in run.levels if lv == layer]
        assert all(g["mean"] is got[0]["mean"] for g in got)
        acts = ref.s.activations(layer, range(64), state=State())
        flat = acts.transpose(0, 1).reshape(acts.shape[1], -1)
        torch.testing.assert_close(got[0]["mean"], flat.mean(1), rtol=0, atol=1e-6)
        torch.testing.assert_close(
            got[0]["high"], torch.quantile(flat, 0.99, dim=1), rtol=0, atol=1e-6
        )

    # background dissections: a cancelled one leaves nothing, a finished one equals a serial
    # dissection of a replay of the state it started at
    assert len(run.dissections) + run.cancelled == 2
    for state, d in run.dissections:
        serial = _replay(state.edits, segmenter=ThresholdSegmenter())
        expected = serial.dissect("layer3", n=24, cache=False, progress=False)
        assert d.fingerprint == expected.fingerprint == s.fingerprint(state)
        for name in ("thresholds", "iou", "top_values", "top_seeds", "mean", "high"):
            assert torch.equal(getattr(d, name), getattr(expected, name)), name
        assert d.seeds == expected.seeds and d.concepts == expected.concepts
    assert any(s.dissections["layer3"] is d for _, d in run.dissections)

    # fits: each equals a serial fit at the weights it was made for, without output edits
    assert len(run.fits) == len(REQUESTS)
    for request, (n0, n1), r in run.fits:
        assert r is not None
        candidates = run.history[max(n0 - 1, 0) : n1 + 1]
        matching = []
        for st in candidates:
            weights = _replay(st.weight_edits)
            if weights_fingerprint(weights.model) == r.fingerprint:
                matching.append(weights)
        assert matching, "the fit names weights of no state it may have seen"
        expected = rw.make_rewrite(matching[0], "layer2", **request, **FIT)
        assert torch.equal(r.directions, expected.directions)
        assert torch.equal(r.lam, expected.lam) and torch.equal(r.delta, expected.delta)
        assert r.losses == expected.losses


def test_a_refused_push_is_never_seen_by_another_thread():
    s = _session()
    bad = WeightEdit("layer2.1", "weight", torch.full((16, 32, 3, 3), float("nan")))
    stop = threading.Event()
    seen: list[State] = []

    def watch():
        while not stop.is_set():
            state = s.state
            if bad in state.edits:
                seen.append(state)
                stop.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(1000):
            with pytest.raises(ValueError, match="NaN"):
                s.push(bad)
            if stop.is_set():
                break
    finally:
        stop.set()
        watcher.join(30)
    assert s.edits == []
    assert not seen, "another thread saw the refused edit in session.state"


def test_samples_added_by_many_threads_all_land():
    """Widgets append finished photos from their own threads: none may be lost."""
    session = _session()
    events = []
    session.observe(lambda e: events.append(e.kind) if e.kind == "samples" else None)
    start = threading.Barrier(4)

    def add(k):
        start.wait()
        for i in range(50):
            session.add_samples([1000 * (k + 1) + i])

    threads = [threading.Thread(target=add, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_S)
    added = session.samples[8:]
    assert sorted(added) == sorted(1000 * (k + 1) + i for k in range(4) for i in range(50))
    assert session.samples[:8] == list(range(8)) and len(events) == 200
    with pytest.raises(ValueError):
        session.add_samples([-1])
    assert len(session.samples) == 208
