"""End to end in real frontends: JupyterLab 4 and Notebook 7, a live kernel, headless Chromium.

A notebook written at test time builds a Session, a UnitBrowser, an AblationPanel and a
RuleEditor, each one anywidget. The test clicks a unit in the browser's list and steps with
ArrowDown, paints a stroke on the panel's canvas, drags its strength slider, switches it to
"insert", presses Apply, then undoes the edit from code; after each gesture a cell prints the
Python side's state, and the page's pixels are checked: every gesture reached the kernel and
its new images reached the screen. Constructing the widgets changes nothing on the Session;
the panel previews until Apply, and the UnitBrowser redraws only once the edit is applied.

The layout test opens the notebook in JupyterLab at widths 1024, 1280 and 1920 with the file
browser open: no widget is wider than its cell.

With ``GW_SCREENSHOTS=<dir>`` the JupyterLab run saves ``unit_browser.png``,
``ablation_panel.png`` and ``rule_editor.png`` there, cropped to each widget
(``GW_SCREENSHOTS=docs`` for the README).

The UnitBrowser's unit list sits inside ``data-lm-suppress-shortcuts``, so ArrowDown steps
units instead of moving to the next cell: the test clicks a unit, then presses ArrowDown.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import sys
import time

import nbformat
import pytest

from .jupyter_server import JupyterServer

TIMEOUT_MS = 60_000  # generous: two busy CPU cores start a kernel and import torch
NOTEBOOK = "e2e.ipynb"
KERNEL_NAME = "gandissect-widgets tests"

# The notebook's cells. `report(tag, **state)` prints one "E2E {json}" line with a sequence
# number, so the test can tell a fresh output from an older one of the same cell.
REPORT = """\
import hashlib, json
import torch
import gandissect_widgets as gw

torch.set_num_threads(1)
_seq = 0

def report(tag, **state):
    global _seq
    _seq += 1
    print("E2E " + json.dumps({"tag": tag, "seq": _seq, **state}))
"""

SETUP = (
    REPORT
    + """
def digest(blobs):
    return hashlib.sha1(b"".join(bytes(b) for b in blobs)).hexdigest()[:16]

# the shipped hamlet models, segmenter included; a missing one fails the test (no fallback)
session = gw.Session.from_zoo("hamlet", device="cpu")
layer, model = "layer4", "hamlet"
assert session.segmenter is not None, "the hamlet segmenter did not load"
session.dissect(layer, n=200, progress=False)
report("setup", model=model, layer=layer, dissected=layer in session.dissections)
"""
)

BROWSER = """\
browser = gw.UnitBrowser(session, layer, columns=4, size=96)
order = list(browser.order)
display(browser)
report("browser", unit=browser.unit, order=order[:4], heat=digest([browser.samples_grid._heat]),
       images=digest(browser.samples["images"]))
"""

BROWSER_STATE = """\
browser.wait()
report("browser", unit=browser.unit, order=order[:4], heat=digest([browser.samples_grid._heat]),
       images=digest(browser.samples["images"]))
