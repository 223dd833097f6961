"""Every widget's display bundle carries a static picture of what it shows, next to its live view,
so saved notebooks, GitHub, nbviewer and ``nbconvert --to html`` show images, not object reprs."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
import time

import nbformat
import numpy as np
from PIL import Image

import gandissect_widgets as gw
from gandissect_widgets import render
from gandissect_widgets.widgets import _fallback
from gandissect_widgets.widgets._fallback import PNG_BUDGET
from gandissect_widgets.widgets.snapshot import snapshot_compare

VIEW = "application/vnd.jupyter.widget-view+json"


def bundle_png(widget) -> np.ndarray:
    data, meta = widget._repr_mimebundle_()
    assert VIEW in data and data[VIEW]["model_id"] == widget.model_id  # the live view stays
    assert "text/plain" in data
    png = base64.b64decode(data["image/png"])
    picture = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert "<img " in data["text/html"] and "data:image/jpeg;base64," in data["text/html"]
    jpeg = re.search(r"data:image/jpeg;base64,([^\"]+)", data["text/html"]).group(1)
    small = np.asarray(Image.open(io.BytesIO(base64.b64decode(jpeg))).convert("RGB"))
    assert small.shape == picture.shape  # the same picture, lossy
    assert np.abs(small.astype(int) - picture).mean() < 12
    width = meta["image/png"]["width"]  # shown enlarged by an integer factor
    assert width % picture.shape[1] == 0 and f'width="{width}"' in data["text/html"]
    return picture


def first_region(picture, image, pad=2) -> np.ndarray:
    """The first tile of a grid picture (after render.grid's padding), ``image``'s size."""
    h, w = image.shape[:2]
    return picture[pad : pad + h, pad : pad + w]


def test_image_grid_picture_is_its_images():
    imgs = np.random.default_rng(0).integers(0, 256, (5, 12, 12, 3), dtype=np.uint8)
    grid = gw.ImageGrid(imgs, columns=3, size=36)
    picture = bundle_png(grid)
    np.testing.assert_array_equal(first_region(picture, imgs[0]), imgs[0])
    assert picture.shape == render.grid(imgs, columns=3).shape
    assert grid._repr_mimebundle_()[1]["image/png"]["width"] == 3 * picture.shape[1]


def test_image_grid_picture_draws_heatmaps_like_the_browser():
    imgs = np.full((2, 8, 8, 3), 200, np.uint8)
    heat = np.zeros((2, 4, 4), np.float32)
    heat[:, :2, :2] = 1
    grid = gw.ImageGrid(imgs, heatmaps=heat, size=8)
    grid.heat_mode, grid.threshold = "highlight", 0.5
    expected = render.highlight(imgs, grid.heatmaps, 0.5)
    np.testing.assert_array_equal(first_region(bundle_png(grid), expected[0]), expected[0])


def test_session_widgets_picture_their_grids(seg_session):
    s = seg_session
    browser = gw.UnitBrowser(s, "layer2", seeds=range(4))
    browser.wait()
    g = browser.samples_grid
    shown = (
        render.highlight(g.images, g.heatmaps, g.threshold) if g.threshold is not None else g.images
    )
    np.testing.assert_array_equal(first_region(bundle_png(browser), shown[0]), shown[0])

    panel = gw.AblationPanel(s, "layer2", units=[0, 1], seeds=range(4))
    panel.wait()
    picture = bundle_png(panel)
    original = panel.original_grid.images
    np.testing.assert_array_equal(first_region(picture, original[0]), original[0])
    assert picture.shape[0] > 2 * original.shape[1]  # original and edited rows

    editor = gw.RuleEditor(s, "layer2", seeds=range(4))
    editor.wait()
    gallery = editor.gallery_grid.images
    np.testing.assert_array_equal(first_region(bundle_png(editor), gallery[0]), gallery[0])
    for w in (browser, panel, editor):
        w.close()


def test_canvas_and_snapshot_pictures():
    img = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    canvas = gw.PaintCanvas(img, size=16)
    np.testing.assert_array_equal(first_region(bundle_png(canvas), img), img)

    imgs = np.random.default_rng(2).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    snap = snapshot_compare(imgs, 255 - imgs, labels=("a", "b"))
    np.testing.assert_array_equal(first_region(bundle_png(snap), imgs[0]), imgs[0])


def test_large_pictures_stay_small_and_close():
    imgs = np.random.default_rng(3).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
    imgs = (imgs // 128 * 128 + 64).astype(np.uint8)  # 8 colours: a palette holds them exactly
    data, _ = gw.ImageGrid(imgs, size=64)._repr_mimebundle_()
    assert len(data["image/png"]) < 1.4 * PNG_BUDGET
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).convert("RGB"))
    np.testing.assert_array_equal(first_region(picture, imgs[0]), imgs[0])

    s = gw.Session.from_zoo("hamlet")  # GAN samples: palette PNG, a few levels off on average
    samples = s.generate(range(16))
    data, _ = gw.ImageGrid(samples, size=64)._repr_mimebundle_()
    assert len(data["image/png"]) < 1.4 * PNG_BUDGET
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).convert("RGB"))
    assert np.abs(first_region(picture, samples[0]).astype(int) - samples[0]).mean() < 6


def test_empty_widget_keeps_the_plain_bundle():
    data, _ = gw.ImageGrid()._repr_mimebundle_()
    assert VIEW in data and "image/png" not in data


def _published(monkeypatch) -> list:
    """What the widgets show through IPython: (data, metadata, display_id, update) each."""
    sent: list = []
    monkeypatch.setattr(_fallback, "_publish", lambda *args: sent.append(args))
    monkeypatch.setenv("GW_PICTURE_FOLLOWS", "1")
    return sent


def _until(sent: list, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while len(sent) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(sent) >= count, sent


def test_saved_picture_follows_the_widget_after_it_is_quiet(monkeypatch, gen_session):
    """Finding 6b: a panel saved at 20 % shows 20 % in its picture, not the display-time 100 %.
    Its live view is shown once and never updated (JupyterLab would re-create the view)."""
    sent = _published(monkeypatch)
    panel = gw.AblationPanel(gen_session, "layer2", units=[1, 2], seeds=[0, 1], size=16)
    panel.picture_delay = 0.2
    try:
        panel._ipython_display_()
        (live, _, live_id, _), (first, meta, display_id, update) = sent
        assert VIEW in live and "image/png" not in live and live_id is None
        assert display_id and not update and meta["image/png"]["width"] > 0
        assert "strength 100%" in first["text/plain"] and "image/png" in first
        assert 'class="gw-static-picture"' in first["text/html"]
        for strength in (0.6, 0.4, 0.2):  # a drag: one update, once it has stopped
            panel.strength = strength
        _until(sent, 3)
        time.sleep(0.4)
        assert len(sent) == 3, [s[0].get("text/plain") for s in sent[2:]]
        data, _, again, update = sent[2]
        assert update and again == display_id and "strength 20%" in data["text/plain"]
        now = panel._repr_mimebundle_()[0]
        assert data["image/png"] == now["image/png"] != first["image/png"]
        assert not panel.update_picture()  # the same picture is not sent twice
        panel.mode = panel.mode  # no change, no update
        time.sleep(0.4)
        assert len(sent) == 3
    finally:
        panel.close()
    assert not panel.update_picture()  # a closed widget sends nothing


def test_empty_widget_picture_fills_in_and_plain_frontends_keep_one_bundle(monkeypatch):
    sent = _published(monkeypatch)
    grid = gw.ImageGrid(size=16)
    grid.picture_delay = 0.05
    grid._ipython_display_()
    assert len(sent) == 2 and "image/png" not in sent[1][0]
    grid.set_images(np.full((2, 8, 8, 3), 40, np.uint8))
    _until(sent, 3)
    assert sent[2][3] and "image/png" in sent[2][0] and sent[2][2] == sent[1][2]
    # Colab, VS Code (or GW_PICTURE_FOLLOWS=0): the one bundle of _repr_mimebundle_, as marimo
    monkeypatch.setenv("GW_PICTURE_FOLLOWS", "0")
    assert not hasattr(grid, "_ipython_display_")  # IPython then takes _repr_mimebundle_
    data, _meta = grid._repr_mimebundle_()
    assert VIEW in data and "image/png" in data
    assert "gw-static-picture" not in data["text/html"]
    grid.close()


def test_callers_that_keep_the_bundle_get_the_one_bundle(monkeypatch):
    """ipywidgets' Output.append_display_data and display(w, display_id=...) store what the
    formatter returns: there the widget offers no display hook of its own."""
    _published(monkeypatch)
    grid = gw.ImageGrid(np.full((2, 8, 8, 3), 40, np.uint8), size=16)

    def append_display_data():  # named as ipywidgets' Output method
        return hasattr(grid, "_ipython_display_")

    # a frame like IPython's display(), defined in a module named as IPython's
    space = {"__name__": "IPython.core.display_functions", "grid": grid}
    source = "def display(display_id=None, update=False):\n"
    exec(source + "    return hasattr(grid, '_ipython_display_')", space)
    ipython_like = space["display"]
    try:
        assert hasattr(grid, "_ipython_display_")  # a plain display: two outputs
        assert not append_display_data()
        assert not ipython_like(display_id="x") and not ipython_like(update=True)
        assert ipython_like()  # display(w) with no id: the two outputs
    finally:
        grid.close()


def test_a_failed_drawing_keeps_the_saved_picture_and_a_second_display_shares_its_id(
    monkeypatch,
):
    sent = _published(monkeypatch)
    grid = gw.ImageGrid(np.full((2, 8, 8, 3), 40, np.uint8), size=16)
    try:
        grid._ipython_display_()
        display_id = sent[1][2]
        monkeypatch.setattr(_fallback, "fallback_picture", lambda w: 1 / 0)
        assert not grid.update_picture()  # nothing sent: the outputs keep the last picture
        monkeypatch.undo()
        sent = _published(monkeypatch)
        grid.set_images(np.full((2, 8, 8, 3), 200, np.uint8))
        grid._ipython_display_()  # shown again in a later cell
        pictures = [s for s in sent if s[2] is not None]
        assert {s[2] for s in pictures} == {display_id}  # one id: updates reach both outputs
        assert pictures[-1][3]  # and the earlier output got the new picture
    finally:
        grid.close()


NOTEBOOK = [
    "import numpy as np, gandissect_widgets as gw",
    "grid = gw.ImageGrid(np.zeros((3, 8, 8, 3), np.uint8) + 90, size=16)\ngrid",
    "gw.PaintCanvas(np.full((16, 16, 3), 30, np.uint8), size=16)",
    "grid.set_images(np.zeros((3, 8, 8, 3), np.uint8) + 200)",  # the end of the cell sends it
]


def test_nbconvert_html_shows_a_picture_per_widget(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in NOTEBOOK]
    path = tmp_path / "w.ipynb"
    nbformat.write(nb, path)
    run = [sys.executable, "-m", "jupyter", "nbconvert"]
    subprocess.run([*run, "--to", "notebook", "--execute", "--inplace", str(path)], check=True)
    executed = nbformat.read(path, as_version=4)
    # each widget: its live view, then its picture (an output that followed the widget's state)
    for cell in executed.cells[1:3]:
        view, picture = (o["data"] for o in cell.outputs)
        assert VIEW in view and "image/png" not in view
        assert "image/png" in picture and "gw-static-picture" in picture["text/html"]
    shown = Image.open(
        io.BytesIO(base64.b64decode(executed.cells[1].outputs[1]["data"]["image/png"]))
    )
    assert np.asarray(shown.convert("RGB"))[4, 4].tolist() == [200] * 3  # the state at the end
    # as JupyterLab saves by default and notebooks/_build.py ships them: outputs, no widget state
    # (with saved state nbconvert draws the live view, which needs a CDN: see `export`)
    executed.metadata.pop("widgets", None)
    nbformat.write(executed, path)
    subprocess.run([*run, "--to", "html", str(path)], check=True)
    page = (tmp_path / "w.html").read_text()
    images = re.findall(r"<img [^>]*src=\"data:image/(?:png|jpeg);base64,", page)
    assert len(images) == 2
    assert "object at 0x" not in page
