"""image_grid.js alone in headless Chromium: pixels, overlay colours, contour, click, hover."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gandissect_widgets import render
from gandissect_widgets.widgets import ImageGrid

pytestmark = pytest.mark.browser

RGB = np.array([[220, 30, 40], [30, 200, 60], [40, 60, 230]], np.uint8)


def _solid(colors, h=16, w=16):
    return np.broadcast_to(np.asarray(colors, np.uint8)[:, None, None], (len(colors), h, w, 3))


@pytest.mark.parametrize("encoding", ["png", "raw"])
def test_draws_each_image_with_caption_in_columns(mount, encoding):
    captions = ["red", "green", "blue"]
    grid = ImageGrid(_solid(RGB), captions=captions, columns=2, size=48, encoding=encoding)
    view = mount(grid)
    assert view.el.locator("canvas").count() == 3
    for i, color in enumerate(RGB):
        px = view.pixels(index=i)
        assert px.shape == (48, 48, 4)
        np.testing.assert_array_equal(px[24, 24, :3], color)
    assert view.el.locator("figcaption").all_inner_texts() == ["red", "green", "blue"]
    first, third = view.box(index=0), view.box(index=2)
    assert third["y"] > first["y"] + 48 and third["x"] == first["x"]  # 2 columns: wraps


def test_overlay_matches_render_overlay(mount):
    """The browser's LUT colouring + bilinear upsampling agrees with render.overlay."""
    imgs = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    heat = np.random.default_rng(1).random((2, 4, 4)).astype(np.float32)
    grid = ImageGrid(imgs, heatmaps=heat, size=32, cmap="viridis", opacity=0.6)
    view = mount(grid)
    for i in range(2):
        expected = render.overlay(
            imgs[i : i + 1], grid.heatmaps[i : i + 1], "viridis", 0.6, grid.vmin, grid.vmax
        )[0]
        diff = np.abs(view.pixels(index=i)[..., :3].astype(int) - expected.astype(int))
        assert diff.mean() < 1.5 and diff.max() <= 8, (diff.mean(), diff.max())


def test_threshold_draws_contour_only_at_the_crossing(mount):
    heat = np.zeros((1, 8, 8), np.float32)
    heat[:, :, 4:] = 1.0  # left half 0, right half 1
    grid = ImageGrid(_solid([[128, 128, 128]], 32, 32), heatmaps=heat, size=32, opacity=0.3)
    view = mount(grid)
    white = (view.pixels()[..., :3] == 255).all(-1)
    assert not white.any()  # no threshold, no contour
    grid.threshold = 0.5
    view.settle()
    white = (view.pixels()[..., :3] == 255).all(-1)
    cols = np.flatnonzero(white.any(0))
    assert white.sum() == 32 and len(cols) == 1 and 15 <= cols[0] <= 17  # one line, at x = 16


def test_click_reports_image_pixels_and_calls_back(mount):
    grid = ImageGrid(_solid(RGB[:2], h=10, w=20), columns=2, size=80)  # 4 CSS px per pixel
    seen = []
    grid.on_click(seen.append)
    view = mount(grid)
    box = view.box(index=1)
    assert box["height"] == 40
    for _ in range(2):
        view.page.mouse.click(box["x"] + 4 * 13 + 2, box["y"] + 4 * 7 + 1)
        view.sync()
    assert seen == [{"index": 1, "x": 13, "y": 7}] * 2
    assert grid.clicked["index"] == 1 and grid.clicked["n"] == 2


def test_hover_shows_heatmap_value(mount):
    heat = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4)
    grid = ImageGrid(_solid(RGB[:1]), heatmaps=heat, size=64)  # 16x16 image, 4x4 heat
    view = mount(grid)
    box = view.box()
    view.page.mouse.move(box["x"] + 4 * 10 + 2, box["y"] + 4 * 2 + 2)  # image pixel (10, 2)
    status = view.el.locator(".gw-grid-status").inner_text()
    sx, sy = (10 + 0.5) * 4 / 16 - 0.5, (2 + 0.5) * 4 / 16 - 0.5  # bilinear, like torch
    expected = float(
        torch.nn.functional.grid_sample(
            torch.as_tensor(grid.heatmaps)[None],
            torch.tensor([[[[(sx + 0.5) / 2 - 1, (sy + 0.5) / 2 - 1]]]]),
            align_corners=False,
        )
    )
    assert status.startswith("image 1 · x 10, y 2  value ")
    assert abs(float(status.split("value ")[1]) - expected) < 0.01 * 15
    view.page.mouse.move(box["x"] + 200, box["y"] + 200)
    assert view.el.locator(".gw-grid-status").inner_text().strip() == ""


