"""UnitBrowser: step through a layer's units and see where each one fires.

>>> import gandissect_widgets as gw
>>> s = gw.Session.from_zoo("hamlet")            # doctest: +SKIP
>>> s.dissect("layer4", n=500)                   # doctest: +SKIP
>>> gw.UnitBrowser(s, "layer4")                  # doctest: +SKIP
"""

from __future__ import annotations

import html
import pathlib

import anywidget
import ipywidgets as w
import torch
import traitlets as t

from ._owner import Owner
from ._session_widget import SessionWidget, closes_on_failure
from .image_grid import ImageGrid

__all__ = ["UnitBrowser"]

_SORTS = [("by IoU", "iou"), ("by unit", "unit"), ("by activation", "activation")]
_STATIC = pathlib.Path(__file__).parent / "static"


class UnitList(Owner, anywidget.AnyWidget):
    """A list of units whose arrow keys step through it (the notebook's shortcuts stay out).

    >>> UnitList(units=[3, 1], labels=["unit 3", "unit 1"], value=3).value
    3
    """

    _esm = _STATIC / "unit_list.js"
    _css = _STATIC / "unit_list.css"
    units = t.List(t.Int()).tag(sync=True)
    labels = t.List(t.Unicode()).tag(sync=True)
    value = t.Int(0).tag(sync=True)
    rows = t.Int(14).tag(sync=True)


class UnitBrowser(SessionWidget):
    """A unit list (sortable by label/IoU when a Dissection exists, or by activation), the
    selected unit's heatmaps over the Session's samples, and its top-activating images.

    Arrow keys step through the list. ``browser.unit`` reads or sets the selected unit.
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
        top: int = 8,
        pool: int = 64,
    ):
        self.layer = session.check_layer(layer)
        self.seeds = list(seeds) if seeds is not None else session.samples
        self.top, self.pool = top, pool
        self._count = session.layer_shape(self.layer)[0]
        has_dissection = self.layer in session.dissections
        self.sort = w.Dropdown(
            options=_SORTS if has_dissection else _SORTS[1:],
            value="iou" if has_dissection else "unit",
            layout=w.Layout(width="150px"),
        )
        self.units = UnitList(layout=w.Layout(width="230px"))
        self.info = w.HTML()
        self.samples_grid = ImageGrid(columns=columns, size=size)
        self.top_grid = ImageGrid(columns=min(top, 8), size=size // 2 + 16)
        heading = w.HTML(f"<b>{html.escape(self.layer)}</b> · {self._count} units")
        left = w.VBox([heading, self.sort, self.units], layout=w.Layout(width="240px"))
        right = w.VBox(
            [self.info, self.samples_grid, w.HTML("<b>top-activating samples</b>"), self.top_grid]
        )
        super().__init__([w.HBox([left, right])])
        self.add_class("gw-unit-browser")
        self._bind(session)
        self.sort.observe(lambda _: self._fill_list(), "value")
        self.units.observe(lambda _: self.refresh(), "value")
        self._fill_list()

    # ------------------------------------------------------------ state
    @property
    def dissection(self):
        return self.session.dissections.get(self.layer)

    @property
    def unit(self) -> int:
        return int(self.units.value)

    @unit.setter
    def unit(self, value: int) -> None:
        if not 0 <= int(value) < self._count:
            raise ValueError(
                f"unit {value} is out of range: {self.layer} has units 0-{self._count - 1}"
            )
        self.units.value = int(value)

    def _order(self) -> list[int]:
        d, key = self.dissection, self.sort.value
        if key == "iou" and d is not None:
            return d.best_iou.argsort(descending=True).tolist()
        if key == "activation":
            return self.session.unit_levels(self.layer)["mean"].argsort(descending=True).tolist()
        return list(range(self._count))

    def _label(self, u: int) -> str:
        d = self.dissection
        if d is None:
            return f"unit {u}"
        return f"unit {u} · {d.labels[u]} {float(d.best_iou[u]):.2f}"

    def _fill_list(self) -> None:
        order = self._order()
        first = not self.units.units
        self.units.labels = [self._label(u) for u in order]
        self.units.units = order
        if first and self.units.value != order[0]:
            self.units.value = order[0]  # observed: refreshes
        elif first:
            self.refresh()

    # ------------------------------------------------------------ drawing
    def refresh(self) -> None:
        """Redraw the selected unit for the current edits."""
        u, s = self.unit, self.session
        acts = s.activations(self.layer, self.seeds)[:, u]
        high = float(s.unit_levels(self.layer)["high"][u])
        d = self.dissection
        threshold = float(d.thresholds[u]) if d is not None else high
        with self.samples_grid.hold_sync():
            self.samples_grid.set_images(s.generate(self.seeds))
            self.samples_grid.set_heatmaps(acts, vmin=0.0, vmax=max(high, 1e-6) * 1.2)
            self.samples_grid.threshold = threshold
        top_seeds = self._top_seeds(u)
        top_acts = s.activations(self.layer, top_seeds)[:, u]
        with self.top_grid.hold_sync():
            self.top_grid.set_images(s.generate(top_seeds))
            self.top_grid.set_heatmaps(top_acts, vmin=0.0, vmax=max(high, 1e-6) * 1.2)
            self.top_grid.threshold = threshold
            self.top_grid.captions = [f"#{seed}" for seed in top_seeds]
        self.info.value = self._info_html(u)

    def _top_seeds(self, u: int) -> list[int]:
        d = self.dissection
        if d is not None:
            return d.top_seeds[u, : self.top].tolist()
        pool = list(range(self.pool))
        peak = self.session.activations(self.layer, pool)[:, u].amax((1, 2))
        return [pool[i] for i in torch.argsort(peak, descending=True)[: self.top].tolist()]

    def _info_html(self, u: int) -> str:
        d = self.dissection
        if d is None:
            hint = f"<code>session.dissect('{self.layer}')</code>"
            return f"<b>unit {u}</b> · no dissection yet (run {hint})"
        return (
            f"<b>unit {u}</b> · label <b>{html.escape(d.labels[u])}</b> · "
            f"IoU {float(d.best_iou[u]):.3f} · threshold {float(d.thresholds[u]):.3f}"
        )
