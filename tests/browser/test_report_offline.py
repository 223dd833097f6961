"""A saved report in headless Chromium with every network request blocked: it renders every
widget from saved state, its client-side switches work, and it asks for nothing."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from gandissect_widgets import report
from gandissect_widgets.widgets import ImageGrid
from gandissect_widgets.widgets.snapshot import snapshot_ablation, snapshot_units

from .conftest import block_the_network

pytestmark = pytest.mark.browser

# For every canvas on the page: its widget's index and how many pixels are not blank.
_CANVASES = """() => [...document.querySelectorAll('.widget-subarea canvas')].map((c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let lit = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i + 3] && (d[i] || d[i + 1] || d[i + 2])) lit++;
  const areas = [...document.querySelectorAll('.widget-subarea')];
  const widget = areas.indexOf(c.closest('.widget-subarea'));
  return { widget, lit, size: c.width * c.height };
})"""
_VIEW_TAG = '<script type="application/vnd.jupyter.widget-view+json">'
_PIXELS = """([w, i]) => {
  const c = document.querySelectorAll('.widget-subarea')[w].querySelectorAll('canvas')[i];
  return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
}"""
# Snapshot views fire "gw-rendered" (not bubbling) when a page is fully drawn; a capturing
# listener installed before the report loads counts them per view, so tests wait on that.
_COUNT_RENDERS = """window.gwRenders = new Map();
window.addEventListener('gw-rendered', (e) => {
  window.gwRenders.set(e.target, (window.gwRenders.get(e.target) || 0) + 1);
}, true);"""
_RENDERS = """(i) => window.gwRenders.get(document.querySelectorAll('.gw-snapshot')[i]) || 0"""


def _redrawn(page, snapshot, action):
    """Do ``action`` and wait until the ``snapshot``-th view has drawn again after it."""
    before = page.evaluate(_RENDERS, snapshot)
    action()
    page.wait_for_function(f"([i, n]) => ({_RENDERS})(i) > n", arg=[snapshot, before])


@pytest.fixture
def saved_report(tmp_path, seg_session):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    session = seg_session
    session.samples = [0, 1, 2, 3]
    session.dissect("layer3", n=16, cache=False, progress=False)
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar(["a", "b"], [2, 1])
    grid = ImageGrid(session.generate([0, 1]), heatmaps=np.random.default_rng(0).random((2, 4, 4)))
    items = [
        "# Offline\n\nA *saved* report.",
        fig,
        grid,
        snapshot_units(session, "layer3", max_units=6, top=2),
        snapshot_ablation(session, "layer3", list(range(8))),
    ]
    path = report.save_html(tmp_path / "lab.html", *items, title="lab")
    plt.close(fig)
    return path


@pytest.fixture
def offline(browser, saved_report):
    """(page, requests): the report opened from file:// with every other request aborted."""
    context = browser.new_context(viewport={"width": 1000, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    url = saved_report.as_uri()
    errors = []
    requests = block_the_network(page, url)
    page.on("request", lambda r: r.url != url and requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.add_init_script(_COUNT_RENDERS)
    page.goto(url)
    views = saved_report.read_text().count(
        '<script type="application/vnd.jupyter.widget-view+json">'
    )
    assert views == 3
    page.wait_for_function(
        f"() => document.querySelectorAll('.widget-subarea').length === {views}"
        f" && ({_CANVASES})().length === 2 + (4 + 2) + 4 && ({_CANVASES})().every(c => c.lit)"
        f" && [0, 1].every(i => ({_RENDERS})(i) > 0)",
        timeout=30_000,
    )
    yield page, requests
    context.close()
    assert not errors, f"JavaScript errors in the report: {errors}"


def test_every_widget_renders_with_zero_requests(offline, tmp_path):
    page, requests = offline
    canvases = page.evaluate(_CANVASES)
    assert {c["widget"] for c in canvases} == {0, 1, 2}
    assert all(c["lit"] > 0.5 * c["size"] for c in canvases)  # drawn, not blank
    assert page.locator("img.gw-figure").count() == 1
    assert page.locator("h1", has_text="Offline").count() == 1
    page.wait_for_function(  # the figure decoded, the fonts loaded: nothing left to draw
        "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)"
        " && document.fonts.status === 'loaded'"
    )
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("GW_SCREENSHOTS"):
        shutil.copy(shot, os.path.join(os.environ["GW_SCREENSHOTS"], "report_offline.png"))
    assert requests == []


def test_switching_units_redraws_the_heatmaps(offline):
    page, requests = offline
    units = page.locator(".gw-snapshot").nth(0)
    first = page.evaluate(_PIXELS, [1, 0])
    options = units.locator("select option").all_inner_texts()
    assert len(options) == 6 and options[0].startswith("unit ")
    _redrawn(page, 0, units.locator("button", has_text="\u25b6").click)
    assert units.get_attribute("data-page") == "1"
    assert units.locator(".gw-snap-info").inner_text().startswith(options[1].split(" · ")[0])
    assert page.evaluate(_PIXELS, [1, 0]) != first
    # heatmaps off: the bare sample remains
    _redrawn(page, 0, units.locator("input[type=checkbox]").uncheck)
    bare = page.evaluate(_PIXELS, [1, 0])
    assert bare != first
    assert bare == page.evaluate(_PIXELS, [2, 0])  # sample 0 as the comparison shows it
    assert requests == []


def test_toggling_original_and_changed(offline):
    page, requests = offline
    compare = page.locator(".gw-snapshot").nth(1)
    original = page.evaluate(_PIXELS, [2, 0])
    _redrawn(page, 1, compare.locator("button", has_text="ablated").click)
    assert compare.get_attribute("data-page") == "1"
    ablated = page.evaluate(_PIXELS, [2, 0])
    assert ablated != original
    assert "gw-snap-on" in compare.locator("button", has_text="ablated").get_attribute("class")
    _redrawn(page, 1, compare.locator("button", has_text="original").click)
    assert page.evaluate(_PIXELS, [2, 0]) == original
    assert requests == []
