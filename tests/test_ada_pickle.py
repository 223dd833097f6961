"""StyleGAN2-ADA network pickles: read without running anything they carry, checked against a
plain-torch reference forward written here from the ADA formulas.

The pickles are made by this file from data-only stand-ins: ``nn.Module`` subclasses holding
exactly the parameters, buffers and attributes that NVIDIA's ``training.networks`` classes hold
(the same module and class names), which pickle as ``torch_utils.persistence`` records do:
``_reconstruct_persistent_obj(meta)`` with ``meta = {type, version, module_src, class_name,
state}``. Fake ``torch_utils.persistence`` and ``dnnlib.util`` modules exist in
``sys.modules`` only while pickling. The ``module_src`` the records carry is code that would
write a marker file if anything executed it.

Facts used (public NVlabs/stylegan2-ada-pytorch): mapping = normalise z by its second moment,
then ``num_layers`` FullyConnectedLayers (weight * lr/sqrt(in), bias * lr, leaky ReLU 0.2 times
sqrt(2)); w broadcast to every layer, truncation ``w_avg.lerp(w, psi)``. Synthesis block R:
``const`` (4x4 only) or ``conv0`` (x2 up), ``conv1``, ``torgb``; a layer is styles =
affine(w) (gain 1/sqrt(w_dim), bias init 1), weights modulated and demodulated
(rsqrt(sum + 1e-8)), for up=2 the input upsampled by zero insertion and filtered with the
[1,3,3,1] filter (gain 4, padding 1 + (fw+1)//2 before, 1 + (fw-2)//2 after) then convolved
(true convolution), plus ``noise_const * noise_strength``, bias, leaky ReLU times sqrt(2),
clamp +-conv_clamp; ToRGB: styles * 1/sqrt(in), no demodulation, bias, clamp; skip: the image
so far upsampled (filter gain 4, padding (fw+1)//2, (fw-2)//2) plus ToRGB.
"""

from __future__ import annotations

import math
import os
import pickle
import sys
import types
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gandissect_widgets as gw
from gandissect_widgets.zoo import ada_pickle
from gandissect_widgets.zoo.checkpoints import Source
from gandissect_widgets.zoo.stylegan2 import StyleGAN2Generator

_SQRT2 = math.sqrt(2)


