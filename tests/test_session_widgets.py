"""UnitBrowser and AblationPanel on the tiny generator: one anywidget each, preview until
Apply, undo noticed, other widgets deferred while a control is dragged, newest wins, cleanup."""

from __future__ import annotations

import time

import numpy as np
import pytest

from gandissect_widgets.widgets import AblationPanel, RuleEditor, UnitBrowser
from gandissect_widgets.widgets import _session_widget as sw
from gandissect_widgets.widgets._session_widget import parse_units


def _pixels(grid_trait: dict) -> list[bytes]:
    return list(grid_trait["images"])


def test_every_session_widget_is_one_anywidget_with_its_state_in_traits(gen_session):
    import anywidget
    import ipywidgets

    widgets = [
        UnitBrowser(gen_session, "layer2", seeds=[0, 1]),
        AblationPanel(gen_session, "layer2", units=[1], seeds=[0, 1]),
        RuleEditor(gen_session, "layer2", seeds=[0, 1], stat_samples=16, cache=False),
    ]
    for w in widgets:
        assert isinstance(w, anywidget.AnyWidget)
        assert not isinstance(w, ipywidgets.Box)  # no containers: marimo and saved pages work
        state = w.get_state()
        assert "status" in state and "_action" in state
        assert "export default" in w._esm and "class GridView" in w._esm
        w.close()


def test_unit_browser_shows_heatmaps_and_steps(seg_session):
    seg_session.dissect("layer2", n=16, cache=False, progress=False)
    b = UnitBrowser(seg_session, "layer2", seeds=[0, 1, 2, 3], top=4)
    assert b.sort == "iou" and [v for _, v in b.sorts] == ["iou", "unit", "activation"]
    first = b.order[0]
    assert b.unit == first
    heat = b.samples_grid.heatmaps
    acts = seg_session.activations("layer2", [0, 1, 2, 3])[:, first].numpy()
    assert heat.shape == acts.shape
    step = b.samples_grid.vmax / 255 + 1e-6
    np.testing.assert_allclose(heat, np.minimum(acts, b.samples_grid.vmax), atol=step)
    d = seg_session.dissections["layer2"]
    assert b.samples["threshold"] == pytest.approx(float(d.thresholds[first]))
    assert b.heat_mode == "highlight" and len(b.top_grid) == 4
    assert len(b.samples["images"]) == 4 and b.samples["shape"] == [16, 16, 3]
    b.unit = 5
    assert b.wait()
    assert b.info.startswith("unit 5 · label")
    b.sort = "unit"
    assert b.order == list(range(16)) and b.labels[3].startswith("unit 3 ·")
    with pytest.raises(ValueError, match="units 0-15"):
        b.unit = 16
    with pytest.raises(ValueError, match="heat_mode must be"):
        b.heat_mode = "rainbow"
    b.close()
    assert b._on_session_event not in seg_session.observers


def test_unit_browser_without_dissection(gen_session):
    b = UnitBrowser(gen_session, "layer1", seeds=[0, 1], pool=8, top=3)
    assert [v for _, v in b.sorts] == ["unit", "activation"]
    assert "no dissection" in b.info and len(b.top_grid) == 3
    b.close()


def test_constructing_widgets_never_changes_the_session(gen_session):
    before = gen_session.generate([0, 1])
    widgets = [
        UnitBrowser(gen_session, "layer3", seeds=[0, 1]),
        AblationPanel(gen_session, "layer2", units=list(range(16)), seeds=[0, 1]),
        RuleEditor(gen_session, "layer2", seeds=[0, 1], stat_samples=16, cache=False),
    ]
    assert gen_session.edits == [] and gen_session.stack.undone == []
    np.testing.assert_array_equal(gen_session.generate([0, 1]), before)
    panel = widgets[1]
    assert panel.edit is not None and not panel.applied and panel.status_kind == "preview"
    assert "PREVIEW" in panel.status and "Apply" in panel.status
    assert _pixels(panel.edited) != _pixels(panel.original)  # the preview shows the edit
    for w in widgets:
        w.close()
    assert gen_session.edits == []


def test_apply_puts_the_edit_on_the_session_and_other_widgets_redraw(gen_session):
    browser = UnitBrowser(gen_session, "layer3", seeds=[0, 1])
    panel = AblationPanel(gen_session, "layer2", units=list(range(16)), seeds=[0, 1])
    before_browser, before_heat = _pixels(browser.samples), browser.samples_grid.heatmaps.copy()
    preview, original = _pixels(panel.edited), _pixels(panel.original)
    edit = panel.apply()
    assert gen_session.edits == [edit] and panel.applied and panel.status_kind == "applied"
    assert "APPLIED" in panel.status
    assert browser.wait()
    assert _pixels(browser.samples) != before_browser
    assert not np.array_equal(browser.samples_grid.heatmaps, before_heat)
    assert _pixels(panel.edited) == preview and _pixels(panel.original) == original
    # applied: moving a control retunes the edit in place
    panel.strength = 0.5
    assert panel.wait() and browser.wait()
    assert len(gen_session.edits) == 1 and gen_session.edits[0].strength == 0.5
    assert gen_session.edits[0] is panel.edit and panel.applied
    panel.mode = "insert"
    panel.wait()
    assert gen_session.edits[0].value == "high"
    # Remove takes it off; the preview stays
    panel.press("unapply")
    panel.wait()
    assert gen_session.edits == [] and not panel.applied and panel.status_kind == "preview"
    panel.close()
    browser.close()
    assert gen_session.observers == []


