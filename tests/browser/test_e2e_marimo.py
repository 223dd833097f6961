"""End to end in marimo: each widget wrapped in ``mo.ui.anywidget(...)``, served by
``marimo run`` (PyPI's marimo), driven in headless Chromium.

marimo shows anywidgets without ipywidgets' containers or widget manager, so this is where a
widget made of ipywidgets boxes would not render at all. The test clicks and steps units, drags
the ablation slider, paints, presses Apply and Remove, and copies, pastes, adds context,
executes and undoes a rewrite; every step is checked on the page's pixels (marimo renders
anywidgets in shadow roots, which Playwright's locators pierce). Last, photos: a file chosen
with "add photo…" and one dropped onto the samples reach the kernel (marimo passes the binary
buffer of ``model.send``), are inverted and shown as "photo 0" and "photo 1" in the
UnitBrowser and the AblationPanel; a text file named .png shows the error line.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from PIL import Image

from gandissect_widgets.zoo import hamlet

from .test_e2e_jupyter import (
    _SETTLED_PIXELS,
    _click_image,
    _drag_slider,
    _on_screen,
    _paint_stroke,
    _wait_pixels_change,
)
from .test_e2e_photos import DROP, _wait_text

pytest.importorskip("marimo")

TIMEOUT_MS = 120_000

NOTEBOOK = """\
import marimo

app = marimo.App(width="full")


@app.cell
def _():
    import marimo as mo
    import torch
    import gandissect_widgets as gw

    torch.set_num_threads(1)
    session = gw.Session.from_zoo("hamlet", device="cpu")
    session.dissect("layer4", n=200, progress=False)
    return gw, mo, session


@app.cell
def _(gw, mo, session):
    fast = dict(steps=10, restarts=1, candidates=4)  # photos: a quick inversion
    browser = mo.ui.anywidget(
        gw.UnitBrowser(session, "layer4", columns=4, size=96, invert_settings=fast)
    )
    browser
    return (browser,)


