"""UnitBrowser, AblationPanel and RuleEditor modules alone in headless Chromium: what they draw
(pixels), what their controls send back, and that they wrap instead of overflowing.

Renders run in each widget's worker thread; what they set reaches the page when the test
calls ``view.flush()`` (the page is driven from the test's thread only).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from gandissect_widgets import render
from gandissect_widgets.widgets import AblationPanel, RuleEditor, Snapshot, UnitBrowser

from .conftest import WidgetView, _to_wire

pytestmark = pytest.mark.browser


class CompositeView(WidgetView):
    """A WidgetView whose Python-side changes from other threads wait for ``flush()``."""

    def __init__(self, page, widget):
        self._main = threading.current_thread()
        super().__init__(page, widget)

    def _send_state(self, key=None):
        if threading.current_thread() is self._main:
            super()._send_state(key)

    def flush(self) -> None:
        """Wait for the widget's renders, then send its whole state to the page."""
        self.widget.wait()
        self.page.evaluate("state => gw.update(state)", _to_wire(self.widget.get_state()))
        self.settle()

    def act(self):
        """Deliver what the page sent, let Python act on it, and show the result."""
        sent = self.sync()
        self.flush()
        return sent


@pytest.fixture
def view(page):
    made = []

    def mount(widget):
        made.append(widget)
        return CompositeView(page, widget)

    yield mount
    for widget in made:
        widget.close()


def _rgb(view, selector, index=0):
    return view.pixels(selector, index)[..., :3]


def test_unit_browser_draws_gan_dissection_highlights(view, seg_session):
    seg_session.dissect("layer2", n=16, cache=False, progress=False)
    browser = UnitBrowser(seg_session, "layer2", seeds=[0, 1, 2, 3], size=16, top=2)
    acts = seg_session.activations("layer2", [0, 1, 2, 3])
    d = seg_session.dissections["layer2"]
    part = [float((acts[:, u] >= d.thresholds[u]).float().mean()) for u in range(16)]
    browser.unit = max(range(16), key=lambda u: min(part[u], 1 - part[u]))  # partly above
    v = view(browser)
    v.flush()
    g = browser.samples_grid
    expected = render.highlight(g.images, g.heatmaps, g.threshold)
    dimmed = 0
    for i in range(4):
        shown = _rgb(v, ".gw-grid[data-name=samples] canvas", i)
        differ = np.abs(shown.astype(int) - expected[i].astype(int)).max(-1) > 2
        assert differ.mean() < 0.03, f"image {i}: {differ.sum()} of {differ.size} pixels differ"
        dimmed += int((shown < g.images[i]).all(-1).sum())
    assert dimmed > 0  # somewhere below the threshold: not the bare images
    # the list: a click selects, arrow keys step, the heatmap mode toggles
    options = v.el.locator(".gw-ub-units option")
    assert options.count() == 16
    options.nth(3).click()
    v.act()
    assert browser.unit == browser.order[3]
    v.el.locator(".gw-ub-units").press("ArrowDown")
    v.act()
    assert browser.unit == browser.order[4]
    assert v.el.locator(".gw-ub-info").inner_text().startswith(f"unit {browser.unit} ·")
    v.el.get_by_role("button", name="colour map").click()
    v.act()
    assert browser.heat_mode == "colormap"


def test_unit_browser_opens_on_a_unit_with_an_outline(view, seg_session):
    """Finding 6: the first unit listed (unit 0 here, as hamlet's best IoU unit, a mountain
    unit, on its eight default samples) may be below its threshold on every sample shown: the
    browser opens on the first listed unit that shows, so its samples carry outlines."""
    seeds = [1, 3]
    high = seg_session.unit_levels("layer2")["high"]
    acts = seg_session.activations("layer2", seeds)
    assert not bool((acts[:, 0] >= high[0]).any())  # unit 0 fires on neither sample
    browser = UnitBrowser(seg_session, "layer2", seeds=seeds, size=32, top=2)
    v = view(browser)
    v.flush()
    outline = 0
    for i in range(len(seeds)):
        shown = _rgb(v, ".gw-grid[data-name=samples] canvas", i)
        outline += int((np.abs(shown.astype(int) - [255, 214, 10]).max(-1) <= 1).sum())
    assert outline > 0, f"unit {browser.unit}: dimmed samples with no outline"
    assert browser.unit == next(u for u in browser.order if (acts[:, u] >= high[u]).any())
    assert "below it on all" not in v.el.locator(".gw-ub-info").inner_text()


