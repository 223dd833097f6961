"""``gandissect-widgets export``: an executed notebook becomes one HTML page whose widgets render
from their saved state in Chromium with every network request blocked."""

from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest

from gandissect_widgets import cli

from .conftest import block_the_network

pytestmark = pytest.mark.browser

_LIT = """() => [...document.querySelectorAll('.widget-subarea canvas')].map((c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let lit = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i + 3] && (d[i] || d[i + 1] || d[i + 2])) lit++;
  return lit;
})"""


@pytest.fixture
def exported(tmp_path):
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
    context.close()
    assert requests == []
    assert not errors, errors