@app.cell
def _(gw, mo, session):
    count = session.layer_shape("layer4")[0]
    units = session.unit_levels("layer4")["mean"].argsort(descending=True)[: count // 2].tolist()
    panel = mo.ui.anywidget(gw.AblationPanel(session, "layer4", units=units, columns=4, size=96))
    panel
    return (panel,)


@app.cell
def _(gw, mo, session):
    editor = mo.ui.anywidget(
        gw.RuleEditor(session, "layer6", seeds=range(4), columns=4, size=96, stat_samples=200)
    )
    editor
    return (editor,)


if __name__ == "__main__":
    app.run()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def marimo_app(tmp_path):
    """``marimo run`` serving the notebook on 127.0.0.1; its URL."""
    path = tmp_path / "widgets_marimo.py"
    path.write_text(NOTEBOOK)
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "marimo.log", "wb")
    args = [sys.executable, "-m", "marimo", "run", str(path), "--headless", "--no-token"]
    args += ["--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "marimo did not start: " + (tmp_path / "marimo.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        if process.poll() is None:
            process.kill()
        log.close()


@pytest.fixture
def mo_page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


def _badge(page, panel, text: str) -> None:
    page.wait_for_function(
        f"el => el.innerText.toLowerCase().includes({text!r})",
        arg=panel.locator(".gw-status").element_handle(),
    )


@pytest.mark.browser
@pytest.mark.slow
def test_every_widget_works_in_marimo(mo_page, marimo_app, tmp_path):
    page = mo_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(marimo_app)
    unit_browser = page.locator(".gw-unit-browser")
    panel = page.locator(".gw-ablation-panel")
    editor = page.locator(".gw-rule-editor")
    for widget in (unit_browser, panel, editor):
        widget.wait_for(timeout=TIMEOUT_MS)

    # UnitBrowser: click a unit, step with ArrowDown; new heatmaps each time
    samples = unit_browser.locator(".gw-grid[data-name=samples]")
    first = _on_screen(samples)
    unit_browser.locator(".gw-ub-units option").nth(1).click()
    second = _wait_pixels_change(samples, first)
    unit_browser.locator(".gw-ub-units").press("ArrowDown")
    browser_pixels = _wait_pixels_change(samples, second)
    assert unit_browser.locator(".gw-ub-units").evaluate("s => s.selectedIndex") == 2

    # AblationPanel: a preview until Apply; the browser redraws only once applied
    edited = panel.locator(".gw-grid[data-name=edited]")
    original = panel.locator(".gw-grid[data-name=original]")
    _badge(page, panel, "preview")
    preview = _on_screen(edited)
    assert preview != _on_screen(original)  # half the units removed everywhere
    _drag_slider(page, panel.locator("input[aria-label=strength]"), 0.4)
    dragged = _wait_pixels_change(edited, preview)
    assert _on_screen(samples) == browser_pixels
    panel.get_by_role("button", name="Apply").click()
    _badge(page, panel, "applied")
    applied_pixels = _wait_pixels_change(samples, browser_pixels)
    panel.get_by_role("button", name="Remove from session").click()
    _badge(page, panel, "preview")
    page.wait_for_function(
        f"el => ({_SETTLED_PIXELS})(el)?.sum === {browser_pixels}", arg=samples.element_handle()
    )
    assert applied_pixels != browser_pixels
    panel.locator(".gw-ab-region").check()  # only in a painted region: nothing painted yet
    _wait_pixels_change(edited, dragged)
    _paint_stroke(page, panel.locator(".gw-paint-view"))
    page.wait_for_function(
        f"el => ({_SETTLED_PIXELS})(el)?.sum !== {_on_screen(original)}",
        arg=edited.element_handle(),
    )

    # RuleEditor: select, copy, paste, context, Execute, Undo rewrite
    gallery = editor.locator(".gw-grid[data-name=gallery]")
    tray = editor.locator(".gw-grid[data-name=tray]")
    before = _on_screen(gallery)
    canvas = editor.locator(".gw-paint-view")
    _click_image(gallery, 1)
    page.wait_for_function(
        "el => el.innerText.includes('#1')", arg=editor.locator(".gw-re-caption").element_handle()
    )
    _paint_stroke(page, canvas)
    editor.get_by_role("button", name="Copy").click()
    page.wait_for_function(
        "el => el.querySelectorAll('canvas').length === 1", arg=tray.element_handle()
    )
    editor.get_by_role("button", name="Paste").click()
    _click_image(gallery, 2)
    page.wait_for_function(
        "el => el.querySelectorAll('canvas').length === 2", arg=tray.element_handle()
    )
    for seed in (2, 3):
        _click_image(gallery, seed, 0.2, 0.2)
        page.wait_for_function(
            f"el => el.innerText.includes('#{seed}')",
            arg=editor.locator(".gw-re-caption").element_handle(),
        )
        _paint_stroke(page, canvas)
        editor.get_by_role("button", name="Add to context").click()
    page.wait_for_function(
        "el => el.querySelectorAll('canvas').length === 4", arg=tray.element_handle()
    )
    editor.get_by_role("button", name="Execute").click()
    page.wait_for_function(
        "el => el.innerText.startsWith('rewritten')",
        arg=editor.locator(".gw-status").element_handle(),
    )
    _wait_pixels_change(gallery, before)
    editor.get_by_role("button", name="Undo rewrite").click()
    page.wait_for_function(
        f"el => ({_SETTLED_PIXELS})(el)?.sum === {before}", arg=gallery.element_handle()
    )
    page.wait_for_function(
        "el => el.innerText.startsWith('rewrite undone')",
        arg=editor.locator(".gw-status").element_handle(),
    )

    # Photos: marimo delivers model.send's binary buffer; one chosen, one dropped, a bad file
    picture = hamlet.render([hamlet.TEST_SEED_START])[0][0]
    chosen, dropped = tmp_path / "chosen.png", tmp_path / "dropped.png"
    Image.fromarray(picture).save(chosen)
    Image.fromarray(picture[:, ::-1].copy()).save(dropped)
    status = unit_browser.locator(".gw-photo-status")
    captions = samples.locator("figcaption")
    unit_browser.locator(".gw-photo-input").set_input_files(str(chosen))
    captions.filter(has_text="photo 0").wait_for()
    _wait_text(status, "chosen.png added as photo 0")
    samples.scroll_into_view_if_needed()
    b64 = base64.b64encode(dropped.read_bytes()).decode()
    assert samples.evaluate(DROP, [b64, "dropped.png", "image/png"]), "the grid refused the drop"
    captions.filter(has_text="photo 1").wait_for()
    _wait_text(status, "dropped.png added as photo 1")
    assert captions.all_inner_texts() == ["photo 0", "photo 1"]
    original.locator("figcaption", has_text="photo 1").wait_for()  # the panel follows
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture\n")
    unit_browser.locator(".gw-photo-input").set_input_files(str(notes))
    _wait_text(status, "notes.png is not a PNG or JPEG image")
    assert samples.locator("canvas").count() == 10
    assert not errors, f"JavaScript errors in the page: {errors}"
