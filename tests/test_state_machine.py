"""Stateful test of the public edit API against a reference model and a fresh replay.

A hypothesis ``RuleBasedStateMachine`` drives one Session (with a small result cache, so
cached rows and evictions are exercised) through ablate / push / replace / undo / redo / reset,
rewrites (fitted once for the module, saved and loaded again), ``temporarily`` and
``excluding`` blocks, and the refused paths. A plain list model predicts the stack, the redo
list and every refusal; after every step the Session is compared with a FRESH Session (no
cache) onto which the active edits are replayed: images and activations bit-exact, and every
parameter of the model equal to the replay's (and to the pristine weights plus the deltas).

A batch of one takes other CPU kernels than larger batches; the Runner runs it as two rows, so
a row's bits do not depend on the batch it was computed in
(``test_cached_rows_do_not_depend_on_batch_composition``).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TinyGenerator
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from gandissect_widgets import Session
from gandissect_widgets import rewrite as rw
from gandissect_widgets.edits import Ablation, State, WeightEdit

UNITS = {"layer1": 32, "layer2": 16, "layer3": 8}
SEEDS = [0, 5, 9]
FAST = {"steps": 15, "stat_samples": 16, "cache": False}


def _box(y0, y1, x0, x1):
    m = np.zeros((16, 16), np.float32)
    m[y0:y1, x0:x1] = 1
    return m


def _weight_edit(seed: int, scale: float = 0.02) -> WeightEdit:
    g = torch.Generator().manual_seed(seed)
    return WeightEdit("layer2.1", "weight", scale * torch.randn(16, 32, 3, 3, generator=g))


def _fresh(cache_mb: float = 0) -> Session:
    return Session(TinyGenerator(), device="cpu", batch_size=8, cache_mb=cache_mb)


def _close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Bit-identical."""
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def _params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@functools.lru_cache(maxsize=1)
def _library():
    """(BASE, {rewrite: the weight edits it was made on}): two rewrites fitted for the
    pristine weights (one with a paste mask, one with a paste position, on two layers) and one
    fitted with the fixed weight edit BASE pushed."""
    s = _fresh()
    r1 = rw.make_rewrite(
        s,
        "layer2",
        context=[(1, _box(4, 10, 4, 10)), (2, _box(6, 12, 2, 8))],
        copy=(3, _box(2, 8, 2, 8)),
        paste=(1, _box(8, 14, 8, 14)),
        **FAST,
    )
    r2 = rw.make_rewrite(
        s,
        "layer3",
        context=[(4, _box(2, 9, 3, 12))],
        copy=(6, _box(8, 14, 8, 14)),
        paste=(4, (5.0, 6.0)),
        **FAST,
    )
    base = _weight_edit(12345)
    s.push(base)
    r3 = rw.make_rewrite(
        s,
        "layer2",
        context=[(2, _box(4, 12, 4, 12))],
        copy=(5, _box(1, 7, 9, 15)),
        paste=(2, (8.0, 8.0)),
        **FAST,
    )
    for r in (r1, r2, r3):
        assert r is not None and r.delta.abs().max() > 0
    return base, {r1: (), r2: (), r3: (base,)}


# ---------------------------------------------------------------------------- strategies
layers = st.sampled_from(sorted(UNITS))
unit_lists = st.lists(st.integers(0, 31), min_size=1, max_size=3)
strengths = st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0, 1))
boxes = st.tuples(st.integers(0, 12), st.integers(0, 12), st.integers(2, 4), st.integers(2, 4))
masks = st.one_of(st.none(), boxes.map(lambda b: _box(b[0], b[0] + b[2], b[1], b[1] + b[3])))
values = st.one_of(
    st.sampled_from([0.0, "mean", "high"]),
    st.floats(-2, 2, allow_nan=False, allow_infinity=False),
)
ablation_args = st.tuples(layers, unit_lists, strengths, masks, values)
insides = st.sampled_from(["nothing", "push", "push_self", "undo", "redo"])


