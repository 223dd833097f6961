"""The picture a notebook saves of a widget follows the widget (finding 6b of issue 23), in a real
JupyterLab 4: an AblationPanel dragged to 20 % and saved through the UI (Ctrl+S, default
settings: no widget state) carries a 20 % picture, and the update never touched the live view.

An update of an output re-creates the widget view in it (JupyterLab's widget renderer makes a
new view and never disposes the old one), so the picture is an output of its own, hidden while
the live widget runs (widgets/_fallback.py); this test checks that the live view survives the
update (same element, focus kept) and that the picture's output stays out of sight.
"""

from __future__ import annotations

import base64
import io
import time

import nbformat
import numpy as np
import pytest
from PIL import Image

from .test_e2e_jupyter import Notebook, _drag_slider, _ours, _write_notebook, lab_page  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CELLS = [
    """\
import json, torch, gandissect_widgets as gw
torch.set_num_threads(1)
s = gw.Session.from_zoo("hamlet")
panel = gw.AblationPanel(s, "layer6", units=[3, 5, 9], seeds=range(2), size=64)
print("E2E " + json.dumps({"tag": "setup", "seq": 1}))""",
    "panel",
]
VIEW = "application/vnd.jupyter.widget-view+json"


def _saved_outputs(path, timeout: float = 30) -> list[dict]:
    """The panel cell's outputs in the saved file, once a save has written them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nb = nbformat.read(path, as_version=4)
        if nb.cells[1].outputs:
            return [o["data"] for o in nb.cells[1].outputs]
        time.sleep(0.2)
    raise AssertionError("the notebook was not saved")


def test_lab_saves_the_picture_of_the_state_at_save_time(lab_page, jupyter_folder):  # noqa: F811
    served = jupyter_folder("lab")
    _write_notebook(served.folder, cells=CELLS)
    page, errors = lab_page, []
    page.on("pageerror", lambda exc: errors.append(str(exc)) if _ours(exc) else None)
    nb = Notebook(page)
    page.goto(served.notebook_url("e2e.ipynb"))
    nb.wait_for_kernel()
    nb.run(0)
    nb.cells.nth(1).locator(".jp-InputPrompt").first.click()
    page.keyboard.press("Shift+Enter")
    panel = nb.widget(1, "gw-ablation-panel")
    outputs = nb.cells.nth(1).locator(".jp-OutputArea-child")
    outputs.nth(1).wait_for(state="attached")
    assert outputs.count() == 2 and not outputs.nth(1).is_visible()  # the picture: hidden
    panel.evaluate("el => { el.dataset.first = 'yes'; }")
    slider = panel.locator("input[aria-label=strength]")
    _drag_slider(page, slider, 0.2)
    slider.focus()
    value = float(slider.input_value())
    assert 0.15 < value < 0.3, value
    shown = f"strength {value:.0%}"
    picture = outputs.nth(1).locator("figcaption")
    picture.filter(has_text=shown).wait_for(state="attached")  # the update arrived (hidden)
    # the live view is the one first shown, focus and all: the update did not re-create it
    assert panel.evaluate("el => el.isConnected && el.dataset.first") == "yes"
    assert nb.cells.nth(1).locator(".gw-ablation-panel").count() == 1
    assert slider.evaluate("el => document.activeElement === el")
    assert not outputs.nth(1).is_visible()
    page.keyboard.press("Escape")  # command mode: Ctrl+S saves the notebook
    page.keyboard.press("Control+s")
    view, saved = _saved_outputs(served.folder / "e2e.ipynb")
    assert VIEW in view and "image/png" not in view
    assert shown in saved["text/plain"] and "gw-static-picture" in saved["text/html"]
    assert not errors, errors
    # the picture is the panel at the dragged strength, not the one first shown (100 %)
    import gandissect_widgets as gw

    panel = gw.AblationPanel(
        gw.Session.from_zoo("hamlet"), "layer6", units=[3, 5, 9], seeds=range(2), size=64
    )
    try:
        at_display = _png(panel._repr_mimebundle_()[0]["image/png"])
        panel.strength = value
        panel.wait()
        expected = _png(panel._repr_mimebundle_()[0]["image/png"])
    finally:
        panel.close()
    got = _png(saved["image/png"])
    assert got.shape == expected.shape
    assert _diff(got, expected) < 0.5 < _diff(got, at_display), (
        _diff(got, expected),
        _diff(got, at_display),
    )


def _png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")).astype(int)


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())