def test_panel_notices_undo_and_redo_elsewhere(gen_session):
    panel = AblationPanel(gen_session, "layer2", units=[0, 1, 2], seeds=[0, 1])
    edit = panel.apply()
    gen_session.undo()  # code elsewhere
    assert panel.wait()
    assert not panel.applied and panel.status_kind == "preview"
    assert "undone elsewhere" in panel.status
    assert gen_session.edits == []
    gen_session.redo()
    assert panel.wait()
    assert panel.applied and gen_session.edits == [edit]
    panel.close()


def test_typed_units_leave_the_concept_and_top_follows_only_a_concept(seg_session):
    d = seg_session.dissect("layer2", n=16, cache=False, progress=False)
    panel = AblationPanel(seg_session, "layer2", seeds=[0])
    concept = panel.concepts[0]
    panel.concept = concept
    panel.top = 3
    assert parse_units(panel.units, 16) == d.ranked_for(concept)[:3]
    panel.units = "0, 1"
    assert panel.concept == ""  # typed: "(by number)"
    panel.top = 5
    assert panel.units == "0, 1"  # top does nothing by number
    with pytest.raises(ValueError, match="unknown concept"):
        panel.concept = "nope"
    panel.close()


def test_panel_region_outlined_and_errors_keep_the_last_good_edit(gen_session):
    panel = AblationPanel(gen_session, "layer2", units=[1, 2], seeds=[0, 1])
    assert "same place on every sample" in panel.canvas_caption
    panel.region = True
    panel.wait()
    assert panel.edit is None and panel.status_kind == "nothing"
    assert "paint a region" in panel.status
    mask = np.zeros((16, 16), np.uint8)
    mask[:8] = 1
    panel.canvas.mask = mask
    panel.canvas._notify()  # what a stroke in the page does
    panel.wait()
    assert panel.edit.mask is not None and float(panel.edit.mask.sum()) == 128
    outline = panel.edited_grid.heatmaps
    assert outline.shape == (2, 16, 16) and panel.edited["threshold"] == 0.5
    np.testing.assert_array_equal(outline[1], mask)  # the same region on every sample
    good = panel.edit
    panel.units = "99"
    panel.wait()
    assert panel.status_kind == "error" and "out of range" in panel.status
    assert panel.edit is good and gen_session.edits == []
    panel.close()


def test_newest_value_wins(gen_session):
    panel = AblationPanel(gen_session, "layer2", units=[0, 1, 2], seeds=list(range(8)))
    for v in np.linspace(0.05, 1.0, 20):
        panel.strength = float(round(v, 2))
    panel.wait()
    assert panel.edit.strength == 1.0 and gen_session.edits == []
    assert panel._runner.skipped > 0
    panel.close()


def test_other_widgets_defer_redraws_while_a_control_is_dragged(gen_session, monkeypatch):
    browser = UnitBrowser(gen_session, "layer3", seeds=[0, 1])
    panel = AblationPanel(gen_session, "layer2", units=list(range(8)), seeds=[0, 1])
    panel.apply()
    browser.wait()
    draws = []
    original = browser.refresh
    monkeypatch.setattr(browser, "refresh", lambda: draws.append(1) or original())
    dragging = True  # the panel's slider is held: busy_for says so to everyone else
    monkeypatch.setattr(sw, "busy_for", lambda s, w: 0.05 if dragging and w is not panel else 0)
    for v in np.linspace(0.9, 0.3, 8):  # each value retunes the applied edit: an event
        panel.strength = float(round(v, 2))
        panel.wait()
    time.sleep(0.3)
    assert gen_session.edits[0].strength == 0.3
    assert draws == [], "the browser redrew during the drag"
    dragging = False  # released: one redraw, of the newest state
    assert browser.wait()
    assert len(draws) == 1
    panel.close()
    browser.close()


def test_touch_marks_the_session_busy_until_it_settles(gen_session):
    panel = AblationPanel(gen_session, "layer2", units=[1], seeds=[0])
    other = object()
    panel.strength = 0.5  # a control moved: the panel touches the Session
    assert 0 < sw.busy_for(gen_session, other) <= sw.SETTLE_S
    assert sw.busy_for(gen_session, panel) == 0.0
    panel.wait()
    time.sleep(sw.SETTLE_S)
    assert sw.busy_for(gen_session, other) == 0.0
    panel.close()


def test_busy_for_ignores_the_widget_itself(gen_session):
    a, b = object(), object()
    sw.touch(gen_session, a)
    assert sw.busy_for(gen_session, a) == 0.0
    assert 0 < sw.busy_for(gen_session, b) <= sw.SETTLE_S


def test_press_runs_the_action_and_errors_show_in_the_status(gen_session):
    panel = AblationPanel(gen_session, "layer2", units=[3], seeds=[0])
    panel.press("apply")
    panel.wait()
    assert panel.applied and len(gen_session.edits) == 1
    panel.press("no_such_button")  # ignored
    panel.close()


def test_parse_units():
    assert parse_units("3, 7, 12-14", 20) == [3, 7, 12, 13, 14]
    assert parse_units("", 5) == []
    with pytest.raises(ValueError, match="units 0-4"):
        parse_units("2-9", 5)
    with pytest.raises(ValueError, match="cannot read"):
        parse_units("x", 5)