"""

PANEL = """\
count = session.layer_shape(layer)[0]
units = session.unit_levels(layer)["mean"].argsort(descending=True)[: count // 2].tolist()
panel = gw.AblationPanel(session, layer, units=units, columns=4, size=96)
panel.region = True  # show the canvas: the edit applies only where painted
panel.wait()
display(panel)
report("panel", units=units, edits=[e.describe() for e in session.edits])
"""

PANEL_STATE = """\
panel.wait()
report(
    "panel",
    mask_sum=int(panel.canvas.mask.sum()),
    strength=panel.strength,
    mode=panel.mode,
    applied=panel.applied,
    kind=panel.status_kind,
    edits=[e.describe() for e in session.edits],
    edited=digest(panel.edited["images"]),
    original=digest(panel.original["images"]),
)
"""

UNDO = """\
session.undo()
panel.wait(); browser.wait()
report("undo", edits=[e.describe() for e in session.edits], applied=panel.applied,
       status=panel.status)
"""

RULE = """\
session.reset()
rule_layer = "layer6"
editor = gw.RuleEditor(session, rule_layer, seeds=range(4), columns=4, size=96, stat_samples=200)
editor.wait()
display(editor)
report("rule", gallery=digest(editor.gallery["images"]))
"""

RULE_STATE = """\
editor.wait()
report(
    "rule",
    current=editor.current,
    copy=None if editor.copy is None else [editor.copy[0], int(editor.copy[1].sum())],
    paste=None if editor.paste is None else editor.paste[0],
    context=list(editor.context_seeds),
    edits=[e.describe() for e in session.edits],
    gallery=digest(editor.gallery["images"]),
    status=editor.status,
)
"""

CELLS = [SETUP, BROWSER, BROWSER_STATE, PANEL, PANEL_STATE, UNDO, RULE, RULE_STATE]
RULE_CELL, RULE_STATE_CELL = 6, 7

# Pixel checksum of an ImageGrid's canvases once the newest images are drawn (the grid is
# aria-busy while decoding), else null: what the page shows, for wait_for_function.
_SETTLED_PIXELS = """el => {
  if (el.getAttribute("aria-busy") === "true" || !el.querySelector("canvas")) return null;
  let sum = 0;
  for (const c of el.querySelectorAll("canvas")) {
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 7) sum = (sum * 31 + d[i]) % 1000000007;
  }
  return { sum };
}"""


def _on_screen(grid) -> int:
    """Checksum of the pixels an ImageGrid shows, once its newest images are drawn."""
    page = grid.page
    return page.wait_for_function(_SETTLED_PIXELS, arg=grid.element_handle()).json_value()["sum"]


def _write_notebook(directory: pathlib.Path, cells=CELLS, name: str = NOTEBOOK) -> None:
    """A notebook of code ``cells`` (unrun), for our kernel, as ``directory/name``."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, directory / name)


@pytest.fixture(params=["lab", "notebook"], ids=["jupyterlab4", "notebook7"])
def jupyter(request, jupyter_folder):
    """This test's folder, holding the generated notebook, on the shared server (per frontend)."""
    served = jupyter_folder(request.param)
    _write_notebook(served.folder)
    return served


class Notebook:
    """The open notebook page: run cells, read their "E2E" reports, find their widgets."""

    def __init__(self, page):
        self.page = page
        self.seq = 0
        self.cells = page.locator(".jp-Notebook .jp-CodeCell")

    def wait_for_kernel(self) -> None:
        """Our kernel is connected and idle (the toolbar's execution indicator)."""
        self.page.locator(".jp-KernelName", has_text=KERNEL_NAME).first.wait_for(timeout=TIMEOUT_MS)
        idle = '.jp-Notebook-ExecutionIndicator[data-status="idle"]'
        self.page.locator(idle).first.wait_for(timeout=TIMEOUT_MS)

    def run(self, index: int) -> dict:
        """Run cell ``index`` (click its prompt, Shift+Enter) and return its newest report."""
        cell = self.cells.nth(index)
        cell.locator(".jp-InputPrompt").first.click()
        self.page.keyboard.press("Shift+Enter")
        self.seq += 1
        return self._report(cell, self.seq)

    def _report(self, cell, seq: int) -> dict:
        outputs = cell.locator(".jp-OutputArea-output")
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while time.monotonic() < deadline:
            text = "\n".join(outputs.all_inner_texts())
            for line in re.findall(r"^E2E (\{.*\})$", text, re.M):
                state = json.loads(line)
                if state["seq"] == seq:
                    return state
            if "Traceback" in text:
                raise AssertionError(f"the cell failed:\n{text[-3000:]}")
            self.page.wait_for_timeout(100)
        raise AssertionError(f"no report #{seq} within {TIMEOUT_MS // 1000} s; output: {text!r}")

    def widget(self, index: int, css_class: str):
        """The rendered widget with ``css_class`` in cell ``index``'s output, once its grids
        have drawn their images."""
        el = self.cells.nth(index).locator(f".{css_class}")
        el.wait_for(timeout=TIMEOUT_MS)
        for grid in el.locator(".gw-grid:has(canvas)").all():  # an empty tray has none
            _on_screen(grid)
        return el


