"""Session: generation, activations, cache bound, edits, undo/redo, events, hooks, errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from gandissect_widgets import Session
from gandissect_widgets.hooks import hooked


def test_layers_and_shapes(gen_session):
    assert gen_session.layers == ["layer1", "layer2", "layer3", "output"]
    assert gen_session.layer_shape("layer2") == (16, 8, 8)
    assert gen_session.layer_shape("layer2.1") == (16, 8, 8)  # any module path
    assert gen_session.image_size == (16, 16)


def test_generate_is_deterministic_per_seed(gen_session, tiny_gen):
    a = gen_session.generate([3, 5, 7])
    b = gen_session.generate([7])
    assert a.dtype == np.uint8 and a.shape == (3, 16, 16, 3)
    np.testing.assert_array_equal(a[2], b[0])
    with torch.no_grad():
        bare = tiny_gen(gen_session.latents([5]))
    expected = ((bare.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(a[1], expected[0])


def test_activations_match_bare_model(gen_session, tiny_gen):
    acts = gen_session.activations("layer2", [1, 2])
    with torch.no_grad():
        ref = tiny_gen.layer2(tiny_gen.layer1(gen_session.latents([1, 2]).view(2, -1, 1, 1)))
    torch.testing.assert_close(acts, ref)


def test_forward_stops_after_last_needed_layer(gen_session, tiny_gen):
    calls = []
    handle = tiny_gen.output.register_forward_hook(lambda *a: calls.append(1))
    gen_session.activations("layer1", [11, 12])
    handle.remove()
    assert calls == []


def test_ablation_undo_redo_bit_exact(gen_session):
    seeds = list(range(6))
    before = gen_session.generate(seeds).copy()
    acts_before = gen_session.activations("layer3", seeds).clone()
    edit = gen_session.ablate("layer2", list(range(16)))
    after = gen_session.generate(seeds)
    assert not np.array_equal(before, after)
    assert gen_session.edits == [edit]
    gen_session.undo()
    np.testing.assert_array_equal(gen_session.generate(seeds), before)
    assert torch.equal(gen_session.activations("layer3", seeds), acts_before)
    gen_session.redo()
    np.testing.assert_array_equal(gen_session.generate(seeds), after)
    gen_session.reset()
    assert gen_session.edits == [] and gen_session.redo() is None
    np.testing.assert_array_equal(gen_session.generate(seeds), before)


def test_ablation_formula_strength_value_mask(gen_session):
    seeds = [0, 1]
    x = gen_session.activations("layer2", seeds).clone()
    mask = np.zeros((16, 16), np.float32)
    mask[:8] = 1.0  # top half of the image -> top half of the 8x8 grid
    gen_session.ablate("layer2", [2, 5], strength=0.5, mask=mask, value=3.0)
    y = gen_session.activations("layer2", seeds)
    m = torch.nn.functional.interpolate(
        torch.from_numpy(mask)[None, None], size=(8, 8), mode="area"
    )[0, 0]
    for u in (2, 5):
        torch.testing.assert_close(y[:, u], x[:, u] * (1 - 0.5 * m) + 3.0 * 0.5 * m)
    untouched = [u for u in range(16) if u not in (2, 5)]
    assert torch.equal(y[:, untouched], x[:, untouched])


def test_insert_high_uses_unit_quantile(gen_session):
    high = gen_session.unit_levels("layer1")["high"]
    gen_session.ablate("layer1", [4], value="high")
    acts = gen_session.activations("layer1", [20])
    torch.testing.assert_close(acts[0, 4], torch.full((4, 4), float(high[4])))


def test_temporarily_previews_without_events(gen_session):
    events = []
    gen_session.observe(events.append)
    base = gen_session.generate([0]).copy()
    with gen_session.temporarily(gen_session.ablation("layer2", range(16))):
        changed = gen_session.generate([0]).copy()
    assert not np.array_equal(base, changed)
    np.testing.assert_array_equal(gen_session.generate([0]), base)
    assert events == [] and gen_session.edits == []


def test_events(gen_session):
    events = []
    gen_session.observe(events.append)
    gen_session.observe(events.append)  # registering twice is once
    e = gen_session.ablate("layer1", [0])
    gen_session.undo()
    gen_session.redo()
    gen_session.samples = [4, 5]
    gen_session.unobserve(events.append)
    gen_session.undo()
    assert [ev.kind for ev in events] == ["edits", "edits", "edits", "samples"]
    assert events[0].edit is e


def test_cache_bound_holds_under_random_calls(tiny_gen):
    s = Session(tiny_gen, device="cpu", cache_mb=0.05, batch_size=4)
    rng = np.random.default_rng(0)
    limit = 0.05 * 2**20
    for _ in range(60):
        seeds = rng.integers(0, 40, size=rng.integers(1, 6)).tolist()
        layer = s.layers[rng.integers(0, len(s.layers))]
        if rng.random() < 0.3:
            s.generate(seeds)
        else:
            acts = s.activations(layer, seeds)
            assert acts.shape[0] == len(seeds)
        if rng.random() < 0.1:
            s.ablate("layer1", [int(rng.integers(0, 32))])
        assert s.runner.results.bytes <= limit
    assert len(s.runner.results) > 0


def test_hooks_removed_after_exception(tiny_gen):
    def boom(out):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        with hooked(tiny_gen, retain=["layer1"], edit={"layer2": [boom]}):
            tiny_gen(torch.zeros(1, 16))
    for m in tiny_gen.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


def test_concurrent_callers_match_serial(tiny_gen):
    serial = Session(tiny_gen, device="cpu", cache_mb=0).generate(range(24))
    s = Session(tiny_gen, device="cpu", cache_mb=0, batch_size=4)
    results = {}

    def work(k):
        results[k] = s.generate(range(24))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        np.testing.assert_array_equal(results[k], serial)


def test_classifier_session(cls_session):
    assert cls_session.kind == "classifier"
    assert cls_session.layers == ["conv1", "conv2"]
    imgs = cls_session.generate([0, 1])
    assert imgs.shape == (2, 16, 16, 3)
    logits = cls_session.classify([0, 1])
    cls_session.ablate("conv2", list(range(8)))
    ablated = cls_session.classify([0, 1])
    assert logits.shape == (2, 3) and not torch.equal(logits, ablated)
    assert torch.equal(cls_session.activations("conv2", [0]), torch.zeros(1, 8, 8, 8))


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda s: s.activations("layr3", [0]), KeyError, "layers are: layer1, layer2"),
        (lambda s: s.ablate("layer2", [16]), ValueError, "has 16 units"),
        (lambda s: s.ablate("layer2", []), ValueError, "must not be empty"),
        (lambda s: s.ablate("layer2", [1.5]), TypeError, "integer index from 0 to 15"),
        (lambda s: s.ablate("layer2", [1], strength=1.5), ValueError, "[0, 1]"),
        (lambda s: s.ablate("layer2", [1], strength="x"), TypeError, "strength"),
        (
            lambda s: s.ablate("layer2", [1], mask=np.ones((8, 8))),
            ValueError,
            "image size (16, 16)",
        ),
        (lambda s: s.ablate("layer2", [1], mask=[[1]]), TypeError, "numpy array"),
        (lambda s: s.ablate("layer2", [1], mask=np.full((16, 16), 2.0)), ValueError, "[0, 1]"),
        (
            lambda s: s.ablate("layer2", [1], value="max"),
            ValueError,
            "'mean', 'high', a finite number",
        ),
        (lambda s: s.generate([-1]), ValueError, "non-negative"),
        (lambda s: s.generate([1.5]), TypeError, "non-negative integer below 2**63"),
        (lambda s: s.activations("layer2.1", ["a"]), TypeError, "non-negative integer"),
    ],
)
def test_bad_input_errors_leave_nothing_applied(gen_session, call, error, words):
    with pytest.raises(error) as info:
        call(gen_session)
    assert words in str(info.value)
    assert gen_session.edits == []


def test_constructor_errors(tiny_gen):
    with pytest.raises(TypeError, match="nn.Module"):
        Session("not a model")
    with pytest.raises(ValueError, match="z_dim"):
        Session(torch.nn.Conv2d(3, 3, 1), device="cpu")
    with pytest.raises(KeyError, match="unknown layer 'layr1'"):
        Session(tiny_gen, device="cpu", layers=["layr1"])
    from conftest import TinyClassifier, tiny_data

    s = Session(TinyClassifier(), device="cpu", data=tiny_data, layers=["conv1", "fc"])
    assert s.layer_kind("fc") == "vector"  # vector layers are layers too (test_layer_kinds.py)


def test_layer_without_spatial_output(cls_session):
    assert cls_session.layer_shape("fc") == (3, 1, 1)  # a vector, seen as a 1x1 map


def test_fingerprint_tracks_edits(gen_session):
    base = gen_session.fingerprint()
    e = gen_session.ablate("layer1", [0])
    edited = gen_session.fingerprint()
    gen_session.undo()
    assert base != edited and gen_session.fingerprint() == base
    gen_session.push(e)
    assert gen_session.fingerprint() == edited


def test_excluding_restores_weight_and_output_edits_bit_exactly(gen_session, tiny_gen):
    from gandissect_widgets.edits import WeightEdit

    seeds = [0, 1, 2]
    base = gen_session.generate(seeds).copy()
    w1 = gen_session.push(WeightEdit("layer2.1", "weight", torch.randn(16, 32, 3, 3) * 0.3))
    only_w1 = gen_session.generate(seeds).copy()
    a = gen_session.ablate("layer3", [0, 1, 2])
    w2 = gen_session.push(WeightEdit("layer2.1", "weight", torch.randn(16, 32, 3, 3) * 0.3))
    full = gen_session.generate(seeds).copy()
    weights = tiny_gen.layer2[1].weight.detach().clone()
    with gen_session.excluding(w1):
        assert gen_session.state.edits == (a, w2) and gen_session.edits == [w1, a, w2]
        without = gen_session.generate(seeds)
        assert not np.array_equal(without, full)
    assert gen_session.edits == [w1, a, w2]
    assert torch.equal(tiny_gen.layer2[1].weight, weights)
    np.testing.assert_array_equal(gen_session.generate(seeds), full)
    with gen_session.excluding(w2), gen_session.excluding(a):
        np.testing.assert_array_equal(gen_session.generate(seeds), only_w1)
    gen_session.reset()
    np.testing.assert_array_equal(gen_session.generate(seeds), base)
