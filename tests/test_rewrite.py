"""Rewriting: rank-one edits, undo/redo, save/load, context search, evaluation, bad input."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from conftest import TinyGenerator
from torch.func import functional_call

from gandissect_widgets import Session, render, rewrite_eval
from gandissect_widgets import rewrite as rw
from gandissect_widgets.cache import weights_fingerprint
from gandissect_widgets.edits import State
from gandissect_widgets.hooks import hooked
from gandissect_widgets.rewrite import fit as rw_fit
from gandissect_widgets.rewrite import keys as rw_keys
from gandissect_widgets.zoo.hamlet import example_rule
from gandissect_widgets.zoo.progan import ProgressiveGenerator

FAST = {"steps": 60, "stat_samples": 24, "cache": False}


def _box(y0, y1, x0, x1, size=16):
    m = np.zeros((size, size), np.float32)
    m[y0:y1, x0:x1] = 1
    return m


def _request():
    return {
        "context": [(1, _box(4, 10, 4, 10)), (2, _box(6, 12, 2, 8))],
        "copy": (3, _box(2, 8, 2, 8)),
        "paste": (1, _box(8, 14, 8, 14)),
    }


def _weights(session, layer="layer2"):
    return session.model.get_submodule(layer).get_submodule("1").weight.detach().clone()


def _region_l1(session, request, copied, layer="layer2"):
    """Masked L1 between the paste sample's values and ``copied`` moved to the paste box."""
    (_, copy_mask), (b, _) = request["copy"], request["paste"]
    values = session.activations(layer, [b])[0]
    grid = values.shape[-2:]
    m = render.resize_mask(copy_mask, grid)
    dy = dx = 6 * grid[0] // 16  # the paste box is the copy box moved by 6 image pixels
    moved = torch.roll(copied * m, (dy, dx), (-2, -1))
    w = torch.roll(m, (dy, dx), (-2, -1))
    return float(((values - moved).abs() * w).sum() / (w.sum() * values.shape[0]))


def test_rewrite_changes_only_along_directions_and_undo_is_bit_exact(gen_session):
    w0 = _weights(gen_session)
    before = gen_session.generate([1, 3])
    edit = rw.rewrite(gen_session, "layer2", **_request(), **FAST)
    assert gen_session.edits == [edit] and edit.describe() == "rewrite layer2 (rank 1)"
    w1 = _weights(gen_session)
    delta = w1 - w0
    assert delta.abs().max() > 1e-3
    d = edit.directions
    torch.testing.assert_close(d @ d.T, torch.eye(1))
    off_rule = delta - torch.einsum("oiab,ri,rj->ojab", delta, d, d)
    assert off_rule.abs().max() < 1e-5 * delta.abs().max().clamp_min(1)
    assert not np.array_equal(gen_session.generate([1, 3]), before)
    gen_session.undo()
    assert torch.equal(_weights(gen_session), w0)
    np.testing.assert_array_equal(gen_session.generate([1, 3]), before)
    gen_session.redo()
    assert torch.equal(_weights(gen_session), w1)


def test_rewrite_moves_the_paste_region_towards_the_copied_values(gen_session):
    req = _request()
    copied = gen_session.activations("layer2", [req["copy"][0]])[0]
    before = _region_l1(gen_session, req, copied)
    edit = rw.rewrite(gen_session, "layer2", **req, steps=200, stat_samples=24, cache=False)
    after = _region_l1(gen_session, req, copied)
    assert after < 0.7 * before, (before, after)
    assert edit.losses[-1] < edit.losses[0]


