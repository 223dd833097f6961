"""UnitBrowser and AblationPanel on the tiny generator: shared Session, newest wins, cleanup."""

from __future__ import annotations

import numpy as np
import pytest

from gandissect_widgets.widgets import AblationPanel, UnitBrowser
from gandissect_widgets.widgets._session_widget import parse_units


def _pixels(grid):
    return list(grid._images)


def test_unit_browser_shows_heatmaps_and_steps(seg_session):
    seg_session.dissect("layer2", n=16, cache=False, progress=False)
    b = UnitBrowser(seg_session, "layer2", seeds=[0, 1, 2, 3], top=4)
    assert b.sort.value == "iou"
    first = b.units.units[0]
    assert b.unit == first
    heat = b.samples_grid.heatmaps
    acts = seg_session.activations("layer2", [0, 1, 2, 3])[:, first].numpy()
    assert heat.shape == acts.shape
    step = b.samples_grid.vmax / 255 + 1e-6
    np.testing.assert_allclose(heat, np.minimum(acts, b.samples_grid.vmax), atol=step)
    assert len(b.top_grid) == 4
    b.unit = 5
    assert b.info.value.startswith("<b>unit 5</b>")
    b.sort.value = "unit"
    assert b.units.units == list(range(16)) and b.units.labels[3].startswith("unit 3 ·")
    with pytest.raises(ValueError, match="units 0-15"):
        b.unit = 16
    b.close()
    assert b._on_session_event not in seg_session._observers


def test_unit_browser_without_dissection(gen_session):
    b = UnitBrowser(gen_session, "layer1", seeds=[0, 1], pool=8, top=3)
    assert [v for _, v in b.sort.options] == ["unit", "activation"]
    assert "no dissection" in b.info.value and len(b.top_grid) == 3


def test_panel_edit_refreshes_other_widgets(gen_session):
    browser = UnitBrowser(gen_session, "layer3", seeds=[0, 1])
    panel = AblationPanel(gen_session, "layer2", seeds=[0, 1])
    assert panel.edit is None and gen_session.edits == []
    before_browser = _pixels(browser.samples_grid)
    before_heat = browser.samples_grid.heatmaps.copy()
    before_edited = _pixels(panel.edited)
    before_original = _pixels(panel.original)
    panel.units.value = "0-15"
    panel.wait()
    assert gen_session.edits == [panel.edit] and panel.edit.units == list(range(16))
    assert _pixels(panel.edited) != before_edited
    assert _pixels(panel.original) == before_original  # the original side stays the original
    assert _pixels(browser.samples_grid) != before_browser
    assert not np.array_equal(browser.samples_grid.heatmaps, before_heat)
    panel.strength.value = 0.5
    panel.wait()
    assert len(gen_session.edits) == 1 and gen_session.edits[0].strength == 0.5
    panel.mode.value = "insert"
    panel.wait()
    assert gen_session.edits[0].value == "high"
    gen_session.undo()  # code changes the Session: the panel redraws
    assert _pixels(panel.edited) == before_edited
    panel.close()
    browser.close()
    assert gen_session._observers == []


def test_panel_region_and_errors(gen_session):
    panel = AblationPanel(gen_session, "layer2", units=[1, 2], seeds=[0])
    panel.region.value = True
    panel.wait()
    assert gen_session.edits == []  # nothing painted yet
    mask = np.zeros((16, 16), np.uint8)
    mask[:8] = 1
    panel.canvas.mask = mask
    panel.schedule()
    panel.wait()
    assert gen_session.edits[0].mask is not None and float(gen_session.edits[0].mask.sum()) == 128
    panel.units.value = "99"
    panel.wait()
    assert "out of range" in panel.status.value
    assert len(gen_session.edits) == 1  # the bad value left the last good edit in place


def test_newest_value_wins(gen_session):
    panel = AblationPanel(gen_session, "layer2", units=[0, 1, 2], seeds=list(range(8)))
    for v in np.linspace(0.05, 1.0, 20):
        panel.strength.value = float(round(v, 2))
    panel.wait()
    assert gen_session.edits[0].strength == 1.0
    assert panel._runner.skipped > 0


def test_parse_units():
    assert parse_units("3, 7, 12-14", 20) == [3, 7, 12, 13, 14]
    assert parse_units("", 5) == []
    with pytest.raises(ValueError, match="units 0-4"):
        parse_units("2-9", 5)
    with pytest.raises(ValueError, match="cannot read"):
        parse_units("x", 5)