# ---------------------------------------------------------------------------------- stand-ins
def _reconstruct_persistent_obj(meta):  # what the pickles name; a safe reader never calls it
    raise AssertionError("the reader called the pickle's reconstruct function")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (pickled by that name)."""


EasyDict.__module__ = "dnnlib.util"

_FAKE = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util", "training",
         "training.networks", "training.augment")  # fmt: skip


@contextmanager
def fake_ada_modules():
    """``torch_utils.persistence``, ``dnnlib.util`` and ``training.*`` in sys.modules, only
    for the duration of the block (the pickler looks the reconstruct function up by name)."""
    saved = {n: sys.modules.get(n) for n in _FAKE}
    mods = {n: types.ModuleType(n) for n in _FAKE}
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    mods["dnnlib.util"].EasyDict = EasyDict
    sys.modules.update(mods)
    try:
        yield
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


class _Persistent(nn.Module):
    """Data only: pickles as a persistence record of its class name and ``__dict__``."""

    module_src = "# stand-in for training/networks.py\n"

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src,
                    class_name=type(self).__name__, state=dict(self.__dict__))  # fmt: skip
        return (_reconstruct_persistent_obj, (meta,))


def _stand_in(name, module="training.networks"):
    cls = type(name, (_Persistent,), {"__module__": module, "__qualname__": name})
    return cls


Generator, MappingNetwork, SynthesisNetwork, SynthesisBlock, SynthesisLayer, ToRGBLayer = (
    _stand_in(n) for n in ("Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisBlock",
                           "SynthesisLayer", "ToRGBLayer")
)  # fmt: skip
FullyConnectedLayer, Conv2dLayer, Discriminator = (
    _stand_in(n) for n in ("FullyConnectedLayer", "Conv2dLayer", "Discriminator")
)
AugmentPipe = _stand_in("AugmentPipe", "training.augment")


def _setup_filter(taps):
    f = torch.tensor(taps, dtype=torch.float32)
    f = f[:, None] * f[None, :]
    return f / f.sum()


#: configurations: resolution, z/w dims, mapping depth and width, channel rule, clamp,
#: architecture, mapping lr, noise, filter taps
CONFIGS = {
    "r16-skip": dict(res=16, z_dim=8, w_dim=8, n_map=2, base=128, cmax=16),
    "r32-clamp-wide": dict(res=32, z_dim=6, w_dim=10, n_map=3, layer_features=7, base=256,
                           cmax=12, conv_clamp=0.6, lr=0.05),
    "r16-orig-nonoise": dict(res=16, z_dim=8, w_dim=8, n_map=1, base=64, cmax=8,
                             architecture="orig", use_noise=False, conv_clamp=256),
    "r32-filter121": dict(res=32, z_dim=8, w_dim=8, n_map=4, base=128, cmax=8, taps=(1, 2, 1)),
}  # fmt: skip


def build_ada(res=16, z_dim=8, w_dim=8, n_map=2, layer_features=None, base=128, cmax=16,
              conv_clamp=None, architecture="skip", lr=0.01, use_noise=True, taps=(1, 3, 3, 1),
              seed=0, src="# stand-in\n"):  # fmt: skip
    """A G_ema stand-in with random values in the ADA layout of these settings."""
    gen = torch.Generator().manual_seed(seed)

    def rn(*shape):
        return torch.randn(shape, generator=gen)

    filt = _setup_filter(taps)

    def persistent(cls, **attrs):
        m = cls()
        m.module_src = src
        for k, v in attrs.items():
            setattr(m, k, v)
        m._init_args = ()
        m._init_kwargs = EasyDict({k: v for k, v in attrs.items() if isinstance(v, (int, str))})
        return m

    def fc(i, o, activation="linear", lr_mul=1.0, bias_init=0.0):
        m = persistent(FullyConnectedLayer, activation=activation)
        m.weight = nn.Parameter(rn(o, i) / lr_mul)
        m.bias = nn.Parameter(torch.full([o], float(bias_init)) + 0.1 * rn(o) / lr_mul)
        m.weight_gain = lr_mul / np.sqrt(i)  # numpy floats, as ADA's
        m.bias_gain = lr_mul
        return m

    def layer(c_in, c_out, r, up=1):
        m = persistent(SynthesisLayer, resolution=r, up=up, use_noise=use_noise,
                       activation="lrelu", conv_clamp=conv_clamp)  # fmt: skip
        m.register_buffer("resample_filter", filt.clone())
        m.padding, m.act_gain = 1, np.sqrt(2)
        m.affine = fc(w_dim, c_in, bias_init=1)
        m.weight = nn.Parameter(rn(c_out, c_in, 3, 3))
        if use_noise:
            m.register_buffer("noise_const", rn(r, r))
            m.noise_strength = nn.Parameter(0.3 * rn())
        m.bias = nn.Parameter(0.2 * rn(c_out))
        return m

    def torgb(c_in):
        m = persistent(ToRGBLayer, conv_clamp=conv_clamp)
        m.affine = fc(w_dim, c_in, bias_init=1)
        m.weight = nn.Parameter(rn(3, c_in, 1, 1))
        m.bias = nn.Parameter(0.1 * rn(3))
        m.weight_gain = 1 / np.sqrt(c_in)
        return m

    resolutions = [4 * 2**j for j in range(int(math.log2(res)) - 1)]
    chans = {r: min(base // r, cmax) for r in resolutions}
    syn = persistent(SynthesisNetwork, w_dim=w_dim, img_resolution=res, img_channels=3)
    syn.block_resolutions = resolutions
    for r in resolutions:
        last = r == res
        b = persistent(SynthesisBlock, in_channels=chans[r // 2] if r > 4 else 0, w_dim=w_dim,
                       resolution=r, img_channels=3, is_last=last, architecture=architecture,
                       use_fp16=False)  # fmt: skip
        b.register_buffer("resample_filter", filt.clone())
        if r == 4:
            b.const = nn.Parameter(rn(chans[r], 4, 4))
        else:
            b.conv0 = layer(chans[r // 2], chans[r], r, up=2)
        b.conv1 = layer(chans[r], chans[r], r)
        if last or architecture == "skip":
            b.torgb = torgb(chans[r])
        setattr(syn, f"b{r}", b)
    mapping = persistent(MappingNetwork, z_dim=z_dim, c_dim=0, w_dim=w_dim, num_layers=n_map,
                         w_avg_beta=0.995)  # fmt: skip
    hidden = w_dim if layer_features is None else layer_features
    feats = [z_dim] + [hidden] * (n_map - 1) + [w_dim]
    for i in range(n_map):
        setattr(mapping, f"fc{i}", fc(feats[i], feats[i + 1], "lrelu", lr))
    mapping.register_buffer("w_avg", 0.5 * rn(w_dim))
    g = persistent(Generator, z_dim=z_dim, c_dim=0, w_dim=w_dim, img_resolution=res,
                   img_channels=3)  # fmt: skip
    g.synthesis, g.mapping = syn, mapping  # ADA registers synthesis first
    g._init_kwargs = EasyDict(
        z_dim=z_dim, c_dim=0, w_dim=w_dim, img_resolution=res, img_channels=3,
        mapping_kwargs=EasyDict(num_layers=n_map, lr_multiplier=lr),
        synthesis_kwargs=EasyDict(channel_base=base, channel_max=cmax, conv_clamp=conv_clamp,
                                  architecture=architecture, num_fp16_res=4),
    )  # fmt: skip
    return g


def _discriminator(seed=1):
    gen = torch.Generator().manual_seed(seed)
    d = Discriminator()
    d.b4 = Conv2dLayer()
    d.b4.weight = nn.Parameter(torch.randn(4, 3, 3, 3, generator=gen))
    d.b4.weight_gain = 1 / np.sqrt(27)
    return d


def snapshot(g, **extra):
    """The dict a training run pickles, with this G_ema."""
    pipe = AugmentPipe()
    pipe.register_buffer("p", torch.zeros([]))
    pipe.xflip, pipe.imgfilter_bands = 1.0, [1, 1, 1, 1]
    return dict(G=g, D=_discriminator(), G_ema=g, augment_pipe=pipe,
                training_set_kwargs=dict(class_name="training.dataset.ImageFolderDataset",
                                         path="~/data.zip", use_labels=False, max_size=None,
                                         resolution=g.img_resolution), **extra)  # fmt: skip


def write_pickle(obj, path, protocol=pickle.DEFAULT_PROTOCOL):
    with fake_ada_modules(), open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def ada_pkl(tmp_path, name="r16-skip", **kw):
    """(stand-in G_ema, path of its snapshot pickle)."""
    g = build_ada(**{**CONFIGS[name], **kw})
    return g, write_pickle(snapshot(g), tmp_path / f"network-snapshot-{name}.pkl")


# ---------------------------------------------------------------------------------- reference
def _upfirdn(x, f, up, p0, p1, gain):
    """Zero-insertion upsampling, zero padding (p0 before, p1 after), FIR filtering (a true
    convolution with f * gain), as ADA's upfirdn2d reference."""
    n, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(n, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, [p0, p1, p0, p1])
    k = (f * gain).flip([0, 1])[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, k, groups=c)


