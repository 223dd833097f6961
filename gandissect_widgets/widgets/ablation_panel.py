"""AblationPanel: switch units off (or on) with a slider and watch the samples change.

The panel PREVIEWS its edit on its own samples and never changes the Session until you press
**Apply** (or call ``panel.apply()``); then every widget and later code see the edit. It always
shows whether its edit is applied, and notices when it is undone elsewhere.

>>> import gandissect_widgets as gw
>>> s = gw.Session.from_zoo("hamlet")
>>> panel = gw.AblationPanel(s, "layer4", units=[3, 12])
>>> panel.strength = 0.5
>>> panel.wait()  # the preview is drawn
True
>>> s.edits, panel.status_kind
([], 'preview')
>>> panel.apply().describe()
'remove 2 units of layer4 at 50%'
>>> s.edits == [panel.edit]
True
"""

from __future__ import annotations

import time

import numpy as np
import traitlets as t

from .. import checks
from ._bundle import css, esm
from ._fallback import StaticFallback
from ._grid import GridData
from ._session_widget import (
    SessionWidget,
    check_invert_settings,
    closes_on_failure,
    parse_units,
    photo_captions,
    sample_name,
    touch,
)
from ._validate import InvalidValue, UnitsText, check_session, fixed, in_range
from .paint_canvas import CanvasPart, CanvasTraits

__all__ = ["AblationPanel"]

_MODES = ("remove", "insert")


