"""Real-model loaders: each architecture saved in its published layout, loaded back through
``checkpoints.load`` and run through a Session (generate, activations, ablate, dissect, rewrite).
Downloads are tested against a fake opener or a closed local port: never the network."""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import urllib.error

import numpy as np
import pytest
import torch
from published_layouts import (
    PROGAN_16,
    ROSINALITY_16,
    progan_reference,
    progan_state_dict,
    rosinality_checkpoint,
    rosinality_layout,
    rosinality_reference,
)

from gandissect_widgets import Session
from gandissect_widgets.zoo import checkpoints as ck
from gandissect_widgets.zoo import classifiers as cl
from gandissect_widgets.zoo import segmenters as sm
from gandissect_widgets.zoo.progan import ProgressiveGenerator
from gandissect_widgets.zoo.stylegan2 import StyleGAN2Generator


class Brightness:
    """A toy segmenter fitting the protocol: dark / mid / bright pixels."""

    concepts = ["dark", "mid", "bright"]

    def segment(self, images):
        x = sm.as_image_tensor(images).mean(1)
        return (x > -0.3).long() + (x > 0.3).long()


def _data(seeds):
    g = [torch.Generator().manual_seed(s) for s in seeds]
    return np.stack([torch.randint(0, 256, (64, 64, 3), generator=x, dtype=torch.uint8).numpy()
                     for x in g])  # fmt: skip


def _session_checks(s, layer):
    """generate / activations / ablate / undo behave on a real-model Session."""
    before = s.generate([0, 1]) if s.kind == "generator" else s.classify([0, 1])
    acts = s.activations(layer, [0, 1])
    assert acts.shape[0] == 2 and acts.dim() == 4
    s.ablate(layer, list(range(acts.shape[1])))
    after = s.generate([0, 1]) if s.kind == "generator" else s.classify([0, 1])
    assert not np.array_equal(np.asarray(before), np.asarray(after))
    s.undo()
    again = s.generate([0, 1]) if s.kind == "generator" else s.classify([0, 1])
    np.testing.assert_array_equal(np.asarray(before), np.asarray(again))


def _dissect_and_rewrite(s, layer, rewrite_layer):
    d = s.dissect(layer, n=6, cache=False, progress=False)
    assert d.iou.shape == (s.layer_shape(layer)[0], 3) and len(d.labels) == d.iou.shape[0]
    if rewrite_layer is None:
        return
    from gandissect_widgets import rewrite as rw

    h, w = s.image_size
    mask = np.zeros((h, w), np.float32)
    mask[: h // 2, : w // 2] = 1
    before = s.generate([1]).copy()
    edit = rw.rewrite(s, rewrite_layer, context=[(1, mask)], copy=(2, mask), paste=(1, mask),
                      steps=5, stat_samples=8, cache=False)  # fmt: skip
    assert edit is not None and s.edits == [edit]
    assert not np.array_equal(before, s.generate([1]))
    s.undo()
    np.testing.assert_array_equal(before, s.generate([1]))


# ---------------------------------------------------------------------------------- ProGAN
def _progan(tmp_path, wrap=False):
    """A checkpoint in the published ProGAN layout, built key by key (tests/published_layouts)."""
    sd = progan_state_dict(PROGAN_16)
    path = tmp_path / "proggan.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}} if wrap else sd, path)
    return sd, path


def _progan_expected(sd, z):
    return progan_reference(sd, z).clamp(-1, 1)  # our model clamps its output


def test_progan_published_layout_loads_and_runs(tmp_path):
    sd, path = _progan(tmp_path)
    loaded = ck.load(path)
    assert isinstance(loaded, ProgressiveGenerator) and loaded.sizes == [16, 16, 8, 8]
    z = torch.randn(2, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z), _progan_expected(sd, z), rtol=1e-5, atol=1e-5)
    s = Session(loaded, device="cpu", segmenter=Brightness())
    assert s.layers == [f"layer{i}" for i in range(1, 7)] + ["output_16x16"]
    assert s.generate([0]).shape == (1, 16, 16, 3) and s.layer_shape("layer5") == (8, 16, 16)
    _session_checks(s, "layer4")
    _dissect_and_rewrite(s, "layer4", "layer5")


def test_wrapped_and_safetensors_checkpoints_load(tmp_path):
    sd, path = _progan(tmp_path, wrap=True)
    z = torch.randn(1, 16)
    expected = _progan_expected(sd, z)
    with torch.no_grad():
        torch.testing.assert_close(ck.load(path)(z), expected, rtol=1e-5, atol=1e-5)
    from safetensors.torch import save_file

    save_file(sd, str(tmp_path / "g.safetensors"))
    with torch.no_grad():
        got = ck.load(tmp_path / "g.safetensors")(z)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------- StyleGAN2