def _fc(sd, p, gains, x, act):
    wg, bg = gains[p]
    y = x @ (sd[f"{p}.weight"] * wg).t() + sd[f"{p}.bias"] * bg
    return F.leaky_relu(y, 0.2) * _SQRT2 if act else y


def _layer(sd, p, gains, x, w, up, clamp):
    styles = _fc(sd, f"{p}.affine", gains, w, False)
    weight = sd[f"{p}.weight"]
    wn = weight[None] * styles[:, None, :, None, None]
    wn = wn * (wn.square().sum([2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
    outs = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        if up:
            f = sd[f"{p}.resample_filter"]
            fw = f.shape[0]
            xi = _upfirdn(xi, f, 2, 1 + (fw + 1) // 2, 1 + (fw - 2) // 2, 4)
            outs.append(F.conv2d(xi, wn[i].flip([2, 3])))  # flip_weight=False: convolution
        else:
            outs.append(F.conv2d(xi, wn[i], padding=1))
    y = torch.cat(outs)
    if f"{p}.noise_const" in sd:
        y = y + sd[f"{p}.noise_const"] * sd[f"{p}.noise_strength"]
    y = F.leaky_relu(y + sd[f"{p}.bias"][None, :, None, None], 0.2) * _SQRT2
    return y if clamp is None else y.clamp(-clamp, clamp)


def _torgb(sd, p, gains, x, w, clamp):
    styles = _fc(sd, f"{p}.affine", gains, w, False) / math.sqrt(x.shape[1])
    weight = sd[f"{p}.weight"][:, :, 0, 0]
    y = torch.einsum("oi,ni,nihw->nohw", weight, styles, x) + sd[f"{p}.bias"][None, :, None, None]
    return y if clamp is None else y.clamp(-clamp, clamp)


def ada_reference(sd, z, *, gains, conv_clamp=None, psi=1.0):
    """G_ema(z) from its state_dict: ``gains`` maps each FullyConnectedLayer path to its
    (weight_gain, bias_gain). Unclamped output, constant noise. Blocks without a ToRGB (the
    "orig" architecture) add nothing to the image, and the image is upsampled only once it
    exists."""
    x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
    i = 0
    while f"mapping.fc{i}.weight" in sd:
        x = _fc(sd, f"mapping.fc{i}", gains, x, True)
        i += 1
    w = sd["mapping.w_avg"].lerp(x, psi) if psi != 1 else x
    res = [int(k.split(".")[1][1:]) for k in sd if k.endswith(".conv1.weight")]
    x = img = None
    for r in sorted(res):
        b = f"synthesis.b{r}"
        if r == 4:
            x = sd[f"{b}.const"][None].repeat(z.shape[0], 1, 1, 1)
            x = _layer(sd, f"{b}.conv1", gains, x, w, False, conv_clamp)
        else:
            x = _layer(sd, f"{b}.conv0", gains, x, w, True, conv_clamp)
            x = _layer(sd, f"{b}.conv1", gains, x, w, False, conv_clamp)
        if img is not None:
            f = sd[f"{b}.resample_filter"]
            fw = f.shape[0]
            img = _upfirdn(img, f, 2, (fw + 1) // 2, (fw - 2) // 2, 4)
        if f"{b}.torgb.weight" in sd:
            y = _torgb(sd, f"{b}.torgb", gains, x, w, conv_clamp)
            img = y if img is None else img + y
    return img


def stand_in_gains(g) -> dict:
    """(weight_gain, bias_gain) of each FullyConnectedLayer of a stand-in, by module path."""
    fcs = [(n, m) for n, m in g.named_modules() if type(m).__name__ == "FullyConnectedLayer"]
    return {n: (float(m.weight_gain), float(m.bias_gain)) for n, m in fcs}


def reference_of(g, z, psi=1.0):
    """The reference forward of a stand-in, with the clamp it records."""
    b4 = g.synthesis.b4
    with torch.no_grad():
        return ada_reference(
            g.state_dict(),
            z,
            gains=stand_in_gains(g),
            psi=psi,
            conv_clamp=b4.conv1.conv_clamp,
        )


def unclamped(model: StyleGAN2Generator, z, psi=1.0):
    """Our generator's image before its final [-1, 1] clamp."""
    model.truncation = psi
    with torch.no_grad():
        w = model.styles(z)
        out = model.output
        model.output = nn.Identity()
        try:
            return model.synthesize(w)
        finally:
            model.output, model.truncation = out, 1.0


def config_ada(name, **kw):
    return build_ada(**{**CONFIGS[name], **kw})


# ---------------------------------------------------------------------------------- loading
@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("psi", [1.0, 0.7])
def test_ada_pickle_loads_and_matches_reference(tmp_path, name, psi):
    g = config_ada(name)
    path = write_pickle(snapshot(g), tmp_path / "network-snapshot-000200.pkl")
    model = gw.zoo.load(str(path))
    assert isinstance(model, StyleGAN2Generator) and not model.training
    cfg = CONFIGS[name]
    assert model.resolution == cfg["res"] and model.z_dim == cfg["z_dim"]
    assert len(model.mapping) - 1 == cfg["n_map"]
    assert model.conv_clamp == cfg.get("conv_clamp")
    assert model.architecture == cfg.get("architecture", "skip")
    z = torch.randn(3, cfg["z_dim"], generator=torch.Generator().manual_seed(5))
    ref = reference_of(g, z, psi)
    ours = unclamped(model, z, psi)
    assert ref.shape == ours.shape == (3, 3, cfg["res"], cfg["res"])
    assert ref.abs().max() > 0.5  # a real signal, not a constant
    torch.testing.assert_close(ours, ref, atol=2e-4, rtol=1e-4)
    model.truncation = psi
    torch.testing.assert_close(model(z), ref.clamp(-1, 1), atol=2e-4, rtol=1e-4)


def test_conv_clamp_is_active_in_the_clamped_configuration(tmp_path):
    g = config_ada("r32-clamp-wide")
    path = write_pickle(snapshot(g), tmp_path / "n.pkl")
    model = gw.zoo.load(str(path))
    z = torch.randn(2, 6, generator=torch.Generator().manual_seed(0))
    model.layer2.clamp = None  # without the clamp the output must change
    assert not torch.allclose(unclamped(model, z), reference_of(g, z), atol=1e-3)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_pickle_protocol_reads(tmp_path, protocol):
    g = config_ada("r16-skip")
    path = write_pickle(snapshot(g), tmp_path / "n.pkl", protocol=protocol)
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(unclamped(gw.zoo.load(str(path)), z), reference_of(g, z),
                               atol=2e-4, rtol=1e-4)  # fmt: skip


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_snapshot_is_detected_by_content_under_another_name(tmp_path):
    g = config_ada("r16-skip")
    path = write_pickle(snapshot(g), tmp_path / "generator.bin")
    model = gw.zoo.load(str(path))
    assert isinstance(model, StyleGAN2Generator) and model.source.format == "stylegan2-ada"


def test_source_records_the_g_ema_layout_and_settings(tmp_path):
    g = config_ada("r32-clamp-wide")
    path = write_pickle(snapshot(g), tmp_path / "n.pkl")
    model = gw.zoo.load(str(path))
    src = model.source
    assert isinstance(src, Source) and (src.format, src.container) == ("stylegan2-ada", "pickle")
    assert src.path == str(path)
    want = {k: (tuple(v.shape), v.dtype) for k, v in g.state_dict().items()}
    assert list(src.layout) == list(want) and src.layout == want
    assert src.config["conv_clamp"] == 0.6 and src.config["architecture"] == "skip"
    assert src.config["mapping_lr"] == pytest.approx(0.05)
    assert src.config["init_kwargs"]["synthesis_kwargs"]["channel_base"] == 256
    assert all(k.endswith("resample_filter") for k in src.extras)


def test_read_pickle_returns_records_as_data_and_never_runs_module_source(tmp_path):
    marker = tmp_path / "ran.txt"
    g = build_ada(**CONFIGS["r16-skip"], src=f"open({str(marker)!r}, 'w').write('ran')\n")
    path = write_pickle(snapshot(g), tmp_path / "n.pkl")
    data = ada_pickle.read_pickle(path)
    assert set(data) == {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}
    rec = data["G_ema"]
    assert isinstance(rec, ada_pickle.PersistentRecord) and rec.class_name == "Generator"
    assert rec.child("mapping").class_name == "MappingNetwork"
    assert rec.child("synthesis").child("b8").child("conv0").class_name == "SynthesisLayer"
    assert rec.source_chars > 0 and len(rec.source_sha256) == 64
    fc0 = rec.child("mapping").child("fc0")
    assert isinstance(fc0.attr("weight_gain"), float)  # numpy float64 read as a number
    assert isinstance(rec.attr("_init_kwargs"), dict)  # EasyDict read as a dict
    assert data["augment_pipe"].class_name == "AugmentPipe"
    gw.zoo.load(str(path))
    assert not marker.exists()


def test_session_runs_on_an_ada_generator(tmp_path):
    _, path = ada_pkl(tmp_path)
    s = gw.Session.from_zoo(str(path))
    assert s.layers[:3] == ["layer0", "layer1", "layer2"] and s.image_size == (16, 16)
    before = s.generate([0, 1])
    s.ablate("layer2", list(range(s.layer_shape("layer2")[0])))
    assert not np.array_equal(before, s.generate([0, 1]))
    s.undo()
    np.testing.assert_array_equal(before, s.generate([0, 1]))


# ---------------------------------------------------------------------------------- refusals
def _write_marker(path):  # a function a malicious pickle names
    with open(path, "w") as f:
        f.write("ran")


class _Calls:
    """Pickles as a call of ``fn(*args)``: what a malicious pickle does."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def _nested_in_g_ema(call):
    g = build_ada(**CONFIGS["r16-skip"])
    g.mapping.fc0.activation = call  # deep inside a record's state
    return snapshot(g)


def _payloads(marker):
    touch = f"touch {marker}"
    return {
        "os.system": ({"G_ema": _Calls(os.system, touch)}, "system"),
        "builtins.eval": (_Calls(eval, f"open({str(marker)!r}, 'w')"), "builtins.eval"),
        "builtins.exec": (_Calls(exec, f"open({str(marker)!r}, 'w')"), "builtins.exec"),
        "test function": (_Calls(_write_marker, str(marker)), "_write_marker"),
        "nested in G_ema": (_nested_in_g_ema(_Calls(os.system, touch)), "system"),
        "getattr gadget": (_Calls(getattr, _Calls(__import__, "os"), "system"), "getattr"),
        "subprocess": (
            _Calls(__import__("subprocess").call, ["touch", str(marker)]),
            "subprocess",
        ),  # fmt: skip
    }


@pytest.mark.parametrize("case", ["os.system", "builtins.eval", "builtins.exec", "test function",
                                  "nested in G_ema", "getattr gadget", "subprocess"])  # fmt: skip
@pytest.mark.parametrize("suffix", [".pkl", ".pt"])
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused_without_running_anything(tmp_path, case, suffix):
    marker = tmp_path / "marker"
    payload, named = _payloads(marker)[case]
    path = write_pickle(payload, tmp_path / f"evil{suffix}")
    if suffix == ".pkl":
        with pytest.raises(ada_pickle.UnsafePickleError, match=named) as err:
            gw.zoo.load(str(path))
        assert str(path) in str(err.value) and "refused" in str(err.value)
        with pytest.raises(ada_pickle.UnsafePickleError, match=named):
            ada_pickle.read_pickle(path)
    else:  # not named .pkl: torch refuses it, and so does the ADA reader it falls back to
        with pytest.raises(ValueError, match="not a valid checkpoint"):
            gw.zoo.load(str(path))
    assert not marker.exists()


def test_storage_bytes_that_run_code_are_refused(tmp_path):
    marker = tmp_path / "marker"
    evil = pickle.dumps(_Calls(os.system, f"touch {marker}"))
    from torch.storage import _load_from_bytes

    payload = {"G_ema": _Calls(_load_from_bytes, evil)}
    path = write_pickle(payload, tmp_path / "evil.pkl")
    with pytest.raises(ada_pickle.UnsafePickleError, match="storage is not plain data"):
        gw.zoo.load(str(path))
    assert not marker.exists()


def test_tensor_with_backward_hooks_is_refused(tmp_path):
    from collections import OrderedDict

    storage = torch.storage.TypedStorage(2, dtype=torch.float32, _internal=True)
    rebuild = torch._utils._rebuild_tensor_v2
    payload = _Calls(rebuild, storage, 0, (2,), (1,), False, OrderedDict({1: OrderedDict()}))
    path = write_pickle(payload, tmp_path / "hooks.pkl")
    with pytest.raises(ada_pickle.UnsafePickleError, match="backward hooks"):
        ada_pickle.read_pickle(path)


def test_tensorflow_era_pickle_is_refused_with_a_hint(tmp_path):
    # protocol 2 by hand: GLOBAL 'dnnlib.tflib.network Network', (), NEWOBJ, STOP
    (tmp_path / "tf.pkl").write_bytes(b"\x80\x02cdnnlib.tflib.network\nNetwork\n)\x81.")
    with pytest.raises(ada_pickle.UnsafePickleError, match="TensorFlow-era"):
        gw.zoo.load(str(tmp_path / "tf.pkl"))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda g: setattr(g, "c_dim", 10), "conditional"),
        (lambda g: setattr(g.synthesis.b8, "architecture", "resnet"), "resnet"),
        (lambda g: setattr(g.mapping.fc1, "activation", "relu"), "activation"),
        (lambda g: setattr(g, "img_channels", 1), "RGB"),
    ],
    ids=["conditional", "resnet", "activation", "channels"],
)
def test_unsupported_networks_are_refused_clearly(tmp_path, change, message):
    g = build_ada(**CONFIGS["r16-skip"])
    change(g)
    path = write_pickle(snapshot(g), tmp_path / "n.pkl")
    with pytest.raises(ValueError, match=message):
        gw.zoo.load(str(path))


def test_stylegan3_style_synthesis_is_refused_clearly(tmp_path):
    g = build_ada(**CONFIGS["r16-skip"])
    g.synthesis.__class__ = _stand_in("SynthesisInput")
    path = write_pickle(snapshot(g), tmp_path / "n.pkl")
    with pytest.raises(ValueError, match="SynthesisInput.*SynthesisNetwork"):
        gw.zoo.load(str(path))


def test_a_pickle_without_a_generator_is_refused(tmp_path):
    path = write_pickle({"D": _discriminator()}, tmp_path / "d.pkl")
    with pytest.raises(ValueError, match="G_ema"):
        gw.zoo.load(str(path))


# ---------------------------------------------------------------------------------- ADA layout
def test_ada_state_dict_layout_round_trips_through_our_generator(tmp_path):
    g = config_ada("r32-clamp-wide")
    model = gw.zoo.load(str(write_pickle(snapshot(g), tmp_path / "n.pkl")))
    sd = ada_pickle.ada_state_dict(model, extras=model.source.extras)
    want = g.state_dict()
    assert list(sd) == list(want)
    for k in want:
        assert sd[k].shape == want[k].shape and sd[k].dtype == want[k].dtype, k
        torch.testing.assert_close(sd[k], want[k], rtol=1e-6, atol=1e-6)
    cfg = ada_pickle.ada_config(model)
    again = ada_pickle.from_ada_state_dict(sd, cfg)
    z = torch.randn(2, 6, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(unclamped(again, z), unclamped(model, z), atol=1e-5, rtol=1e-5)


def test_ada_config_names_the_generator_that_takes_the_tensors():
    model = StyleGAN2Generator(32, style_dim=8, n_mlp=2, channels=[16, 16, 8, 4])
    init = ada_pickle.ada_config(model)["init_kwargs"]
    syn = init["synthesis_kwargs"]
    assert [min(syn["channel_base"] // r, syn["channel_max"]) for r in (4, 8, 16, 32)] == [
        16, 16, 8, 4]  # fmt: skip
    odd = StyleGAN2Generator(16, style_dim=8, n_mlp=2, channels=[4, 16, 8])
    assert ada_pickle.ada_config(odd)["init_kwargs"] is None  # no channel rule fits


# ---------------------------------------------------------------------------------- BUILD attacks
def _op_global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _op_str(text):
    data = text.encode()
    return b"X" + len(data).to_bytes(4, "little") + data


def _op_build(target: bytes, attrs: dict, *, slots: bool = True) -> bytes:
    """``target`` then BUILD with ``attrs`` (values: opcodes) as slot state (setattr) or as
    ``__dict__`` state."""
    items = b"".join(_op_str(k) + v + b"s" for k, v in attrs.items())
    state = b"N}" + items + b"\x86" if slots else b"}" + items
    return target + state + b"b"


def _hostile(body: bytes) -> bytes:
    return b"\x80\x02}" + _op_str("G_ema") + body + b"s."  # {"G_ema": body}


_EMPTY_TUPLE, _LIST = b")", _op_global("__builtin__", "list")
HOSTILE = {
    "setattr on EasyDict": _op_build(_op_global("dnnlib.util", "EasyDict"), {"items": _LIST}),
    "__dict__ of EasyDict": _op_build(
        _op_global("dnnlib", "EasyDict"), {"keys": _LIST}, slots=False
    ),
    "defaults of a rebuild function": _op_build(
        _op_global("torch._utils", "_rebuild_tensor_v2"), {"__defaults__": _EMPTY_TUPLE}
    ),
    "__dict__ of a function": _op_build(
        _op_global("torch_utils.persistence", "_reconstruct_persistent_obj"),
        {"mark": _LIST},
        slots=False,
    ),
    "a builtin class": _op_build(_op_global("collections", "OrderedDict"), {"x": _LIST}),
    "a marker object": _op_build(_op_global("torch", "Tensor"), {"x": _LIST}),
    "kwdefaults via setstate of dtype": _op_build(
        _op_global("numpy", "dtype"), {"__kwdefaults__": b"}"}
    ),
    "a numpy dtype's __setstate__ with junk": _op_global("numpy", "dtype")
    + _op_str("f4")
    + b"\x85R"  # dtype('f4')
    + _op_str("junk")
    + b"b",
    "nested allowed names": _op_global("copyreg", "_reconstructor")
    + _op_global("torch._utils", "_rebuild_tensor_v2")
    + _op_global("__builtin__", "dict")
    + b"N\x87R",
}


def _package_objects():
    """Every function and class of the ADA reader (and what its table hands out), with
    their mutable parts: defaults, keyword defaults, ``__dict__`` and code."""
    seen = {}
    objs = list(vars(ada_pickle).values()) + list(ada_pickle.ALLOWED.values())
    for obj in objs:
        if isinstance(obj, type) or callable(obj) or type(obj) is object:
            state = (
                getattr(obj, "__defaults__", None),
                getattr(obj, "__kwdefaults__", None),
                getattr(obj, "__code__", None),
                dict(vars(obj)) if hasattr(obj, "__dict__") else None,
            )
            seen[id(obj)] = (obj, state)
    return seen


def _same_objects(before, after):
    assert before.keys() == after.keys()
    for key, (obj, state) in before.items():
        for a, b in zip(state, after[key][1]):
            if isinstance(a, dict):
                assert a.keys() == b.keys() and all(a[k] is b[k] for k in a), obj
            else:
                assert a is b or a == b, obj


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_refused_pickle_leaves_the_package_unchanged(tmp_path, case):
    before = _package_objects()
    path = tmp_path / "evil.pkl"
    path.write_bytes(_hostile(HOSTILE[case]))
    with pytest.raises((ada_pickle.UnsafePickleError, ValueError)):
        gw.zoo.load(str(path))
    with pytest.raises((ada_pickle.UnsafePickleError, ValueError)):
        ada_pickle.generator_from_data(ada_pickle.read_pickle(path))
    _same_objects(before, _package_objects())


def test_a_genuine_snapshot_after_hostile_ones_reads_as_it_should(tmp_path):
    for i, body in enumerate(HOSTILE.values()):
        (tmp_path / f"{i}.pkl").write_bytes(_hostile(body))
        with pytest.raises((ada_pickle.UnsafePickleError, ValueError)):
            gw.zoo.load(str(tmp_path / f"{i}.pkl"))
    g = config_ada("r16-skip")
    model = gw.zoo.load(str(write_pickle(snapshot(g), tmp_path / "n.pkl")))
    assert model.source.config["init_kwargs"]["z_dim"] == 8


def test_torch_weights_only_unpickler_cannot_read_an_ada_snapshot(tmp_path):
    """Why the reader is our own (see ada_pickle's docstring): torch's restricted unpickler
    reads the protocol-2 subset that torch.save writes; a snapshot is protocol 4 (FRAME first).
    When torch reads it, the reader should move onto it."""
    from torch import _weights_only_unpickler as wu

    _, path = ada_pkl(tmp_path)
    with open(path, "rb") as f, pytest.warns(UserWarning, match="protocol 4"):
        with pytest.raises(pickle.UnpicklingError, match="Unsupported operand 149"):
            wu.Unpickler(f).load()
