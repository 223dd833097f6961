"""The hamlet world, its shipped models, and a quality check against MODELS.md's figures."""

import json
import time

import numpy as np
import pytest
import torch

from gandissect_widgets import zoo
from gandissect_widgets.zoo import hamlet
from gandissect_widgets.zoo.hamlet import evaluate
from gandissect_widgets.zoo.hamlet.world import _SCENE_RULE


@pytest.fixture(scope="module")
def scenes():
    return hamlet.render(range(300))


def test_render_shapes_and_ids(scenes):
    images, concepts, kinds = scenes
    assert images.shape == (300, 64, 64, 3) and images.dtype == np.uint8
    assert concepts.shape == (300, 64, 64) and concepts.dtype == np.int64
    assert kinds.shape == (300,)
    assert set(np.unique(concepts)) == set(range(len(hamlet.CONCEPTS)))  # every concept occurs
    assert set(np.unique(kinds)) == set(range(len(hamlet.SCENES)))
    assert hamlet.CONCEPTS[:2] == ["sky", "cloud"] and "door" in hamlet.CONCEPTS


def test_render_is_deterministic_per_seed(scenes):
    images, concepts, kinds = hamlet.render([7, 3])
    assert np.array_equal(images[1], scenes[0][3]) and np.array_equal(concepts[0], scenes[1][7])
    assert kinds[1] == scenes[2][3]
    assert not np.array_equal(images[0], images[1])
    one = hamlet.render(3)
    assert one[0].shape == (1, 64, 64, 3) and np.array_equal(one[0][0], images[1])


def test_scene_type_follows_the_documented_rule(scenes):
    _, concepts, kinds = scenes
    ids = {c: i for i, c in enumerate(hamlet.CONCEPTS)}
    for cmap, kind in zip(concepts, kinds, strict=True):
        share = np.bincount(cmap.ravel(), minlength=len(ids)) / cmap.size
        hits = [
            s for s, names in enumerate(_SCENE_RULE) if share[[ids[n] for n in names]].sum() >= 0.08
        ]
        assert kind == (hits[0] if hits else hamlet.SCENES.index("meadow"))


def test_every_house_has_roof_window_and_door(scenes):
    _, concepts, _ = scenes
    has = {c: (concepts == i).any((1, 2)) for i, c in enumerate(hamlet.CONCEPTS)}
    houses = has["wall"]
    assert 30 < houses.sum() < 270
    assert (has["roof"][houses]).mean() > 0.95 and (has["door"][houses]).mean() > 0.9
    assert not (has["door"] & ~has["wall"]).any()  # doors only ever sit in walls


def test_render_is_fast_and_rejects_bad_seeds():
    t = time.perf_counter()
    hamlet.render(range(1000))
    assert time.perf_counter() - t < 10  # ~1 s on a free core; generous for a shared machine
    with pytest.raises(TypeError, match="non-negative ints"):
        hamlet.render([-1])
    with pytest.raises(TypeError, match="non-negative ints"):
        hamlet.render(["a"])


def test_zoo_loads_the_three_models_quickly_and_offline():
    t = time.perf_counter()
    g, seg, clf = zoo.load("hamlet"), zoo.load_segmenter("hamlet"), zoo.load_classifier("hamlet")
    assert time.perf_counter() - t < 2 * 3
    assert not (g.training or seg.training or clf.training)
    assert g.z_dim == 128
    x = g(torch.randn(4, 128))
    assert x.shape == (4, 3, 64, 64) and x.abs().max() <= 1
    assert clf(x).shape == (4, len(hamlet.SCENES))
    assert seg.concepts == hamlet.CONCEPTS
    images = hamlet.render([1, 2])[0]
    from_uint8 = seg.segment(images)
    from_float = seg.segment(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1)
    assert from_uint8.shape == (2, 64, 64) and from_uint8.dtype == torch.int64
    assert torch.equal(from_uint8, from_float)
    assert [n for n, _ in clf.named_children()][:3] == ["conv1", "down1", "conv2"]


def test_unknown_model_names_list_the_known_ones():
    for loader in (zoo.load, zoo.load_segmenter, zoo.load_classifier):
        with pytest.raises(KeyError, match="hamlet"):
            loader("hamlett")
    with pytest.raises(TypeError, match="uint8"):
        zoo.load_segmenter("hamlet").segment(np.zeros((1, 64, 64, 3), np.float32))


@pytest.fixture(scope="module")
def reported():
    return json.loads(evaluate.METRICS.read_text())


@pytest.fixture(scope="module")
def held_out():
    """500 held-out scenes and the shipped segmenter's labels for them (shared by two tests)."""
    images, truth, kinds = hamlet.render(
        range(hamlet.TEST_SEED_START, hamlet.TEST_SEED_START + 500)
    )
    seg = hamlet.load_segmenter()
    return images, truth, kinds, seg, seg.segment(images)


def test_segmenter_still_reaches_reported_miou(reported, held_out):
    _, truth, _, _, pred = held_out
    got = evaluate.iou_table(truth, pred)
    assert got["n"] == 500
    assert got["miou"] >= reported["segmenter"]["miou"] - 0.02


def test_classifier_still_reaches_reported_accuracy(reported):
    got = evaluate.classifier_accuracy(hamlet.load_classifier(), n=500)
    assert got["accuracy"] >= reported["classifier"]["accuracy"] - 0.03


def test_generator_concept_statistics_still_match_reported(reported, held_out):
    _, _, _, seg, real_maps = held_out
    got = evaluate.generator_stats(hamlet.load_generator(), seg, n=500, real_maps=real_maps)
    want = reported["generator"]["concepts"]
    assert set(got["concepts"]) == set(want)
    for c, v in got["concepts"].items():  # tolerances: ~4 binomial std. errors at n = 500
        assert abs(v["fake_presence"] - want[c]["fake_presence"]) <= 0.09, (c, v, want[c])
        assert abs(v["fake_area"] / want[c]["fake_area"] - 1) <= 0.25, (c, v, want[c])
