"""The one-anywidget widgets in a saved page (the HTML widget manager, no kernel, every network
request blocked): each replays its saved state, pictures included, and shows its controls
disabled with a note saying why."""

from __future__ import annotations

import ipywidgets.embed as embed
import pytest

from gandissect_widgets import report
from gandissect_widgets.widgets import AblationPanel, RuleEditor, UnitBrowser

from .conftest import block_the_network

pytestmark = pytest.mark.browser

_LIT = """el => [...el.querySelectorAll('.gw-grid canvas')].map((c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let lit = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] || d[i + 1] || d[i + 2]) lit++;
  return lit;
})"""


def _page(widgets) -> str:
    """A saved page holding the widgets themselves (as nbconvert or the embed API saves them)."""
    data = embed.embed_data(views=widgets, drop_defaults=False)
    views = "\n".join(
        f'<script type="application/vnd.jupyter.widget-view+json">{v}</script>'
        for v in map(embed.json.dumps, data["view_specs"])
    )
    state = embed.json.dumps(data["manager_state"]).replace("</", "<\\\\/")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        + report._scripts()
        + f'<script type="application/vnd.jupyter.widget-state+json">{state}</script>'
        + f"</head><body>{views}</body></html>"
    )


def test_saved_widgets_replay_their_state_with_controls_disabled(browser, gen_session, tmp_path):
    widgets = [
        UnitBrowser(gen_session, "layer2", seeds=range(4)),
        AblationPanel(gen_session, "layer2", units=list(range(8)), seeds=range(4)),
        RuleEditor(gen_session, "layer2", seeds=range(4), stat_samples=16, cache=False),
    ]
    path = tmp_path / "saved.html"
    path.write_text(_page(widgets))
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    url, errors = path.as_uri(), []
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests = block_the_network(page, url)
    page.goto(url)
    for css, grids in ((".gw-unit-browser", 12), (".gw-ablation-panel", 8), (".gw-rule-editor", 4)):
        el = page.locator(css)
        el.wait_for(timeout=30_000)
        page.wait_for_function(
            f"el => ({_LIT})(el).length === {grids} && ({_LIT})(el).every((n) => n > 0)",
            arg=el.element_handle(),
            timeout=30_000,
        )
        assert "gw-saved" in el.get_attribute("class")
        note = el.locator(".gw-saved-note")
        assert note.is_visible() and "kernel" in note.inner_text()
        controls = el.locator("button, select, input")
        assert controls.count() > 0
        assert all(controls.nth(i).is_disabled() for i in range(controls.count())), css
    assert page.locator(".gw-ablation-panel .gw-badge").inner_text().lower() == "preview"
    for w in widgets:
        w.close()
    context.close()
    assert not requests, f"the saved page asked the network for {requests}"
    assert not errors, f"JavaScript errors in the saved page: {errors}"