class EditStackMachine(RuleBasedStateMachine):
    """One Session driven through the edit API; ``active`` / ``undone`` are the model."""

    @initialize(
        cache_mb=st.sampled_from([0.0, 0.02, 4.0]),
        start=st.lists(ablation_args, max_size=3),
        undo_first=st.booleans(),
    )
    def setup(self, cache_mb, start, undo_first):
        self.base, library = _library()
        self.basis = dict(library)  # rewrite -> the weight edits it was made on
        self.rewrites = list(library)
        self.s = _fresh(cache_mb)
        self.pristine = _params(self.s.model)
        self.active: list = []
        self.undone: list = []
        self.made: list = []  # every edit made so far (for excluding / replace of old ones)
        self.events: list = []
        self.s.observe(self.events.append)
        self.tmp = tempfile.TemporaryDirectory(prefix="gw-state-machine-")
        self.saved = 0
        for args in start:  # a few ablations to start with, so replace / redo have work
            self._push(self._ablation(args))
        if undo_first:
            self._undo()

    def teardown(self):
        tmp = getattr(self, "tmp", None)
        if tmp is not None:
            tmp.cleanup()

    # ------------------------------------------------------------------ model helpers
    def _weight_edits(self, edits=None) -> list:
        return [e for e in (self.active if edits is None else edits) if e.changes_weights]

    def _fits(self, edit) -> bool:
        """Whether the Session accepts ``edit`` on the current stack (rewrites are made for
        specific weights: exactly the weight edits they were fitted on)."""
        if edit not in self.basis:
            return True
        basis, now = self.basis[edit], self._weight_edits()
        return len(basis) == len(now) and all(a is b for a, b in zip(basis, now))

    def _ablation(self, args) -> Ablation:
        layer, units, strength, mask, value = args
        units = [u % UNITS[layer] for u in units]
        e = self.s.ablation(layer, units, strength=strength, mask=mask, value=value)
        assert e.values is not None and e.values.shape == (len(e.units),)
        self.made.append(e)
        return e

    def _fresh_weight_edit(self, seed) -> WeightEdit:
        e = _weight_edit(seed)
        self.made.append(e)
        return e

    def _snapshot(self):
        return (
            self.s.edits,
            list(self.s.stack.undone),
            self.s.state.key,
            _params(self.s.model),
            len(self.events),
        )

    def _view_fits(self, view) -> bool:
        """Whether the Session shows ``view``: views follow push's rule, so every rewrite in
        it sits on exactly the weight edits it was fitted on."""
        for i, e in enumerate(view):
            if e in self.basis:
                below, basis = self._weight_edits(view[:i]), self.basis[e]
                if len(below) != len(basis) or any(a is not b for a, b in zip(below, basis)):
                    return False
        return True

    def _check_view_or_refused(self, view):
        if self._view_fits(view):
            self._check_view(view)
        else:  # e.g. redo brought back a rewrite fitted on the edit the view leaves out
            with pytest.raises(ValueError, match="fingerprint"):
                self.s.generate(SEEDS)

    def _refused(self, fn, error=ValueError, match=None):
        """``fn`` raises ``error`` and leaves stack, redo list, weights and observers as they
        were."""
        before = self._snapshot()
        with pytest.raises(error, match=match):
            fn()
        after = self._snapshot()
        assert after[0] == before[0] and after[1] == before[1] and after[2] == before[2]
        assert all(torch.equal(after[3][n], before[3][n]) for n in before[3])
        assert after[4] == before[4], "a refused change told observers"
        assert self.s.edits == self.active and list(self.s.stack.undone) == self.undone

    def _changed(self, fn, active, undone, returns):
        """``fn`` succeeds, returns ``returns`` and leaves ``active`` / ``undone``; observers
        hear one event when the state changed (kind "weights" when weight edits changed)."""
        before_key, before_edits, n_events = self.s.stack.state.key, self.active, len(self.events)
        got = fn()
        assert got is returns, (got, returns)
        self.active, self.undone = list(active), list(undone)
        assert self.s.edits == self.active, (self.s.edits, self.active)
        assert list(self.s.stack.undone) == self.undone
        new = self.events[n_events:]
        if tuple(e.uid for e in self.active) == before_key:
            assert new == []
        else:
            assert len(new) == 1, new
            diff = set(before_edits) ^ set(self.active)
            kind = "weights" if any(e.changes_weights for e in diff) else "edits"
            assert new[0].kind == kind, (new[0], diff)

    def _push(self, edit):
        kind = type(edit).__name__
        if edit in self.active:
            event(f"push {kind}: refused, already active")
            self._refused(lambda: self.s.push(edit), match="already active")
        elif not self._fits(edit):
            event(f"push {kind}: refused, fingerprint")
            self._refused(lambda: self.s.push(edit), match="fingerprint")
        else:
            event(f"push {kind}: pushed on {len(self._weight_edits())} weight edits")
            self._changed(lambda: self.s.push(edit), self.active + [edit], [], edit)

    def _undo(self):
        if not self.active:
            self._changed(self.s.undo, [], self.undone, None)
        else:
            top = self.active[-1]
            self._changed(self.s.undo, self.active[:-1], self.undone + [top], top)

    def _redo(self):
        if not self.undone:
            self._changed(self.s.redo, self.active, [], None)
        elif self.undone[-1] in self.active:  # put back by replace(): redo is refused
            event("redo: refused, already active")
            self._refused(self.s.redo, match="already active")
        else:
            top = self.undone[-1]
            self._changed(self.s.redo, self.active + [top], self.undone[:-1], top)

    def _inside(self, inside, data, edit):
        if inside == "push":
            self._push(self._ablation(data.draw(ablation_args)))
        elif inside == "push_self":
            self._push(edit)
        elif inside == "undo":
            self._undo()
        elif inside == "redo":
            self._redo()

    # ------------------------------------------------------------------ references
    def _replay(self) -> Session:
        """A fresh Session (no cache) with the model's active edits pushed one by one."""
        ref = _fresh()
        for e in self.active:
            ref.push(e)
        assert ref.edits == self.active
        return ref

    def _check_view(self, view):
        """Calls from this thread see ``view``: its key, images and activations equal a fresh
        Session's at that State; the live weights stay those of the stack."""
        assert self.s.state.key == tuple(e.uid for e in view)
        assert len({id(e) for e in view}) == len(view)
        ref = _fresh()
        at = State(tuple(view))
        np.testing.assert_array_equal(self.s.generate(SEEDS), ref.generate(SEEDS, state=at))
        _close(self.s.activations("layer3", SEEDS), ref.activations("layer3", SEEDS, state=at))
        self._check_live_weights()

    def _check_live_weights(self):
        expected = dict(self.pristine)
        for e in self._weight_edits():  # the same arithmetic as WeightEdit.apply, in order
            name = f"{e.layer}.{e.param}"
            expected[name] = expected[name] + e.delta
        for n, p in self.s.model.named_parameters():
            assert torch.equal(p, expected[n]), f"{n} differs from the stack's weights"

    # ------------------------------------------------------------------ rules: edits
    @rule(args=ablation_args)
    def ablate(self, args):
        layer, units, strength, mask, value = args
        units = [u % UNITS[layer] for u in units]
        before = self.active
        e = self.s.ablate(layer, units, strength=strength, mask=mask, value=value)
        self.made.append(e)
        assert isinstance(e, Ablation) and e not in before
        self.active, self.undone = before + [e], []
        assert self.s.edits == self.active and list(self.s.stack.undone) == []

    @rule(
        layer=layers,
        bad=st.sampled_from(
            ["unit", "negative unit", "nan", "inf", "strength", "zero mask", "values length"]
        ),
    )
    def ablate_refused(self, layer, bad):
        kwargs = {"units": [0]}
        match = None
        if bad == "unit":
            kwargs["units"] = [1, UNITS[layer]]
            match = "out of range"
        elif bad == "negative unit":
            kwargs["units"] = [-1]
        elif bad == "nan":
            kwargs["value"] = float("nan")
        elif bad == "inf":
            kwargs["value"] = float("inf")
        elif bad == "strength":
            kwargs["strength"] = 5
        elif bad == "zero mask":
            kwargs["mask"] = np.zeros((16, 16), np.float32)
        else:
            kwargs["value"] = [1.0, 2.0]
        self._refused(lambda: self.s.ablate(layer, **kwargs), ValueError, match)

    @rule(data=st.data())
    def push_rewrite(self, data):
        self._push(data.draw(st.sampled_from(self.rewrites), label="rewrite"))

    @rule(seed=st.integers(0, 2**16))
    def push_weight_edit(self, seed):
        self._push(self._fresh_weight_edit(seed))

    @rule()
    def push_base(self):
        self._push(self.base)  # the fixed weight edit the third rewrite was made on

    @precondition(lambda self: self.active)
    @rule(data=st.data())
    def push_active_refused(self, data):
        e = data.draw(st.sampled_from(self.active), label="active edit")
        self._refused(lambda: self.s.push(e))

    @precondition(lambda self: any(isinstance(e, Ablation) for e in self.active))
    @rule(data=st.data(), args=ablation_args, remove=st.booleans(), around=st.booleans())
    def replace(self, data, args, remove, around):
        """Replace an active ablation (or remove it); with ``around``, undo before and redo
        after, so the redo list must survive the replace."""
        if around and any(isinstance(e, Ablation) for e in self.active[:-1]):
            self._undo()
        old = data.draw(st.sampled_from([e for e in self.active if isinstance(e, Ablation)]))
        new = None if remove else self._ablation(args)
        i = self.active.index(old)
        active = self.active[:i] + ([] if new is None else [new]) + self.active[i + 1 :]
        event(f"replace with {len(self.undone)} undone")
        self._changed(lambda: self.s.replace(old, new), active, self.undone, new)
        if around:
            self._redo()

    @precondition(
        lambda self: (
            any(isinstance(e, Ablation) for e in self.active)
            and any(isinstance(e, Ablation) for e in self.undone)
        )
    )
    @rule(data=st.data())
    def replace_with_undone(self, data):
        old = data.draw(st.sampled_from([e for e in self.active if isinstance(e, Ablation)]))
        new = data.draw(st.sampled_from([e for e in self.undone if isinstance(e, Ablation)]))
        if new is old:  # replacing an edit by itself changes nothing
            self._changed(lambda: self.s.replace(old, new), self.active, self.undone, new)
            return
        if new in self.active:
            self._refused(lambda: self.s.replace(old, new), match="already active")
            return
        i = self.active.index(old)
        active = self.active[:i] + [new] + self.active[i + 1 :]
        self._changed(lambda: self.s.replace(old, new), active, self.undone, new)

    @rule(data=st.data(), args=ablation_args)
    def replace_inactive_pushes(self, data, args):
        gone = [e for e in self.made if isinstance(e, Ablation) and e not in self.active]
        old = data.draw(st.sampled_from([None, *gone]), label="old")
        new = self._ablation(args)
        self._changed(lambda: self.s.replace(old, new), self.active + [new], [], new)

    @precondition(lambda self: self.active)
    @rule(data=st.data(), args=ablation_args, seed=st.integers(0, 2**16))
    def replace_weight_edit_refused(self, data, args, seed):
        old = data.draw(st.sampled_from(self.active), label="old")
        if old.changes_weights:
            new = self._ablation(args)
        else:
            new = self._fresh_weight_edit(seed)
        self._refused(lambda: self.s.replace(old, new), match="output edits only")

    @rule()
    def undo(self):
        self._undo()

    @rule()
    def redo(self):
        self._redo()

    @rule()
    def reset(self):
        self._changed(self.s.reset, [], [], None)
        for n, p in self.s.model.named_parameters():
            assert torch.equal(p, self.pristine[n]), f"reset left {n} changed"

    @rule(data=st.data())
    def save_load_push(self, data):
        r = data.draw(st.sampled_from(self.rewrites), label="rewrite")
        self.saved += 1
        path = r.save(Path(self.tmp.name) / f"rule{self.saved}")
        loaded = rw.load_edit(path)
        assert loaded is not r and loaded.uid != r.uid
        assert torch.equal(loaded.delta, r.delta) and loaded.fingerprint == r.fingerprint
        assert (loaded.layer, loaded.param, loaded.rank) == (r.layer, r.param, r.rank)
        assert loaded.losses == r.losses
        self.basis[loaded] = self.basis[r]
        self.rewrites.append(loaded)
        self._push(loaded)

    # ------------------------------------------------------------------ rules: views
    @rule(
        data=st.data(),
        what=st.sampled_from(["ablation", "rewrite", "weights", "base", "active"]),
        inside=insides,
    )
    def temporarily(self, data, what, inside):
        if what == "ablation":
            e = self._ablation(data.draw(ablation_args))
        elif what == "rewrite":
            e = data.draw(st.sampled_from(self.rewrites), label="rewrite")
        elif what == "weights":
            e = self._fresh_weight_edit(data.draw(st.integers(0, 2**16)))
        elif what == "base":
            e = self.base
        elif self.active:
            e = data.draw(st.sampled_from(self.active), label="active edit")
        else:
            return
        if e not in self.active and not self._fits(e):

            def enter():
                with self.s.temporarily(e):
                    raise AssertionError("entered a block the Session should refuse")

            self._refused(enter, match="fingerprint")
            return
        n_events = len(self.events)
        with self.s.temporarily(e) as got:
            assert got is e
            self._check_view(self.active + ([] if e in self.active else [e]))
            self._inside(inside, data, e)
            self._check_view_or_refused(self.active + ([] if e in self.active else [e]))
        assert self.s.state.key == tuple(x.uid for x in self.active)
        if inside == "nothing":
            assert len(self.events) == n_events, "a temporarily block told observers"

    @rule(data=st.data(), which=st.sampled_from(["active", "inactive", "none"]), inside=insides)
    def excluding(self, data, which, inside):
        if which == "active" and self.active:
            e = data.draw(st.sampled_from(self.active), label="active edit")
        elif which == "inactive" and self.made:
            e = data.draw(st.sampled_from(self.made), label="made edit")
        else:
            e = None
        if not self._view_fits([x for x in self.active if x is not e]):

            def enter():  # a rewrite above e was fitted on it
                with self.s.excluding(e):
                    raise AssertionError("entered a view the Session should refuse")

            self._refused(enter, match="fingerprint")
            return
        with self.s.excluding(e):
            self._check_view([x for x in self.active if x is not e])
            self._inside(inside, data, self._ablation(data.draw(ablation_args)))
            self._check_view_or_refused([x for x in self.active if x is not e])
        assert self.s.state.key == tuple(x.uid for x in self.active)

    # ------------------------------------------------------------------ invariants
    @invariant()
    def matches_a_fresh_replay(self):
        s = self.s
        assert s.edits == self.active and list(s.stack.undone) == self.undone
        assert len({id(e) for e in self.active}) == len(self.active)
        assert len({e.uid for e in self.active}) == len(self.active)
        assert s.state.key == s.stack.state.key == tuple(e.uid for e in self.active)
        ref = self._replay()
        np.testing.assert_array_equal(s.generate(SEEDS), ref.generate(SEEDS))
        for layer in ("layer2", "layer3"):
            _close(s.activations(layer, SEEDS), ref.activations(layer, SEEDS))
        ref_params = dict(ref.model.named_parameters())
        for n, p in s.model.named_parameters():
            assert torch.equal(p, ref_params[n]), f"{n} differs from the replay's"
        self._check_live_weights()
        if not self._weight_edits():
            for n, p in s.model.named_parameters():
                assert torch.equal(p, self.pristine[n]), f"{n} not pristine without weight edits"
        assert s.fingerprint() == ref.fingerprint()


EditStackMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_edit_stack_state_machine = EditStackMachine.TestCase


def test_cached_rows_do_not_depend_on_batch_composition():
    cached = _fresh(cache_mb=4)
    cached.activations("layer3", [5])  # row 5 computed alone, row 0 later alone too
    rows = cached.activations("layer3", [0, 5])
    assert torch.equal(rows, _fresh().activations("layer3", [0, 5]))
