"""Runner: the model on its device, its lock, forward passes at a given State, and results.

Every forward pass of the toolkit runs here, under one lock, against an explicit
:class:`~gandissect_widgets.edits.State`: the weight edits of that state are put into the model
for the pass (and the live state's put back after), its output edits are hooked in. A result
therefore depends on the state it was asked for, never on what ran before.

>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(2, 2))
>>> r = Runner(net, "cpu")
>>> out, seen = r.run(torch.ones(1, 2), State(), retain=["0"])
>>> tuple(seen["0"].shape)
(1, 2)
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import nn

from .arena import Arena
from .cache import weights_fingerprint
from .edits import Edit, State
from .hooks import StopForward, hooked
from .stages import run_from, stage_of, stages

__all__ = ["Runner", "IMAGE"]

IMAGE = "<image>"  # the name under which a generator's output is cached
_STAGE_INPUT = "<stage input>"  # cached inputs of a stage, by sample: where suffix passes start


def _same(a, b) -> bool:
    """Two (output, retained) results hold bit-identical tensors."""
    (out_a, seen_a), (out_b, seen_b) = a, b
    if (out_a is None) != (out_b is None) or seen_a.keys() != seen_b.keys():
        return False
    pairs = [(out_a, out_b)] if out_a is not None else []
    return all(torch.equal(x, y) for x, y in pairs + [(seen_a[n], seen_b[n]) for n in seen_a])


class Runner:
    """Owns ``model`` on ``device``: one lock, weights at a State, a bounded result cache."""

    def __init__(self, model: nn.Module, device, cache_bytes: int = 512 << 20):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.lock = threading.RLock()
        self.live = State()
        self.results = Arena(cache_bytes)
        self._applied: list[tuple[Edit, torch.Tensor]] = []  # weight edits in the model now
        self._fingerprints: dict = {}
        self._stages = stages(self.model)  # where a pass may start over (suffix passes)
        self._trusted: dict[tuple, bool] = {}  # (stage, after) -> checked equal to full passes
        self.views: dict = {}  # layer -> LayerView (tokens, vectors); maps need none

    # ------------------------------------------------------------------ weights
    def _materialize(self, weight_edits: tuple[Edit, ...]) -> None:
        """Make the model's weights those of ``weight_edits`` (caller holds the lock)."""
        common = 0
        for (applied, _), wanted in zip(self._applied, weight_edits):
            if applied is not wanted:
                break
            common += 1
        while len(self._applied) > common:
            edit, original = self._applied.pop()
            edit.revert(self.model, original)
        for edit in weight_edits[common:]:
            self._applied.append((edit, edit.apply(self.model)))

    @contextmanager
    def at(self, state: State):
        """Hold the lock with the model's weights at ``state``; the live weights come back after.

        >>> import copy
        >>> runner, state = s.runner, s.state
        >>> with runner.at(state):
        ...     block = copy.deepcopy(runner.model.layer6)
        """
        with self.lock:
            self._materialize(state.weight_edits)
            try:
                yield self.model
            finally:
                self._materialize(self.live.weight_edits)

    def set_live(self, state: State) -> None:
        """Make ``state`` the live one; on failure the previous weights are restored."""
        with self.lock:
            try:
                self._materialize(state.weight_edits)
            except BaseException:
                self._materialize(self.live.weight_edits)
                raise
            self.live = state

    def fingerprint(self, state: State) -> str:
        """A short hash of the function the model computes at ``state`` (weights + output edits)."""
        with self.lock:
            found = self._fingerprints.get(state.key)
            if found is None:
                with self.at(state):
                    h = hashlib.sha256(weights_fingerprint(self.model).encode())
                for e in state.edits:
                    if not e.changes_weights:
                        h.update(e.signature().encode())
                found = self._fingerprints[state.key] = h.hexdigest()[:16]
            return found

    # ------------------------------------------------------------------ forward
    def run(
        self,
        inputs: torch.Tensor,
        state: State,
        *,
        retain=(),
        retain_input=(),
        stop: bool = False,
        extra: dict[str, list[Callable]] | None = None,
        before: dict[str, list[Callable]] | None = None,
        grad: bool = False,
        rows: list | None = None,
    ):
        """One forward of ``inputs`` at ``state``: (output or None if stopped, retained dict).

        ``stop`` ends the pass after the last retained layer; ``before`` / ``extra`` add output
        functions before / after the state's own (a sample's own adaptation comes before any
        edit); ``grad`` keeps autograd on. ``rows`` names the samples of ``inputs`` (hashable,
        one per row, the same name always meaning the same input and adaptation): with them a
        pass whose edits and retained layers all lie at stage ``k`` or later starts at stage
        ``k`` from that stage's cached inputs (see :mod:`~gandissect_widgets.stages`), or
        after it from its cached output when everything at stage ``k`` edits or reads that
        output (an ablation of the stage's units), bit-identical to the full pass.
        """
        # A batch of one takes other kernels than larger batches, whose rounding differs; run
        # as two rows, every row is bit-identical in whatever batch it is computed.
        single = inputs.shape[0] == 1 and not grad
        if single:
            inputs = torch.cat([inputs, inputs])
            rows = None if rows is None else [*rows, *rows]
        fns = state.output_fns()
        for name, more in (before or {}).items():
            fns[name] = list(more) + fns.get(name, [])
        for name, more in (extra or {}).items():
            fns[name] = fns.get(name, []) + list(more)
        pass_ = functools.partial(
            self._pass, state=state, retain=retain, retain_input=retain_input, stop=stop
        )
        start = None if grad or rows is None else self._start(state, retain, retain_input, extra)
        if start is None:
            out, seen = pass_(inputs, fns, grad=grad)
        else:
            k, after = start
            resumed = fns
            if after:  # stage k's output as cached has been through its `before` functions
                name = self._stages[k]
                resumed = {**fns, name: fns.get(name, [])[len((before or {}).get(name, ())) :]}
            with self.lock:
                x = self._stage_inputs(k + after, inputs, rows, state, before)
                out, seen = pass_(
                    x, resumed, start=k + after, emit=self._stages[k] if after else None
                )
                if start not in self._trusted:  # once per start: the same as a full pass?
                    full = pass_(inputs, fns)
                    self._trusted[start] = _same(full, (out, seen))
                    out, seen = full
        if single:
            return (None if out is None else out[:1]), {k: v[:1] for k, v in seen.items()}
        return out, dict(seen)

    def _pass(self, x, fns, *, state, retain, retain_input, stop, grad=False, start=0, emit=None):
        """The forward at ``state`` with output functions ``fns``, from stage ``start``; with
        ``emit``, ``x`` is first that layer's output (its output functions are applied)."""
        with (
            self.at(state),
            torch.set_grad_enabled(grad),
            hooked(
                self.model,
                retain=retain,
                retain_input=retain_input,
                edit=fns,
                stop_after_retained=stop,
                views=self.views,
            ) as seen,
        ):
            try:
                if emit is not None:
                    x = seen.emit(emit, x)
                if start:
                    out = run_from(self.model, self._stages, start, x)
                else:
                    out = self.model(x.to(self.device))
            except StopForward:
                out = None
        return out, dict(seen)

    def _start(self, state: State, retain, retain_input, extra) -> tuple[int, bool] | None:
        """Where a pass at ``state`` may start, or None for a full pass: ``(k, after)``, at
        stage ``k`` from its cached input, or (``after``) from its cached output when all that
        happens at stage ``k`` happens to that output (no weight edit, nothing inside it)."""
        if not self._stages or not state.edits:
            return None
        layers = [e.layer for e in state.edits]
        layers += [*retain, *retain_input, *(extra or {})]
        found = [stage_of(self._stages, n) for n in layers]
        if None in found or min(found) == 0:
            return None
        k = min(found)
        name = self._stages[k]
        after = (
            k + 1 < len(self._stages)
            and all(n == name for n, s in zip(layers, found) if s == k)
            and name not in retain_input
            and not any(e.changes_weights and e.layer == name for e in state.edits)
        )
        for start in ((k, True), (k, False)) if after else ((k, False),):
            if self._trusted.get(start) is not False:
                return start
        return None

    def _stage_inputs(self, k, inputs, rows, state, before) -> torch.Tensor:
        """Stage ``k``'s inputs for ``rows``: cached (no edit lies before stage ``k``), the
        missing ones from a pass that stops there; a fresh tensor each call."""
        name = self._stages[k]
        keys = [(_STAGE_INPUT, name, r) for r in rows]
        found = [self.results.get(key) for key in keys]
        if any(f is None for f in found):
            fns = {n: list(f) for n, f in (before or {}).items()}
            _, seen = self._pass(
                inputs, fns, state=state, retain=(), retain_input=[name], stop=True
            )
            x = seen[name + ":in"].detach().cpu()
            found = [x[j] for j in range(len(rows))]
            # a row named twice (a batch of one runs as two rows) is kept as first computed:
            # `before` functions (a photo's own adaptation) apply to the first row only
            first: dict = {}
            for key, row in zip(keys, found):
                first.setdefault(key, row)
            for key, row in first.items():
                self.results.put(key, row)
        return torch.stack(found).to(self.device)

    def fetch(self, name: str, seeds: list[int], state: State, compute) -> torch.Tensor:
        """Rows of ``name`` (a layer or :data:`IMAGE`) for ``seeds`` at ``state``, on the CPU.

        Cached rows are reused; ``compute(chunk) -> tensor (len(chunk), ...)`` makes the rest.
        """
        with self.lock:
            found = {s: self.results.get((name, s, state.key)) for s in dict.fromkeys(seeds)}
            missing = [s for s, v in found.items() if v is None]
            if missing:
                out = compute(missing).detach().cpu()
                for j, s in enumerate(missing):
                    found[s] = out[j]
                    self.results.put((name, s, state.key), out[j])
            return torch.stack([found[s] for s in seeds])
