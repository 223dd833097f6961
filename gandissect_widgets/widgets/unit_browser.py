"""UnitBrowser: step through a layer's units and see where each one fires.

One anywidget: the unit list, the selected unit's heatmaps over the Session's samples and its
top-activating images, all in synced traits (so it runs in JupyterLab, Notebook 7, VS Code,
Colab and marimo, and a saved page replays it).

>>> import gandissect_widgets as gw
>>> s = gw.Session.from_zoo("hamlet")
>>> d = s.dissect("layer4", n=64, progress=False)    # a real one: 500 samples or more
>>> browser = gw.UnitBrowser(s, "layer4")
>>> browser.sort, browser.unit in browser.order[:4]    # the best unit that shows on the samples
('iou', True)
"""

from __future__ import annotations

import anywidget
import torch
import traitlets as t

from .. import checks
from ._bundle import css, esm
from ._fallback import StaticFallback
from ._grid import GridData
from ._owner import Owner
from ._session_widget import (
    SessionWidget,
    check_invert_settings,
    closes_on_failure,
    photo_captions,
    sample_name,
)
from ._validate import InvalidValue, check_session, fixed

__all__ = ["UnitBrowser", "UnitList"]

_SORTS = [["by IoU", "iou"], ["by unit", "unit"], ["by activation", "activation"]]


class UnitList(Owner, anywidget.AnyWidget):
    """A list of units whose arrow keys step through it (the notebook's shortcuts stay out).

    >>> UnitList(units=[3, 1], labels=["unit 3", "unit 1"], value=3).value
    3
    """

    _esm = esm("unit_list.js")
    _css = css("unit_list.css")
    units = t.List(t.Int()).tag(sync=True)
    labels = t.List(t.Unicode()).tag(sync=True)
    value = t.Int(0).tag(sync=True)
    rows = t.Int(14).tag(sync=True)