def test_ablation_panel_slider_apply_and_labels(view, gen_session):
    panel = AblationPanel(gen_session, "layer2", units=list(range(16)), seeds=[0, 1], size=32)
    v = view(panel)
    status = v.el.locator(".gw-status")
    assert status.locator(".gw-badge").inner_text().lower() == "preview"
    assert v.el.locator("input[aria-label=top]").is_disabled()  # by number: top does nothing
    units = v.el.locator("input[aria-label=units]")  # a long list, whole on hover
    assert units.get_attribute("title") == ", ".join(map(str, range(16))) == units.input_value()
    before = _rgb(v, ".gw-grid[data-name=edited] canvas")
    slider = v.el.locator("input[aria-label=strength]")
    slider.fill("0.4")  # an input event, as a drag makes
    v.act()
    assert panel.strength == pytest.approx(0.4) and gen_session.edits == []
    assert not np.array_equal(_rgb(v, ".gw-grid[data-name=edited] canvas"), before)
    v.el.get_by_role("button", name="Apply").click()
    v.act()
    assert panel.applied and len(gen_session.edits) == 1
    assert status.locator(".gw-badge").inner_text().lower() == "applied"
    assert v.el.get_by_role("button", name="Remove from session").is_visible()
    gen_session.undo()
    v.flush()
    assert "undone elsewhere" in status.inner_text()
    assert v.el.get_by_role("button", name="Apply").is_enabled()
    v.el.locator(".gw-ab-region").check()
    v.act()
    assert v.el.locator(".gw-ab-paintbox").is_visible()
    assert "same place on every sample" in v.el.locator(".gw-ab-caption").inner_text()


def test_rule_editor_buttons_say_what_they_undo(view, gen_session):
    editor = RuleEditor(gen_session, "layer2", seeds=range(4), stat_samples=16, cache=False)
    v = view(editor)
    stroke = v.el.get_by_role("button", name="Undo stroke")
    rewrite = v.el.get_by_role("button", name="Undo rewrite")
    assert stroke.count() == 1 and rewrite.count() == 1
    assert stroke.inner_text() != rewrite.inner_text()
    v.el.locator(".gw-grid[data-name=gallery] canvas").nth(2).click()
    v.act()
    assert editor.current == 2 and "#2" in v.el.locator(".gw-re-caption").inner_text()
    v.el.get_by_role("button", name="Copy").click()
    v.act()
    assert "paint a region" in v.el.locator(".gw-status").inner_text()


@pytest.mark.parametrize("width", [360, 700])
def test_composites_wrap_instead_of_overflowing(view, page, gen_session, width):
    page.set_viewport_size({"width": width, "height": 800})
    page.add_style_tag(content="#root > div { display: block !important; }")
    for widget in (
        UnitBrowser(gen_session, "layer2", seeds=range(8), size=112),
        AblationPanel(gen_session, "layer2", units=[1], seeds=range(8), size=112),
        RuleEditor(gen_session, "layer2", seeds=range(8), size=112, stat_samples=16, cache=False),
    ):
        v = view(widget)
        v.flush()
        over = page.evaluate(
            """() => [...document.querySelectorAll('#root *')]
                .filter((e) => e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0)
                .filter((e) => getComputedStyle(e).overflowX !== 'hidden')
                .map((e) => e.className + ' ' + e.scrollWidth + '>' + e.clientWidth)"""
        )
        root = page.evaluate(
            "() => { const r = document.querySelector('#root > div');"
            " return [r.scrollWidth, r.clientWidth]; }"
        )
        assert root[0] <= root[1], (type(widget).__name__, root)
        assert not over, (type(widget).__name__, over)


