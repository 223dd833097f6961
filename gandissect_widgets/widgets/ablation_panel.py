"""AblationPanel: switch units off (or on) with a slider and watch the samples change.

>>> import gandissect_widgets as gw
>>> s = gw.Session.from_zoo("hamlet")                       # doctest: +SKIP
>>> panel = gw.AblationPanel(s, "layer4", units=[3, 12])    # doctest: +SKIP
>>> panel.strength.value = 0.5                              # doctest: +SKIP
"""

from __future__ import annotations

import html
import time

import ipywidgets as w

from ._latest import Latest
from ._session_widget import SessionWidget, closes_on_failure, parse_units
from .image_grid import ImageGrid
from .paint_canvas import PaintCanvas

__all__ = ["AblationPanel"]


class AblationPanel(SessionWidget):
    """Choose units (by concept, by number, or from a UnitBrowser), a strength 0-1, remove or
    insert (insert sets units to their high quantile, like GANPaint's draw), and an optional
    painted region; original and edited samples side by side.

    The panel owns one edit on the Session's stack and retunes it in place as controls move.
    Renders run in a worker where the newest value wins, so a dragged slider never queues
    stale renders. ``panel.edit`` is the edit; ``panel.wait()`` waits for the render.
    """

    @closes_on_failure
    def __init__(
        self,
        session,
        layer: str,
        *,
        units=None,
        seeds=None,
        browser=None,
        columns: int = 4,
        size: int = 112,
    ):
        self.layer = session.check_layer(layer)
        self.seeds = list(seeds) if seeds is not None else session.samples
        self._count = session.layer_shape(self.layer)[0]
        self.edit = None
        self.last_render_s = 0.0
        self._runner = Latest(on_error=self._show_error)
        d = session.dissections.get(self.layer)
        concepts = sorted(set(d.labels)) if d is not None else []
        self.concept = w.Dropdown(
            options=["(by number)", *concepts],
            description="concept",
            layout=w.Layout(width="240px"),
        )
        self.top_n = w.IntSlider(
            value=min(10, self._count), min=1, max=min(40, self._count), description="top"
        )
        self.units = w.Text(
            value=", ".join(str(u) for u in (units or [])),
            description="units",
            placeholder="e.g. 3, 12-15",
        )
        self.strength = w.FloatSlider(
            value=1.0, min=0.0, max=1.0, step=0.05, description="strength"
        )
        self.mode = w.ToggleButtons(
            options=["remove", "insert"], value="remove", style={"button_width": "70px"}
        )
        self.region = w.Checkbox(value=False, description="only in the painted region")
        self.canvas = PaintCanvas(session.generate(self.seeds[:1])[0], size=192, brush=6)
        self.canvas.layout.display = "none"
        self.status = w.HTML()
        self.original = ImageGrid(columns=columns, size=size)
        self.edited = ImageGrid(columns=columns, size=size, encoding="raw")
        controls = [
            w.HBox([self.concept, self.top_n]),
            self.units,
            self.strength,
            w.HBox([self.mode, self.region]),
        ]
        if browser is not None:
            add = w.Button(description="add the browser's unit", icon="plus")
            add.on_click(lambda _: self._add_unit(browser.unit))
            controls.append(add)
        grids = w.HBox(
            [
                w.VBox(
                    [w.HTML("<b>original</b>"), self.original], layout=w.Layout(margin="0 16px 0 0")
                ),
                w.VBox([w.HTML("<b>edited</b>"), self.edited]),
            ]
        )
        super().__init__([w.HBox([w.VBox(controls), self.canvas]), self.status, grids])
        self.add_class("gw-ablation-panel")
        self._bind(session)
        self.concept.observe(self._on_concept, "value")
        self.top_n.observe(self._on_concept, "value")
        for control in (self.units, self.strength, self.mode, self.region):
            control.observe(lambda _: self.schedule(), "value")
        self.canvas.on_stroke(lambda _mask: self.schedule())
        self.region.observe(self._toggle_canvas, "value")
        self.original.set_images(session.generate(self.seeds))
        self.schedule()
        self.wait()

    # ------------------------------------------------------------ controls
    def _on_concept(self, _change=None) -> None:
        d = self.session.dissections.get(self.layer)
        if d is None or self.concept.value == "(by number)":
            return
        self.units.value = ", ".join(
            str(u) for u in d.ranked_for(self.concept.value)[: self.top_n.value]
        )

    def _add_unit(self, unit: int) -> None:
        current = parse_units(self.units.value, self._count)
        if unit not in current:
            self.units.value = ", ".join(str(u) for u in [*current, unit])

    def _toggle_canvas(self, change) -> None:
        self.canvas.layout.display = "" if change["new"] else "none"

    def _show_error(self, err: BaseException) -> None:
        self.status.value = f"<span style='color:#c0392b'>{html.escape(str(err))}</span>"

    # ------------------------------------------------------------ rendering
    def schedule(self) -> None:
        """Ask for a render with the current control values (the newest request wins)."""
        self._runner.submit(self._apply)

    def wait(self, timeout: float = 30) -> bool:
        """Block until the newest render is on screen."""
        return self._runner.wait(timeout)

    def _wanted_edit(self):
        units = parse_units(self.units.value, self._count)
        if not units or self.strength.value == 0:
            return None
        mask = None
        if self.region.value:
            mask = self.canvas.mask.astype("float32")
            if not mask.any():
                return None
        value = 0.0 if self.mode.value == "remove" else "high"
        return self.session.ablation(self.layer, units, self.strength.value, mask, value)

    def _apply(self) -> None:
        start = time.perf_counter()
        new = self._wanted_edit()
        self._quiet = True
        try:
            self.edit = self.session.replace(self.edit, new)
        finally:
            self._quiet = False
        self.edited.set_images(self.session.generate(self.seeds))
        self.last_render_s = time.perf_counter() - start
        what = self.edit.describe() if self.edit is not None else self._why_nothing()
        self.status.value = html.escape(what)

    def _why_nothing(self) -> str:
        if not self.units.value.strip():
            return "no units chosen: nothing changed"
        if self.strength.value == 0:
            return "strength 0: nothing changed"
        return "paint a region on the image (or untick the region box): nothing changed yet"

    def refresh(self) -> None:
        """Another widget or code changed the Session: redraw both sides."""
        with self.session.excluding(self.edit):
            self.original.set_images(self.session.generate(self.seeds))
        self.edited.set_images(self.session.generate(self.seeds))

    def close(self) -> None:
        """Finish the newest render, then stop listening and free the worker and models
        (the edit stays on the Session: edits outlive widgets)."""
        if self._runner is not None:
            self.wait(5)
        super().close()
