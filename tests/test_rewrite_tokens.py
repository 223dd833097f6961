"""Rewriting a token layer's nn.Linear: the same rewrite as a 1x1 conv on the patch-token map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gandissect_widgets import Session
from gandissect_widgets import rewrite as rw

C, Z = 6, 8
# Few steps: Adam on the L1 loss is chaotic near its optimum (after ~200 steps even a 1e-15
# change of a bias, in float64, moves Lambda by ~0.03), so the two forms are compared early.
FAST = {"steps": 40, "stat_samples": 16, "cache": False}


class ToTokens(nn.Module):
    """(N, C, 8, 8) -> (N, 1 + 64, C): a learned class token, then the patch tokens row by row."""

    def __init__(self):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, C))

    def forward(self, x):
        tokens = x.flatten(2).transpose(1, 2)
        return torch.cat([self.cls.expand(len(x), -1, -1), tokens], 1)


class ToMap(nn.Module):
    """(N, 1 + 64, C) -> (N, C, 8, 8): the patch tokens (the class token is dropped)."""

    def forward(self, t):
        return t[:, 1:].transpose(1, 2).reshape(len(t), -1, 8, 8)


class LinearOnPatches(nn.Module):
    """A Linear on the patch tokens only: its input has 64 tokens, the layer outputs 65."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(C, C)

    def forward(self, t):
        return torch.cat([t[:, :1], self.lin(t[:, 1:])], 1)


def _stem():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(Z, C * 64), nn.Unflatten(1, (C, 8, 8)), nn.ReLU())


def _head():
    torch.manual_seed(1)
    return nn.Sequential(nn.Upsample(scale_factor=4), nn.Conv2d(C, 3, 3, padding=1), nn.Tanh())


class TokenGenerator(nn.Sequential):
    """z (N, 8) -> map (N, 6, 8, 8) -> tokens (N, 65, 6) -> ``block`` -> map -> image 32x32."""

    z_dim = Z

    def __init__(self, block):
        super().__init__()
        self.add_module("stem", _stem())
        self.add_module("tokens", ToTokens())
        self.add_module("block", block)
        self.add_module("grid", ToMap())
        self.add_module("head", _head())


class MapGenerator(nn.Sequential):
    """The same generator with the token block's Linear as a 1x1 conv on the map."""

    z_dim = Z

    def __init__(self, linear: nn.Linear):
        super().__init__()
        conv = nn.Conv2d(C, C, 1)
        with torch.no_grad():
            conv.weight.copy_(linear.weight[:, :, None, None])
            conv.bias.copy_(linear.bias)
        self.add_module("stem", _stem())
        self.add_module("block", nn.Sequential(conv, nn.GELU()))
        self.add_module("head", _head())


def _token_block():
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(C, C), nn.GELU())


def _sessions():
    tok = Session(TokenGenerator(_token_block()), device="cpu", batch_size=8)
    conv = Session(MapGenerator(tok.model.block[0]), device="cpu", batch_size=8)
    return tok, conv


def _box(y0, y1, x0, x1, size=32):
    m = np.zeros((size, size), np.float32)
    m[y0:y1, x0:x1] = 1
    return m


REQUEST = {
    "context": [(1, _box(4, 18, 6, 20)), (2, _box(10, 26, 2, 14))],
    "copy": (3, _box(4, 14, 4, 14)),
    "paste": (1, _box(16, 26, 16, 26)),
}


@pytest.fixture(scope="module")
def pair():
    return _sessions()


def test_token_layer_rewrites_like_a_1x1_conv(pair):
    tok, conv = pair
    assert tok.layer_kind("block") == "tokens" and tok.layer_shape("block") == (C, 8, 8)
    assert rw.conv_of(tok, "block") == ("block.0", "0.weight")
    seeds = [1, 2, 3, 5]
    out_tok, _ = tok.forward(seeds)
    out_conv, _ = conv.forward(seeds)
    assert (out_tok - out_conv).abs().max() < 1e-5  # the twins agree before any edit
    w0 = tok.model.block[0].weight.detach().clone()
    c_tok = rw.second_moment(tok, "block", 16, cache=False)
    c_conv = rw.second_moment(conv, "block", 16, cache=False)
    assert (c_tok - c_conv).abs().max() < 1e-9 * c_conv.abs().max()  # patch tokens only

    e_tok = rw.rewrite(tok, "block", **REQUEST, rank=2, **FAST)
    e_conv = rw.rewrite(conv, "block", **REQUEST, rank=2, **FAST)
    assert e_tok.lam.shape == (C, 2) and e_conv.lam.shape == (C, 2, 1, 1)
    assert e_tok.delta.shape == tok.model.block[0].weight.shape == (C, C)
    torch.testing.assert_close(e_tok.directions, e_conv.directions, atol=1e-5, rtol=0)
    torch.testing.assert_close(e_tok.lam, e_conv.lam[:, :, 0, 0], atol=1e-5, rtol=0)
    assert e_tok.lam.abs().max() > 1e-2  # the fit did move
    np.testing.assert_allclose(e_tok.losses, e_conv.losses, atol=1e-6, rtol=1e-5)
    edited_tok, _ = tok.forward(seeds)
    edited_conv, _ = conv.forward(seeds)
    assert (edited_tok - edited_conv).abs().max() < 1e-5
    assert (edited_tok - out_tok).abs().max() > 1e-3

    # the prefix token: not a key or value of the fit, but the same Linear (W0 + delta) acts on it
    _, seen = tok.forward([1], retain_input=["block"])
    x = seen["block:in"]
    raw = tok.model.block(x)  # the edited block, without hooks' map view
    lin = tok.model.block[0]
    expect = nn.functional.gelu(nn.functional.linear(x[:, :1], w0 + e_tok.delta, lin.bias))
    torch.testing.assert_close(raw[:, :1], expect, atol=1e-6, rtol=0)
    before = nn.functional.gelu(nn.functional.linear(x[:, :1], w0, lin.bias))
    assert (raw[:, :1] - before).abs().max() > 1e-4

    tok.undo()
    conv.undo()
    assert torch.equal(tok.model.block[0].weight, w0)
    assert torch.equal(tok.forward(seeds)[0], out_tok)