class AblationPanel(StaticFallback, SessionWidget, CanvasTraits):
    """Choose units (by concept, by number, or from a UnitBrowser), a strength 0-1, remove or
    insert (insert sets units to their high quantile, like GANPaint's draw), and an optional
    painted region; original and edited samples side by side.

    ``panel.edit`` is the edit the controls describe (None when they describe none),
    ``panel.applied`` whether it is on the Session. While applied, moving a control retunes
    the applied edit in place (``session.replace``); other widgets on the Session redraw once
    the drag settles. Renders run in a worker where the newest value wins;
    ``panel.wait()`` waits for the newest. A photo dropped onto the samples joins them,
    inverted with ``invert_settings`` (fit_photo's keyword arguments; see
    :class:`~._session_widget.SessionWidget`).
    """

    _esm = esm("ablation_panel.js")
    _css = css("image_grid.css", "paint_canvas.css", "ablation_panel.css")

    layer = t.Unicode("").tag(sync=True)
    _fixed_layer = fixed("layer")
    count = t.Int(0).tag(sync=True)
    concepts = t.List(t.Unicode()).tag(sync=True)
    concept = t.Unicode("").tag(sync=True)  # "" = units typed by number
    top = t.Int(10).tag(sync=True)
    top_max = t.Int(40).tag(sync=True)
    units = UnitsText("").tag(sync=True)  # "3, 12" as typed; a list of ints is taken too
    strength = t.Float(1.0).tag(sync=True)
    mode = t.Unicode("remove").tag(sync=True)
    region = t.Bool(False).tag(sync=True)
    applied = t.Bool(False).tag(sync=True)
    has_browser = t.Bool(False).tag(sync=True)
    canvas_caption = t.Unicode("").tag(sync=True)
    original = t.Dict().tag(sync=True)
    edited = t.Dict().tag(sync=True)

    _check_strength = in_range("strength", low=0, high=1)

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
        strength: float = 1.0,
        mode: str = "remove",
        invert_settings=None,
    ):
        check_session(session, "AblationPanel")
        layer = session.check_layer(layer)
        if units is not None:  # refused here, not only shown in the page
            units = checks.units(units, session.layer_shape(layer)[0], layer)
        invert_settings = check_invert_settings(invert_settings, session)
        self.session = session
        self.seeds = self._seeds_or_samples(seeds, session)
        self.edit = None
        self._applied = None  # the edit this panel put on the Session
        self._undone_elsewhere = False
        self._taken_off = False  # the controls took the applied edit off (said until a new one)
        self._typing = False
        self.last_render_s = 0.0
        self.original_grid = GridData(columns=columns, size=size, encoding="raw")
        self.edited_grid = GridData(columns=columns, size=size, encoding="raw", mode="outline")
        count = session.layer_shape(layer)[0]
        d = self._listed = session.dissections.get(layer)
        self._undone = None  # the applied edit last undone elsewhere
        super().__init__(
            layer=layer,
            count=count,
            concepts=sorted(set(d.labels)) if d is not None else [],
            top=min(10, count),
            top_max=min(40, count),
            units=", ".join(str(int(u)) for u in (units or [])),
            strength=strength,
            mode=mode,
            has_browser=browser is not None,
        )
        # hold the browser through a callback: an attribute would make close() close it
        self._browser_unit = (lambda: browser.unit) if browser is not None else None
        seed = self.seeds[0]
        self.canvas = CanvasPart(self, session.generate([seed], state=session.state)[0], brush=6)
        self.canvas_caption = (
            f"Paint on {sample_name(seed)}: the edit then applies only inside the painted region, "
            "at the same place on every sample (outlined on the edited side)."
            if session.layer_kind(layer) != "vector"
            else f"{layer} is a vector layer (one value per image, no heatmap): a painted "
            "region does not apply to it; its edits change the whole image's value."
        )
        self._bind(session, invert_settings)
        self.canvas.on_stroke(lambda _mask: self._changed())
        self.refresh()

    # ------------------------------------------------------------ controls
    @t.validate("mode")
    def _check_mode(self, proposal) -> str:
        if proposal["value"] not in _MODES:
            raise InvalidValue(f"mode must be one of {_MODES}; got {proposal['value']!r}")
        return proposal["value"]

    @t.validate("concept")
    def _check_concept(self, proposal) -> str:
        if proposal["value"] and proposal["value"] not in self.concepts:
            known = ", ".join(self.concepts) or "none: dissect the layer first"
            raise InvalidValue(f"unknown concept {proposal['value']!r}; concepts: {known}")
        return proposal["value"]

    @t.observe("concept", "top")
    def _on_concept(self, _change=None) -> None:
        d = self.session.dissections.get(self.layer)
        if d is None or not self.concept:
            return
        self._typing = True
        try:
            self.units = ", ".join(str(u) for u in d.ranked_for(self.concept)[: self.top])
        finally:
            self._typing = False

    @t.observe("units")
    def _on_units(self, _change) -> None:
        if not self._typing and self.concept:
            self.concept = ""  # typed units: no longer the concept's top units
        self._changed()

    @t.observe("strength", "mode", "region")
    def _on_control(self, _change) -> None:
        self._changed()

    def _changed(self) -> None:
        if self._runner is None:
            return  # still constructing
        touch(self.session, self)
        self.schedule(self._render)

    def _do_add_unit(self) -> None:
        if self._browser_unit is not None:
            self._add_unit(self._browser_unit())

    def _add_unit(self, unit: int) -> None:
        current = parse_units(self.units, self.count)
        if unit not in current:
            self.units = ", ".join(str(u) for u in [*current, unit])

    def _do_apply(self) -> None:
        self.schedule(self._apply_now)

    def _do_unapply(self) -> None:
        self.schedule(self._unapply_now)

    # ------------------------------------------------------------ apply
    def apply(self):
        """Put the previewed edit on the Session (every widget and later code see it);
        returns it, or None when the controls describe no edit."""
        self.schedule(self._apply_now)
        self.wait()
        return self.edit if self.applied else None

    def unapply(self) -> None:
        """Take this panel's edit off the Session again (the preview stays)."""
        self.schedule(self._unapply_now)
        self.wait()

    def _apply_now(self) -> None:
        if not self._render():  # the newest controls first; invalid ones apply nothing
            return
        if self.edit is None or self.applied:
            return
        with self._quietly():
            self.session.push(self.edit)
        self._applied, self._undone_elsewhere = self.edit, False
        self._render()

    # ------------------------------------------------------------ rendering
    def _wanted_edit(self):
        units = parse_units(self.units, self.count)
        if not units or self.strength == 0:
            return None
        mask = None
        if self.region:
            mask = self.canvas.mask.astype("float32")
            if not mask.any():
                return None
        value = 0.0 if self.mode == "remove" else "high"
        return self.session.ablation(self.layer, units, self.strength, mask, value)

    def refresh(self) -> None:
        """Redraw both sides for the Session as it is now (after an event or on request)."""
        d = self.session.dissections.get(self.layer)
        if d is not self._listed:  # a new dissection: its concepts, the chosen one's units
            self._listed = d
            self.concepts = sorted(set(d.labels)) if d is not None else []
            if self.concept and self.concept not in self.concepts:
                self.concept = ""
            self._on_concept()
        self._render()

    def _render(self) -> bool:
        """Redraw for the controls as they are; False (the error shown) when they are invalid."""
        start = time.perf_counter()
        s = self.session
        if self._applied is not None and self._applied not in s.edits:
            self._undone = self._applied  # undone elsewhere
            self._applied, self._undone_elsewhere = None, True
        elif self._applied is None and self.edit is not None and self.edit in s.edits:
            self._applied, self._undone_elsewhere = self.edit, False  # redone elsewhere
        elif self._undone_elsewhere and self._undone in s.edits:
            self._undone_elsewhere = False  # back on the Session (redo), though not this preview
        try:
            new = self._wanted_edit()
        except (ValueError, KeyError, TypeError) as err:
            self.applied = self._applied is not None  # what the Session holds, even now
            self._show_invalid(err)
            return False
        for known in (self._applied, self.edit):  # unchanged controls: the same edit (cached)
            if known is not None and new is not None and self._same(new, known):
                new = known
                break
        taken_off = self._applied is not None and new is None
        if self._applied is not None and new is not self._applied:
            with self._quietly():  # retune the applied edit in place (None: take it off)
                self._applied = s.replace(self._applied, new)
        self._taken_off = taken_off or (self._taken_off and new is None)
        self.edit = new
        state = s.state
        base = state.minus(self._applied) if self._applied is not None else state
        shown = state if self._applied is not None else (base.plus(new) if new else base)
        edited = s.generate(self.seeds, state=shown)
        self.edited_grid.set_images(edited)
        self.edited_grid.captions = self.original_grid.captions = photo_captions(self.seeds)
        self._outline(new)
        with self.hold_sync():
            self.edited = self.edited_grid.payload()
            if self.original_grid._images == [] or base.key != getattr(self, "_base_key", None):
                self.original_grid.set_images(s.generate(self.seeds, state=base))
                self.original = self.original_grid.payload()
                self._base_key = base.key
            self.applied = self._applied is not None
            self._say(*self._describe(new))
        self.last_render_s = time.perf_counter() - start
        return True

    def _show_invalid(self, err) -> None:
        """Controls that describe no valid edit: the edited side empties (it would show a
        preview the controls no longer describe) and the status says what is wrong."""
        self.edited_grid.set_images(np.zeros((0, 1, 1, 3), np.uint8))
        self.edited_grid.set_heatmaps(None)
        with self.hold_sync():
            self.edited = self.edited_grid.payload()
            self._show_error(err)
            self.status += " (the edited side is empty until the controls describe an edit)"
            if self._applied is not None:
                self.status += f"; still applied: {self._applied.describe()}"

    def _use_seeds(self, seeds) -> None:
        super()._use_seeds(seeds)
        self._base_key = None  # the original side is drawn again for the new samples

    def _same(self, a, b) -> bool:
        return a.signature() == b.signature()

    def _outline(self, edit) -> None:
        """Outline the painted region on the edited side (the same place on every sample)."""
        if edit is None or edit.mask is None:
            self.edited_grid.set_heatmaps(None)
            return
        mask = np.asarray(edit.mask, np.float32)
        heat = np.repeat(mask[None], len(self.seeds), axis=0)
        self.edited_grid.set_heatmaps(heat, vmin=0, vmax=1, threshold=0.5)

    def _describe(self, edit) -> tuple[str, str]:
        if edit is None and self._taken_off:
            return (
                "your applied edit was taken off the Session, as the controls now describe none: "
                + self._why_nothing(),
                "nothing",
            )
        if edit is None:
            if self._applied is None and self._undone_elsewhere:
                return "your applied edit was undone elsewhere; " + self._why_nothing(), "nothing"
            return self._why_nothing(), "nothing"
        what = edit.describe()
        if self._applied is not None:
            return (
                f"APPLIED: {what}. It is on the Session: every widget and session.generate() "
                "see it. Moving a control retunes it; Remove takes it off.",
                "applied",
            )
        why = " (your applied edit was undone elsewhere)" if self._undone_elsewhere else ""
        return (
            f"PREVIEW: {what}{why}. Only this panel shows it; Apply puts it on the Session.",
            "preview",
        )

    def _why_nothing(self) -> str:
        if not parse_units(self.units, self.count):  # "" or only separators
            return "no units chosen: nothing to preview (pick a concept or type unit numbers)"
        if self.strength == 0:
            return "strength 0: nothing changes"
        return "paint a region on the sample (or untick the region box): nothing changes yet"

    def close(self) -> None:
        """Finish the newest render, then stop listening and free the worker and model
        (an applied edit stays on the Session: edits outlive widgets)."""
        if self._runner is not None:
            self.wait(5)
        super().close()