@contextlib.contextmanager
def _diagnostics(page, server, directory: pathlib.Path):
    """On failure, add the server log tail and a page screenshot to the error."""
    try:
        yield
    except Exception as err:
        shot = directory / f"failure-{server.frontend}.png"
        with contextlib.suppress(Exception):
            page.screenshot(path=str(shot))
        raise AssertionError(
            f"{err}\n\npage screenshot: {shot}\nserver log tail:\n{server.log_tail()}"
        ) from err


def _paint_stroke(page, canvas) -> None:
    """One mouse stroke, a zigzag painting a band across the middle of the canvas."""
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    zigzag = [(0.15, 0.45), (0.85, 0.45), (0.85, 0.52), (0.15, 0.52), (0.15, 0.59)]
    zigzag += [(0.85, 0.59), (0.85, 0.66), (0.15, 0.66)]
    points = [(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy) for fx, fy in zigzag]
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point, steps=6)
    page.mouse.up()


def _drag_slider(page, slider, fraction: float, steps: int = 8) -> None:
    """Drag a range input's thumb from its value to ``fraction`` of its track."""
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    lo, hi, value = (float(slider.evaluate(f"e => e.{k}")) for k in ("min", "max", "value"))
    y = box["y"] + box["height"] / 2
    x0 = box["x"] + 8 + (box["width"] - 16) * (value - lo) / (hi - lo)  # the thumb's centre
    page.mouse.move(x0, y)
    page.mouse.down()
    page.mouse.move(box["x"] + 8 + (box["width"] - 16) * fraction, y, steps=steps)
    page.mouse.up()


# A widget's box, narrowed to the right edge of its content (a VBox in an output area stretches
# to the full width).
_CONTENT_BOX = """el => {
  const r = el.getBoundingClientRect();
  let right = r.left + 1;
  for (const child of el.querySelectorAll("*")) {
    const b = child.getBoundingClientRect();
    if (b.width && b.height) right = Math.max(right, b.right);
  }
  return { x: r.left, y: r.top, width: Math.min(right, r.right) - r.left, height: r.height };
}"""


def _screenshot(page, widget, name: str, pad: int = 8) -> None:
    """Save a PNG of the widget's content to $GW_SCREENSHOTS/<name>.png (when that is set)."""
    directory = os.environ.get("GW_SCREENSHOTS")
    if not directory:
        return
    pathlib.Path(directory).mkdir(parents=True, exist_ok=True)
    widget.scroll_into_view_if_needed()
    box = widget.evaluate(_CONTENT_BOX)
    # a margin left and right only: above and below are the cell's other outputs
    clip = {"x": max(box["x"] - pad, 0), "y": box["y"], "width": box["width"] + 2 * pad}
    clip["height"] = box["height"]
    page.screenshot(path=str(pathlib.Path(directory) / f"{name}.png"), clip=clip)


# Errors thrown by the frontend's own core bundle, not by widget code (Notebook 7.6 throws one
# from its shortcuts settings on load: "Cannot read properties of undefined (reading 'schema')").
_FRONTEND_CORE = re.compile(r"^\s*at .*/static/(notebook/notebook_core|lab/jlab_core)\.", re.M)


def _ours(error) -> bool:
    frames = [line for line in (error.stack or "").splitlines() if line.strip().startswith("at ")]
    return not frames or not _FRONTEND_CORE.match(frames[0])


