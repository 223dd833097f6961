"""RuleEditor: copy an object, paste it elsewhere, paint where the rule holds, rewrite the GAN.

Pick a sample in the gallery, paint on it, then press **Copy** (the region to copy), **Add to
context** (where the rule applies) or, after **Paste**, click a gallery image where the copy
goes. **Execute** rewrites the layer in the background; the gallery shows the changed model
(toggle **original** to compare). The tray shows every region with what it is for; click a
tray item to remove it.

>>> import gandissect_widgets as gw
>>> s = gw.Session.from_zoo("hamlet")                  # doctest: +SKIP
>>> gw.RuleEditor(s, "layer6")                         # doctest: +SKIP
"""

from __future__ import annotations

import html
import threading
import time

import ipywidgets as w
import numpy as np

from .. import rewrite as rw
from ._latest import Latest
from ._session_widget import SessionWidget, closes_on_failure
from .image_grid import ImageGrid
from .paint_canvas import PaintCanvas

__all__ = ["RuleEditor"]


class RuleEditor(SessionWidget):
    """Rewrite ``layer`` of a generator Session by copy, paste and context examples.

    ``editor.edit`` is the newest rewrite made here; ``editor.wait()`` waits for a running
    Execute or render. ``stat_samples`` and ``cache`` go to :func:`rewrite.rewrite`.
    """

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
    ):
        rw.conv_of(session, layer)  # a clear error now rather than at Execute
        self.layer = layer
        self.seeds = list(seeds) if seeds is not None else session.samples
        self.stat_samples, self.cache = stat_samples, cache
        self.edit = None
        self.current = self.seeds[0]
        self.copy = self.paste = None
        self.context: list[tuple[int, np.ndarray]] = []
        self._placing = False
        self._job: threading.Thread | None = None
        self._cancel = threading.Event()
        self._runner = Latest(on_error=self._show_error)

        self.gallery = ImageGrid(columns=columns, size=size)
        self.canvas = PaintCanvas(session.generate([self.current])[0], size=2 * size, brush=6)
        self.tray = ImageGrid(columns=8, size=size // 2, opacity=0.6)
        button = {"layout": w.Layout(width="auto")}
        self.copy_button = w.Button(description="Copy", icon="copy", **button)
        self.paste_button = w.Button(description="Paste (click to place)", **button)
        self.context_button = w.Button(description="Add to context", icon="plus", **button)
        self.match_button = w.Button(description="Show context matches", **button)
        self.execute_button = w.Button(description="Execute", button_style="primary", **button)
        self.cancel_button = w.Button(description="Cancel", disabled=True, **button)
        self.view = w.ToggleButtons(options=["changed", "original"], value="changed")
        self.undo_button = w.Button(description="Undo", icon="undo", **button)
        self.redo_button = w.Button(description="Redo", icon="repeat", **button)
        self.path = w.Text(value="rule.npz", description="file", layout=w.Layout(width="260px"))
        self.save_button = w.Button(description="Save", icon="save", **button)
        self.load_button = w.Button(description="Load", icon="folder-open", **button)
        self.rank = w.BoundedIntText(value=1, min=1, max=64, description="rank")
        self.steps = w.BoundedIntText(
            value=rw.DEFAULT_STEPS, min=1, max=20000, step=100, description="steps"
        )
        self.status = w.HTML()

        self.gallery.on_click(self._on_gallery_click)
        self.tray.on_click(self._on_tray_click)
        self.copy_button.on_click(lambda _: self.take_copy())
        self.paste_button.on_click(lambda _: self._arm_paste())
        self.context_button.on_click(lambda _: self.add_context())
        self.match_button.on_click(lambda _: self.show_matches())
        self.execute_button.on_click(lambda _: self.execute())
        self.cancel_button.on_click(lambda _: self._cancel.set())
        self.view.observe(lambda _: self.refresh(), "value")
        self.undo_button.on_click(lambda _: self.session.undo())
        self.redo_button.on_click(lambda _: self.session.redo())
        self.save_button.on_click(lambda _: self.save())
        self.load_button.on_click(lambda _: self.load())

        painting = w.VBox(
            [
                self.canvas,
                w.HBox([self.copy_button, self.paste_button, self.context_button]),
            ]
        )
        controls = w.VBox(
            [
                w.HBox([self.rank, self.steps]),
                w.HBox([self.execute_button, self.cancel_button, self.match_button]),
                w.HBox([self.view, self.undo_button, self.redo_button]),
                w.HBox([self.path, self.save_button, self.load_button]),
            ]
        )
        super().__init__(
            [
                w.HBox([painting, w.VBox([w.HTML("<b>samples</b>"), self.gallery])]),
                w.HTML("<b>regions</b> (click one to remove it)"),
                self.tray,
                controls,
                self.status,
            ]
        )
        self.add_class("gw-rule-editor")
        self._bind(session)
        self._show_tray()
        self.refresh()

    # ------------------------------------------------------------------ painting
    def select(self, seed: int) -> None:
        """Show sample ``seed`` on the canvas for painting."""
        self.current = int(seed)
        self.canvas.image = self.session.generate([self.current])[0]
        self.canvas.clear()

    def _painted(self, what: str) -> np.ndarray | None:
        mask = self.canvas.mask
        if not mask.any():
            self._say(f"paint a region on the sample first, then press {what}")
            return None
        return mask.astype(np.float32)

    def take_copy(self) -> None:
        """Use the painted region of the current sample as the region to copy."""
        mask = self._painted("Copy")
        if mask is not None:
            self.copy = (self.current, mask)
            self.canvas.clear()
            self._show_tray()
            self._say(f"copied {int(mask.sum())} pixels of sample {self.current}; now Paste")

    def _arm_paste(self) -> None:
        if self.copy is None:
            self._say("Copy a region first; Paste places it")
            return
        self._placing = True
        self._say("click a sample in the gallery where the copy should go")

    def place(self, seed: int, y: int, x: int) -> None:
        """Paste the copied region centred at image pixel (y, x) of sample ``seed``."""
        self.paste = (int(seed), (int(y), int(x)))
        self._placing = False
        self._show_tray()
        self._say(f"paste at ({y}, {x}) of sample {seed}; add context, then Execute")

    def add_context(self) -> None:
        """Add the painted region of the current sample to the context (where the rule holds)."""
        mask = self._painted("Add to context")
        if mask is not None:
            self.context.append((self.current, mask))
            self.canvas.clear()
            self._show_tray()
            self._say(f"{len(self.context)} context region(s)")

    def _on_gallery_click(self, where: dict) -> None:
        seed = self.seeds[where["index"]]
        if self._placing:
            self.place(seed, where["y"], where["x"])
        else:
            self.select(seed)

    def _regions(self) -> list[tuple[str, int, np.ndarray]]:
        """(caption, seed, mask) of every region, in tray order."""
        out = []
        if self.copy is not None:
            out.append((f"copy · {self.copy[0]}", *self.copy))
        if self.paste is not None:
            seed, (y, x) = self.paste
            mask = np.zeros(self.session.image_size, np.float32)
            mask[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3] = 1
            out.append((f"paste · {seed}", seed, mask))
        out += [(f"context · {s}", s, m) for s, m in self.context]
        return out

    def _show_tray(self) -> None:
        regions = self._regions()
        if not regions:
            self.tray.set_images(np.zeros((0, *self.session.image_size, 3), np.uint8))
            self.tray.captions = []
            return
        images = self.session.generate([s for _, s, _ in regions])
        self.tray.set_images(images)
        self.tray.set_heatmaps(np.stack([m for _, _, m in regions]), vmin=0, vmax=1)
        self.tray.captions = [c for c, _, _ in regions]

    def _on_tray_click(self, where: dict) -> None:
        i = where["index"]
        kinds = (["copy"] if self.copy is not None else []) + (
            ["paste"] if self.paste is not None else []
        )
        if i < len(kinds):
            setattr(self, kinds[i], None)
        else:
            del self.context[i - len(kinds)]
        self._show_tray()

    # ------------------------------------------------------------------ running
    def execute(self) -> None:
        """Rewrite the layer in a background thread (see :meth:`wait`)."""
        if self._job is not None and self._job.is_alive():
            self._say("a rewrite is already running")
            return
        self._cancel.clear()
        request = {
            "context": list(self.context),
            "copy": self.copy,
            "paste": self.paste,
            "rank": int(self.rank.value),
            "steps": int(self.steps.value),
        }
        self.execute_button.disabled, self.cancel_button.disabled = True, False
        self._job = threading.Thread(target=self._run, args=(request,), daemon=True)
        self._job.start()

    def _run(self, request) -> None:
        t0 = time.perf_counter()
        total = request["steps"]

        def progress(step, loss):
            self._say(f"step {step}/{total} · loss {loss:.4f} · {time.perf_counter() - t0:.1f} s")

        try:
            self._say("collecting key statistics (cached after the first time) ...")
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
                self._say(
                    f"done: loss {edit.losses[0]:.4f} → {edit.losses[-1]:.4f} in "
                    f"{time.perf_counter() - t0:.1f} s ({edit.describe()})"
                )
        except (ValueError, KeyError, TypeError) as err:
            self._show_error(err)
        finally:
            self.execute_button.disabled, self.cancel_button.disabled = False, True

    def show_matches(self) -> None:
        """Rank the gallery by how strongly the context's rule matches (heatmaps)."""
        context = list(self.context)

        def work():
            m = rw.context_matches(
                self.session,
                self.layer,
                context,
                seeds=self.seeds,
                rank=int(self.rank.value),
                stat_samples=self.stat_samples,
                cache=self.cache,
            )
            self.seeds = list(m.seeds)
            self._render()
            self.gallery.set_heatmaps(m.heatmaps)
            self._say("gallery sorted by context match (strongest first)")

        if not context:
            self._say("add context regions first; matches are ranked against them")
            return
        self._runner.submit(work)

    def refresh(self) -> None:
        """Re-render the gallery (in the background) for the current edits and view."""
        self._runner.submit(self._render)

    def _render(self) -> None:
        if self.view.value == "original" and self.edit in self.session.edits:
            with self.session.excluding(self.edit):
                images = self.session.generate(self.seeds)
        else:
            images = self.session.generate(self.seeds)
        self.gallery.set_images(images)
        self.gallery.captions = [str(s) for s in self.seeds]

    def wait(self, timeout: float = 60) -> bool:
        """Wait for a running Execute and pending renders; False on timeout."""
        if self._job is not None:
            self._job.join(timeout)
        return self._runner.wait(timeout) and not (self._job and self._job.is_alive())

    def close(self, timeout: float = 5) -> None:
        """Cancel a running Execute (waiting up to ``timeout`` s), then stop listening and
        free the worker and models (a finished rewrite stays on the Session)."""
        job = getattr(self, "_job", None)
        if job is not None and job is not threading.current_thread():
            self._cancel.set()
            job.join(timeout)
        super().close()

    # ------------------------------------------------------------------ files
    def save(self) -> None:
        """Save the newest rewrite to the file named in the path box."""
        if self.edit is None:
            self._say("nothing to save yet: Execute a rewrite first")
            return
        path = self.edit.save(self.path.value)
        self._say(f"saved to {html.escape(str(path))}")

    def load(self) -> None:
        """Load a saved rewrite from the path box and apply it."""
        try:
            edit = rw.load_edit(self.path.value)
            self.session.push(edit)
        except (OSError, ValueError, KeyError) as err:
            self._show_error(err)
            return
        self.edit = edit
        self._say(f"loaded {edit.describe()}")

    # ------------------------------------------------------------------ status
    def _say(self, text: str) -> None:
        self.status.value = f"<span>{text}</span>"

    def _show_error(self, err: BaseException) -> None:
        msg = html.escape(str(err).strip("'\""))
        self.status.value = f"<span style='color:#b00'>{type(err).__name__}: {msg}</span>"
