"""session.export: the edited generator written in its source's layout, read back by
``gw.zoo.load`` and by the original projects' loaders (plain-torch reference forwards of the
published code), computing what the edited Session showed."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from conftest import TinyGenerator
from published_layouts import (
    PROGAN_16,
    ROSINALITY_16,
    progan_reference,
    progan_state_dict,
    rosinality_checkpoint,
    rosinality_layout,
    rosinality_reference,
)
from safetensors import safe_open
from safetensors.torch import load_file
from test_ada_pickle import CONFIGS, ada_reference, build_ada, snapshot, write_pickle

import gandissect_widgets as gw
from gandissect_widgets.export import fold_reason
from gandissect_widgets.zoo import hamlet

SEEDS = list(range(6))


def _layout(tensors: dict) -> dict:
    return {k: (tuple(v.shape), v.dtype) for k, v in tensors.items()}


def _safetensors(path) -> tuple[dict, dict]:
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata() or {})
    return load_file(str(path)), meta


def _push_weight_edit(s, layer, param="conv.weight", seed=0, scale=0.2):
    """A WeightEdit (what a rewrite is) of a noticeable size."""
    p = s.model.get_submodule(layer).get_parameter(param)
    g = torch.Generator().manual_seed(seed)
    delta = torch.randn(p.shape, generator=g) * scale * p.detach().float().std()
    return s.push(gw.WeightEdit(layer, param, delta))


def _float_out(s, seeds=SEEDS) -> torch.Tensor:
    out, _ = s.run(s.latents(seeds))
    return out.detach().cpu()


def _assert_same_images(s, path, *, exact=True):
    """The exported file, loaded by gw.zoo.load into a fresh Session, shows the same images."""
    again = gw.Session(gw.zoo.load(str(path)), device="cpu")
    a, b = s.generate(SEEDS), again.generate(SEEDS)
    if exact:
        np.testing.assert_array_equal(a, b)
    else:
        assert np.abs(a.astype(int) - b).max() <= 1
        torch.testing.assert_close(_float_out(again), _float_out(s), atol=2e-5, rtol=1e-5)
    return again


# ---------------------------------------------------------------------------------- hamlet
def test_hamlet_unedited_export_is_the_source_file(tmp_path):
    s = gw.Session.from_zoo("hamlet", device="cpu")
    path = s.export(tmp_path / "hamlet.safetensors")
    src, _ = _safetensors(hamlet.WEIGHTS / "generator.safetensors")
    out, meta = _safetensors(path)
    assert _layout(out) == _layout(src)  # safetensors keeps no key order: dicts compared
    assert all(torch.equal(out[k], src[k]) for k in src)
    assert meta == {}


def test_hamlet_export_folds_ablation_and_keeps_rewrites_exact(tmp_path):
    s = gw.Session.from_zoo("hamlet", device="cpu")
    s.ablate("layer4", [1, 5, 9])  # strength 1, value 0: folds into the weights
    edit = _push_weight_edit(s, "layer6")
    with pytest.warns(UserWarning, match="layer6.conv.weight") as record:
        path = s.export(tmp_path / "edited.safetensors")
    assert "float32" in str(record[0].message)
    src, _ = _safetensors(hamlet.WEIGHTS / "generator.safetensors")
    out, _ = _safetensors(path)
    assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in src.items()}
    changed = {k for k in src if out[k].dtype != src[k].dtype}
    assert changed == {"layer6.conv.weight"}  # float16 cannot hold the rewrite exactly
    assert (
        not out["layer4.conv.weight"][[1, 5, 9]].any()
        and not out["layer4.wscale.b"][[1, 5, 9]].any()
    )
    _assert_same_images(s, path)
    original = hamlet.load_generator(path)  # hamlet's own loader
    with torch.no_grad():
        torch.testing.assert_close(original(s.latents(SEEDS)), _float_out(s), atol=0, rtol=0)
    assert s.edits[-1] is edit  # exporting changes nothing in the Session


def test_hamlet_export_forced_to_the_source_dtype(tmp_path):
    s = gw.Session.from_zoo("hamlet", device="cpu")
    _push_weight_edit(s, "layer6")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = s.export(tmp_path / "f16.safetensors", dtype=torch.float16)
    src, _ = _safetensors(hamlet.WEIGHTS / "generator.safetensors")
    out, _ = _safetensors(path)
    assert _layout(out) == _layout(src)
    again = gw.Session(gw.zoo.load(str(path)), device="cpu")
    torch.testing.assert_close(_float_out(again), _float_out(s), atol=2e-2, rtol=0)


def test_hamlet_as_progan_pth(tmp_path):
    s = gw.Session.from_zoo("hamlet", device="cpu")
    s.ablate("layer2", [0, 3])
    path = s.export(tmp_path / "hamlet.pth")
    sd = torch.load(path, weights_only=True)
    src, _ = _safetensors(hamlet.WEIGHTS / "generator.safetensors")
    assert _layout(sd) == _layout(src)
    _assert_same_images(s, path)


# ---------------------------------------------------------------------------------- ProGAN
@pytest.fixture
def progan(tmp_path):
    sd = progan_state_dict(PROGAN_16)
    path = tmp_path / "proggan_tiny.pth"
    torch.save(sd, path)
    return sd, path


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_progan_export_round_trip(tmp_path, progan, suffix):
    src, source_path = progan
    s = gw.Session.from_zoo(str(source_path), device="cpu")
    assert s.model.source.format == "progan"
    s.ablate("layer3", [0, 2, 4], strength=1.0)
    _push_weight_edit(s, "layer5")
    _push_weight_edit(s, "layer2", param="wscale.b", seed=3)
    path = s.export(tmp_path / f"edited{suffix}")
    out = torch.load(path, weights_only=True) if suffix == ".pth" else load_file(str(path))
    assert _layout(out) == _layout(src)  # float32 source: nothing promoted
    _assert_same_images(s, path)
    with torch.no_grad():  # the published forward (GAN Dissection's proggan) on the file
        expected = progan_reference(out, s.latents(SEEDS)).clamp(-1, 1)
    torch.testing.assert_close(_float_out(s), expected, atol=1e-5, rtol=1e-5)


def test_progan_export_without_edits_copies_every_tensor(tmp_path, progan):
    src, source_path = progan
    s = gw.Session.from_zoo(str(source_path), device="cpu")
    edit = s.ablate("layer3", [1])
    s.undo()
    assert edit not in s.edits
    out = torch.load(s.export(tmp_path / "same.pth"), weights_only=True)
    assert list(out) == list(src) and all(torch.equal(out[k], src[k]) for k in src)


# ---------------------------------------------------------------------------------- rosinality
def test_rosinality_export_round_trip(tmp_path):
    ckpt = rosinality_checkpoint(ROSINALITY_16)
    torch.save(ckpt, tmp_path / "stylegan2_tiny.pt")
    s = gw.Session.from_zoo(str(tmp_path / "stylegan2_tiny.pt"), device="cpu")
    assert s.model.source.format == "rosinality"
    _push_weight_edit(s, "layer3.conv", param="weight")
    _push_weight_edit(s, "layer0.conv", param="weight", seed=2)
    path = s.export(tmp_path / "edited.pt")
    out = torch.load(path, weights_only=True)
    assert list(out) == ["g_ema", "latent_avg"]
    assert (
        _layout(out["g_ema"])
        == _layout(ckpt["g_ema"])
        == {k: (shape, torch.float32) for k, shape in ROSINALITY_16.items()}
    )
    assert out["latent_avg"].shape == ckpt["latent_avg"].shape
    untouched = ["style.1.weight", "convs.1.conv.weight", "noises.noise_2", "to_rgbs.0.bias"]
    for k in untouched:
        torch.testing.assert_close(out["g_ema"][k], ckpt["g_ema"][k], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(
        out["g_ema"]["convs.2.conv.weight"], ckpt["g_ema"]["convs.2.conv.weight"]
    )
    with torch.no_grad():  # rosinality's forward on the file
        expected = rosinality_reference(out, s.latents(SEEDS)).clamp(-1, 1)
    torch.testing.assert_close(_float_out(s), expected, atol=1e-4, rtol=1e-4)
    _assert_same_images(s, path, exact=False)


def test_bare_g_ema_source_is_written_bare(tmp_path):
    ckpt = rosinality_checkpoint(ROSINALITY_16)
    torch.save(ckpt["g_ema"], tmp_path / "g_ema.pt")
    s = gw.Session.from_zoo(str(tmp_path / "g_ema.pt"), device="cpu")
    out = torch.load(s.export(tmp_path / "bare.pt"), weights_only=True)
    assert _layout(out) == _layout(ckpt["g_ema"])


def test_stylegan2_ablation_with_noise_is_refused(tmp_path):
    torch.save(rosinality_checkpoint(ROSINALITY_16), tmp_path / "sg.pt")
    s = gw.Session.from_zoo(str(tmp_path / "sg.pt"), device="cpu")
    edit = s.ablate("layer2", [1])
    assert "noise" in fold_reason(s.model, edit)
    with pytest.raises(ValueError, match=r"adds noise to every unit"):
        s.export(tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


# ---------------------------------------------------------------------------------- ADA
def _ada_gains(sd, lr):
    """The gains ADA's FullyConnectedLayers apply: mapping lr/sqrt(in) and lr, affine
    1/sqrt(in) and 1 (what Generator(**init_kwargs) computes)."""
    gains = {}
    for k, v in sd.items():
        if k.endswith(".weight") and (".fc" in k or ".affine." in k):
            p = k[: -len(".weight")]
            m = lr if ".fc" in k else 1.0
            gains[p] = (m / math.sqrt(v.shape[1]), m)
    return gains


def _ada_session(tmp_path, name, **kw):
    g = build_ada(**{**CONFIGS[name], **kw})
    path = write_pickle(snapshot(g), tmp_path / f"{name}.pkl")
    return g, gw.Session.from_zoo(str(path), device="cpu")


@pytest.mark.parametrize("name", ["r16-skip", "r32-clamp-wide", "r16-orig-nonoise"])
def test_ada_export_as_safetensors_in_g_ema_layout(tmp_path, name):
    g, s = _ada_session(tmp_path, name)
    _push_weight_edit(s, "layer2.conv", param="weight")
    if name == "r16-orig-nonoise":  # no noise: a complete ablation folds exactly
        s.ablate("layer3", [0, 2])
    path = s.export(tmp_path / "edited.safetensors")
    out, meta = _safetensors(path)
    assert _layout(out) == _layout(g.state_dict())
    assert meta["format"] == "stylegan2-ada"
    cfg = {k: json.loads(v) for k, v in meta.items() if k != "format"}
    assert cfg["conv_clamp"] == CONFIGS[name].get("conv_clamp")
    assert cfg["init_kwargs"]["synthesis_kwargs"]["channel_base"] == CONFIGS[name]["base"]
    lr = cfg["init_kwargs"]["mapping_kwargs"]["lr_multiplier"]
    with torch.no_grad():  # ADA's forward of Generator(**init_kwargs) with these tensors
        expected = ada_reference(out, s.latents(SEEDS), gains=_ada_gains(out, lr),
                                 conv_clamp=cfg["conv_clamp"]).clamp(-1, 1)  # fmt: skip
    torch.testing.assert_close(_float_out(s), expected, atol=2e-4, rtol=1e-4)
    again = _assert_same_images(s, path, exact=False)
    assert again.model.source.format == "stylegan2-ada"
    assert again.model.conv_clamp == CONFIGS[name].get("conv_clamp")


def test_ada_export_as_rosinality_pt(tmp_path):
    g, s = _ada_session(tmp_path, "r16-skip")
    _push_weight_edit(s, "layer1.conv", param="weight")
    path = s.export(tmp_path / "edited.pt")
    out = torch.load(path, weights_only=True)
    cfg = CONFIGS["r16-skip"]
    widths = {4: 16, 8: 16, 16: 8}
    assert {k: tuple(v.shape) for k, v in out["g_ema"].items()} == rosinality_layout(
        16, cfg["w_dim"], cfg["n_map"], widths=widths
    )
    with torch.no_grad():
        expected = rosinality_reference(out, s.latents(SEEDS)).clamp(-1, 1)
    torch.testing.assert_close(_float_out(s), expected, atol=2e-4, rtol=1e-4)
    _assert_same_images(s, path, exact=False)


def test_ada_export_to_rosinality_warns_about_conv_clamp(tmp_path):
    _, s = _ada_session(tmp_path, "r16-skip", conv_clamp=256)
    with pytest.warns(UserWarning, match="conv_clamp"):
        s.export(tmp_path / "clamped.pt")


def test_ada_layouts_rosinality_cannot_hold_are_refused(tmp_path):
    _, s = _ada_session(tmp_path, "r32-clamp-wide")  # z 6, hidden 7, w 10
    with pytest.raises(ValueError, match="mapping widths.*safetensors"):
        s.export(tmp_path / "wide.pt")
    _, s = _ada_session(tmp_path, "r16-orig-nonoise")
    with pytest.raises(ValueError, match='"orig"'):
        s.export(tmp_path / "orig.pt")


def test_rosinality_source_exports_to_ada_layout(tmp_path):
    ckpt = rosinality_checkpoint(ROSINALITY_16)
    torch.save(ckpt, tmp_path / "sg.pt")
    s = gw.Session.from_zoo(str(tmp_path / "sg.pt"), device="cpu")
    path = s.export(tmp_path / "as_ada.safetensors")
    out, meta = _safetensors(path)
    assert "synthesis.b16.torgb.weight" in out and json.loads(meta["mapping_lr"]) == 0.01
    _assert_same_images(s, path, exact=False)


# ---------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda s: s.ablation("layer3", [0], strength=0.5), "strength is 50%"),
        (lambda s: s.ablation("layer3", [0], value="mean"), "'mean' levels"),
        (lambda s: s.ablation("layer3", [0], mask=np.ones((16, 16), np.float32)), "region"),
        (lambda s: s.ablation("output_16x16", [0]), "OutputBlock"),
    ],
    ids=["strength", "value", "mask", "not-a-conv-block"],
)
def test_output_edits_that_do_not_fold_are_refused_by_name(tmp_path, progan, make, reason):
    _, source_path = progan
    s = gw.Session.from_zoo(str(source_path), device="cpu")
    edit = s.push(make(s))
    with pytest.raises(ValueError, match="cannot export") as err:
        s.export(tmp_path / "x.pth")
    assert repr(edit) in str(err.value) and reason in str(err.value)
    assert not (tmp_path / "x.pth").exists()
    with s.excluding(edit):  # the way out the message gives
        path = s.export(tmp_path / "x.pth")
    np.testing.assert_array_equal(
        gw.Session(gw.zoo.load(str(path))).generate(SEEDS), s.generate(SEEDS, state=gw.State())
    )


@pytest.mark.parametrize("name, match", [("g.pkl", "does not write pickles"),
                                         ("g.onnx", "name the file")])  # fmt: skip
def test_file_names_it_cannot_write_are_refused(tmp_path, progan, name, match):
    s = gw.Session.from_zoo(str(progan[1]), device="cpu")
    with pytest.raises(ValueError, match=match):
        s.export(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        s.export(tmp_path / "missing" / "g.pth")
    with pytest.raises(TypeError, match="dtype"):
        s.export(tmp_path / "g.pth", dtype=torch.int8)


# ---------------------------------------------------------------------------------- any module
def test_other_generators_export_their_state_dict(tmp_path):
    s = gw.Session(TinyGenerator(), device="cpu")
    _push_weight_edit(s, "layer2.1", param="weight")
    path = s.export(tmp_path / "tiny.pt")
    sd = torch.load(path, weights_only=True)
    assert _layout(sd) == _layout(TinyGenerator().state_dict())
    fresh = TinyGenerator()
    fresh.load_state_dict(sd)
    np.testing.assert_array_equal(gw.Session(fresh, device="cpu").generate(SEEDS),
                                  s.generate(SEEDS))  # fmt: skip
