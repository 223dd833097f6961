"""RuleEditor: copy an object, paste it elsewhere, paint where the rule holds, rewrite the GAN.

Pick a sample in the gallery, paint on it, then press **Copy** (the region to copy) or **Add to
context** (where the rule applies); press **Paste** and click a gallery image where the copy
goes (the tray previews it there). **Execute** rewrites the layer in the background; the
gallery and the canvas show the changed model (toggle **original** to compare). **Undo
rewrite** / **Redo rewrite** take the rewrite off the Session and back; the paint bar's
**↶ stroke** only undoes a paint stroke. The tray shows every region; click one to remove it.

Everything the editor knows (copy, paste, context, the gallery, the status) is a synced trait:
other code can observe it, and a saved page replays it (its buttons are disabled there).

>>> import gandissect_widgets as gw
>>> s = gw.Session.from_zoo("hamlet")
>>> editor = gw.RuleEditor(s, "layer6", seeds=range(8))
>>> editor.canvas_caption
'painting on sample #0'
"""

from __future__ import annotations

import functools
import threading
import time

import numpy as np
import traitlets as t

from .. import rewrite as rw
from ._bundle import css, esm
from ._fallback import StaticFallback
from ._grid import GridData
from ._session_widget import (
    SessionWidget,
    check_invert_settings,
    closes_on_failure,
    photo_captions,
    sample_name,
)
from ._validate import InvalidValue, check_session, fixed
from .paint_canvas import CanvasPart, CanvasTraits

__all__ = ["RuleEditor"]


