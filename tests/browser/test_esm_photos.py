"""Photos in headless Chromium: a file chosen with "add photo…" or dropped onto a grid reaches
Python as the view's message with the file's bytes, and a Session widget then shows the photo's
reconstruction among its samples."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

import gandissect_widgets as gw
from gandissect_widgets.sources import PHOTO_BASE
from gandissect_widgets.widgets import ImageGrid, UnitBrowser
from gandissect_widgets.zoo import hamlet

from .test_esm_composites import CompositeView

pytestmark = pytest.mark.browser

# The harness's model keeps sent contents only: record the buffers too, as a kernel gets them.
RECORD = """() => {
  const m = gw.model;
  m.photoSent = [];
  m.send = (content, callbacks, buffers = []) => {
    const b64 = (b) => {
      let s = "";
      for (const x of new Uint8Array(b)) s += String.fromCharCode(x);
      return btoa(s);
    };
    m.photoSent.push({ content, buffers: buffers.map(b64) });
  };
}"""

DROP = """([selector, b64, name, type]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type }));
  const target = document.querySelector(selector);
  const init = { bubbles: true, cancelable: true, dataTransfer: data };
  const fire = (kind) => target.dispatchEvent(new DragEvent(kind, init));
  const accepted = !fire("dragenter");  // preventDefault: the grid takes the drop
  const highlighted = target.classList.contains("gw-drop");
  fire("dragover");
  fire("drop");
  return { accepted, highlighted, after: target.classList.contains("gw-drop") };
}"""


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    return hamlet.render([hamlet.TEST_SEED_START])[0][0]


def _png(picture) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, "PNG")
    return buf.getvalue()


def _deliver(view, count=1) -> list[dict]:
    """Wait for ``count`` messages from the view and hand them to Python with their bytes."""
    view.page.wait_for_function(f"() => gw.model.photoSent.length >= {count}")
    sent = view.page.evaluate("() => gw.model.photoSent.splice(0)")
    for message in sent:
        buffers = [memoryview(base64.b64decode(b)) for b in message["buffers"]]
        view.widget._handle_custom_msg(message["content"], buffers)
    return sent


def test_chosen_and_dropped_files_reach_python_as_bytes(mount, picture):
    grid = ImageGrid(np.zeros((2, 16, 16, 3), np.uint8), size=48, accept_photos=True)
    got = []
    grid.on_photo(lambda pic, name: got.append((pic, name)))
    view = mount(grid)
    view.page.evaluate(RECORD)
    assert view.el.locator(".gw-photo-add").is_visible()
    data = _png(picture)
    view.el.locator(".gw-photo-input").set_input_files(
        files=[{"name": "chosen.png", "mimeType": "image/png", "buffer": data}]
    )
    sent = _deliver(view)
    assert sent[0]["content"]["event"] == "photo" and sent[0]["content"]["name"] == "chosen.png"
    assert base64.b64decode(sent[0]["buffers"][0]) == data  # the file's bytes, unchanged
    drop = view.page.evaluate(
        DROP, ["#root .gw-grid", base64.b64encode(data).decode(), "dropped.png", "image/png"]
    )
    assert drop == {"accepted": True, "highlighted": True, "after": False}
    _deliver(view)
    assert [name for _, name in got] == ["chosen.png", "dropped.png"]
    for pic, _ in got:
        np.testing.assert_array_equal(pic, picture)
    grid.photo_status = "shown"  # what Python says shows in the bar
    assert view.el.locator(".gw-photo-status").inner_text() == "shown"
    grid.accept_photos = False  # no button, no drop target
    assert not view.el.locator(".gw-photo-add").is_visible()
    drop = view.page.evaluate(
        DROP, ["#root .gw-grid", base64.b64encode(data).decode(), "x.png", "image/png"]
    )
    assert drop["accepted"] is False
    grid.close()


def test_bad_file_shows_its_message_in_the_view(mount):
    grid = ImageGrid(np.zeros((1, 16, 16, 3), np.uint8), accept_photos=True)
    got = []
    grid.on_photo(lambda *args: got.append(args))
    view = mount(grid)
    view.page.evaluate(RECORD)
    view.page.evaluate(
        DROP,
        ["#root .gw-grid", base64.b64encode(b"not a picture").decode(), "notes.png", "image/png"],
    )
    _deliver(view)
    status = view.el.locator(".gw-photo-status")
    assert got == [] and "notes.png is not a PNG or JPEG" in status.inner_text()
    assert status.get_attribute("data-kind") == "error"
    too_big = {"name": "huge.png", "mimeType": "image/png", "buffer": bytes(8 * 2**20 + 1)}
    view.el.locator(".gw-photo-input").set_input_files(files=[too_big])
    view.page.wait_for_function(
        "() => document.querySelector('.gw-photo-status').textContent.startsWith('huge.png')"
    )
    assert "photos up to 8 MB" in status.inner_text()
    assert view.page.evaluate("() => gw.model.photoSent.length") == 0  # its bytes never left
    grid.close()


def test_photo_dropped_on_unit_browser_joins_its_samples(page, picture):
    session = gw.Session.from_zoo("hamlet")
    browser = UnitBrowser(session, "layer4", columns=3, size=64, heat_mode="colormap")
    browser.opacity = 0.0  # the images as they are (only the threshold contour on them)
    browser.invert_settings = dict(steps=10, restarts=1, candidates=4)
    try:
        view = CompositeView(page, browser)
        page.evaluate(RECORD)
        samples = '.gw-grid[data-name="samples"]'
        assert view.el.locator(f"{samples} canvas").count() == 8
        page.evaluate(
            DROP, [samples, base64.b64encode(_png(picture)).decode(), "cat.png", "image/png"]
        )
        _deliver(view)
        assert browser.photo_job.result(60) == [PHOTO_BASE]
        for _ in range(200):
            browser.wait()
            if browser.seeds == session.samples and browser.photo_kind == "done":
                break
        view.flush()
        assert view.el.locator(f"{samples} canvas").count() == 9
        assert view.el.locator(f"{samples} figcaption").all_inner_texts() == ["photo 0"]
        assert "added as photo 0" in view.el.locator(".gw-photo-status").inner_text()
        shown = view.pixels(f"{samples} canvas", 8)[..., :3].astype(int)
        expected = session.generate([PHOTO_BASE])[0].astype(int)  # 64 px drawn at 64 px
        diff = np.abs(shown - expected).max(-1)
        assert shown.shape == expected.shape and (diff <= 2).mean() > 0.8, diff.mean()
    finally:
        browser.close()
