"""Dissection on the tiny models: IoU against a brute-force reference, caching, cancel, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gandissect_widgets.dissect import Dissection
from gandissect_widgets.jobs import Cancelled


def _reference_iou(session, layer, seeds, thresholds):
    acts = session.activations(layer, seeds)
    images = session.generate(seeds)
    maps = session.segmenter.segment(images)
    up = torch.nn.functional.interpolate(
        acts, size=maps.shape[1:], mode="bilinear", align_corners=False
    )
    a = up > thresholds[None, :, None, None]
    out = torch.zeros(acts.shape[1], 2)
    for k in range(2):
        c = (maps == k)[:, None]
        out[:, k] = (a & c).sum((0, 2, 3)) / (a | c).sum((0, 2, 3)).clamp(min=1)
    return out


def test_dissect_matches_brute_force(seg_session, tmp_path):
    d = seg_session.dissect("layer2", n=24, batch_size=8, cache=tmp_path, progress=False)
    assert isinstance(d, Dissection) and d.iou.shape == (16, 2)
    ref = _reference_iou(seg_session, "layer2", list(range(24)), d.thresholds)
    torch.testing.assert_close(d.iou, ref, atol=1e-6, rtol=0)
    acts = seg_session.activations("layer2", list(range(24)))
    flat = acts.transpose(0, 1).reshape(16, -1)
    exact = torch.quantile(flat, 0.99, dim=1)
    torch.testing.assert_close(d.thresholds, exact)  # few values: the sketch holds them all
    best = acts.amax((2, 3)).argmax(0)
    assert torch.equal(d.top_seeds[:, 0], best)
    rows = d.table()
    assert rows[0].keys() >= {"unit", "label", "iou", "threshold"} and len(rows) == 16
    ranked = d.units_for("bright")
    assert all(d.labels[u] == "bright" for u in ranked)
    assert [float(d.iou[u, 1]) for u in ranked] == sorted(
        (float(d.iou[u, 1]) for u in ranked), reverse=True
    )
    assert seg_session.unit_levels("layer2")["high"] is d.high


def test_cache_hit_invalidation_and_corruption(seg_session, tmp_path):
    d1 = seg_session.dissect("layer2", n=16, cache=tmp_path, progress=False)
    files = list(tmp_path.glob("dissect-*.npz"))
    assert len(files) == 1
    d2 = seg_session.dissect("layer2", n=16, cache=tmp_path, progress=False)
    assert torch.equal(d1.iou, d2.iou) and len(list(tmp_path.glob("*.npz"))) == 1
    seg_session.ablate("layer1", [0, 1, 2])  # new fingerprint -> a new entry
    seg_session.dissect("layer2", n=16, cache=tmp_path, progress=False)
    seg_session.dissect("layer2", n=16, quantile=0.9, cache=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.npz"))) == 3
    seg_session.undo()
    files[0].write_bytes(files[0].read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable"):
        d3 = seg_session.dissect("layer2", n=16, cache=tmp_path, progress=False)
    assert torch.equal(d1.iou, d3.iou)


def test_background_and_cancel(seg_session, tmp_path):
    job = seg_session.dissect(
        "layer2", n=16, batch_size=4, background=True, cache=tmp_path, progress=False
    )
    d = job.result(60)
    assert job.progress == 1.0 and isinstance(d, Dissection)
    seg_session.ablate("layer1", [5])
    job = seg_session.dissect(
        "layer2", n=400, batch_size=4, background=True, cache=tmp_path, progress=False
    )
    job.cancel()
    with pytest.raises(Cancelled):
        job.result(60)
    assert len(list(tmp_path.glob("*.npz"))) == 1  # no partial entry


def test_ablation_effect(seg_session):
    d = seg_session.dissect("layer3", n=24, cache=False, progress=False)
    units = d.ranked_for("bright")[:4]
    eff = seg_session.ablation_effect("layer3", units, "bright", n=16)
    assert set(eff.changes) == {"dark", "bright"}
    total_before = sum(eff.before.values())
    assert total_before == sum(eff.after.values()) == 16 * 16 * 16
    expected = 1 - eff.after["bright"] / eff.before["bright"]
    assert eff.removed == pytest.approx(expected)
    assert seg_session.edits == []


def test_classifier_dissection_and_accuracy(labelled_session):
    d = labelled_session.dissect("conv1", n=32, cache=False, progress=False)
    assert d.iou.shape == (8, 2) and d.concepts == ["dark", "bright"]
    units = labelled_session.class_units("conv2", "brightish", n=32)
    assert sorted(units) == list(range(8))
    change = labelled_session.ablation_accuracy("conv2", list(range(8)), n=32)
    assert set(change.before) == {"darkish", "brightish"}
    # all units off: every sample gets the same logits, so one class keeps all, the other none
    assert sorted(change.after.values()) == [0.0, 1.0]


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(layer="nope"), KeyError, "layers are"),
        (dict(n=4, batch_size=8), ValueError, "fewer than batch_size"),
        (dict(n=0), ValueError, "positive integer"),
        (dict(quantile=1.5), ValueError, r"quantile must be a number in \(0, 1\)"),
    ],
)
def test_dissect_bad_input(seg_session, kwargs, error, words):
    layer = kwargs.pop("layer", "layer2")
    with pytest.raises(error, match=words):
        seg_session.dissect(layer, cache=False, progress=False, **kwargs)


def test_errors_unknown_concept_no_segmenter_no_spatial(seg_session, gen_session, cls_session):
    d = seg_session.dissect("layer2", n=8, cache=False, progress=False)
    with pytest.raises(KeyError, match="concepts are: dark, bright"):
        d.units_for("tree")
    with pytest.raises(KeyError, match="concepts are"):
        seg_session.ablation_effect("layer2", [0], "tree")
    with pytest.raises(ValueError, match="needs concept maps"):
        gen_session.dissect("layer2", n=8, cache=False)
    with pytest.raises(ValueError, match="no spatial"):
        cls_session.dissect("fc", n=8, cache=False)


def test_save_round_trip(seg_session):
    d = seg_session.dissect("layer2", n=8, cache=False, progress=False)
    back = Dissection.from_arrays({k: np.asarray(v) for k, v in d.arrays().items()})
    assert back.labels == d.labels and torch.equal(back.iou, d.iou) and back.seeds == d.seeds
    fig = d.plot_summary()
    assert fig.axes[0].get_title().startswith("layer2")
