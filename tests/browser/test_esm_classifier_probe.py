"""ClassifierProbe's module alone in headless Chromium: a sketch drawn with the mouse changes
the bars, steering previews without touching the Session until Apply, an attack shows its
result, and one cancelled from the page stops."""

from __future__ import annotations

import time

import pytest

from gandissect_widgets.widgets import ClassifierProbe

from .test_esm_composites import CompositeView

pytestmark = pytest.mark.browser


def _bars(v) -> dict:
    rows = v.el.locator(".gw-cp-bar")
    return {
        rows.nth(i).get_attribute("data-cls"): float(rows.nth(i).get_attribute("data-p"))
        for i in range(rows.count())
    }


def test_sketch_steer_and_attack_in_the_page(page, labelled_session, monkeypatch):
    s = labelled_session
    probe = ClassifierProbe(s, "conv2", sample=3)
    try:
        v = CompositeView(page, probe)
        v.flush()
        before = _bars(v)
        assert set(before) == {"darkish", "brightish"}
        box = v.box(".gw-paint-view")
        mouse = page.mouse
        mouse.move(box["x"] + 4, box["y"] + 4)
        mouse.down()
        for i in range(1, 12):
            mouse.move(box["x"] + box["width"] * i / 12, box["y"] + box["height"] * i / 12, steps=4)
        mouse.up()
        v.act()
        sketched = _bars(v)
        assert probe.canvas.mask.any() and sketched != before

        v.el.get_by_label("steer towards").select_option("brightish")
        v.act()
        assert probe.status_kind == "preview" and s.edits == []
        assert _bars(v) != sketched and probe.probs_preview != probe.probs
        # the grey bars are the Session as it is: a legend says so and the figures read was -> now
        assert "without the preview" in v.el.locator(".gw-cp-legend").text_content()
        values = v.el.locator(".gw-cp-value").all_text_contents()
        assert any("\u2192" in t for t in values), values
        v.el.get_by_role("button", name="Apply").click()
        v.act()
        assert len(s.edits) == 1 and probe.applied
        assert "(applied)" in v.el.locator(".gw-cp-legend").text_content()
        assert v.el.get_by_role("button", name="Remove from session").is_visible()

        v.el.get_by_role("button", name="Attack").click()
        v.act()
        assert probe.wait_attack(30)
        v.flush()
        assert probe.attack_state == "done"
        assert "dB" in v.el.locator(".gw-cp-attack-text").text_content()
        assert v.el.locator(".gw-grid[data-name=attack] canvas").count() == 3

        # an attack that runs until cancelled from the page
        def endless(*args, job, **kwargs):
            while True:
                job.step(0)  # raises Cancelled once the page asked
                time.sleep(0.02)

        monkeypatch.setattr(s, "attack", endless)
        v.el.get_by_role("button", name="Attack").click()
        v.act()
        assert probe.attack_state == "running"
        v.el.get_by_role("button", name="cancel").click()
        v.act()
        assert probe.wait_attack(30)
        v.flush()
        assert probe.attack_state == "cancelled"
        assert v.el.locator(".gw-cp-attack-text").text_content() == "attack cancelled"
        assert v.el.get_by_role("button", name="cancel").is_hidden()
    finally:
        probe.close()