def test_fast_objective_equals_the_block_with_edited_weights(gen_session):
    layer, param = "layer2", "1.weight"
    block = gen_session.model.get_submodule(layer)
    w0 = _weights(gen_session)
    feats = rw_keys.features(gen_session, State(), layer, "layer2.1", [4])
    d = torch.linalg.qr(torch.randn(32, 2))[0].T
    f = rw_fit._LowRankBlock(rw_fit._clean_copy(block), param, d, feats, 0)
    with torch.no_grad():
        f.lam.normal_()
        w = block.get_parameter(param) + torch.einsum("orab,ri->oiab", f.lam, d)
        expected = functional_call(block, {param: w}, (feats["block_in"],))
        torch.testing.assert_close(f(), expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(block.get_parameter(param), w0)  # the live block is untouched


def test_rank_one_direction_is_inverse_moment_times_key():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    c = a @ a.T + 0.5 * torch.eye(6, dtype=torch.float64)
    k = torch.randn(1, 6, generator=g)
    d = rw.rule_directions(k, c, 1)[0].double()
    expected = torch.linalg.solve(c, k[0].double())
    torch.testing.assert_close(d, expected / expected.norm(), rtol=1e-3, atol=1e-3)
    keys = torch.randn(20, 6, generator=g)
    d3 = rw.rule_directions(keys, c, 3)
    torch.testing.assert_close(d3 @ d3.T, torch.eye(3), rtol=1e-5, atol=1e-5)
    assert ((keys @ d3.T).sum(0) > 0).all()


def test_second_moment_matches_direct_computation_and_caches(gen_session, tmp_path, monkeypatch):
    c = rw.second_moment(gen_session, "layer2", n=10, cache=tmp_path)
    with hooked(gen_session.model, retain_input=["layer2.1"]) as seen, torch.no_grad():
        gen_session.model(gen_session.latents(range(10)))
    k = seen["layer2.1:in"].double().permute(0, 2, 3, 1).reshape(-1, 32)
    torch.testing.assert_close(c, k.T @ k / len(k))
    fresh = Session(TinyGenerator(), device="cpu")

    def _no_recompute(*args, **kwargs):
        raise AssertionError("the cached moment should have been used")

    monkeypatch.setattr(fresh.runner, "run", _no_recompute)
    torch.testing.assert_close(rw.second_moment(fresh, "layer2", n=10, cache=tmp_path), c)
    assert list(tmp_path.glob("*.npz"))


def test_save_load_reapplies_without_optimising(gen_session, tmp_path):
    edit = rw.rewrite(gen_session, "layer2", **_request(), **FAST)
    edited = gen_session.generate([0, 5])
    path = edit.save(tmp_path / "rule.npz")
    assert path.stat().st_size < 50_000
    gen_session.undo()
    loaded = rw.load_edit(path)
    assert torch.equal(loaded.delta, edit.delta)
    assert loaded.request["copy"][0] == 3 and loaded.rank == 1
    np.testing.assert_array_equal(loaded.request["paste"][1], _request()["paste"][1])
    other = Session(TinyGenerator(), device="cpu")
    other.push(loaded)
    np.testing.assert_array_equal(other.generate([0, 5]), edited)


def test_loading_onto_another_model_is_refused(gen_session, tmp_path):
    path = rw.rewrite(gen_session, "layer2", **_request(), **FAST).save(tmp_path / "rule")
    model = TinyGenerator()
    with torch.no_grad():
        model.layer1[0].bias.add_(0.1)
    other = Session(model, device="cpu")
    w0 = _weights(other)
    with pytest.raises(ValueError, match="fingerprint") as err:
        other.push(rw.load_edit(path))
    assert weights_fingerprint(other.model) in str(err.value)
    assert other.edits == [] and torch.equal(_weights(other), w0)


def test_progress_and_cancel(gen_session):
    seen = []
    rw.rewrite(gen_session, "layer2", **_request(), **FAST, progress=lambda s, l: seen.append(s))
    assert seen == [10, 20, 30, 40, 50, 60]
    gen_session.undo()
    w0 = _weights(gen_session)
    cancel = threading.Event()
    cancel.set()
    assert rw.rewrite(gen_session, "layer2", **_request(), **FAST, cancel=cancel) is None
    assert gen_session.edits == [] and torch.equal(_weights(gen_session), w0)


def test_context_matches_rank_samples_by_projection_on_the_rule(gen_session):
    mask = _box(4, 12, 4, 12)
    found = rw.context_matches(
        gen_session, "layer2", [(7, mask)], n=12, stat_samples=24, cache=False
    )
    assert sorted(found.seeds) == list(range(12))
    assert found.heatmaps.shape == (12, 8, 8)
    assert np.all(np.diff(found.scores) <= 0)

    # independently: keys from a plain hook; C from 24 samples; the rank-one direction is the
    # top singular direction of the painted keys in the C^-1/2-whitened space, mapped back
    def keys_of(seeds):
        with hooked(gen_session.model, retain_input=["layer2.1"]) as seen, torch.no_grad():
            gen_session.model(gen_session.latents(seeds))
        return seen["layer2.1:in"].double()

    k24 = keys_of(range(24)).permute(0, 2, 3, 1).reshape(-1, 32)
    values, vectors = torch.linalg.eigh(k24.T @ k24 / len(k24))
    white = vectors @ torch.diag(values.rsqrt()) @ vectors.T
    m = torch.from_numpy(mask)[None, None]
    m = torch.nn.functional.interpolate(m, size=(8, 8), mode="area")[0, 0].double()
    painted = (keys_of([7])[0] * m).permute(1, 2, 0).reshape(-1, 32)[m.reshape(-1) > 0]
    top = torch.linalg.svd(painted @ white)[2][0] @ white
    top = top / top.norm() * torch.sign((painted @ top).sum())
    heat = torch.einsum("i,nihw->nhw", top, keys_of(found.seeds)).clamp_min(0)
    np.testing.assert_allclose(found.heatmaps, heat.numpy(), rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(found.scores, heat.flatten(1).amax(1).numpy(), rtol=2e-3)


class _GreenSegmenter:
    """Labels a pixel 'bright' when its green value is at least 140 (about the tiny median)."""

    concepts = ["dim", "bright"]

    def segment(self, images):
        return torch.from_numpy((np.asarray(images)[..., 1] >= 140).astype(np.int64))


def test_rewrite_eval_measures_and_restores(tiny_gen):
    s = Session(tiny_gen, device="cpu", segmenter=_GreenSegmenter())
    edit = rw.make_rewrite(s, "layer2", **_request(), **FAST)
    w0 = _weights(s)
    result = rewrite_eval(s, edit, "dim", "bright", n=6)
    assert s.edits == [] and torch.equal(_weights(s), w0)
    before = s.generate(range(6))
    with s.temporarily(edit):
        after = s.generate(range(6))
    dim, bright = before[..., 1] < 140, after[..., 1] >= 140
    assert result["success"] == pytest.approx((dim & bright).sum() / dim.sum())
    change = np.abs(after.astype(float) - before.astype(float)).mean(-1) / 255
    assert result["preservation"] == pytest.approx(change[~dim].mean(), rel=1e-5)
    s.push(edit)
    again = rewrite_eval(s, edit, "dim", "bright", n=6)
    assert again["success"] == result["success"] and s.edits == [edit]
    assert torch.equal(_weights(s), w0 + edit.delta)
    later = rw.rewrite(s, "layer2", **{**_request(), "copy": (4, _box(2, 8, 2, 8))}, **FAST)
    w2 = _weights(s)
    rewrite_eval(s, edit, "dim", "bright", n=6)  # an edit below another weight edit
    assert s.edits == [edit, later] and torch.equal(_weights(s), w2)
    with pytest.raises(KeyError, match="dim, bright"):
        rewrite_eval(s, edit, "roof", "bright", n=2)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"context": [(1, np.zeros((16, 16)))]}, ValueError, "empty"),
        ({"context": []}, ValueError, "context is empty"),
        ({"paste": None}, ValueError, "paste= missing"),
        ({"copy": None}, ValueError, "copy= missing"),
        ({"layer": "layer1"}, ValueError, "not a convolution"),
        ({"layer": "layr2"}, KeyError, "layers are"),
        ({"rank": 33}, ValueError, "32 input channels"),
        ({"rank": 0}, ValueError, "positive integer"),
        ({"copy": (-1, _box(2, 8, 2, 8))}, ValueError, "non-negative"),
        ({"copy": (3, np.ones((8, 8)))}, ValueError, "does not match the image size"),
        ({"paste": (1, (20, 3))}, ValueError, "outside the 16x16 image"),
        ({"steps": 0}, ValueError, "steps"),
    ],
)
def test_bad_input_leaves_weights_and_stack_untouched(gen_session, change, error, message):
    kwargs = {"layer": "layer2", **_request(), **FAST, **change}
    w0 = _weights(gen_session)
    with pytest.raises(error, match=message):
        rw.rewrite(gen_session, **kwargs)
    assert gen_session.edits == [] and torch.equal(_weights(gen_session), w0)