@pytest.fixture
def lab_page(browser):
    """A fresh page, sized for the widgets, closed after the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


@pytest.mark.browser
@pytest.mark.slow
def test_click_keys_paint_drag_apply_and_undo_reach_the_kernel(lab_page, jupyter, tmp_path):
    """Gestures in the page reach the kernel, and the kernel's new images reach the page."""
    page = lab_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)) if _ours(exc) else None)
    nb = Notebook(page)
    with _diagnostics(page, jupyter, tmp_path):
        page.goto(jupyter.notebook_url(NOTEBOOK))
        nb.wait_for_kernel()
        setup = nb.run(0)
        assert setup["tag"] == "setup" and setup["model"] == "hamlet", setup
        assert setup["layer"] == "layer4" and setup["dissected"], setup

        # UnitBrowser: a click on another unit selects it in Python; ArrowDown steps on.
        before = nb.run(1)
        unit_browser = nb.widget(1, "gw-unit-browser")
        samples_grid = unit_browser.locator(".gw-grid[data-name=samples]")
        order = before["order"]
        assert before["unit"] == order[0]
        first_pixels = _on_screen(samples_grid)
        unit_browser.locator(".gw-ub-units option").nth(1).click()
        unit_browser.locator(".gw-ub-units").press("ArrowDown")
        # the key's state update may queue behind the click's: ask until it has arrived
        clicked = _until(nb, 2, lambda s: s["unit"] == order[2], tries=20)
        assert clicked["unit"] == order[2], (before, clicked)
        assert clicked["heat"] != before["heat"], "the heatmaps were not redrawn"
        _wait_pixels_change(samples_grid, first_pixels)
        if jupyter.frontend == "lab":
            _screenshot(page, unit_browser, "unit_browser")
        browser_pixels = _on_screen(samples_grid)

        # AblationPanel: constructing it changed nothing; nothing painted yet: edited = original
        made = nb.run(3)
        assert made["edits"] == [], "constructing the panel changed the Session"
        panel = nb.widget(3, "gw-ablation-panel")
        original_grid = panel.locator(".gw-grid[data-name=original]")
        edited_grid = panel.locator(".gw-grid[data-name=edited]")
        blank = nb.run(4)
        assert blank["mask_sum"] == 0 and blank["edits"] == [], blank
        shown = {"original": _on_screen(original_grid), "blank": _on_screen(edited_grid)}
        assert shown["blank"] == shown["original"]

        _paint_stroke(page, panel.locator(".gw-paint-view"))
        painted = _until(nb, 4, lambda s: s["mask_sum"] > 0 and s["kind"] == "preview")
        assert painted["mask_sum"] > 0, "the painted mask did not reach Python"
        assert painted["edits"] == [] and not painted["applied"], "a preview changed the Session"
        assert painted["edited"] != blank["edited"], "painting did not change the images"
        assert painted["original"] == blank["original"]
        shown["painted"] = _wait_pixels_change(edited_grid, shown["blank"])
        assert _on_screen(samples_grid) == browser_pixels, "the browser redrew for a preview"

        _drag_slider(page, panel.locator("input[aria-label=strength]"), 0.7)
        moved = _until(nb, 4, lambda s: 0 < s["strength"] < 1)
        assert 0 < moved["strength"] < 1, moved
        assert moved["mask_sum"] == painted["mask_sum"]
        assert moved["edited"] != painted["edited"], "the slider did not change the images"
        shown["moved"] = _wait_pixels_change(edited_grid, shown["painted"])

        panel.get_by_role("button", name="insert").click()
        inserted = _until(nb, 4, lambda s: s["mode"] == "insert")
        assert inserted["mode"] == "insert", inserted
        assert inserted["edited"] != moved["edited"], "insert did not change the images"
        shown["inserted"] = _wait_pixels_change(edited_grid, shown["moved"])
        assert shown["original"] == _on_screen(original_grid)
        assert len(set(shown.values())) == 4, f"the page did not show every change: {shown}"
        assert panel.locator(".gw-status .gw-badge").inner_text().lower() == "preview"

        # Apply: the edit goes on the Session; the UnitBrowser redraws with it
        panel.get_by_role("button", name="Apply").click()
        applied = _until(nb, 4, lambda s: s["applied"])
        assert applied["applied"] and len(applied["edits"]) == 1, applied
        assert "set" in applied["edits"][0] and "in a region" in applied["edits"][0]
        page.wait_for_function(
            "el => el.innerText.toLowerCase().includes('applied')",
            arg=panel.locator(".gw-status .gw-badge").element_handle(),
        )
        _wait_pixels_change(samples_grid, browser_pixels)
        if jupyter.frontend == "lab":
            _screenshot(page, panel, "ablation_panel")

        # Undo from code: the panel says so, the browser shows the unedited model again
        undone = nb.run(5)
        assert undone["edits"] == [] and not undone["applied"], undone
        assert "undone elsewhere" in undone["status"]
        page.wait_for_function(
            "el => el.innerText.includes('undone elsewhere')",
            arg=panel.locator(".gw-status").element_handle(),
        )
        page.wait_for_function(
            f"el => ({_SETTLED_PIXELS})(el)?.sum === {browser_pixels}",
            arg=samples_grid.element_handle(),
        )
        assert not errors, f"JavaScript errors in the page: {errors}"


