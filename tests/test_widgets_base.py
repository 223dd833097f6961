"""Python side of ImageGrid and PaintCanvas: traits, binary payloads, callbacks, bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from gandissect_widgets import render
from gandissect_widgets.widgets import ImageGrid, PaintCanvas


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def _images(n=3, h=8, w=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- ImageGrid


def test_grid_images_travel_as_png_bytes():
    imgs = _images()
    grid = ImageGrid(imgs, captions=["a", "b", "c"], columns=2, size=64)
    assert len(grid) == 3
    assert all(isinstance(p, bytes) and p[:4] == b"\x89PNG" for p in grid._images)
    for png, img in zip(grid._images, imgs):
        np.testing.assert_array_equal(_decode(png), img)
    state = grid.get_state()
    assert state["captions"] == ["a", "b", "c"] and state["columns"] == 2 and state["size"] == 64


def test_grid_raw_encoding_sends_pixels():
    imgs = _images(2, 4, 6)
    grid = ImageGrid(imgs, encoding="raw")
    assert grid._images == [im.tobytes() for im in imgs] and grid._image_shape == [4, 6, 3]
    grid.encoding = "png"
    np.testing.assert_array_equal(_decode(grid._images[1]), imgs[1])


def test_grid_accepts_float_tensors_and_lists():
    t = torch.rand(2, 3, 4, 5) * 2 - 1
    grid = ImageGrid(t)
    np.testing.assert_array_equal(_decode(grid._images[1]), render.to_uint8(t)[1])
    grid.set_images([_images(1)[0], _images(1, seed=1)[0]])
    assert len(grid) == 2 and _decode(grid._images[0]).shape == (8, 12, 3)


def test_heatmaps_quantised_with_range():
    grid = ImageGrid(_images(2))
    heat = np.stack([np.linspace(-1, 3, 16).reshape(4, 4), np.full((4, 4), 1.0)])
    grid.set_heatmaps(heat)
    assert (grid.vmin, grid.vmax) == (-1.0, 3.0)
    assert grid._heat_shape == [2, 4, 4] and len(grid._heat) == 32
    q = np.frombuffer(grid._heat, np.uint8).reshape(2, 4, 4)
    assert q[0, 0, 0] == 0 and q[0, -1, -1] == 255
    # dequantised values are within half a quantisation step of the originals
    assert np.abs(grid.heatmaps - heat).max() <= (3 - -1) / 255 / 2 + 1e-6


def test_heatmaps_explicit_range_clips_and_none_removes():
    grid = ImageGrid(_images(1))
    grid.set_heatmaps(torch.tensor([[[-5.0, 0.5, 9.0]]]), vmin=0, vmax=1)
    assert list(np.frombuffer(grid._heat, np.uint8)) == [0, 128, 255]
    grid.set_heatmaps(None)
    assert grid.heatmaps is None and grid._heat_shape == [0, 0, 0]


def test_new_image_count_drops_heatmaps_same_count_keeps_them():
    grid = ImageGrid(_images(2), heatmaps=np.ones((2, 3, 3)))
    grid.set_images(_images(2, seed=5))
    assert grid.heatmaps is not None
    grid.set_images(_images(4))
    assert grid.heatmaps is None


def test_cmap_sends_matching_lut():
    import matplotlib

    grid = ImageGrid(cmap="viridis")
    lut = np.frombuffer(grid._lut, np.uint8).reshape(256, 3)
    expected = (matplotlib.colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).astype(
        np.uint8
    )
    np.testing.assert_array_equal(lut, expected)
    grid.cmap = "gray"
    lut = np.frombuffer(grid._lut, np.uint8).reshape(256, 3)
    assert tuple(lut[0]) == (0, 0, 0) and tuple(lut[255]) == (255, 255, 255)


def test_click_trait_calls_callbacks_each_time():
    grid = ImageGrid(_images(2))
    seen = []
    grid.on_click(seen.append)
    grid.set_state({"clicked": {"index": 1, "x": 3, "y": 4, "n": 1}})
    grid.set_state({"clicked": {"index": 1, "x": 3, "y": 4, "n": 2}})
    assert seen == [{"index": 1, "x": 3, "y": 4}] * 2
    grid.on_click(seen.append, remove=True)
    grid.set_state({"clicked": {"index": 0, "x": 0, "y": 0, "n": 3}})
    assert len(seen) == 2


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda g: g.set_images(np.zeros((8, 8, 3), np.uint8)), r"images\[None\]"),
        (lambda g: g.set_images(np.zeros((2, 8, 8, 2), np.uint8)), "uint8 \\(N, H, W, 3\\)"),
        (lambda g: g.set_heatmaps(np.zeros((2, 4))), r"\(N, h, w\)"),
        (lambda g: g.set_heatmaps(np.zeros((5, 4, 4))), "5 heatmaps for 2 images"),
        (lambda g: g.set_heatmaps(np.full((2, 2, 2), np.nan)), "finite"),
        (lambda g: g.set_heatmaps(np.zeros((2, 2, 2)), vmin=1, vmax=0), "vmax"),
        (
            lambda g: setattr(g, "cmap", "nosuchmap"),
            "unknown colormap 'nosuchmap'.*viridis",
        ),
        (lambda g: setattr(g, "opacity", 1.5), r"opacity must be in \[0, 1\]"),
        (lambda g: setattr(g, "columns", 0), "columns must be >= 1"),
        (lambda g: setattr(g, "encoding", "jpeg"), "encoding must be 'png' or 'raw'"),
    ],
)
def test_grid_bad_input(call, match):
    grid = ImageGrid(_images(2))
    before = grid.get_state()
    with pytest.raises(ValueError, match=match):
        call(grid)
    assert grid.get_state() == before  # nothing half-applied


# ---------------------------------------------------------------- PaintCanvas


def test_canvas_image_sets_shape_and_blank_mask():
    img = _images(1, 10, 14)[0]
    canvas = PaintCanvas(img, size=140, brush=3)
    assert canvas.shape == (10, 14) and canvas._shape == [10, 14]
    np.testing.assert_array_equal(_decode(canvas._image), img)
    assert canvas.mask.dtype == np.uint8 and canvas.mask.shape == (10, 14) and not canvas.mask.any()
    assert len(canvas._mask) == 140


def test_mask_round_trip_binarises():
    canvas = PaintCanvas(_images(1, 6, 5)[0])
    soft = np.zeros((6, 5), np.float32)
    soft[1:3, 2:4] = 0.7
    soft[4, 0] = 0.2
    canvas.mask = soft
    expected = (soft >= 0.5).astype(np.uint8)
    np.testing.assert_array_equal(canvas.mask, expected)
    assert canvas._mask == expected.tobytes()
    canvas.mask = torch.ones(6, 5, dtype=torch.bool)
    assert canvas.mask.sum() == 30


def test_mask_from_front_end_bytes_and_stroke_callback():
    canvas = PaintCanvas(size=4)
    seen = []
    canvas.on_stroke(seen.append)
    bits = np.eye(4, dtype=np.uint8)
    canvas.set_state({"_mask": memoryview(bits.tobytes()), "_strokes": 1})  # as the kernel gets it
    np.testing.assert_array_equal(canvas.mask, bits)
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], bits)
    canvas.mask = np.zeros((4, 4))  # Python-side edits do not call stroke callbacks
    assert len(seen) == 1


def test_undo_steps_back_through_strokes_and_clear():
    canvas = PaintCanvas(size=3)
    a, b = np.zeros((3, 3)), np.zeros((3, 3))
    a[0] = 1
    b[1] = 1
    canvas.mask = a
    canvas.mask = b
    canvas.clear()
    assert canvas._undo_depth == 3 and not canvas.mask.any()
    assert canvas.undo()
    np.testing.assert_array_equal(canvas.mask, b)
    assert canvas.undo()
    np.testing.assert_array_equal(canvas.mask, a)
    assert canvas.undo() and not canvas.mask.any()
    assert canvas.undo() is False and canvas._undo_depth == 0


def test_undo_message_from_browser_calls_stroke_callbacks():
    canvas = PaintCanvas(size=2)
    seen = []
    canvas.on_stroke(seen.append)
    canvas.mask = np.ones((2, 2))
    canvas._handle_custom_msg({"event": "undo"}, [])
    assert not canvas.mask.any() and len(seen) == 1


def test_new_image_shape_resets_mask_same_shape_keeps_it():
    canvas = PaintCanvas(_images(1, 4, 4)[0])
    canvas.mask = np.ones((4, 4))
    canvas.image = _images(1, 4, 4, seed=3)[0]
    assert canvas.mask.all()
    canvas.image = torch.zeros(3, 6, 8)
    assert canvas.shape == (6, 8) and not canvas.mask.any() and canvas._undo_depth == 0
    np.testing.assert_array_equal(canvas.image, np.full((6, 8, 3), 128, np.uint8))


def test_mask_without_image_sets_shape():
    canvas = PaintCanvas(size=32)
    assert canvas.shape == (32, 32)
    canvas.mask = np.ones((5, 7))
    assert canvas.shape == (5, 7) and canvas.mask.sum() == 35


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda c: setattr(c, "mask", np.zeros((4, 5))), r"image's shape \(4, 4\)"),
        (lambda c: setattr(c, "mask", np.zeros(16)), "2-D"),
        (lambda c: setattr(c, "image", np.zeros((4, 4), np.uint8)), r"uint8 \(H, W, 3\)"),
        (lambda c: setattr(c, "mode", "draw"), "mode must be one of.*paint.*erase"),
        (lambda c: setattr(c, "brush", 0), "brush must be >= 1"),
        (lambda c: setattr(c, "opacity", -0.1), r"opacity must be in \[0, 1\]"),
        (lambda c: setattr(c, "color", "red"), "#rrggbb"),
        (lambda c: c.set_state({"_mask": memoryview(b"\x01")}), "H\\*W = 16"),
    ],
)
def test_canvas_bad_input(call, match):
    canvas = PaintCanvas(_images(1, 4, 4)[0])
    before = canvas.get_state()
    with pytest.raises(ValueError, match=match):
        call(canvas)
    assert canvas.get_state() == before


# ---------------------------------------------------------------- Snapshot highlight


def test_snapshot_groups_with_a_threshold_carry_its_level(gen_session):
    from gandissect_widgets.widgets import Snapshot
    from gandissect_widgets.widgets.snapshot import snapshot_units

    snap = Snapshot()
    heat = np.array([[[0.0, 2.0]], [[1.0, 4.0]]])
    snap.add_page("p", [("g", _images(2, 1, 2), heat, None, 3.0)])
    assert snap.pages[0]["groups"][0]["level"] == pytest.approx(3 / 4 * 255)
    snap.add_page("q", [("g", _images(2, 1, 2), heat)])
    assert snap.pages[1]["groups"][0]["level"] is None and snap.heat_mode == "highlight"
    units = snapshot_units(gen_session, "layer2", [3], seeds=[0, 1])
    high = float(gen_session.unit_levels("layer2")["high"][3])
    acts = gen_session.activations("layer2", [0, 1])[:, 3]
    lo, hi = float(acts.min()), float(acts.max())
    level = units.pages[0]["groups"][0]["level"]
    assert level == pytest.approx((high - lo) / (hi - lo) * 255)