class UnitBrowser(StaticFallback, SessionWidget):
    """A unit list (sortable by label/IoU when a Dissection exists, or by activation), the
    selected unit's heatmaps over the Session's samples, and its top-activating images.
    It opens on the first listed unit that is above its threshold somewhere on the samples
    shown (the best one by IoU when a dissection exists): a unit silent on all of them, such
    as a mountain unit over eight samples without a mountain, would open on a page of dimmed
    samples with no outline. A dissection stored later moves it to that list's best the same
    way, unless a unit was chosen meanwhile.

    Heatmaps follow GAN Dissection: where the unit is above its threshold the image stays
    bright inside an outline, the rest is dimmed (``heat_mode="colormap"`` colours the whole
    activation instead). Arrow keys step through the list. ``browser.unit`` reads or sets
    the selected unit; redraws run in the background (``browser.wait()``). A photo dropped
    onto the samples joins them, inverted with ``invert_settings`` (fit_photo's keyword
    arguments; see :class:`~._session_widget.SessionWidget`).
    """

    _esm = esm("unit_browser.js")
    _css = css("image_grid.css", "unit_list.css", "unit_browser.css")

    layer = t.Unicode("").tag(sync=True)
    _fixed_layer = fixed("layer")
    count = t.Int(0).tag(sync=True)
    sorts = t.List().tag(sync=True)
    sort = t.Unicode("unit").tag(sync=True)
    order = t.List(t.Int()).tag(sync=True)
    labels = t.List(t.Unicode()).tag(sync=True)
    unit = t.Int(0).tag(sync=True)
    rows = t.Int(14).tag(sync=True)
    info = t.Unicode("").tag(sync=True)
    samples = t.Dict().tag(sync=True)
    _opened = None  # the unit the browser opened on, until one is chosen
    top_samples = t.Dict().tag(sync=True)

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
        heat_mode: str = "highlight",
        invert_settings=None,
    ):
        check_session(session, "UnitBrowser")
        layer = session.check_layer(layer)
        invert_settings = check_invert_settings(invert_settings, session)
        self.seeds = self._seeds_or_samples(seeds, session)
        self.top, self.pool = checks.count(top, "top"), checks.count(pool, "pool")
        self.session = session
        has_dissection = layer in session.dissections
        self._listed = session.dissections.get(layer)
        self.samples_grid = GridData(columns=columns, size=size, encoding="raw")
        self.top_grid = GridData(columns=min(top, 8), size=size // 2 + 16, encoding="raw")
        super().__init__(
            layer=layer,
            count=session.layer_shape(layer)[0],
            sorts=_SORTS if has_dissection else _SORTS[1:],
            sort="iou" if has_dissection else "unit",
            heat_mode=heat_mode,
        )
        self._bind(session, invert_settings)
        self._fill_list()
        self._opened = self._opening_unit()  # None once a unit is chosen
        self.unit = self._opened
        self.refresh()  # the first picture is there when the constructor returns

    # ------------------------------------------------------------ state
    @property
    def dissection(self):
        return self.session.dissections.get(self.layer)

    @t.validate("unit")
    def _check_unit(self, proposal) -> int:
        value = int(proposal["value"])
        if not 0 <= value < self.count:
            raise InvalidValue(
                f"unit {value} is out of range: {self.layer} has units 0-{self.count - 1}"
            )
        return value

    @t.validate("sort")
    def _check_sort(self, proposal) -> str:
        valid = [v for _, v in self.sorts] or [v for _, v in _SORTS]
        if proposal["value"] not in valid:
            raise InvalidValue(f"sort must be one of {valid}; got {proposal['value']!r}")
        return proposal["value"]

    @t.observe("sort")
    def _on_sort(self, _change) -> None:
        if self.order:
            self._fill_list()

    @t.observe("unit")
    def _on_unit(self, change) -> None:
        if change["new"] != self._opened:
            self._opened = None  # chosen (in the list or from code): kept from now on
        if self._runner is not None and self.samples:
            self.schedule()

    @t.observe("heat_mode")
    def _on_heat_mode(self, _change) -> None:
        pass  # drawn in the browser from the same heatmaps

    def _order(self) -> list[int]:
        d, key = self.dissection, self.sort
        if key == "iou" and d is not None:
            return d.best_iou.argsort(descending=True).tolist()
        if key == "activation":
            return self.session.unit_levels(self.layer)["mean"].argsort(descending=True).tolist()
        return list(range(self.count))

    def _label(self, u: int, means=None) -> str:
        """ "unit 3 · tree 0.21" (its concept and IoU); sorted by activation, the number shown
        is the one sorted on: "unit 3 · tree · mean 0.53"."""
        d = self.dissection
        name = f"unit {u}" if d is None else f"unit {u} · {d.labels[u]}"
        if means is not None:
            return f"{name} · mean {float(means[u]):.2f}"
        return name if d is None else f"{name} {float(d.best_iou[u]):.2f}"

    def _fill_list(self) -> None:
        order = self._order()
        means = self.session.unit_levels(self.layer)["mean"] if self.sort == "activation" else None
        with self.hold_sync():
            self.labels = [self._label(u, means) for u in order]
            self.order = order

    def _thresholds(self) -> torch.Tensor:
        """Each unit's level (C,): its dissection threshold, else its 99th percentile."""
        d = self.dissection
        if d is not None:
            return d.thresholds.float()
        return self.session.unit_levels(self.layer)["high"].float()

    def _opening_unit(self) -> int:
        """The first listed unit above its threshold on at least one sample shown (the first
        listed one when none is): its page has outlines, not only dimmed samples."""
        if not self.seeds:
            return self.order[0]
        acts = self.session.activations(self.layer, self.seeds)
        acts = acts.reshape(acts.shape[0], acts.shape[1], -1).float()
        fires = (acts >= self._thresholds()[None, :, None]).any(2).any(0)
        return next((u for u in self.order if bool(fires[u])), self.order[0])

    # ------------------------------------------------------------ drawing
    def _follow_dissection(self) -> None:
        """A dissection stored since the list was made (e.g. a browser made before
        ``session.dissect`` ran, as marimo's cell order does): its labels and IoU sort."""
        d = self.dissection
        if d is self._listed:
            return
        self._listed = d
        with self.hold_sync():
            self.sorts = _SORTS if d is not None else _SORTS[1:]
            if d is not None and self.sort == "unit":
                self.sort = "iou"  # fills the list
            elif self.sort == "iou" and d is None:
                self.sort = "unit"
            else:
                self._fill_list()
        opened = self._opened
        if opened is not None:  # no unit chosen yet: open on the new list's best
            best = self._opening_unit()
            if self._opened == opened and self.unit == opened:  # still none chosen meanwhile
                self._opened = best
                self.unit = best

    def refresh(self) -> None:
        """Redraw the selected unit for the Session's current edits (and its dissection)."""
        self._follow_dissection()
        u, s = self.unit, self.session
        state = s.state
        acts = s.activations(self.layer, self.seeds, state=state)[:, u]
        high = float(s.unit_levels(self.layer)["high"][u])
        threshold = float(self._thresholds()[u])
        vmax = max(high, threshold, 1e-6) * 1.2
        vector = s.layer_kind(self.layer) == "vector"  # one value per image: no heatmap
        self.samples_grid.set_images(s.generate(self.seeds, state=state))
        self.samples_grid.captions = photo_captions(self.seeds)
        self.samples_grid.set_heatmaps(
            None if vector else acts, vmin=0.0, vmax=vmax, threshold=threshold
        )
        top_seeds = self._top_seeds(u)
        top_acts = s.activations(self.layer, top_seeds, state=state)[:, u]
        self.top_grid.set_images(s.generate(top_seeds, state=state))
        self.top_grid.set_heatmaps(
            None if vector else top_acts, vmin=0.0, vmax=vmax, threshold=threshold
        )
        self.top_grid.captions = [sample_name(seed, short=True) for seed in top_seeds]
        if vector:
            values = acts.flatten().tolist()
            named = self.samples_grid.captions or [""] * len(values)
            self.samples_grid.captions = [
                f"{c + ' · ' if c else ''}{v:.2f}{' ▲' if v > threshold else ''}"
                for c, v in zip(named, values, strict=True)
            ]
            self.top_grid.captions = [
                f"{sample_name(seed, short=True)} · {float(v):.2f}"
                for seed, v in zip(top_seeds, top_acts.flatten())
            ]
        if self.unit != u:
            return  # a newer unit was chosen meanwhile: its render follows
        quiet = len(self.seeds) > 0 and not bool((acts >= threshold).any())
        with self.hold_sync():
            self.samples = self.samples_grid.payload()
            self.top_samples = self.top_grid.payload()
            self.info = self._info(u) + (self._quiet_note() if quiet else "")

    def _top_seeds(self, u: int) -> list[int]:
        d = self.dissection
        if d is not None:
            return d.top_seeds[u, : self.top].tolist()
        pool = list(range(self.pool))
        peak = self.session.activations(self.layer, pool)[:, u].amax((1, 2))
        return [pool[i] for i in torch.argsort(peak, descending=True)[: self.top].tolist()]

    def _quiet_note(self) -> str:
        """Said when the unit stays below its threshold on every sample shown: a page of
        dimmed samples without an outline is then the truth, not a fault."""
        return (
            f" · below it on all {len(self.seeds)} samples shown (all dimmed): its "
            "top-activating samples show where it fires"
        )

    def _info(self, u: int) -> str:
        text = self._info_text(u)
        if self.session.layer_kind(self.layer) == "vector":
            return (
                f"{self.layer} is a vector layer: one value per image, no heatmap (captions "
                f"give the unit's value, ▲ above the threshold). {text}"
            )
        return text

    def _info_text(self, u: int) -> str:
        d = self.dissection
        if d is None:
            return (
                f"unit {u} · no dissection yet (run session.dissect('{self.layer}')); "
                "outlined: above the unit's 99th percentile"
            )
        return (
            f"unit {u} · label {d.labels[u]} · IoU {float(d.best_iou[u]):.3f} · "
            f"threshold {float(d.thresholds[u]):.3f} (outlined: above it)"
        )