def test_rosinality_layout_table_follows_the_published_rules():
    assert rosinality_layout(16, 6, 2, widths={4: 10, 8: 8, 16: 5}) == ROSINALITY_16
    real = rosinality_layout(256, 512, 8, channel_multiplier=2)  # the LSUN / FFHQ-256 models
    assert real["convs.10.conv.weight"] == (1, 128, 256, 3, 3)
    assert real["to_rgbs.5.conv.weight"] == (1, 3, 128, 1, 1)
    assert real["noises.noise_12"] == (1, 1, 256, 256) and "noises.noise_13" not in real


@pytest.mark.parametrize("truncation", [1.0, 0.6])
def test_stylegan2_rosinality_checkpoint_matches_reference(tmp_path, truncation):
    ckpt = rosinality_checkpoint(ROSINALITY_16)  # built key by key, not by our exporter
    path = tmp_path / "stylegan2_tiny.pt"
    torch.save(ckpt, path)
    loaded = ck.load(path)
    assert isinstance(loaded, StyleGAN2Generator) and loaded.z_dim == 6
    assert loaded.channels == [10, 8, 5] and loaded.resolution == 16
    loaded.truncation = truncation
    seen = []
    loaded.output.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    z = torch.randn(3, 6, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = loaded(z)
    expected = rosinality_reference(ckpt, z, truncation)
    torch.testing.assert_close(seen[0], expected, rtol=1e-4, atol=1e-4)  # before the clamp
    torch.testing.assert_close(out, expected.clamp(-1, 1), rtol=1e-4, atol=1e-4)
    assert ((expected > -1) & (expected < 1)).float().mean() > 0.1  # the clamp hides little


def test_stylegan2_bare_g_ema_state_dict_loads(tmp_path):
    ckpt = rosinality_checkpoint(ROSINALITY_16)
    torch.save(ckpt["g_ema"], tmp_path / "g_ema.pt")
    loaded = ck.load(tmp_path / "g_ema.pt")
    z = torch.randn(2, 6)
    with torch.no_grad():
        got = loaded(z)
    torch.testing.assert_close(
        got, rosinality_reference(ckpt, z).clamp(-1, 1), rtol=1e-4, atol=1e-4
    )


def test_stylegan2_rosinality_checkpoint_runs_in_a_session(tmp_path):
    torch.save(rosinality_checkpoint(ROSINALITY_16), tmp_path / "stylegan2_tiny.pt")
    loaded = ck.load(tmp_path / "stylegan2_tiny.pt")
    s = Session(loaded, device="cpu", segmenter=Brightness())
    assert s.layers == [f"layer{i}" for i in range(5)] + ["output"]
    assert s.layer_shape("layer3") == (5, 16, 16) and s.generate([0]).shape == (1, 16, 16, 3)
    _session_checks(s, "layer2")
    _dissect_and_rewrite(s, "layer2", "layer3.conv")  # an upsampling conv


def test_stylegan2_truncation_moves_towards_average(tmp_path):
    torch.manual_seed(2)
    g = StyleGAN2Generator(8, style_dim=4, n_mlp=1, channels=[4, 4])
    z = torch.randn(3, 4)
    g.truncation = 0.0
    w = g.styles(z)
    torch.testing.assert_close(w, g.latent_avg.expand(3, -1))
    g.truncation = 1.0
    assert not torch.allclose(g.styles(z), w)


# ---------------------------------------------------------------------------------- classifiers
def _tiny_vgg():
    torch.manual_seed(3)
    return cl.VGG16(num_classes=5, widths=(4, 4, 8, 8, 8), hidden=16).eval()


def test_vgg16_torchvision_layout_loads_and_runs(tmp_path):
    net = _tiny_vgg()
    sd = net.state_dict()
    convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert {k for k in sd if k.startswith("features")} == {
        f"features.{i}.{p}" for i in convs for p in ("weight", "bias")
    }
    assert sd["classifier.6.weight"].shape == (5, 16)
    torch.save(sd, tmp_path / "vgg.pth")
    loaded = ck.load(tmp_path / "vgg.pth")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(loaded(x), net(x))
    s = Session(loaded, device="cpu", data=_data, layers=loaded.layer_names, segmenter=Brightness())
    assert s.layers == [f"features.{i}" for i in convs] and s.classify([0]).shape == (1, 5)
    _session_checks(s, "features.26")
    _dissect_and_rewrite(s, "features.10", None)


def test_vgg16_with_netdissect_names_loads(tmp_path):
    net = _tiny_vgg()
    names = dict(zip([f"features.{i}" for i in range(31)], cl._CAFFE_VGG_NAMES, strict=True))
    names.update({f"classifier.{i}": f"classifier.{n}" for i, n in enumerate(cl._CAFFE_FC_NAMES)})
    sd = {}
    for k, v in net.state_dict().items():
        head, _, leaf = k.rpartition(".")
        sd[f"features.{names[head]}.{leaf}" if head.startswith("features") else
           f"{names[head]}.{leaf}"] = v  # fmt: skip
    assert "features.conv5_3.weight" in sd and "classifier.fc8a.weight" in sd
    torch.save(sd, tmp_path / "vgg16_places365.pth")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(ck.load(tmp_path / "vgg16_places365.pth")(x), net(x))


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_resnet_places365_style_checkpoint_loads_and_runs(tmp_path, block):
    torch.manual_seed(4)
    net = cl.ResNet(block, [1, 2, 1, 1], num_classes=7, widths=(4, 8, 8, 8)).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2)
    sd = net.state_dict()
    assert "layer2.0.downsample.0.weight" in sd and "layer2.1.conv1.weight" in sd
    assert ("layer1.0.conv3.weight" in sd) == (block == "bottleneck")
    # as published by Places365: {'state_dict': module.-prefixed, no num_batches_tracked, ...}
    old = {"module." + k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    torch.save({"epoch": 90, "arch": "resnet18", "state_dict": old}, tmp_path / "r.pth.tar")
    loaded = ck.load(tmp_path / "r.pth.tar")
    assert loaded.fc.out_features == 7 and len(loaded.layer2) == 2
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(loaded(x), net(x))
    s = Session(loaded, device="cpu", data=_data, layers=loaded.layer_names)
    assert s.layers == ["conv1", "layer1", "layer2", "layer3", "layer4"]
    _session_checks(s, "layer3")


def test_real_size_architectures_match_torchvision_shapes():
    # parameter counts published in the torchvision model documentation
    assert sum(p.numel() for p in cl.resnet18().parameters()) == 11_689_512
    assert sum(p.numel() for p in cl.resnet50().parameters()) == 25_557_032
    assert sum(p.numel() for p in cl.vgg16().parameters()) == 138_357_544  # as torchvision docs


# ---------------------------------------------------------------------------------- bad files
def test_invalid_checkpoints_are_refused_clearly(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="not a valid checkpoint"):
        ck.load(tmp_path / "junk.pth")
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="unrecognised checkpoint layout.*ProGAN.*StyleGAN2"):
        ck.load(tmp_path / "other.pth")
    torch.save({"args": argparse.Namespace(size=256)}, tmp_path / "pickled.pt")
    with pytest.raises(ValueError, match="holds more than weights"):
        ck.load(tmp_path / "pickled.pt")
    sd, _ = _progan(tmp_path)
    del sd["layer3.wscale.b"]
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="looks like progan but does not load"):
        ck.load(tmp_path / "broken.pth")
    with pytest.raises(FileNotFoundError, match="neither a catalogue name"):
        ck.load(tmp_path / "missing.pth")
    with pytest.raises(TypeError, match="catalogue name or a file path"):
        ck.load(3)


