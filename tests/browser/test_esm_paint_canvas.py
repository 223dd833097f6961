"""paint_canvas.js alone in headless Chromium: mouse and touch strokes, masks, buttons, pixels."""

from __future__ import annotations

import numpy as np
import pytest

from gandissect_widgets.widgets import PaintCanvas

pytestmark = pytest.mark.browser

GRAY = 100
SCALE = 4  # 32x32 image shown at 128 CSS pixels


@pytest.fixture
def canvas():
    return PaintCanvas(np.full((32, 32, 3), GRAY, np.uint8), size=32 * SCALE, brush=4)


def _at(view, x, y):
    """Page coordinates of image pixel centre (x, y)."""
    box = view.box(".gw-paint-view")
    return box["x"] + (x + 0.5) * SCALE, box["y"] + (y + 0.5) * SCALE


def _mouse_stroke(view, points, steps=8):
    mouse = view.page.mouse
    mouse.move(*_at(view, *points[0]))
    mouse.down()
    for p in points[1:]:
        mouse.move(*_at(view, *p), steps=steps)
    mouse.up()


def _touch_stroke(view, points):
    """Dispatch pointer events with pointerType "touch" along the points."""
    pointer = "([t, x, y]) => gw.pointer('.gw-paint-view', t, x, y)"
    view.page.evaluate(pointer, ["pointerdown", *_at(view, *points[0])])
    for a, b in zip(points, points[1:]):
        for f in np.linspace(0, 1, 6)[1:]:
            p = np.add(a, np.multiply(f, np.subtract(b, a)))
            view.page.evaluate(pointer, ["pointermove", *_at(view, *p)])
    view.page.evaluate(pointer, ["pointerup", *_at(view, *points[-1])])


def test_mouse_stroke_syncs_mask_once_at_stroke_end(mount, canvas):
    seen = []
    canvas.on_stroke(seen.append)
    view = mount(canvas)
    mouse = view.page.mouse
    mouse.move(*_at(view, 4, 16))
    mouse.down()
    mouse.move(*_at(view, 28, 16), steps=20)
    assert view.page.evaluate("() => gw.model.saves") == 0  # nothing sent while drawing
    mouse.up()
    view.sync()
    assert view.saves == 1
    mask = canvas.mask
    assert mask[14:19, 6:27].all()  # 4 px brush around row 16
    assert not mask[:13].any() and not mask[20:].any()
    assert mask[:, :2].sum() == 0 and mask[:, 31].sum() == 0
    assert 80 <= mask.sum() <= 140  # ~ 24 px long x 4 px wide, plus round caps
    assert len(seen) == 1 and (seen[0] == mask).all()
    assert canvas._strokes == 1


def test_touch_stroke_paints(mount, canvas):
    view = mount(canvas)
    _touch_stroke(view, [(10, 3), (10, 29)])
    view.sync()
    mask = canvas.mask
    assert mask[5:28, 9:12].all() and not mask[:, :7].any() and not mask[:, 14:].any()


def test_moves_are_coalesced_to_animation_frames(mount, canvas):
    view = mount(canvas)
    frames = """([x, y]) => {
      let requested = 0;
      const raf = window.requestAnimationFrame;
      window.requestAnimationFrame = (fn) => { requested++; return raf(fn); };
      gw.pointer('.gw-paint-view', 'pointerdown', x, y);
      for (let i = 1; i <= 40; i++) gw.pointer('.gw-paint-view', 'pointermove', x + i, y);
      window.requestAnimationFrame = raf;
      return requested;
    }"""
    assert view.page.evaluate(frames, list(_at(view, 2, 2))) == 1
    view.page.evaluate("([x, y]) => gw.pointer('.gw-paint-view', 'pointerup', x, y)", [0, 0])
    view.sync()
    assert canvas.mask[1:4, 3:12].all()  # all 40 moves were drawn in that one frame


def test_tap_paints_a_brush_sized_dot(mount, canvas):
    canvas.brush = 6
    view = mount(canvas)
    view.page.mouse.click(*_at(view, 16, 16))
    view.sync()
    rows, cols = np.nonzero(canvas.mask)
    assert 4 <= np.ptp(rows) + 1 <= 7 and 4 <= np.ptp(cols) + 1 <= 7
    assert abs(rows.mean() - 16) <= 1 and abs(cols.mean() - 16) <= 1