def _wait_pixels_change(grid, before: int) -> int:
    """The grid's pixel checksum once it differs from ``before``."""
    handle = grid.element_handle()
    grid.page.wait_for_function(
        f"el => {{ const s = ({_SETTLED_PIXELS})(el); return s && s.sum !== {before}; }}",
        arg=handle,
    )
    return _on_screen(grid)


def _click_image(grid, index: int, fx: float = 0.5, fy: float = 0.5) -> None:
    image = grid.locator("canvas").nth(index)
    image.scroll_into_view_if_needed()  # running cells scrolls the notebook
    box = image.bounding_box()
    grid.page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)


def _until(nb, index: int, done, tries: int = 40) -> dict:
    """Re-run a state cell until ``done(state)``: widget messages may queue behind others."""
    for _ in range(tries):
        state = nb.run(index)
        if done(state):
            return state
    return state


@pytest.mark.browser
@pytest.mark.slow
def test_rule_editor_copy_paste_context_execute_undo(lab_page, jupyter, tmp_path):
    """Paint copy, paste and context regions in the page, press Execute, see the new gallery
    and canvas; Undo rewrite brings the old gallery back and says so."""
    page = lab_page
    nb = Notebook(page)
    with _diagnostics(page, jupyter, tmp_path):
        page.goto(jupyter.notebook_url(NOTEBOOK))
        nb.wait_for_kernel()
        setup = nb.run(0)
        assert setup["tag"] == "setup" and setup["model"] == "hamlet", setup
        start = nb.run(RULE_CELL)
        editor = nb.widget(RULE_CELL, "gw-rule-editor")
        gallery = editor.locator(".gw-grid[data-name=gallery]")
        before = _on_screen(gallery)
        canvas = editor.locator(".gw-paint-view")

        _click_image(gallery, 1)  # select sample 1, paint what to copy
        _until(nb, RULE_STATE_CELL, lambda s: s["current"] == 1)
        _paint_stroke(page, canvas)
        editor.get_by_role("button", name="Copy").click()
        state = _until(nb, RULE_STATE_CELL, lambda s: s["copy"] is not None)
        assert state["copy"][0] == 1 and state["copy"][1] > 0, state

        editor.get_by_role("button", name="Paste").click()
        _click_image(gallery, 2)  # where it goes
        state = _until(nb, RULE_STATE_CELL, lambda s: s["paste"] is not None)
        assert state["paste"] == 2, state
        tray = editor.locator(".gw-grid[data-name=tray]")
        page.wait_for_function(
            "el => el.querySelectorAll('canvas').length === 2", arg=tray.element_handle()
        )
        assert "paste · #2 at" in tray.inner_text()  # previewed, caption in full

        for seed in (2, 3):  # context: where the rule applies
            for _ in range(3):  # a click that lands while the kernel is busy: click again
                _click_image(gallery, seed, 0.2, 0.2)
                state = _until(nb, RULE_STATE_CELL, lambda s, seed=seed: s["current"] == seed, 15)
                if state["current"] == seed:
                    break
            assert state["current"] == seed, state
            _paint_stroke(page, canvas)
            editor.get_by_role("button", name="Add to context").click()
            _until(nb, RULE_STATE_CELL, lambda s, seed=seed: seed in s["context"])
        assert "context · #3" in tray.inner_text()

        paint_box = editor.locator(".gw-re-paint")
        canvas_before = _on_screen(paint_box)
        editor.get_by_role("button", name="Execute").click()
        done = _until(nb, RULE_STATE_CELL, lambda s: bool(s["edits"]), tries=200)
        assert len(done["edits"]) == 1 and "rewrite" in done["edits"][0], done
        assert done["gallery"] != start["gallery"], "the gallery did not change in Python"
        after = _wait_pixels_change(gallery, before)
        _wait_pixels_change(paint_box, canvas_before)  # the canvas shows the rewritten model
        page.wait_for_function(
            "el => el.innerText.startsWith('rewritten')",
            arg=editor.locator(".gw-status").element_handle(),
        )
        if jupyter.frontend == "lab":
            _screenshot(page, editor, "rule_editor")

        editor.get_by_role("button", name="Undo rewrite").click()
        undone = _until(nb, RULE_STATE_CELL, lambda s: not s["edits"])
        assert undone["edits"] == [] and undone["status"].startswith("rewrite undone"), undone
        page.wait_for_function(
            f"el => ({_SETTLED_PIXELS})(el)?.sum === {before}", arg=gallery.element_handle()
        )
        editor.get_by_role("button", name="Redo rewrite").click()
        page.wait_for_function(
            f"el => ({_SETTLED_PIXELS})(el)?.sum === {after}", arg=gallery.element_handle()
        )


