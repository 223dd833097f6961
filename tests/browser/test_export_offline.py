"""``gandissect-widgets export``: an executed notebook becomes one HTML page whose widgets render
from their saved state in Chromium with every network request blocked."""

from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest

from gandissect_widgets import cli

from .conftest import block_the_network

_VIEW = "application/vnd.jupyter.widget-view+json"

pytestmark = pytest.mark.browser

_LIT = """() => [...document.querySelectorAll('.widget-subarea canvas')].map((c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let lit = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i + 3] && (d[i] || d[i + 1] || d[i + 2])) lit++;
  return lit;
})"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One notebook executed by nbconvert (its widget state saved) and exported, shared by the
    tests that read the page (executing it is most of their time)."""
    tmp_path = tmp_path_factory.mktemp("exported")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# An exported notebook"),
        nbformat.v4.new_code_cell(
            "import numpy as np, gandissect_widgets as gw\n"
            "gw.ImageGrid(np.full((3, 8, 8, 3), 200, np.uint8), size=32)"
        ),
    ]
    path = tmp_path / "lab.ipynb"
    nbformat.write(nb, path)
    subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute"]
        + ["--inplace", str(path)],
        check=True,
    )
    assert nbformat.read(path, as_version=4).metadata.get("widgets")  # state was saved
    out = tmp_path / "lab.html"
    assert cli.main(["export", str(path), "--out", str(out), "--quiet"]) == 0
    return out


def test_exported_notebook_has_no_cdn_scripts(exported):
    page = exported.read_text()
    assert 'src="http' not in page and "unpkg.com" not in page
    assert "application/vnd.jupyter.widget-state+json" in page
    assert "An exported notebook" in page


def test_exported_widgets_render_offline(browser, exported):
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    page = context.new_page()
    url = exported.as_uri()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests = block_the_network(page, url, allow_data=True)
    page.goto(url)
    page.wait_for_function(f"() => ({_LIT})().length === 3 && ({_LIT})().every(n => n > 0)")
    # the widget's picture (an output of its own, for pages without widgets) stays out of sight
    picture = page.locator("figure.gw-static-picture")
    assert picture.count() == 1 and not picture.is_visible()
    context.close()
    assert requests == []
    assert not errors, errors


# A notebook as a student writes it: a before/after snapshot, a canvas to paint on, a grid.
_LAB_CELLS = [
    "import numpy as np\nimport gandissect_widgets as gw\n"
    "from gandissect_widgets.widgets.snapshot import snapshot_compare",
    "dark = np.zeros((2, 16, 16, 3), np.uint8)\n"
    "snapshot_compare(dark, dark + 255, labels=('dark', 'light'))",
    "gw.PaintCanvas(size=128)",
    "gw.ImageGrid(np.full((3, 8, 8, 3), 200, np.uint8), size=32)",
]
_LIT_IN = """el => [...el.querySelectorAll('canvas')].reduce((sum, c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  for (let i = 0; i < d.length; i += 4) if (d[i + 3] && (d[i] || d[i + 1] || d[i + 2])) sum++;
  return sum;
}, 0)"""


@pytest.mark.slow
def test_a_notebook_saved_by_jupyterlab_with_default_settings_exports_live(
    browser, tmp_path, capsys
):
    """Run and save (Ctrl+S) in JupyterLab as it comes: no widget state is saved, so export runs
    the notebook and says so; offline, every widget draws and two answer the mouse."""
    from .jupyter_server import JupyterServer

    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in _LAB_CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "py"}
    path = root / "lab.ipynb"
    nbformat.write(nb, path)
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    with JupyterServer("lab", root) as server:
        page.goto(server.notebook_url("lab.ipynb"))
        page.locator(".jp-KernelName", has_text="gandissect-widgets tests").first.wait_for()
        page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').first.wait_for()
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        for css in (".gw-snapshot", ".gw-paint-view", ".gw-grid canvas"):
            page.locator(css).first.wait_for()
        page.keyboard.press("Escape")
        page.keyboard.press("Control+s")
        saved = None
        for _ in range(100):
            saved = nbformat.read(path, as_version=4)
            if all(c.get("outputs") for c in saved.cells[1:]):
                break
            page.wait_for_timeout(100)
        context.close()
    views = [o for c in saved.cells for o in c.outputs if _VIEW in o.get("data", {})]
    assert len(views) == 3, "JupyterLab did not save the three widget outputs"
    assert not saved.metadata.get("widgets"), "Lab saved widget state with default settings?"

    out = tmp_path / "lab.html"
    assert cli.main(["export", str(path), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "ran lab.ipynb headless (3 widget output(s) had no saved state)" in said, said

    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    url, errors = out.as_uri(), []
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests = block_the_network(page, url, allow_data=True)
    page.goto(url)
    widgets = page.locator(".jp-OutputArea-output .widget-subarea > *")
    page.wait_for_function("() => document.querySelectorAll('.widget-subarea canvas').length >= 3")
    assert widgets.count() == 3
    snap = page.locator(".gw-snapshot")
    dark = snap.evaluate(_LIT_IN)
    snap.get_by_text("light", exact=True).first.click()
    page.wait_for_function(f"el => ({_LIT_IN})(el) > {dark}", arg=snap.element_handle())
    canvas = page.locator(".gw-paint-view").first
    painted = canvas.evaluate(f"el => ({_LIT_IN})(el.parentElement)")
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + 100, box["y"] + 100, steps=8)
    page.mouse.up()
    page.wait_for_function(
        f"el => ({_LIT_IN})(el.parentElement) > {painted}", arg=canvas.element_handle()
    )
    context.close()
    assert requests == [], f"the exported page asked the network for {requests}"
    assert not errors, errors
