"""Token-grid and vector layers: seen as maps by every analysis, edits written back in place."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CONCEPTS, TinyClassifier, labelled_data, tiny_vit
from torch import nn

from gandissect_widgets import Session, passes


def _tiny_vit():
    return tiny_vit()


class _HandGrid(nn.Module):
    """The tiny ViT with its block-0 tokens also reshaped by hand into a map module ``grid``."""

    def __init__(self, vit):
        super().__init__()
        self.vit, self.grid = vit, nn.Identity()

    def forward(self, x):
        kept = {}
        handle = self.vit.blocks[0].register_forward_hook(lambda m, i, o: kept.setdefault("t", o))
        try:
            logits = self.vit(x)
        finally:
            handle.remove()
        tokens = kept["t"][:, 1:]  # drop the class token; 4x4 patch grid, row by row
        n, t, c = tokens.shape
        self.grid(tokens.permute(0, 2, 1).reshape(n, c, 4, 4))
        return logits


def _session(model, **kw):
    kw.setdefault("layers", ["blocks.0"])
    return Session(
        model, device="cpu", data=labelled_data, concepts=CONCEPTS, classes=["a", "b"], **kw
    )


@pytest.fixture(scope="module")
def vit_session():  # shared by this module's tests (conftest's is per test)
    return _session(_tiny_vit())


def test_layer_kinds_and_table(vit_session):
    s = vit_session
    assert s.layer_kind("blocks.0") == "tokens" and s.layer_shape("blocks.0") == (12, 4, 4)
    assert s.layer_kind("pool") == "vector" and s.layer_shape("pool") == (12, 1, 1)
    assert s.layer_kind("patch_embed") == "map"
    rows = {r["layer"]: r for r in s.layer_info()}
    assert rows["blocks.1.mlp.act"]["output"] == "(N, 17, 24)"
    assert rows["blocks.1.mlp.act"]["map"] == (24, 4, 4)
    assert rows["head"]["kind"] == "vector" and rows["blocks.0"]["listed"]
    assert rows["blocks"]["kind"] == "-"  # a ModuleList never runs
    assert "blocks.0.mlp.act" in repr(s.layer_info()) and "<table>" in s.layer_info()._repr_html_()


def test_token_dissection_equals_hand_reshaped_map():
    vit = _tiny_vit()
    by_view = _session(vit).dissect("blocks.0", n=24, batch_size=8, cache=False, progress=False)
    by_hand = _session(_HandGrid(vit), layers=["grid"]).dissect(
        "grid", n=24, batch_size=8, cache=False, progress=False
    )
    for name in ("iou", "thresholds", "top_values", "mean"):
        a, b = getattr(by_view, name), getattr(by_hand, name)
        assert torch.allclose(a.double(), b.double(), atol=1e-6, rtol=0), name
    assert torch.equal(by_view.top_seeds, by_hand.top_seeds)


def test_token_ablation_keeps_the_class_token(vit_session):
    s = vit_session
    _, before = s.forward([1, 2], retain=["blocks.0"])
    edit = s.ablation("blocks.0", [2, 5], strength=0.5, value="high")  # steering, too
    raw = []  # what block 1 receives: block 0's output after the edits
    h = s.model.blocks[1].register_forward_pre_hook(lambda m, i: raw.append(i[0]))
    try:
        s.forward([1, 2])
        with s.temporarily(edit):
            _, after = s.forward([1, 2], retain=["blocks.0"])
    finally:
        h.remove()
    plain, edited = raw
    assert torch.equal(edited[:, 0], plain[:, 0])  # the class token is untouched
    high = s.unit_levels("blocks.0")["high"][[2, 5]]
    expect = before["blocks.0"].clone()
    expect[:, [2, 5]] = 0.5 * before["blocks.0"][:, [2, 5]] + 0.5 * high.view(1, 2, 1, 1)
    assert torch.allclose(after["blocks.0"], expect, atol=1e-6)
    view = edited[:, 1:].permute(0, 2, 1).reshape(2, 12, 4, 4)  # written back in token order
    assert torch.allclose(view, expect, atol=1e-6)
    # asked for, the class token is edited too (no mask there)
    asked = s.ablation("blocks.0", [2, 5], strength=0.5, value="high", prefix=True)
    h = s.model.blocks[1].register_forward_pre_hook(lambda m, i: raw.append(i[0]))
    try:
        with s.temporarily(asked):
            s.forward([1, 2])
    finally:
        h.remove()
    cls = plain[:, 0].clone()
    cls[:, [2, 5]] = 0.5 * plain[:, 0, [2, 5]] + 0.5 * high
    assert torch.allclose(raw[2][:, 0], cls, atol=1e-6)
    assert torch.allclose(raw[2][:, 1:], edited[:, 1:])
    assert "class token" in asked.describe() and asked.signature() != edit.signature()
    with pytest.raises(ValueError, match="prefix=True edits a token layer"):
        s.ablation("pool", [0], prefix=True)
    assert s.edits == []


def test_vector_layer_dissection_is_image_level():
    s = _session(TinyClassifier(classes=2), layers=["conv1"])
    assert s.layer_kind("fc") == "vector"
    d = s.dissect("fc", n=40, batch_size=8, cache=False, progress=False)
    assert d.quantile == 0.8
    acts = s.activations("fc", range(40))[:, :, 0, 0]
    present = passes.presence(labelled_data(range(40))[1], 2).numpy()
    above = (acts > d.thresholds).numpy()
    n = len(acts)
    for u in range(2):
        for k in range(2):
            inter = (above[:, u] & present[:, k]).sum()
            a, c = above[:, u].sum(), present[:, k].sum()
            iou = inter / (a + c - inter)
            chance = (a * c / n) / (a + c - a * c / n)
            assert d.iou[u, k] == pytest.approx(max(0, (iou - chance) / (1 - chance)), abs=1e-6)
    with pytest.raises(ValueError, match="vector layer"):
        s.ablation("fc", [0], mask=np.ones((16, 16)))


class _Odd(nn.Module):
    def forward(self, x):
        return x[:, :, None]  # (N, 3, 1, 16, 16): no kind


class _WithOdd(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.odd = _Odd()

    def forward(self, x):
        self.odd(x)
        return self.conv(x).mean((2, 3))


def test_bad_layers_say_what_is_valid(vit_session):
    with pytest.raises(KeyError, match=r"did you mean 'blocks\.0'"):
        vit_session.check_layer("blokcs.0")
    with pytest.raises(ValueError, match=r"\(N, 3, 1, 16, 16\).*neither a map"):
        _session(_WithOdd(), layers=["odd"])
    with pytest.raises(ValueError, match=r"tokens=\(1, 3, 3\) needs 10 .* e\.g\. \(1, 4, 4\)"):
        _session(_tiny_vit(), tokens=(1, 3, 3))
    with pytest.raises(ValueError, match="tokens must be"):
        _session(_tiny_vit(), tokens=(1, 4))


def test_report_tables_of_token_and_vector_layers(vit_session):
    from gandissect_widgets import report

    s = vit_session
    for layer in ("blocks.1", "pool"):
        d = s.dissect(layer, n=16, batch_size=8, cache=False, progress=False)
        page = report.unit_table(d, s, units=[0, 1], top=2)
        assert page.count("<img") == 4
        assert ("no heatmap" in page) == (layer == "pool")
