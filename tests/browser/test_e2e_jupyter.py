"""End to end in real frontends: JupyterLab 4 and Notebook 7, a live kernel, headless Chromium.

A notebook written at test time builds a Session, a UnitBrowser and an AblationPanel. The test
clicks a unit in the browser's list, paints a stroke on the panel's canvas, drags its strength
slider and switches it to "insert", running after each gesture a cell that prints the Python
side's state; it checks that every gesture reached the kernel and produced new images, in
Python and on screen.

With ``GW_SCREENSHOTS=<dir>`` the JupyterLab run saves ``unit_browser.png`` and
``ablation_panel.png`` there, cropped to each widget (``GW_SCREENSHOTS=docs`` for the README).

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
SETUP = """\
import hashlib, json
import torch
import gandissect_widgets as gw
from gandissect_widgets.zoo import hamlet

torch.set_num_threads(1)
_seq = 0

def report(tag, **state):
    global _seq
    _seq += 1
    print("E2E " + json.dumps({"tag": tag, "seq": _seq, **state}))

def digest(blobs):
    return hashlib.sha1(b"".join(bytes(b) for b in blobs)).hexdigest()[:16]

if (hamlet.WEIGHTS / "generator.safetensors").exists():
    try:
        session = gw.Session.from_zoo("hamlet", device="cpu")
    except FileNotFoundError:  # segmenter not trained yet: no dissection
        session = gw.Session(hamlet.load_generator(), device="cpu")
    layer, model = "layer4", "hamlet"
else:
    from torch import nn

    class Tiny(nn.Sequential):
        z_dim = 16

        def __init__(self):
            torch.manual_seed(0)
            super().__init__()
            up = lambda a, b: [nn.Upsample(scale_factor=4), nn.Conv2d(a, b, 3, padding=1)]
            self.add_module("layer1", nn.Sequential(nn.ConvTranspose2d(16, 32, 4), nn.ReLU()))
            self.add_module("layer2", nn.Sequential(*up(32, 32), nn.ReLU()))
            self.add_module("output", nn.Sequential(*up(32, 3), nn.Tanh()))

        def forward(self, z):
            return super().forward(z.view(len(z), -1, 1, 1))

    session = gw.Session(Tiny(), device="cpu")
    layer, model = "layer2", "tiny"
if session.segmenter is not None:
    session.dissect(layer, n=200, progress=False)