class RuleEditor(StaticFallback, SessionWidget, CanvasTraits):
    """Rewrite ``layer`` of a generator Session by copy, paste and context examples.

    ``editor.edit`` is the newest rewrite made here; ``editor.wait()`` waits for a running
    Execute or render. ``stat_samples`` and ``cache`` go to :func:`rewrite.rewrite`.
    ``editor.copy`` = (seed, mask), ``editor.paste`` = (seed, (y, x)), ``editor.context`` =
    [(seed, mask), ...] read and write the synced traits. A photo dropped onto the gallery
    joins it, inverted with ``invert_settings`` (fit_photo's keyword arguments; see
    :class:`~._session_widget.SessionWidget`).
    """

    _esm = esm("rule_editor.js")
    _css = css("image_grid.css", "paint_canvas.css", "rule_editor.css")

    layer = t.Unicode("").tag(sync=True)
    _fixed_layer = fixed("layer")
    seeds = t.List(t.Int()).tag(sync=True)
    current = t.Int(0).tag(sync=True)
    mask_shape = t.List(t.Int(), default_value=[0, 0]).tag(sync=True)
    copy_seed = t.Int(None, allow_none=True).tag(sync=True)
    copy_mask = t.Bytes(b"").tag(sync=True)
    paste_at = t.List(t.Int()).tag(sync=True)  # [seed, y, x] or []
    context_seeds = t.List(t.Int()).tag(sync=True)
    context_masks = t.List(t.Bytes()).tag(sync=True)
    placing = t.Bool(False).tag(sync=True)
    rank = t.Int(1).tag(sync=True)
    steps = t.Int(rw.DEFAULT_STEPS).tag(sync=True)
    view = t.Unicode("changed").tag(sync=True)
    path = t.Unicode("rule.npz").tag(sync=True)
    running = t.Bool(False).tag(sync=True)
    has_rewrite = t.Bool(False).tag(sync=True)
    rewrite_applied = t.Bool(False).tag(sync=True)
    can_redo = t.Bool(False).tag(sync=True)
    canvas_caption = t.Unicode("").tag(sync=True)
    gallery = t.Dict().tag(sync=True)
    tray = t.Dict().tag(sync=True)

    @closes_on_failure
    def __init__(
        self,
        session,
        layer: str,
        *,
        seeds=None,
        columns: int = 4,
        size: int = 112,
        stat_samples: int = 1000,
        cache=True,
        invert_settings=None,
    ):
        check_session(session, "RuleEditor")
        rw.conv_of(session, layer)  # a clear error now rather than at Execute
        invert_settings = check_invert_settings(invert_settings, session)
        self.session = session
        self.stat_samples, self.cache = stat_samples, cache
        self.edit = None
        self._job: threading.Thread | None = None
        self._cancel = threading.Event()
        self._heat = None  # context-match heatmaps over the gallery, until it changes
        self.gallery_grid = GridData(columns=columns, size=size, encoding="raw")
        self.tray_grid = GridData(columns=8, size=max(64, size * 2 // 3), mode="highlight")
        seeds = self._seeds_or_samples(seeds, session)
        super().__init__(
            layer=layer,
            seeds=seeds,
            current=seeds[0],
            mask_shape=list(session.image_size),
        )
        self.canvas = CanvasPart(self, self._image(self.current), size=max(256, 2 * size), brush=6)
        self._caption()
        self._bind(session, invert_settings)
        self._show_tray()
        self._render()
        self._say("1. paint what to copy on the sample and press Copy; 2. Paste; 3. Add to context")

    # ------------------------------------------------------------------ state as Python
    def _mask(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, np.uint8).reshape(self.mask_shape).astype(np.float32)

    def _bytes(self, mask) -> bytes:
        arr = np.asarray(mask, np.float32)
        if list(arr.shape) != list(self.mask_shape):
            raise ValueError(f"a region mask must be {tuple(self.mask_shape)}; got {arr.shape}")
        return (arr > 0.5).astype(np.uint8).tobytes()

    @property
    def copy(self) -> tuple[int, np.ndarray] | None:
        """(seed, float mask) of the region to copy, or None."""
        if self.copy_seed is None:
            return None
        return self.copy_seed, self._mask(self.copy_mask)

    @copy.setter
    def copy(self, value) -> None:
        with self.hold_sync():
            if value is None:
                self.copy_seed, self.copy_mask = None, b""
            else:
                self.copy_mask, self.copy_seed = self._bytes(value[1]), int(value[0])
        self._show_tray()

    @property
    def paste(self) -> tuple[int, tuple[int, int]] | None:
        """(seed, (y, x)) where the copy goes, or None."""
        if not self.paste_at:
            return None
        seed, y, x = self.paste_at
        return seed, (y, x)

    @paste.setter
    def paste(self, value) -> None:
        if value is None:
            self.paste_at = []
        else:
            seed, (y, x) = value
            self.paste_at = [int(seed), int(y), int(x)]
        self._show_tray()

    @property
    def context(self) -> list[tuple[int, np.ndarray]]:
        """[(seed, float mask), ...]: where the rule applies."""
        return [(s, self._mask(m)) for s, m in zip(self.context_seeds, self.context_masks)]

    @context.setter
    def context(self, value) -> None:
        value = list(value)
        with self.hold_sync():
            self.context_masks = [self._bytes(m) for _, m in value]
            self.context_seeds = [int(s) for s, _ in value]
        self._show_tray()

    @t.validate("view")
    def _check_view(self, proposal) -> str:
        if proposal["value"] not in ("changed", "original"):
            raise InvalidValue(f"view must be 'changed' or 'original'; got {proposal['value']!r}")
        return proposal["value"]

    @t.validate("rank", "steps")
    def _check_positive(self, proposal) -> int:
        if proposal["value"] < 1:
            raise InvalidValue(f"{proposal['trait'].name} must be >= 1; got {proposal['value']}")
        return proposal["value"]

    @t.observe("view")
    def _on_view(self, _change) -> None:
        if self._runner is not None:
            self.refresh()

    # ------------------------------------------------------------------ painting
    def _state(self):
        """The state the gallery and canvas show: the Session's, or without the rewrite."""
        state = self.session.state
        if self.view == "original" and self.edit is not None:
            state = state.minus(self.edit)
        return state

    def _image(self, seed: int) -> np.ndarray:
        return self.session.generate([seed], state=self._state())[0]

    def _caption(self) -> None:
        where = f"painting on {sample_name(self.current)}"
        if self.edit is not None:  # no "(changed model)" before there is a change
            where += f" ({self.view} model)"
        self.canvas_caption = where

    def select(self, seed: int) -> None:
        """Show sample ``seed`` on the canvas for painting."""
        self.current = int(seed)
        self.canvas.image = self._image(self.current)
        self.canvas.clear()
        self._caption()

    def _painted(self, what: str) -> np.ndarray | None:
        mask = self.canvas.mask
        if not mask.any():
            self._say(f"paint a region on the sample first, then press {what}", "error")
            return None
        return mask.astype(np.float32)

    def take_copy(self) -> None:
        """Use the painted region of the current sample as the region to copy."""
        mask = self._painted("Copy")
        if mask is not None:
            self.copy = (self.current, mask)
            self.canvas.clear()
            self._say(f"copied {int(mask.sum())} pixels of {sample_name(self.current)}; now Paste")

    def arm_paste(self) -> None:
        """The next gallery click places the copy."""
        if self.copy is None:
            self._say("Copy a region first; Paste places it", "error")
            return
        self.placing = True
        self._say("click a sample in the gallery where the copy should go")

    def place(self, seed: int, y: int, x: int) -> None:
        """Paste the copied region centred at image pixel (y, x) of sample ``seed``."""
        self.placing = False
        self.paste = (int(seed), (int(y), int(x)))
        self._say(
            f"paste at x {x}, y {y} of {sample_name(seed)} (previewed in the regions tray); "
            "add context, then Execute" + self._hint()
        )

    def add_context(self) -> None:
        """Add the painted region of the current sample to the context (where the rule holds)."""
        mask = self._painted("Add to context")
        if mask is not None:
            self.context = [*self.context, (self.current, mask)]
            self.canvas.clear()
            self._say(
                f"{len(self.context_seeds)} context region(s); Execute when ready" + self._hint()
            )

    def _hint(self) -> str:
        """ " · rule check: ..." once copy, paste and context exist (see rewrite.rule_hint)."""
        if not (self.context and self.copy is not None and self.paste is not None):
            return ""
        try:
            return " · " + rw.rule_hint(self.session, self.layer, self.context, self.copy,
                                        self.paste, stat_samples=self.stat_samples,
                                        cache=self.cache, quick=True)["text"]  # fmt: skip
        except (ValueError, KeyError) as err:
            return f" · rule check failed: {err}"

    def _do_gallery(self, index: int, x: int, y: int) -> None:
        if not 0 <= int(index) < len(self.seeds):  # a click on a gallery since redrawn
            raise ValueError(
                f"no sample {index} in the gallery (0 to {len(self.seeds) - 1}): it changed "
                "meanwhile; click again"
            )
        seed = self.seeds[int(index)]
        if self.placing:
            self.place(seed, int(y), int(x))
        else:
            self.select(seed)

    def _do_tray(self, index: int, **_where) -> None:
        i = int(index)
        kinds = (["copy"] if self.copy is not None else []) + (["paste"] if self.paste else [])
        n = len(kinds) + len(self.context)
        if not 0 <= i < n:  # a click on a tray since redrawn
            valid = f"0 to {n - 1}" if n else "none: the tray is empty"
            raise ValueError(f"no region {index} in the tray ({valid}); click again")
        if i < len(kinds):
            setattr(self, kinds[i], None)
        else:
            context = self.context
            del context[i - len(kinds)]
            self.context = context

    def _do_copy(self) -> None:
        self.take_copy()

    def _do_paste(self) -> None:
        self.arm_paste()

    def _do_context(self) -> None:
        self.add_context()

    def _do_execute(self) -> None:
        self.execute()

    def _do_cancel(self) -> None:
        self._cancel.set()

    def _do_matches(self) -> None:
        self.show_matches()

    def _do_undo(self) -> None:
        self.undo()

    def _do_redo(self) -> None:
        self.redo()

    def _do_save(self) -> None:
        self.save()

    def _do_load(self) -> None:
        self.load()

    def _paste_preview(self, seed: int, y: int, x: int):
        """(image, mask): the copied pixels put at (y, x) of sample ``seed``, and where."""
        copy_seed, copy_mask = self.copy if self.copy is not None else (None, None)
        target = self._image(seed).copy()
        mask = np.zeros(self.mask_shape, np.float32)
        if copy_mask is None or not copy_mask.any():
            mask[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3] = 1
            return target, mask
        ys, xs = np.nonzero(copy_mask > 0)
        dy = int(round(y - (ys.min() + ys.max()) / 2))
        dx = int(round(x - (xs.min() + xs.max()) / 2))
        h, w = self.mask_shape
        ty, tx = ys + dy, xs + dx
        keep = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
        source = self._image(copy_seed)
        target[ty[keep], tx[keep]] = source[ys[keep], xs[keep]]
        mask[ty[keep], tx[keep]] = 1
        return target, mask

    def _regions(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(caption, image, mask) of every region, in tray order."""
        out = []
        if self.copy is not None:
            seed, mask = self.copy
            out.append((f"copy · {sample_name(seed, True)}", self._image(seed), mask))
        if self.paste is not None:
            seed, (y, x) = self.paste
            image, mask = self._paste_preview(seed, y, x)
            out.append((f"paste · {sample_name(seed, True)} at x {x}, y {y}", image, mask))
        out += [(f"context · {sample_name(s, True)}", self._image(s), m) for s, m in self.context]
        return out

    def _show_tray(self) -> None:
        regions = self._regions()
        g = self.tray_grid
        if not regions:
            g.set_images(np.zeros((0, *self.session.image_size, 3), np.uint8))
            g.set_heatmaps(None)
            g.captions = []
        else:
            g.set_images(np.stack([im for _, im, _ in regions]))
            g.set_heatmaps(np.stack([m for _, _, m in regions]), vmin=0, vmax=1, threshold=0.5)
            g.captions = [c for c, _, _ in regions]
        self.tray = g.payload()

    # ------------------------------------------------------------------ running
    def execute(self) -> None:
        """Rewrite the layer in a background thread (see :meth:`wait`)."""
        if self._job is not None and self._job.is_alive():
            self._say("a rewrite is already running")
            return
        missing = self._first_missing_step()
        if missing:
            self._say(missing, "error")
            return
        self._cancel.clear()
        request = {
            "context": self.context,
            "copy": self.copy,
            "paste": self.paste,
            "rank": int(self.rank),
            "steps": int(self.steps),
        }
        self.running = True
        self._job = threading.Thread(target=self._run, args=(request,), daemon=True)
        self._job.start()

    def _first_missing_step(self) -> str:
        """What to do before Execute, in the order the steps come; "" when ready."""
        if self.copy is None:
            return "Copy first: paint what to copy on a sample and press Copy"
        if self.paste is None:
            return "Paste next: press Paste, then click a gallery sample where the copy goes"
        if not self.context:
            return "Add context: paint a region where the rule should hold and press Add to context"
        return ""

    def _run(self, request) -> None:
        t0 = time.perf_counter()
        total = request["steps"]

        def progress(step, loss):
            self._say(
                f"step {step}/{total} · loss {loss:.4f} · {time.perf_counter() - t0:.1f} s",
                "busy",
            )

        try:
            self._say("collecting key statistics (cached after the first time) ...", "busy")
            with self._quietly():  # this thread's push: the worker redraws below, once
                edit = rw.rewrite(
                    self.session,
                    self.layer,
                    **request,
                    stat_samples=self.stat_samples,
                    cache=self.cache,
                    progress=progress,
                    cancel=self._cancel,
                )
            if edit is None:
                self._say("cancelled; the weights are unchanged")
            else:
                self.edit = edit
                done = (
                    f"rewritten: loss {edit.losses[0]:.4f} → {edit.losses[-1]:.4f} in "
                    f"{time.perf_counter() - t0:.1f} s ({edit.describe()})"
                )
                self.schedule(functools.partial(self._render, done))
        except (ValueError, KeyError, TypeError) as err:
            self._show_error(err)
        finally:
            self.running = False

    def show_matches(self) -> None:
        """Rank the gallery by how strongly the context's rule matches (heatmaps)."""
        context = self.context
        if not context:
            self._say("add context regions first; matches are ranked against them", "error")
            return

        def work():
            self._say("ranking the gallery by context match ...", "busy")
            m = rw.context_matches(
                self.session,
                self.layer,
                context,
                seeds=self.seeds,
                rank=int(self.rank),
                stat_samples=self.stat_samples,
                cache=self.cache,
            )
            self._heat = np.asarray(m.heatmaps)
            self.seeds = list(m.seeds)
            self._render()
            self._say("gallery sorted by context match (strongest first, heatmap: the match)")

        self.schedule(work)

    def undo(self) -> None:
        """Take this editor's rewrite off the Session (Redo rewrite brings it back)."""
        s = self.session
        if self.edit is None or self.edit not in s.edits:
            self._say("no rewrite of this editor is on the Session", "error")
            return
        if s.edits[-1] is not self.edit:
            self._say("a newer edit is on top of this rewrite: undo that one first", "error")
            return
        s.undo()

    def redo(self) -> None:
        """Put the undone rewrite back on the Session."""
        s = self.session
        if self.edit is None or not s.stack.undone or s.stack.undone[-1] is not self.edit:
            self._say("nothing of this editor to redo", "error")
            return
        s.redo()

    def refresh(self) -> None:
        """Re-render the gallery, the canvas and the tray (in the background) for the current
        edits and view, and say where the rewrite stands."""
        self.schedule(self._render)  # following session.samples first (newest request wins)

    def _use_seeds(self, seeds) -> None:
        if self._heat is not None and sorted(seeds) == sorted(self.seeds):
            return  # the gallery ranked by context match: the same samples, in its order
        self._heat = None  # the matches were for other samples
        super()._use_seeds(seeds)

    def _render(self, done: str | None = None) -> None:
        """Draw for the Session as it is; ``done`` says what the Execute or Load that asked for
        this render did (a render another event asked for says "applied")."""
        state = self._state()
        images = self.session.generate(self.seeds, state=state)
        g = self.gallery_grid
        g.set_images(images)
        if self._heat is not None and len(self._heat) == len(images):
            g.set_heatmaps(self._heat)
        else:
            g.set_heatmaps(None)
        photos = photo_captions(self.seeds) or [""] * len(self.seeds)
        g.captions = [p or f"#{s}" for s, p in zip(self.seeds, photos)]
        in_session = self.edit is not None and self.edit in self.session.edits
        with self.hold_sync():
            self.gallery = g.payload()
            self.has_rewrite = self.edit is not None
            self.rewrite_applied = in_session
            self.can_redo = bool(self.session.stack.undone) and (
                self.session.stack.undone[-1] is self.edit
            )
        self.canvas.image = self._image(self.current)  # the model as it is now; mask kept
        self._caption()
        if self.tray_grid.captions:
            self._show_tray()
        if self.edit is not None and not self.running:
            if in_session:
                done = done or f"applied: {self.edit.describe()}"
                view = " (showing the original: toggle to compare)"
                view = view if self.view == "original" else ""
                self._say(done + view, "applied")
            else:
                self._say(
                    f"rewrite undone: the model is back as it was ({self.edit.describe()} "
                    "is off; Redo rewrite brings it back)",
                    "preview",
                )

    def wait(self, timeout: float = 60) -> bool:
        """Wait for a running Execute and pending renders; False on timeout."""
        if self._job is not None:
            self._job.join(timeout)
        return self._runner.wait(timeout) and not (self._job and self._job.is_alive())

    def close(self, timeout: float = 5) -> None:
        """Cancel a running Execute (waiting up to ``timeout`` s), then stop listening and
        free the worker and model (a finished rewrite stays on the Session)."""
        job = getattr(self, "_job", None)
        if job is not None and job is not threading.current_thread():
            self._cancel.set()
            job.join(timeout)
        super().close()

    # ------------------------------------------------------------------ files
    def save(self) -> None:
        """Save the newest rewrite to the file named in ``path``."""
        if self.edit is None:
            self._say("nothing to save yet: Execute a rewrite first", "error")
            return
        path = self.edit.save(self.path)
        self._say(f"saved to {path}")

    def load(self) -> None:
        """Load a saved rewrite from ``path`` and apply it."""
        try:
            edit = rw.load_edit(self.path)
            with self._quietly():
                self.session.push(edit)
        except Exception as err:  # noqa: BLE001 - whatever the file holds, the page says why
            self._show_error(err)
            return
        self.edit = edit
        self.schedule(functools.partial(self._render, f"loaded {edit.describe()}"))
