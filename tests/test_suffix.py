"""Suffix passes: a pass whose edits all lie at stage k or later starts at stage k from cached
inputs, and gives bit-for-bit what the full pass gives (hypothesis over random edit stacks,
retained layers and sample sets, on three generator shapes)."""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import TinyGenerator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gandissect_widgets import Session
from gandissect_widgets.edits import State, WeightEdit
from gandissect_widgets.zoo.progan import ProgressiveGenerator
from gandissect_widgets.zoo.stylegan2 import StyleGAN2Generator


def _progan():
    torch.manual_seed(3)
    return ProgressiveGenerator([16, 16, 16, 8, 8])


def _stylegan2():
    torch.manual_seed(4)
    return StyleGAN2Generator(16, style_dim=8, n_mlp=2, channels=[8, 8, 4])


MODELS = {"tiny": TinyGenerator, "progan": _progan, "stylegan2": _stylegan2}


@functools.cache
def _session(kind: str) -> Session:
    return Session(MODELS[kind](), device="cpu", batch_size=4, cache_mb=8)


def _weight_edit(session, layer, scale):
    conv = next(
        n
        for n, m in session.model.named_modules()
        if n.startswith(layer) and isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
    )
    p = session.model.get_submodule(conv).weight
    g = torch.Generator().manual_seed(int(scale * 1000))
    return WeightEdit(conv, "weight", scale * torch.randn(p.shape, generator=g))


@st.composite
def _cases(draw, kind):
    s = _session(kind)
    layers = s.layers
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        layer = draw(st.sampled_from(layers))
        c = s.layer_shape(layer)[0]
        if kind != "stylegan2" and draw(st.booleans()) and draw(st.booleans()):
            edits.append(_weight_edit(s, layer, draw(st.floats(0.01, 0.2))))
            continue
        units = draw(st.lists(st.integers(0, c - 1), min_size=1, max_size=4, unique=True))
        value = draw(st.sampled_from([0.0, 1.5, "high"]))
        edits.append(s.ablation(layer, units, draw(st.floats(0.1, 1.0)), value=value))
    seeds = draw(st.lists(st.integers(0, 30), min_size=1, max_size=6, unique=True))
    retain = draw(st.lists(st.sampled_from(layers), max_size=2, unique=True))
    return edits, seeds, retain


def _check(kind, case):
    edits, seeds, retain = case
    s = _session(kind)
    state = State(tuple(edits))
    for e in edits:
        s.check_edit(e, State())
    inputs = s.inputs(seeds)
    full = s.runner.run(inputs, state, retain=retain)  # no sample names: always a full pass
    for _ in range(2):  # the first call may check the stage; the second runs from the cache
        out, seen = s.forward(seeds, state, retain=retain)
        assert torch.equal(out, full[0])
        assert seen.keys() == full[1].keys()
        for name in seen:
            assert torch.equal(seen[name], full[1][name]), name
    k = s.runner._start(state, retain, (), None)
    assert k is None or s.runner._trusted[k]  # where a suffix pass applies, it was used


@pytest.mark.parametrize("kind", sorted(MODELS))
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_suffix_passes_are_bit_identical_to_full_passes(kind, data):
    _check(kind, data.draw(_cases(kind)))


def test_sequential_generators_start_after_the_edited_stage_and_cache_its_output():
    s = Session(_progan(), device="cpu", batch_size=4)
    k = s.runner._stages.index("layer5")
    first, edited = [], []
    hooks = [
        s.model.layer1.register_forward_hook(lambda *a: first.append(1)),
        s.model.layer5.register_forward_hook(lambda *a: edited.append(1)),
    ]
    try:
        s.forward([0, 1, 2], State((s.ablation("layer5", [0, 1]),)))
        s.forward([0, 1, 2], State((s.ablation("layer6", [0, 1]),)))
        assert s.runner._trusted == {(k, True): True, (k + 1, True): True}  # each checked once
        assert first
        first.clear(), edited.clear()
        for units in ([3], [4, 5], [0]):  # new states at the same stage: no pass up to it
            s.forward([0, 1, 2], State((s.ablation("layer5", units),)))
            s.forward([0, 1, 2], State((s.ablation("layer6", units),)))
        assert not first and not edited  # the edited stage itself does not run again
        s.forward([7], State((s.ablation("layer5", [3]),)))  # a new sample: its prefix runs
        assert first
    finally:
        for hook in hooks:
            hook.remove()


def test_a_weight_edit_or_an_edit_inside_the_stage_starts_at_its_input():
    s = Session(_progan(), device="cpu", batch_size=4)
    k = s.runner._stages.index("layer5")
    inside = s.ablation("layer5.conv", [0, 1])  # inside the stage: its output is not enough
    weights = _weight_edit(s, "layer5", 0.1)
    sub = weights.layer.split(".", 1)[1]
    named_by_stage = WeightEdit("layer5", f"{sub}.{weights.param}", weights.delta)  # the stage
    for state in [State((inside,)), State((weights,)), State((named_by_stage,))]:
        assert s.runner._start(state, (), (), None) == (k, False)
        full = s.runner.run(s.inputs([0, 1]), state)[0]
        assert torch.equal(s.forward([0, 1], state)[0], full)
    outside = State((s.ablation("layer5", [0]),))
    assert s.runner._start(outside, ["layer5"], (), None) == (k, True)  # retained: fine
    assert s.runner._start(outside, (), ["layer5"], None) == (k, False)  # its input wanted


class _PostProcessed(TinyGenerator):
    """Its forward does more than run its children: a suffix pass would be wrong."""

    def forward(self, z):
        return super().forward(z) * 0.5


def test_a_model_that_is_not_its_children_in_order_falls_back_to_full_passes():
    s = Session(_PostProcessed(), device="cpu", batch_size=4)
    edit = s.ablation("layer2", [0, 3])
    state = State((edit,))
    full = s.runner.run(s.inputs([1, 2]), state)[0]
    for _ in range(3):
        assert torch.equal(s.forward([1, 2], state)[0], full)
    k = s.runner._stages.index("layer2")
    assert s.runner._trusted == {(k, True): False, (k, False): False}


@pytest.mark.parametrize("edited", ["layer4", "layer5"])  # after the photo's stage / at a later one
def test_a_single_photo_keeps_its_residual_in_suffix_passes(edited):
    """A batch of one runs as two rows, and the photo's residual is added to the first only:
    the cached stage rows must be that first row's."""
    s = Session(_progan(), device="cpu", batch_size=4)
    c, h, w = s.layer_shape("layer4")
    torch.manual_seed(0)
    pid = s.sources.add_photo(torch.randn(s.z_dim), "layer4", 3 * torch.randn(c, h, w))
    state = State((s.ablation(edited, [0, 1]),))
    full = s.runner.run(s.inputs([pid]), state, before=s.sources.adapters([pid]))[0]
    for _ in range(3):  # the first call computes and checks; the others read the cache
        assert torch.equal(s.forward([pid], state)[0], full)