report("setup", model=model, layer=layer, dissected=layer in session.dissections)
"""

BROWSER = """\
browser = gw.UnitBrowser(session, layer, columns=4, size=96)
order = list(browser.units.units)
display(browser)
report("browser", unit=browser.unit, order=order[:4], heat=digest([browser.samples_grid._heat]))
"""

BROWSER_STATE = """\
report("browser", unit=browser.unit, order=order[:4], heat=digest([browser.samples_grid._heat]))
"""

PANEL = """\
count = session.layer_shape(layer)[0]
units = session.unit_levels(layer)["mean"].argsort(descending=True)[: count // 2].tolist()
panel = gw.AblationPanel(session, layer, units=units, columns=4, size=96)
panel.region.value = True  # show the canvas: the edit applies only where painted
panel.wait()
display(panel)
report("panel", units=units)
"""

PANEL_STATE = """\
panel.wait()
report(
    "panel",
    mask_sum=int(panel.canvas.mask.sum()),
    strength=panel.strength.value,
    mode=panel.mode.value,
    edits=[e.describe() for e in session.edits],
    edited=digest(panel.edited._images),
    original=digest(panel.original._images),
)
"""

RULE = """\
session.reset()
rule_layer = "layer6" if model == "hamlet" else "layer2"
editor = gw.RuleEditor(session, rule_layer, seeds=range(4), columns=4, size=96, stat_samples=200)
editor.wait()
display(editor)
report("rule", gallery=digest(editor.gallery._images))
"""

RULE_STATE = """\
editor.wait()
report(
    "rule",
    current=editor.current,
    copy=None if editor.copy is None else [editor.copy[0], int(editor.copy[1].sum())],
    paste=None if editor.paste is None else editor.paste[0],
    context=[seed for seed, _ in editor.context],
    edits=[e.describe() for e in session.edits],
    gallery=digest(editor.gallery._images),
)
"""

CELLS = [SETUP, BROWSER, BROWSER_STATE, PANEL, PANEL_STATE, RULE, RULE_STATE]

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


def _write_notebook(directory: pathlib.Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, directory / NOTEBOOK)


@pytest.fixture(params=["lab", "notebook"], ids=["jupyterlab4", "notebook7"])
def jupyter(request, tmp_path):
    """A private Jupyter server (one per frontend) serving the generated notebook."""
    root = tmp_path / "root"
    root.mkdir()
    _write_notebook(root)
    with JupyterServer(request.param, root) as server:
        yield server


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
        for grid in el.locator(".gw-grid").all():
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


def _drag_slider(page, slider, fraction: float) -> None:
    """Drag an ipywidgets slider's handle to ``fraction`` of its track."""
    handle = slider.locator(".noUi-handle").first
    track = slider.locator(".noUi-target").first.bounding_box()
    start = handle.bounding_box()
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    target = track["x"] + track["width"] * fraction
    page.mouse.move(target, start["y"] + start["height"] / 2, steps=8)
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
def test_paint_slider_and_unit_list_reach_the_kernel(lab_page, jupyter, tmp_path):
    """Gestures in the page reach the kernel, and the kernel's new images reach the page."""
    page = lab_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)) if _ours(exc) else None)
    nb = Notebook(page)
    with _diagnostics(page, jupyter, tmp_path):
        page.goto(jupyter.notebook_url(NOTEBOOK))
        nb.wait_for_kernel()
        setup = nb.run(0)
        assert setup["tag"] == "setup", setup

        # UnitBrowser: a click on another unit selects it in Python; ArrowDown steps on.
        before = nb.run(1)
        unit_browser = nb.widget(1, "gw-unit-browser")
        order = before["order"]
        assert before["unit"] == order[0]
        unit_browser.locator(".gw-unit-list option").nth(1).click()
        unit_browser.locator(".gw-unit-list select").press("ArrowDown")
        # the key's state update may queue behind the click's: ask until it has arrived
        for _ in range(20):
            clicked = nb.run(2)
            if clicked["unit"] == order[2]:
                break
        assert clicked["unit"] == order[2], (before, clicked)
        assert clicked["heat"] != before["heat"], "the heatmaps were not redrawn"
        if jupyter.frontend == "lab":
            for grid in unit_browser.locator(".gw-grid").all():
                _on_screen(grid)
            _screenshot(page, unit_browser, "unit_browser")

        # AblationPanel: nothing painted yet, so the "edited" side equals the original.
        nb.run(3)
        panel = nb.widget(3, "gw-ablation-panel")
        original_grid, edited_grid = panel.locator(".gw-grid").all()
        blank = nb.run(4)
        assert blank["mask_sum"] == 0 and blank["edits"] == [], blank
        shown = {"original": _on_screen(original_grid), "blank": _on_screen(edited_grid)}
        assert shown["blank"] == shown["original"]

        _paint_stroke(page, panel.locator(".gw-paint-view"))
        painted = nb.run(4)
        assert painted["mask_sum"] > 0, "the painted mask did not reach Python"
        assert len(painted["edits"]) == 1 and "layer" in painted["edits"][0], painted
        assert painted["edited"] != blank["edited"], "painting did not change the images"
        assert painted["original"] == blank["original"]
        shown["painted"] = _on_screen(edited_grid)

        strength = panel.locator(".widget-hslider", has_text="strength")
        _drag_slider(page, strength, 0.7)
        moved = nb.run(4)
        assert 0 < moved["strength"] < 1, moved
        assert moved["mask_sum"] == painted["mask_sum"]
        assert moved["edited"] != painted["edited"], "the slider did not change the images"
        assert moved["edits"] != painted["edits"]  # the description names the strength
        shown["moved"] = _on_screen(edited_grid)

        panel.locator(".widget-toggle-button", has_text="insert").click()
        inserted = nb.run(4)
        assert inserted["mode"] == "insert", inserted
        assert inserted["edited"] != moved["edited"], "insert did not change the images"
        shown["inserted"] = _on_screen(edited_grid)
        assert shown["original"] == _on_screen(original_grid)
        assert len(set(shown.values())) == 4, f"the page did not show every change: {shown}"
        if jupyter.frontend == "lab":
            _screenshot(page, panel, "ablation_panel")
        assert not errors, f"JavaScript errors in the page: {errors}"


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
def test_rule_editor_copy_paste_context_execute(lab_page, jupyter, tmp_path):
    """Paint copy, paste and context regions in the page, press Execute, see the new gallery."""
    page = lab_page
    nb = Notebook(page)
    with _diagnostics(page, jupyter, tmp_path):
        page.goto(jupyter.notebook_url(NOTEBOOK))
        nb.wait_for_kernel()
        assert nb.run(0)["tag"] == "setup"
        start = nb.run(5)
        editor = nb.cells.nth(5).locator(".gw-rule-editor")  # its region tray starts empty
        editor.wait_for(timeout=TIMEOUT_MS)
        gallery = editor.locator(".gw-grid").first
        before = _on_screen(gallery)
        canvas = editor.locator(".gw-paint-view")

        _click_image(gallery, 1)  # select sample 1, paint what to copy
        _until(nb, 6, lambda s: s["current"] == 1)
        _paint_stroke(page, canvas)
        editor.locator("button", has_text="Copy").click()
        state = _until(nb, 6, lambda s: s["copy"] is not None)
        assert state["copy"][0] == 1 and state["copy"][1] > 0, state

        editor.locator("button", has_text="Paste").click()
        _click_image(gallery, 2)  # where it goes
        state = _until(nb, 6, lambda s: s["paste"] is not None)
        assert state["paste"] == 2, state

        for seed in (2, 3):  # context: where the rule applies
            for _ in range(3):  # a click that lands while the kernel is busy: click again
                _click_image(gallery, seed, 0.2, 0.2)
                state = _until(nb, 6, lambda s, seed=seed: s["current"] == seed, tries=15)
                if state["current"] == seed:
                    break
            assert state["current"] == seed, state
            _paint_stroke(page, canvas)
            editor.locator("button", has_text="Add to context").click()
            _until(nb, 6, lambda s, seed=seed: seed in s["context"])

        editor.locator("button", has_text="Execute").click()
        done = _until(nb, 6, lambda s: bool(s["edits"]), tries=200)
        assert len(done["edits"]) == 1 and "rewrite" in done["edits"][0], done
        assert done["gallery"] != start["gallery"], "the gallery did not change in Python"
        page.wait_for_function(
            f"el => ({_SETTLED_PIXELS})(el) && ({_SETTLED_PIXELS})(el).sum !== {before}",
            arg=gallery.element_handle(),
        )


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