# ---------------------------------------------------------------------------------- downloads
def test_catalogue_entries_are_well_formed():
    assert {"progan-church", "progan-kitchen", "progan-bedroom", "stylegan2-church",
            "vgg16-places365", "resnet18-places365"} <= set(ck.CATALOGUE)  # fmt: skip
    for name, e in ck.CATALOGUE.items():
        assert e.url.startswith("http") and e.filename in e.url, name
        assert e.sha256 or e.md5, name
        if e.sha256:  # a checkable digest: hex, a prefix of 8 to 64 digits
            assert re.fullmatch(r"[0-9a-f]{8,64}", e.sha256), name
        if e.md5:
            assert re.fullmatch(r"[0-9a-f]{32}", e.md5), name


def test_offline_error_names_url_and_target(tmp_path, monkeypatch):
    def refuse(url, timeout):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(ck, "_open_url", refuse)
    with pytest.raises(ConnectionError) as err:
        ck.load("progan-church", cache_dir=tmp_path, progress=False)
    msg = str(err.value)
    assert isinstance(err.value, ck.OfflineError)
    assert ck.CATALOGUE["progan-church"].url in msg
    assert str(tmp_path / "proggan_churchoutdoor-7e701dd5.pth") in msg
    assert not list(tmp_path.iterdir())  # no partial file left behind