def test_saved_unit_pages_draw_the_same_highlight(mount):
    """Snapshot pages (what save_html keeps of a UnitBrowser) draw render.highlight too."""
    rng = np.random.default_rng(0)
    images = rng.integers(40, 255, (2, 16, 16, 3), dtype=np.uint8)
    heat = rng.random((2, 4, 4)) * 4
    snap = Snapshot(size=16)
    snap.add_page("u", [("samples", images, heat, None, 2.0)])
    v = mount(snap)
    group = snap.pages[0]["groups"][0]
    lo, hi = float(heat.min()), float(heat.max())
    shown_heat = lo + np.frombuffer(b"".join(snap._heats), np.uint8).reshape(2, 4, 4) / 255 * (
        hi - lo
    )
    expected = render.highlight(images, shown_heat, lo + group["level"] / 255 * (hi - lo))
    for i in range(2):
        shown = v.pixels(".gw-snap-cell canvas", i)[..., :3]
        differ = np.abs(shown.astype(int) - expected[i].astype(int)).max(-1) > 2
        assert differ.mean() < 0.03, f"image {i}: {differ.sum()} pixels differ"


def test_token_and_vector_layers_in_browser_panel_and_saved_pages(view, vit_session):
    """A ViT's token layer draws heatmaps on its patch grid; its vector layer (the class token
    after the last block) shows top images with values and says there is no heatmap."""
    s = vit_session
    s.dissect("blocks.0", n=16, batch_size=8, cache=False, progress=False)
    tokens = UnitBrowser(s, "blocks.0", seeds=[0, 1, 2, 3], size=16, top=2)
    v = view(tokens)
    v.flush()
    g = tokens.samples_grid
    assert g.heatmaps.shape == (4, 4, 4)  # the 4x4 patch grid
    expected = render.highlight(g.images, g.heatmaps, g.threshold)
    for i in range(4):
        shown = _rgb(v, ".gw-grid[data-name=samples] canvas", i)
        differ = np.abs(shown.astype(int) - expected[i].astype(int)).max(-1) > 2
        assert differ.mean() < 0.03, f"image {i}: {differ.sum()} of {differ.size} pixels differ"
    vector = UnitBrowser(s, "pool", seeds=[0, 1, 2, 3], size=16, top=2)
    v = view(vector)
    v.flush()
    assert vector.samples_grid.heatmaps is None and vector.top_grid.heatmaps is None
    for i in range(4):  # the bare images, no overlay
        shown = _rgb(v, ".gw-grid[data-name=samples] canvas", i)
        assert np.abs(shown.astype(int) - vector.samples_grid.images[i].astype(int)).max() <= 2
    assert "no heatmap" in v.el.locator(".gw-ub-info").inner_text()
    assert v.el.locator(".gw-grid[data-name=top] canvas").count() == 2
    # the AblationPanel edits both kinds; a painted region does not apply to a vector
    for layer in ("blocks.0", "pool"):
        panel = AblationPanel(s, layer, units=[0, 1], seeds=[0, 1], size=16)
        v = view(panel)
        v.el.get_by_role("button", name="Apply").click()
        v.act()
        assert panel.applied and s.edits[-1].layer == layer
        s.undo()
    v.el.locator(".gw-ab-region").check()
    v.act()
    assert "vector layer" in v.el.locator(".gw-ab-caption").inner_text()
    # the saved pages of a report: patch-grid heatmaps, and none for the vector layer
    from gandissect_widgets.widgets.snapshot import snapshot_units

    for layer, heat_shape in (("blocks.0", [4, 4]), ("pool", [0, 0])):
        snap = snapshot_units(s, layer, [0, 1], seeds=[0, 1], top=2, size=16)
        v = view(snap)
        assert snap.pages[0]["groups"][0]["heat_shape"] == heat_shape
        shown = v.pixels(".gw-snap-cell canvas", 0)[..., :3]
        bare = s.generate([0])[0].astype(int)
        assert (np.abs(shown.astype(int) - bare).max() <= 2) == (layer == "pool")
