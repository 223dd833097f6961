"""Photos dropped onto widgets: the view's message (file bytes in one buffer) is decoded, bad
files give a message and change nothing, and Session widgets invert the photo and add it to
the Session's samples (every widget then shows its reconstruction as "photo 0")."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

import gandissect_widgets as gw
from gandissect_widgets.sources import PHOTO_BASE, PREVIEW_BASE
from gandissect_widgets.widgets import AblationPanel, ImageGrid, RuleEditor, UnitBrowser
from gandissect_widgets.widgets._photos import MAX_PHOTO_BYTES, decode_photo
from gandissect_widgets.zoo import hamlet

FAST = dict(steps=10, restarts=1, candidates=4)


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    return hamlet.render([hamlet.TEST_SEED_START])[0][0]


def _encode(picture, fmt="PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, fmt, **kwargs)
    return buf.getvalue()


def _drop(widget, data: bytes, name="photo.png") -> None:
    """What the view sends for one dropped file: the message with the bytes in one buffer."""
    widget._handle_custom_msg(
        {"event": "photo", "name": name, "type": "image/png"}, [memoryview(data)]
    )


def _register_photo(session) -> int:
    """What an inversion ends with: a photo the Session knows (a zero latent and residual)."""
    import torch

    residual = torch.zeros(session.layer_shape("layer4"))
    return session.sources.add_photo(torch.zeros(session.z_dim), "layer4", residual)


def _wait_until(condition, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def session():
    return gw.Session.from_zoo("hamlet")


# ---------------------------------------------------------------- decoding
def test_decode_png_and_jpeg(picture):
    np.testing.assert_array_equal(decode_photo(_encode(picture)), picture)
    rgba = np.dstack([picture, np.full(picture.shape[:2], 128, np.uint8)])
    np.testing.assert_array_equal(decode_photo(_encode(rgba)), picture)  # alpha dropped
    jpeg = decode_photo(_encode(picture, "JPEG", quality=95))
    assert jpeg.shape == picture.shape and jpeg.dtype == np.uint8
    assert np.abs(jpeg.astype(int) - picture).mean() < 8


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "is empty"),
        (b"definitely not a picture", "is not a PNG or JPEG"),
        (b"GIF89a" + bytes(40), "is not a PNG or JPEG"),
        (b"\0" * (MAX_PHOTO_BYTES + 1), "photos up to 8 MB"),
    ],
)
def test_decode_refuses_bad_files_with_a_message(data, message):
    with pytest.raises(ValueError, match=message):
        decode_photo(data, "x.png")


def test_decode_refuses_a_truncated_png(picture):
    with pytest.raises(ValueError, match="x.png"):
        decode_photo(_encode(picture)[:200], "x.png")


# ---------------------------------------------------------------- ImageGrid
def test_image_grid_calls_back_with_the_decoded_photo(picture):
    grid = ImageGrid(np.zeros((1, 8, 8, 3), np.uint8), accept_photos=True)
    got = []
    grid.on_photo(lambda pic, name: got.append((pic, name)))
    assert grid.get_state()["accept_photos"] is True
    _drop(grid, _encode(picture), "cat.png")
    assert len(got) == 1 and got[0][1] == "cat.png"
    np.testing.assert_array_equal(got[0][0], picture)
    assert grid.photo_kind == "done" and "cat.png" in grid.photo_status
    grid.close()


def test_image_grid_bad_file_shows_a_message_and_calls_nothing(picture):
    grid = ImageGrid(np.zeros((1, 8, 8, 3), np.uint8), accept_photos=True)
    got = []
    grid.on_photo(lambda *args: got.append(args))
    _drop(grid, b"<html>not an image</html>", "page.png")
    assert got == [] and grid.photo_kind == "error"
    assert "page.png is not a PNG or JPEG" in grid.photo_status
    grid._handle_custom_msg({"event": "photo", "name": "x.png"}, [])  # the bytes are missing
    assert got == [] and "did not arrive" in grid.photo_status
    grid.accept_photos = False
    _drop(grid, _encode(picture))
    assert got == [] and "accept_photos is False" in grid.photo_status
    grid.close()


def test_image_grid_ignores_other_messages():
    grid = ImageGrid(np.zeros((1, 8, 8, 3), np.uint8), accept_photos=True)
    grid._handle_custom_msg({"event": "undo"}, [])
    grid._handle_custom_msg("not a dict", [])
    assert grid.photo_status == ""
    grid.close()


# ---------------------------------------------------------------- Session widgets
def test_dropped_photo_is_inverted_and_joins_every_widget(session, picture):
    browser = UnitBrowser(session, "layer4")
    panel = AblationPanel(session, "layer4", units=[1])
    editor = RuleEditor(session, "layer6", stat_samples=16, cache=False)
    fixed = UnitBrowser(session, "layer4", seeds=[0, 1])  # seeds of its own: not following
    try:
        assert browser.accept_photos and browser.get_state()["accept_photos"]
        browser.invert_settings = FAST
        seen, samples = [], []
        browser.observe(lambda c: seen.append(c["new"]), "photo_status")
        session.observe(lambda event: samples.append(session.samples))
        _drop(browser, _encode(picture), "cat.png")
        assert browser.photo_kind == "busy" and browser.photo_status.startswith("inverting cat.png")
        ids = browser.photo_job.result(60)
        assert ids == [PHOTO_BASE]
        _wait_until(lambda: browser.photo_kind == "done")
        assert session.samples == [*range(8), PHOTO_BASE]
        # the encoder's guess showed first, as a preview in the photo's place, then the photo
        assert samples[0] == [*range(8), PREVIEW_BASE] and samples[-1] == session.samples
        assert all(s[:8] == list(range(8)) and len(s) == 9 for s in samples)
        assert "photo 0" in browser.photo_status
        assert any("%" in text and not text.endswith(" 0%") for text in seen)  # progress
        for widget in (browser, panel, editor):
            _wait_until(lambda w=widget: list(w.seeds) == session.samples)
            widget.wait()
        assert fixed.seeds == [0, 1]  # its own seeds stay
        reconstruction = session.generate([PHOTO_BASE])[0]
        grid = browser.samples
        assert len(grid["images"]) == 9 and grid["captions"][-1] == "photo 0"
        shown = np.frombuffer(grid["images"][-1], np.uint8).reshape(grid["shape"])
        np.testing.assert_array_equal(shown, reconstruction)
        assert panel.original["captions"][-1] == "photo 0" and len(panel.original["images"]) == 9
        assert editor.gallery["captions"][-1] == "photo 0" and editor.gallery["captions"][0] == "#0"
    finally:
        for widget in (browser, panel, editor, fixed):
            widget.close()


def test_widget_with_its_own_seeds_shows_its_photo_too(session, picture):
    browser = UnitBrowser(session, "layer4", seeds=[0, 1])
    other = UnitBrowser(session, "layer4", seeds=[2])
    try:
        browser.invert_settings = FAST
        _drop(browser, _encode(picture))
        browser.photo_job.result(60)
        _wait_until(lambda: browser.seeds == [0, 1, PHOTO_BASE])  # the preview was replaced
        browser.wait()
        assert browser.samples["captions"] == ["", "", "photo 0"]
        assert session.samples[-1] == PHOTO_BASE and other.seeds == [2]
    finally:
        browser.close()
        other.close()


def test_bad_file_shows_a_message_and_changes_nothing(session):
    browser = UnitBrowser(session, "layer4")
    try:
        before = browser.samples
        _drop(browser, b"\x89PNG\r\n\x1a\n broken", "broken.png")
        assert browser.photo_kind == "error" and "broken.png" in browser.photo_status
        assert "Traceback" not in browser.photo_status
        assert browser.photo_job is None and session.samples == list(range(8))
        browser.wait()
        assert browser.samples == before and browser.seeds == list(range(8))
    finally:
        browser.close()


def test_inversion_errors_show_in_the_widget(session, picture):
    browser = UnitBrowser(session, "layer4")
    try:
        with pytest.raises(KeyError, match="unknown layer 'nope'"):  # refused when set
            browser.invert_settings = {**FAST, "layer": "nope"}
        assert browser.invert_settings == {}
        browser.invert_settings = {**FAST, "residual_norm": "bogus"}  # fails in the job
        _drop(browser, _encode(picture))
        with pytest.raises(ValueError):
            browser.photo_job.result(60)
        _wait_until(lambda: browser.photo_kind == "error")
        assert "ValueError" in browser.photo_status and session.samples == list(range(8))
    finally:
        browser.close()


def test_cancel_stops_the_inversion_and_adds_nothing(session, picture):
    browser = UnitBrowser(session, "layer4")
    try:
        browser.invert_settings = dict(steps=100_000, restarts=1, candidates=4)
        _drop(browser, _encode(picture))
        _drop(browser, _encode(picture), "second.png")  # waits behind the first
        _drop(browser, _encode(picture), "third.png")
        assert browser.photo_status == "inverting photo.png\u2026 0% (2 waiting)"
        _wait_until(lambda: browser.photo_job.done > 0)
        browser._handle_custom_msg({"event": "photo_cancel"}, [])  # the view's cancel button
        _wait_until(lambda: not browser.photo_job.running)
        _wait_until(lambda: "cancelled" in browser.photo_status)
        assert browser.photo_job.cancelled and session.samples == list(range(8))
    finally:
        browser.close()


def test_photos_dropped_together_are_added_in_order(session, picture):
    browser = UnitBrowser(session, "layer4")
    try:
        browser.invert_settings = FAST
        _drop(browser, _encode(picture), "a.png")
        _drop(browser, _encode(picture[:, ::-1].copy()), "b.png")
        _wait_until(lambda: len(session.samples) == 10 and browser.photo_kind == "done")
        assert session.samples[8:] == [PHOTO_BASE, PHOTO_BASE + 1]
        assert "b.png added as photo 1" in browser.photo_status
    finally:
        browser.close()


# ---------------------------------------------------------------- invert_settings
def _make(kind, session, **kwargs):
    if kind == "browser":
        return UnitBrowser(session, "layer4", **kwargs)
    if kind == "panel":
        return AblationPanel(session, "layer4", units=[1], **kwargs)
    return RuleEditor(session, "layer6", stat_samples=16, cache=False, **kwargs)


@pytest.mark.parametrize("kind", ["browser", "panel", "editor"])
def test_invert_settings_is_a_constructor_argument(session, picture, kind):
    widget = _make(kind, session, invert_settings=dict(FAST, layer="layer5", seed=3))
    try:
        assert widget.invert_settings == {**FAST, "layer": "layer5", "seed": 3}
        _drop(widget, _encode(picture))
        job = widget.photo_job
        assert job.total == FAST["steps"]  # the widget's steps reached session.invert
        assert job.result(60) == [PHOTO_BASE]
        _wait_until(lambda: widget.photo_kind == "done")
        assert session.sources.photos[PHOTO_BASE][1] == "layer5"
        assert session.samples[-1] == PHOTO_BASE
    finally:
        widget.close()


@pytest.mark.parametrize("kind", ["browser", "panel", "editor"])
def test_bad_invert_settings_are_refused_by_the_constructor(session, kind):
    observers = session.observers
    with pytest.raises(ValueError) as err:
        _make(kind, session, invert_settings=dict(step=10, restarts=1))
    message = str(err.value)
    assert message.startswith("invert_settings has an unknown key 'step'; valid keys: layer, ")
    for key in ("steps", "restarts", "candidates", "residual_weight", "seed"):
        assert key in message
    assert "progress" not in message and "cancel" not in message  # set by the widget
    with pytest.raises(TypeError, match="must be a dict of fit_photo keyword arguments"):
        _make(kind, session, invert_settings=[("steps", 10)])
    with pytest.raises(KeyError, match="unknown layer 'nope'"):
        _make(kind, session, invert_settings=dict(layer="nope"))
    assert session.observers == observers  # nothing left subscribed


def test_invert_settings_set_later_are_checked_and_copied(session):
    browser = UnitBrowser(session, "layer4")
    try:
        assert browser.invert_settings == {}
        settings = dict(FAST)
        browser.invert_settings = settings
        settings["steps"] = 1  # the widget keeps its own copy
        assert browser.invert_settings == FAST
        with pytest.raises(ValueError, match=r"unknown keys 'a', 'b'; valid keys: layer, steps"):
            browser.invert_settings = {"a": 1, "b": 2, "steps": 3}
        assert browser.invert_settings == FAST  # unchanged
        browser.invert_settings = None
        assert browser.invert_settings == {}
    finally:
        browser.close()


def test_classifier_widgets_take_no_photos(cls_session):
    browser = UnitBrowser(cls_session, cls_session.layers[0])
    try:
        assert not browser.accept_photos
    finally:
        browser.close()


# ---------------------------------------------------------------- following session.samples
def test_rule_editor_keeps_its_match_ranking_and_drops_stale_heatmaps(gen_session):
    """A gallery ranked by context match keeps that order through Session events (it follows
    session.samples as a set), and heatmaps never outlive the samples they were computed for."""
    editor = RuleEditor(gen_session, "layer2", stat_samples=16, cache=False)
    try:
        editor.context = [(1, np.pad(np.ones((6, 6), np.float32), ((8, 2), (8, 2))))]
        editor.show_matches()
        assert editor.wait()
        ranked, heat = list(editor.seeds), editor.gallery_grid.heatmaps.copy()
        assert sorted(ranked) == list(range(8)) and ranked != list(range(8))
        gen_session.samples = gen_session.samples  # a Session event, the same samples
        assert editor.wait()
        assert editor.seeds == ranked  # still ranked, each heatmap over its own sample
        np.testing.assert_array_equal(editor.gallery_grid.heatmaps, heat)
        gen_session.samples = list(range(10, 18))  # as many samples, others
        assert editor.wait()
        assert editor.seeds == list(range(10, 18))
        assert editor.gallery_grid.heatmaps is None  # not the old samples' matches
    finally:
        editor.close()


def test_rule_editor_redraws_never_lose_a_samples_change(gen_session):
    """A redraw asked while a Session event waits (toggling the view) replaces that request
    (newest wins), so it must follow session.samples too."""
    editor = RuleEditor(gen_session, "layer2", stat_samples=16, cache=False)
    started, release = threading.Event(), threading.Event()
    try:
        assert editor.wait()
        editor._runner.submit(lambda: (started.set(), release.wait(10)))  # the worker is busy
        assert started.wait(10)
        gen_session.samples = [*range(8), 8]  # waits behind the busy worker
        editor.view = "original"  # a newer request
        release.set()
        assert editor.wait()
        assert editor.seeds == [*range(8), 8] and len(editor.gallery["captions"]) == 9
    finally:
        release.set()
        editor.close()


def test_a_click_on_a_gallery_since_shortened_says_so(gen_session):
    editor = RuleEditor(gen_session, "layer2", stat_samples=16, cache=False)
    try:
        gen_session.samples = [0, 1]
        assert editor.wait() and editor.seeds == [0, 1]
        editor.press("gallery", index=5, x=3, y=3)  # drawn when there were 8
        assert editor.status_kind == "error"
        assert "no sample 5 in the gallery (0 to 1)" in editor.status
        assert editor.current == 0
    finally:
        editor.close()


def test_a_photo_dropped_right_after_cancel_is_still_inverted(session, picture, monkeypatch):
    """Cancel takes effect at the inversion's next step: a photo dropped before then waits
    behind the cancelled one and is inverted next, not thrown away with it."""
    from gandissect_widgets.jobs import Job

    gate, names = threading.Event(), []

    def invert(picture, background, **settings):  # an inversion that steps once gate is set
        names.append(len(names))

        def work(job):
            gate.wait(30)
            job.step()
            return [_register_photo(session)]

        return Job(work, total=1)

    monkeypatch.setattr(session, "invert", invert)
    browser = UnitBrowser(session, "layer4")
    try:
        _drop(browser, _encode(picture), "wrong.png")
        browser._handle_custom_msg({"event": "photo_cancel"}, [])
        _drop(browser, _encode(picture), "right.png")  # the cancelled one still runs
        assert browser.photo_status.endswith("(1 waiting)")
        gate.set()
        _wait_until(lambda: "right.png added as photo 0" in browser.photo_status)
        assert names == [0, 1] and session.samples == [*range(8), PHOTO_BASE]
    finally:
        gate.set()
        browser.close()


def test_a_queued_photo_that_cannot_start_lets_the_next_one_start(session, picture, monkeypatch):
    """Photos wait behind a running inversion; if the next one cannot start, it says why and
    the one behind it starts (it used to wait until another photo was dropped)."""
    from gandissect_widgets.jobs import Job

    gate, calls = threading.Event(), []

    def invert(picture, background, **settings):
        calls.append(len(calls))
        if len(calls) == 2:
            raise ValueError("this picture cannot be inverted")

        def work(job):
            gate.wait(30)
            job.step()
            return [_register_photo(session)]

        return Job(work, total=1)

    monkeypatch.setattr(session, "invert", invert)
    browser = UnitBrowser(session, "layer4")
    try:
        for name in ("a.png", "b.png", "c.png"):
            _drop(browser, _encode(picture), name)
        assert browser.photo_status.endswith("(2 waiting)")
        gate.set()
        _wait_until(lambda: "c.png added as photo 1" in browser.photo_status)
        assert calls == [0, 1, 2]
        assert session.samples == [*range(8), PHOTO_BASE, PHOTO_BASE + 1]
    finally:
        gate.set()
        browser.close()


def test_closing_mid_inversion_leaves_no_preview_behind(session, picture):
    browser = UnitBrowser(session, "layer4", invert_settings=dict(steps=100_000, candidates=4))
    _drop(browser, _encode(picture))
    _wait_until(lambda: session.samples[-1] >= PREVIEW_BASE)  # the encoder's guess shows
    browser.close()
    _wait_until(lambda: session.samples == list(range(8)))