class _ChannelSegmenter:
    """Labels each pixel by its strongest colour channel: red 'roof', green 'tree', blue 'sky'."""

    concepts = ["roof", "tree", "sky"]

    def segment(self, images):
        return torch.from_numpy(np.asarray(images).argmax(-1).astype(np.int64))


def test_example_rule_picks_regions_from_the_segmenter():
    torch.manual_seed(0)
    s = Session(ProgressiveGenerator([16, 16, 16, 8]), device="cpu", segmenter=_ChannelSegmenter())
    rule = example_rule(s, layer="layer5", candidates=20, contexts=3, window=6)
    assert (rule["source_concept"], rule["target_concept"]) == ("roof", "tree")
    req = rule["request"]
    labels = _ChannelSegmenter().segment(s.generate(range(20))).numpy()
    copy_seed, copy_mask = req["copy"]
    assert copy_mask.sum() > 0 and np.all(labels[copy_seed][copy_mask > 0] == 1)
    assert 1 <= len(req["context"]) <= 3
    for seed, mask in req["context"]:
        np.testing.assert_array_equal(mask > 0, labels[seed] == 0)
    paste_seed, (y, x) = req["paste"]
    assert paste_seed == req["context"][0][0] and labels[paste_seed, y, x] == 0
    edit = rw.make_rewrite(s, rule["layer"], **req, **FAST)
    assert edit.request["copy"][0] == copy_seed
    with pytest.raises(KeyError, match="roof, tree, sky"):
        example_rule(s, source="door", candidates=4)