_OVERFLOW = """el => {
  const cell = el.closest('.jp-Cell');
  const out = el.closest('.jp-OutputArea-output');
  const c = cell.getBoundingClientRect(), r = el.getBoundingClientRect();
  return { scroll: el.scrollWidth, client: el.clientWidth, outScroll: out.scrollWidth,
           outClient: out.clientWidth, right: r.right, cellRight: c.right };
}"""


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("jupyter", ["lab"], indirect=True, ids=["jupyterlab4"])
def test_widgets_fit_their_cells_with_the_file_browser_open(lab_page, jupyter, tmp_path):
    """At 1024, 1280 and 1920 px with the file browser open, no widget is wider than its
    cell: it wraps (scrollWidth <= clientWidth)."""
    page = lab_page
    nb = Notebook(page)
    with _diagnostics(page, jupyter, tmp_path):
        page.goto(jupyter.notebook_url(NOTEBOOK))
        nb.wait_for_kernel()
        nb.run(0)
        nb.run(1)
        nb.run(3)
        nb.run(RULE_CELL)
        widgets = {
            "UnitBrowser": nb.widget(1, "gw-unit-browser"),
            "AblationPanel": nb.widget(3, "gw-ablation-panel"),
            "RuleEditor": nb.widget(RULE_CELL, "gw-rule-editor"),
        }
        files = page.locator("#filebrowser")
        if not files.is_visible():
            page.locator(".jp-SideBar [data-id='filebrowser']").first.click()
        files.wait_for(state="visible")
        for width in (1024, 1280, 1920):
            page.set_viewport_size({"width": width, "height": 1100})
            page.wait_for_timeout(400)  # the notebook panel relayouts
            assert files.is_visible() and files.bounding_box()["width"] > 100
            for name, widget in widgets.items():
                m = widget.evaluate(_OVERFLOW)
                where = f"{name} at {width} px: {m}"
                assert m["scroll"] <= m["client"], where
                assert m["outScroll"] <= m["outClient"], where
                assert m["right"] <= m["cellRight"] + 1, where
            shots = os.environ.get("GW_SCREENSHOTS")
            if shots and width == 1280:
                page.screenshot(path=str(pathlib.Path(shots) / "lab_1280.png"))


def test_server_rejects_an_unknown_frontend(tmp_path):
    with pytest.raises(ValueError, match="unknown frontend 'classic'; valid: lab, notebook"):
        JupyterServer("classic", tmp_path)


@pytest.mark.slow
def test_server_runs_our_kernel_and_settings_in_private_dirs(tmp_path):
    with JupyterServer("lab", tmp_path) as server:
        specs = json.loads(server._request("api/kernelspecs"))
        plugin = "lab/api/settings/@jupyterlab/apputils-extension:notification"
        settings = json.loads(server._request(plugin))
        url = server.notebook_url("x.ipynb")
    assert specs["kernelspecs"]["python3"]["spec"]["argv"][0] == sys.executable
    assert settings["settings"]["fetchNews"] == "false"
    assert url == f"http://127.0.0.1:{server.port}/lab/tree/x.ipynb?token={server.token}"
    assert (tmp_path / ".jupyter" / "runtime").is_dir()
    assert "Jupyter Server" in server.log_tail()
    with pytest.raises(OSError):  # stopped: nothing answers any more
        server._request("api/status")