def test_python_mask_is_drawn_with_color_and_opacity(mount, canvas):
    canvas.color, canvas.opacity = "#ff0000", 0.5
    view = mount(canvas)
    square = np.zeros((32, 32), np.uint8)
    square[8:16, 8:16] = 1
    canvas.mask = square
    view.settle()
    px = view.pixels(".gw-paint-view")[..., :3].astype(int)
    inside, outside = px[12 * SCALE, 12 * SCALE], px[24 * SCALE, 24 * SCALE]
    np.testing.assert_allclose(inside, [(GRAY + 255) / 2, GRAY / 2, GRAY / 2], atol=2)
    np.testing.assert_array_equal(outside, [GRAY] * 3)
    tinted = (np.abs(px - GRAY).sum(-1) > 20)[::SCALE, ::SCALE]
    np.testing.assert_array_equal(tinted, square.astype(bool))  # drawn exactly at image pixels


def test_erase_button_and_stroke(mount, canvas):
    canvas.mask = np.ones((32, 32))
    view = mount(canvas)
    view.el.get_by_role("button", name="Erase").click()
    view.sync()
    assert canvas.mode == "erase"
    _mouse_stroke(view, [(0, 16), (31, 16)])
    view.sync()
    mask = canvas.mask
    assert not mask[15:18].any() and mask[:12].all() and mask[21:].all()


def test_brush_slider_sets_brush_in_image_pixels(mount, canvas):
    view = mount(canvas)
    view.el.locator("input[type=range]").fill("10")
    view.sync()
    assert canvas.brush == 10
    assert view.el.locator(".gw-paint-label").inner_text() == "10 px"
    _mouse_stroke(view, [(4, 16), (28, 16)])
    view.sync()
    assert 9 <= canvas.mask[:, 16].sum() <= 11


def test_undo_and_clear_buttons(mount, canvas):
    view = mount(canvas)
    undo = view.el.get_by_role("button", name="Undo")
    assert undo.is_disabled()
    _mouse_stroke(view, [(4, 4), (28, 4)])
    view.sync()
    stroke = canvas.mask
    assert stroke.any() and undo.is_enabled()
    view.el.get_by_role("button", name="Clear").click()
    view.sync()
    assert not canvas.mask.any()
    undo.click()
    assert view.sync() == [{"event": "undo"}]
    np.testing.assert_array_equal(canvas.mask, stroke)  # Python restored the stroke ...
    np.testing.assert_array_equal(  # ... and the view shows it again
        np.frombuffer(view.model("_mask"), np.uint8).reshape(32, 32), stroke
    )
    assert view.pixels(".gw-paint-view")[4 * SCALE + 2, 16 * SCALE, 0] > GRAY + 40


def test_new_image_redraws_and_resizes(mount, canvas):
    view = mount(canvas)
    canvas.image = np.full((16, 32, 3), [0, 0, 255], np.uint8)
    view.settle()
    px = view.pixels(".gw-paint-view")
    assert px.shape == (64, 128, 4)
    np.testing.assert_array_equal(px[32, 64, :3], [0, 0, 255])


@pytest.mark.parametrize("dark", [False, True])
def test_screenshot(mount, tmp_path, dark):
    yy, xx = np.mgrid[0:64, 0:64] / 63
    img = (np.stack([0.3 + 0.5 * xx, 0.5 + 0.3 * yy, 0.6 - 0.3 * xx], -1) * 255).astype(np.uint8)
    canvas = PaintCanvas(img, size=256, brush=6)
    view = mount(canvas, dark=dark)
    _mouse_stroke(view, [(10, 40), (20, 30), (34, 28), (48, 20)])
    view.page.mouse.move(*_at(view, 30, 12))
    view.sync()
    path = view.screenshot(f"paint_canvas_{'dark' if dark else 'light'}", tmp_path)
    assert canvas.mask.sum() > 100 and path.stat().st_size > 1000