def test_python_changes_redraw(mount):
    grid = ImageGrid(_solid(RGB[:2]), size=32)
    view = mount(grid)
    grid.set_images(_solid(RGB[1:]))
    view.settle()
    np.testing.assert_array_equal(view.pixels(index=0)[16, 16, :3], RGB[1])
    grid.encoding = "raw"
    grid.set_images(_solid(RGB[:2]))
    view.settle()
    np.testing.assert_array_equal(view.pixels(index=1)[16, 16, :3], RGB[1])
    grid.set_heatmaps(np.ones((2, 2, 2)), vmin=0, vmax=1)
    grid.cmap, grid.opacity = "gray", 1.0
    view.settle()
    np.testing.assert_array_equal(view.pixels(index=1)[16, 16, :3], [255, 255, 255])
    grid.captions = ["x", "y"]
    grid.size = 24
    view.settle()
    assert view.pixels(index=1).shape == (24, 24, 4)
    assert view.el.locator("figcaption").all_inner_texts() == ["x", "y"]


def _expected_cell(grid, image, heat, size):
    """What one cell should show at ``size`` px: the image scaled up nearest-neighbour, the
    heatmap blended by render.overlay, and the threshold contour (white inside, darkened
    outside); returns (pixels, contour mask)."""
    scale = size // image.shape[0]
    big = image.repeat(scale, 0).repeat(scale, 1)
    expected = render.overlay(big[None], heat[None], grid.cmap, grid.opacity, grid.vmin, grid.vmax)
    value = render.resize_mask(torch.as_tensor(heat[None]), (size, size))[0].numpy()
    inside = value >= grid.threshold
    edge = np.zeros_like(inside)
    edge[1:] |= inside[1:] != inside[:-1]
    edge[:-1] |= inside[1:] != inside[:-1]
    edge[:, 1:] |= inside[:, 1:] != inside[:, :-1]
    edge[:, :-1] |= inside[:, 1:] != inside[:, :-1]
    return expected[0], edge & inside


@pytest.mark.parametrize("dark", [False, True])
def test_screenshot(mount, tmp_path, dark):
    yy, xx = np.mgrid[0:64, 0:64] / 63
    imgs = np.stack(
        [
            np.stack([xx * 0.6 + 0.2 * k, yy * 0.5 + 0.3, 0.5 - 0.1 * k + 0 * xx], -1)
            for k in range(6)
        ]
    )
    imgs = (imgs.clip(0, 1) * 255).astype(np.uint8)
    gy, gx = np.mgrid[0:8, 0:8]
    heat = np.stack([np.exp(-((gx - 2 - k) ** 2 + (gy - 3) ** 2) / 6) for k in range(6)])
    grid = ImageGrid(imgs, heatmaps=heat, captions=[f"sample {k}" for k in range(6)], columns=3)
    grid.size, grid.threshold = 128, 0.5  # 2 screen px per image px
    view = mount(grid, dark=dark)
    view.page.mouse.move(view.box(index=1)["x"] + 40, view.box(index=1)["y"] + 40)
    path = view.screenshot(f"image_grid_{'dark' if dark else 'light'}", tmp_path)
    shot = np.asarray(Image.open(path).convert("RGB")).astype(int)
    origin = view.el.bounding_box()
    for k in range(6):
        box = view.box(index=k)
        x, y = round(box["x"] - origin["x"]), round(box["y"] - origin["y"])
        assert (box["width"], box["height"]) == (128, 128)
        cell = shot[y : y + 128, x : x + 128]
        expected, contour = _expected_cell(grid, imgs[k], grid.heatmaps[k], 128)
        near = contour.copy()  # the contour may fall one pixel either way of ours
        for axis in (0, 1):
            near |= np.roll(contour, 1, axis) | np.roll(contour, -1, axis)
        rest = ~near & ~np.roll(near, 1, 0) & ~np.roll(near, -1, 0)
        for cy in (0, 1, -2, -1):  # the rounded corners (border-radius 2px)
            rest[cy, [0, 1, -2, -1]] = False
        diff = np.abs(cell - expected.astype(int))[rest]
        assert diff.mean() < 1.5 and diff.max() <= 8, (k, diff.mean(), diff.max())
        white = (cell == 255).all(-1)
        assert contour.sum() > 20 and white[contour].mean() > 0.8, k  # the contour is drawn
        assert not (white & ~near).any(), k  # and nothing else is white
    # the cells are in their places: 3 columns, the images in order, captions below each
    boxes = [view.box(index=k) for k in range(6)]
    assert [b["y"] for b in boxes[:3]] == [boxes[0]["y"]] * 3 < [b["y"] for b in boxes[3:]]
    assert view.el.locator("figcaption").all_inner_texts() == [f"sample {k}" for k in range(6)]
