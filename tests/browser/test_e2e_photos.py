"""Photos end to end in real frontends: a live kernel, JupyterLab 4 (and Notebook 7), Chromium.

One notebook makes a Session and a UnitBrowser with fast ``invert_settings``. The test chooses
a PNG file with the widget's "add photo…" input (a real file on disk, Playwright's file
chooser), then drops a second one onto the samples grid (a DataTransfer ``drop`` event, as a
file dragged from the desktop makes). Each reaches the kernel as a custom message with the
file's bytes in a binary buffer, is inverted in the background and joins the samples: the page
shows "photo 0" and "photo 1", whose pixels are the kernel's ``session.generate([id])`` and
look like the photo (closer to it than any other sample). A text file named .png gives the
error line in the page and adds nothing. A cell printing the kernel's state checks each step.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from PIL import Image

from gandissect_widgets.sources import PHOTO_BASE
from gandissect_widgets.zoo import hamlet

from .test_e2e_jupyter import (
    REPORT,
    TIMEOUT_MS,
    Notebook,
    _diagnostics,
    _on_screen,
    _ours,
    _screenshot,
    _write_notebook,
)

NOTEBOOK = "photos.ipynb"

SETUP = (
    REPORT
    + """
import base64

s = gw.Session.from_zoo("hamlet", device="cpu")
report("setup", samples=s.samples)
"""
)

# colormap at opacity 0: the samples as they are (only the threshold contour drawn on them)
WIDGET = """\
ub = gw.UnitBrowser(s, "layer6", columns=5, size=64, heat_mode="colormap",
                    invert_settings=dict(steps=10, restarts=1, candidates=4))
ub.opacity = 0.0
display(ub)
report("widget", settings=ub.invert_settings, accept=ub.accept_photos)
"""

STATE = """\
ub.wait()
photos = [i for i in s.samples if i >= 2**62]
report(
    "state",
    samples=s.samples,
    seeds=list(ub.seeds),
    status=ub.photo_status,
    kind=ub.photo_kind,
    shown=base64.b64encode(s.generate(photos).tobytes()).decode() if photos else "",
)
"""

CELLS = [SETUP, WIDGET, STATE]
STATE_CELL = 2

# What a file dragged from the desktop and dropped onto an element fires.
DROP = """(target, [b64, name, type]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type }));
  const init = { bubbles: true, cancelable: true, dataTransfer: data };
  const fire = (kind) => target.dispatchEvent(new DragEvent(kind, init));
  const accepted = !fire("dragenter");  // preventDefault: the grid takes the drop
  fire("dragover");
  fire("drop");
  return accepted;
}"""

# RGB bytes (base64) of a canvas, as the page shows it.
PIXELS = """c => {
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let s = "";
  for (let i = 0; i < d.length; i += 4) s += String.fromCharCode(d[i], d[i + 1], d[i + 2]);
  return { width: c.width, height: c.height, data: btoa(s) };
}"""


@pytest.fixture(params=["lab", "notebook"], ids=["jupyterlab4", "notebook7"])
def jupyter(request, jupyter_folder):
    """This test's folder, holding the photos notebook, on the shared server (per frontend)."""
    served = jupyter_folder(request.param)
    _write_notebook(served.folder, CELLS, NOTEBOOK)
    return served


@pytest.fixture
def photo_page(browser):
    """A fresh page, 1 CSS pixel = 1 canvas pixel (a 64 px cell shows a 64 px image as is)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


def _pixels(canvas) -> np.ndarray:
    out = canvas.evaluate(PIXELS)
    rgb = np.frombuffer(base64.b64decode(out["data"]), np.uint8)
    return rgb.reshape(out["height"], out["width"], 3).astype(int)


def _wait_text(locator, text: str) -> None:
    locator.page.wait_for_function(
        f"el => el.textContent.includes({json.dumps(text)})", arg=locator.element_handle()
    )


@pytest.mark.browser
@pytest.mark.slow
def test_chosen_and_dropped_photos_join_the_samples(photo_page, jupyter, tmp_path):
    page = photo_page
    picture = hamlet.render([hamlet.TEST_SEED_START])[0][0]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)) if _ours(exc) else None)
    nb = Notebook(page)
    chosen = tmp_path / "chosen.png"
    Image.fromarray(picture).save(chosen)
    flipped = picture[:, ::-1].copy()
    Image.fromarray(flipped).save(tmp_path / "dropped.png")
    with _diagnostics(page, jupyter, tmp_path):
        page.goto(jupyter.notebook_url(NOTEBOOK))
        nb.wait_for_kernel()
        assert nb.run(0)["samples"] == list(range(8))
        made = nb.run(1)
        assert made["settings"] == {"steps": 10, "restarts": 1, "candidates": 4}, made
        assert made["accept"], made
        widget = nb.widget(1, "gw-unit-browser")
        grid = widget.locator(".gw-grid[data-name=samples]")
        status = widget.locator(".gw-photo-status")
        captions = grid.locator("figcaption")
        assert grid.locator("canvas").count() == 8

        # "add photo…": the file input takes a file from disk
        widget.locator(".gw-photo-input").set_input_files(str(chosen))
        captions.filter(has_text="photo 0").wait_for()
        _wait_text(status, "chosen.png added as photo 0")

        # a file dropped onto the samples grid
        grid.scroll_into_view_if_needed()
        b64 = base64.b64encode((tmp_path / "dropped.png").read_bytes()).decode()
        assert grid.evaluate(DROP, [b64, "dropped.png", "image/png"]), "the grid refused the drop"
        captions.filter(has_text="photo 1").wait_for()
        _wait_text(status, "dropped.png added as photo 1")
        assert captions.all_inner_texts() == ["photo 0", "photo 1"]

        # a text file named .png: the error line, nothing added
        notes = tmp_path / "notes.png"
        notes.write_text("these are notes, not a picture\n")
        widget.locator(".gw-photo-input").set_input_files(str(notes))
        _wait_text(status, "notes.png is not a PNG or JPEG image")
        assert status.get_attribute("data-kind") == "error"
        _screenshot(page, widget, f"photos_{jupyter.frontend}")  # with GW_SCREENSHOTS=<dir>

        state = nb.run(STATE_CELL)
        photos = [PHOTO_BASE, PHOTO_BASE + 1]
        assert state["samples"] == [*range(8), *photos], state["samples"]
        assert state["seeds"] == state["samples"] and state["kind"] == "error", state["kind"]
        _on_screen(grid)
        assert grid.locator("canvas").count() == 10  # the bad file added no cell
        reconstructions = np.frombuffer(base64.b64decode(state["shown"]), np.uint8)
        reconstructions = reconstructions.reshape(2, 64, 64, 3).astype(int)
        canvases = grid.locator("canvas")
        shown = [_pixels(canvases.nth(i)) for i in range(10)]
        for k, (photo, original) in enumerate(zip(reconstructions, [picture, flipped])):
            on_page = shown[8 + k]
            assert on_page.shape == photo.shape, on_page.shape
            same = (np.abs(on_page - photo).max(-1) <= 2).mean()
            assert same > 0.8, f"photo {k}: the page does not show the kernel's reconstruction"
            far = [np.abs(shown[i] - original).mean() for i in range(8)]
            near = np.abs(on_page - original).mean()
            assert near < min(far), f"photo {k} looks less like the photo ({near}) than {far}"
        assert not errors, f"JavaScript errors in the page: {errors}"