def test_context_search_and_hint_on_tokens(pair):
    tok, conv = pair
    m_tok = rw.context_matches(tok, "block", REQUEST["context"], n=8, stat_samples=16, cache=False)
    m_conv = rw.context_matches(conv, "block", REQUEST["context"], n=8, stat_samples=16,
                                cache=False)  # fmt: skip
    assert m_tok.heatmaps.shape == (8, 8, 8)
    np.testing.assert_allclose(m_tok.heatmaps, m_conv.heatmaps, atol=1e-5)
    h_tok, h_conv = (rw.rule_hint(s, "block", **REQUEST, stat_samples=16, cache=False)
                     for s in (tok, conv))  # fmt: skip
    assert h_tok["positions"] == h_conv["positions"] > 0
    assert abs(h_tok["agreement"] - h_conv["agreement"]) < 1e-6
    assert abs(h_tok["spread"] - h_conv["spread"]) < 1e-6


def test_token_rewrite_save_and_load(pair, tmp_path):
    tok, _ = pair
    w0 = tok.model.block[0].weight.detach().clone()
    edit = rw.rewrite(tok, "block", **REQUEST, **FAST)
    w1 = tok.model.block[0].weight.detach().clone()
    path = edit.save(tmp_path / "tokens.npz")
    assert tok.undo() is edit and torch.equal(tok.model.block[0].weight, w0)
    loaded = rw.load_edit(path)
    assert loaded.lam.shape == (C, 1) and torch.equal(loaded.delta, edit.delta)
    assert loaded.describe() == "rewrite block (rank 1)" and loaded.param == "0.weight"
    tok.push(loaded)
    assert torch.equal(tok.model.block[0].weight, w1)
    tok.undo()
    assert torch.equal(tok.model.block[0].weight, w0)


def test_a_linear_block_itself_is_rewritable():
    tok = Session(TokenGenerator(nn.Linear(C, C)), device="cpu", batch_size=8)
    assert rw.conv_of(tok, "block") == ("block", "weight")
    edit = rw.make_rewrite(tok, "block", **REQUEST, **FAST)
    assert edit.delta.shape == (C, C) and edit.lam.abs().max() > 1e-2
    assert tok.edits == []


@pytest.mark.parametrize(
    "block, match",
    [
        (nn.Sequential(nn.GELU()), "nn.Linear applied to its tokens"),
        (nn.Sequential(nn.Linear(C, C), nn.GELU(), nn.Linear(C, C)), "several: block.0, block.2"),
    ],
)
def test_token_layer_without_one_linear_is_refused(block, match):
    tok = Session(TokenGenerator(block), device="cpu", batch_size=8)
    with pytest.raises(ValueError, match="not a convolution nor a single linear map over tokens"):
        rw.conv_of(tok, "block")
    with pytest.raises(ValueError, match=match):
        rw.rewrite(tok, "block", **REQUEST, **FAST)
    assert tok.edits == []


def test_a_vector_layer_linear_is_refused():
    tok = Session(TokenGenerator(_token_block()), device="cpu", batch_size=8)
    with pytest.raises(ValueError, match=r"'stem.0' \(a vector layer"):
        rw.conv_of(tok, "stem.0")
    with pytest.raises(ValueError, match="on a map layer, an nn.Conv2d block"):
        rw.conv_of(tok, "stem")


def test_a_linear_on_another_token_grid_is_refused():
    tok = Session(TokenGenerator(LinearOnPatches()), device="cpu", batch_size=8)
    assert rw.conv_of(tok, "block") == ("block.lin", "lin.weight")
    w0 = tok.model.block.lin.weight.detach().clone()
    with pytest.raises(ValueError, match=r"receives \(N, 64, 6\).*outputs 1 prefix \+ 8x8 = 65"):
        rw.rewrite(tok, "block", **REQUEST, **FAST)
    assert tok.edits == [] and torch.equal(tok.model.block.lin.weight, w0)


def test_a_vit_mlp_names_its_linears(vit_session):
    assert rw.conv_of(vit_session, "blocks.0.mlp.fc1") == ("blocks.0.mlp.fc1", "weight")
    with pytest.raises(ValueError, match="several: blocks.0.mlp.fc1, blocks.0.mlp.fc2"):
        rw.conv_of(vit_session, "blocks.0.mlp")


def test_rule_editor_takes_a_token_layer():
    from gandissect_widgets.widgets.rule_editor import RuleEditor

    tok, _ = _sessions()
    ed = RuleEditor(tok, "block", seeds=range(4), stat_samples=16, cache=False)
    try:
        ed.steps = 40
        assert ed.wait()
        before = ed.gallery_grid.images.copy()

        def paint(y0, y1, x0, x1):
            m = np.zeros((32, 32), np.uint8)
            m[y0:y1, x0:x1] = 1
            ed.canvas.mask = m

        ed.select(1)
        paint(4, 14, 4, 14)
        ed.press("copy")
        ed.press("paste")
        ed.press("gallery", index=2, x=20, y=20)
        for seed in (2, 3):
            ed.select(seed)
            paint(8, 24, 6, 22)
            ed.press("context")
        ed.press("execute")
        assert ed.wait() and tok.edits == [ed.edit] and ed.edit.lam.shape == (C, 1)
        assert not np.array_equal(before, ed.gallery_grid.images)
    finally:
        ed.close()
