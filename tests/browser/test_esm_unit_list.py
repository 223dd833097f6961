"""unit_list.js alone in headless Chromium: click and arrow keys choose units."""

from __future__ import annotations

import pytest

from gandissect_widgets.widgets.unit_browser import UnitList

pytestmark = pytest.mark.browser


def test_click_and_arrow_keys_step_units(mount):
    units = UnitList(units=[7, 3, 9, 1], labels=["u7", "u3", "u9", "u1"], value=7, rows=4)
    view = mount(units)
    assert view.el.locator(".gw-unit-list[data-lm-suppress-shortcuts]").count() == 1
    view.el.locator("option").nth(1).click()
    view.sync()
    assert units.value == 3
    select = view.el.locator("select")
    select.press("ArrowDown")
    select.press("ArrowDown")
    view.sync()
    assert units.value == 1
    select.press("ArrowDown")  # already at the end: stays
    select.press("ArrowUp")
    view.sync()
    assert units.value == 9
    units.labels, units.units = ["a", "b"], [5, 6]
    units.value = 6
    view.settle()
    assert view.el.locator("option").all_inner_texts() == ["a", "b"]
    assert select.evaluate("s => s.value") == "6"
