"""Photos as samples: inverted pictures go through generate, edits, undo, dissection, rewrite."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ThresholdSegmenter, TinyGenerator

from gandissect_widgets import Session
from gandissect_widgets import rewrite as rw
from gandissect_widgets.invert import reconstruct
from gandissect_widgets.sources import PHOTO_BASE, PREVIEW_BASE

FIT = {"layer": "layer2", "steps": 12, "restarts": 2, "candidates": 8, "progress": False}


@pytest.fixture
def photo_session():
    s = Session(TinyGenerator(), device="cpu", batch_size=8, segmenter=ThresholdSegmenter())
    pictures = s.generate([40, 41])  # pictures of the generator's own kind
    ids = s.invert(pictures, **FIT)
    return s, ids, pictures


def test_photos_get_ids_and_render_as_fitted(photo_session):
    s, ids, pictures = photo_session
    assert ids == [PHOTO_BASE, PHOTO_BASE + 1]
    images = s.generate(ids)
    assert images.shape == pictures.shape
    # the Session draws a photo exactly as the fit's own reconstruction (latent + residual)
    z, layer, residual = s.sources.photos[ids[0]]
    from gandissect_widgets.invert import Photo

    drawn = reconstruct(s.model, Photo(z, layer, residual, psnr=0.0))
    expected = ((drawn.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    assert np.abs(images[0].astype(int) - expected.astype(int)).max() <= 1
    # and closer to the picture than an unrelated sample is
    err = np.abs(images.astype(float) - pictures.astype(float)).mean()
    other = np.abs(s.generate([7, 8]).astype(float) - pictures.astype(float)).mean()
    assert err < other


def test_edits_act_on_photos_and_undo_is_exact(photo_session):
    s, ids, _ = photo_session
    before = s.generate(ids).copy()
    mixed = s.generate([3, ids[1], 5]).copy()
    s.ablate("layer2", list(range(16)))
    assert not np.array_equal(s.generate(ids), before)
    s.undo()
    np.testing.assert_array_equal(s.generate(ids), before)
    np.testing.assert_array_equal(s.generate([3, ids[1], 5]), mixed)
    np.testing.assert_array_equal(mixed[1], before[1])  # a photo's row does not depend on its batch


def test_dissection_and_rewrite_take_photo_samples(photo_session):
    s, ids, _ = photo_session
    d = s.dissect("layer2", seeds=[0, 1, 2, *ids], batch_size=5, cache=False, progress=False)
    assert d.iou.shape == (16, 2) and set(d.top_seeds.flatten().tolist()) <= {0, 1, 2, *ids}
    box = np.zeros((16, 16), np.float32)
    box[4:10, 4:10] = 1
    edit = rw.make_rewrite(
        s, "layer2", context=[(ids[0], box)], copy=(ids[1], box), paste=(ids[0], box),
        steps=40, stat_samples=16, cache=False,
    )  # fmt: skip
    assert edit.losses[-1] < edit.losses[0]
    before = s.generate(ids).copy()
    s.push(edit)
    assert not np.array_equal(s.generate(ids), before)
    s.undo()
    np.testing.assert_array_equal(s.generate(ids), before)


def test_photo_errors():
    s = Session(TinyGenerator(), device="cpu")
    with pytest.raises(KeyError, match="not a photo of this Session"):
        s.generate([PHOTO_BASE + 3])
    with pytest.raises(TypeError, match="uint8 array"):
        s.invert("picture.png")
    with pytest.raises(ValueError, match="empty"):
        s.invert([])
    with pytest.raises(KeyError, match="unknown layer"):
        s.invert(np.zeros((16, 16, 3), np.uint8), layer="layr2")


def test_background_inversion_reports_progress_and_cancels():
    s = Session(TinyGenerator(), device="cpu")
    job = s.invert(np.zeros((16, 16, 3), np.uint8), background=True, **FIT)
    assert job.result(60) == [PHOTO_BASE] and job.progress == 1.0
    job = s.invert(np.zeros((2, 16, 16, 3), np.uint8), background=True, **{**FIT, "steps": 400})
    job.cancel()
    from gandissect_widgets import Cancelled

    with pytest.raises(Cancelled):
        job.result(60)
    assert list(s.sources.photos) == [PHOTO_BASE]  # nothing half-registered
    torch.testing.assert_close(s.latents([PHOTO_BASE]), s.sources.latents([PHOTO_BASE]))


def test_dissection_cache_names_what_photo_ids_stood_for(tmp_path):
    runs = []
    for picture_seeds in ([40, 41], [50, 51]):
        s = Session(TinyGenerator(), device="cpu", batch_size=8, segmenter=ThresholdSegmenter())
        ids = s.invert(s.generate(picture_seeds), **FIT)
        kw = dict(seeds=[0, 1, *ids], batch_size=4, cache=tmp_path, progress=False)
        runs.append(s.dissect("layer2", **kw))
    assert len(list(tmp_path.glob("dissect-*.npz"))) == 2  # same ids, other photos: no reuse


def test_previews_get_ids_of_their_own_and_take_the_photos_place():
    s = Session(TinyGenerator(), device="cpu")
    shown = []
    picture = np.zeros((16, 16, 3), np.uint8)
    ids = s.invert(picture, on_preview=lambda i, pid: shown.append((i, pid)), **FIT)

    assert ids == [PHOTO_BASE] and len(shown) >= 2  # the start and the end at least
    assert [pid for _, pid in shown] == [PREVIEW_BASE + k for k in range(len(shown))]
    assert {i for i, _ in shown} == {0}
    np.testing.assert_array_equal(s.generate([shown[-1][1]]), s.generate(ids))  # the end
    s.samples = [0, shown[0][1], 1]
    assert s.replace_sample(shown[0][1], ids[0]) == [0, PHOTO_BASE, 1]
    assert s.replace_sample(PHOTO_BASE, None) == [0, 1]
    assert s.replace_sample(None, 5) == [0, 1, 5]
    with pytest.raises(TypeError, match="on_preview"):
        s.invert(np.zeros((16, 16, 3), np.uint8), on_preview=3, **FIT)