def test_closed_local_port_gives_offline_error(tmp_path, monkeypatch):
    entry = ck.CatalogueEntry("http://127.0.0.1:9/x-00000000.pth", "progan", sha256="00000000")
    monkeypatch.setitem(ck.CATALOGUE, "local-test", entry)
    monkeypatch.setenv("GANDISSECT_CACHE", str(tmp_path))
    with pytest.raises(ck.OfflineError, match=r"127\.0\.0\.1:9.*place it by hand at"):
        ck.download("local-test", progress=False)


class _Response(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def test_download_verifies_caches_and_reuses(tmp_path, monkeypatch):
    sd, path = _progan(tmp_path)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    calls = []

    def serve(url, timeout):
        calls.append(url)
        return _Response(data)

    monkeypatch.setattr(ck, "_open_url", serve)
    good = ck.CatalogueEntry(f"http://example.invalid/tiny-{digest[:8]}.pth", "progan",
                             sha256=digest[:8])  # fmt: skip
    monkeypatch.setitem(ck.CATALOGUE, "tiny", good)
    cache = tmp_path / "cache"
    z = torch.randn(1, 16)
    with torch.no_grad():
        got = ck.load("tiny", cache_dir=cache, progress=False)(z)
    torch.testing.assert_close(got, _progan_expected(sd, z), rtol=1e-5, atol=1e-5)
    assert (cache / good.filename).exists() and len(calls) == 1
    ck.load("tiny", cache_dir=cache, progress=False)
    assert len(calls) == 1  # served from the cache
    bad = ck.CatalogueEntry("http://example.invalid/bad-12345678.pth", "progan", sha256="12345678")
    monkeypatch.setitem(ck.CATALOGUE, "bad", bad)
    with pytest.raises(ValueError, match="checksum mismatch"):
        ck.download("bad", cache_dir=cache, progress=False)
    assert not (cache / "bad-12345678.pth").exists()
    assert not list(cache.glob("*.part"))
    with pytest.raises(KeyError, match="known names are"):
        ck.download("progan-chruch", cache_dir=cache)


def test_cache_folder_honours_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GANDISSECT_CACHE", str(tmp_path / "c"))
    assert ck.cache_folder() == tmp_path / "c"
    monkeypatch.delenv("GANDISSECT_CACHE")
    assert ck.cache_folder().parts[-2:] == (".cache", "gandissect-widgets")


# ---------------------------------------------------------------------------------- segmenters
def test_segmenter_protocol_and_image_conversion():
    seg = Brightness()
    assert isinstance(seg, sm.Segmenter) and not isinstance(object(), sm.Segmenter)
    u8 = np.zeros((2, 8, 8, 3), np.uint8)
    u8[:, :4] = 255
    out = sm.check_segmentation(seg, u8)
    assert out.dtype == torch.int64 and out.shape == (2, 8, 8)
    assert out[:, :4].eq(2).all() and out[:, 4:].eq(0).all()
    f = sm.as_image_tensor(u8)
    assert f.shape == (2, 3, 8, 8) and f.min() == -1 and f.max() == 1
    torch.testing.assert_close(sm.check_segmentation(seg, f), out)
    with pytest.raises(ValueError, match=r"uint8 images must be \(N, H, W, 3\)"):
        sm.as_image_tensor(np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        sm.as_image_tensor([1, 2])


def test_check_segmentation_reports_bad_segmenters():
    class WrongShape(Brightness):
        def segment(self, images):
            return torch.zeros(1, 2, 2, dtype=torch.int64)

    class OutOfRange(Brightness):
        def segment(self, images):
            return torch.full(sm.as_image_tensor(images).shape[:1] + (8, 8), 5)

    imgs = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="must return shape"):
        sm.check_segmentation(WrongShape(), imgs)
    with pytest.raises(ValueError, match="must lie in 0..2"):
        sm.check_segmentation(OutOfRange(), imgs)
    with pytest.raises(TypeError, match="not a segmenter"):
        sm.check_segmentation(object(), imgs)


def test_segformer_adapter_explains_missing_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "transformers", None)
    with pytest.raises(ImportError, match=r"gandissect-widgets\[segformer\]"):
        sm.SegFormerADE20K()
