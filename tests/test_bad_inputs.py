"""Bad inputs to the entry points (issue 25): each is refused with ValueError, KeyError or
TypeError (OSError for a place on disk) whose message names the argument and says what is
valid, and leaves the Session (images, edit stack, hooks, samples, observers), the files and
the package as they were."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch
from conftest import ThresholdSegmenter, TinyClassifier, TinyGenerator, tiny_data
from test_reliability import _rule

import gandissect_widgets as gw
from gandissect_widgets import rewrite as rw
from gandissect_widgets.edits import Ablation, State


@pytest.fixture(scope="module")
def s():
    return gw.Session(TinyGenerator(), device="cpu", batch_size=8, segmenter=ThresholdSegmenter())


@pytest.fixture(scope="module")
def files(tmp_path_factory, s):
    """Bad files beside one good saved rewrite, made once."""
    folder = tmp_path_factory.mktemp("bad-files")
    good = _rule(s).save(folder / "good.npz")
    (folder / "empty.npz").write_bytes(b"")
    (folder / "truncated.npz").write_bytes(good.read_bytes()[:300])
    (folder / "random.npz").write_bytes(bytes(range(256)) * 3)
    np.save(folder / "array.npy", np.arange(3))
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["lam"] = arrays["lam"][:, :1].repeat(2, axis=1)  # rank 2 against rank-1 directions
    np.savez(folder / "mismatched.npz", **arrays)
    arrays = {k: (v * np.nan if k == "lam" else v) for k, v in arrays.items()}
    np.savez(folder / "nan.npz", **arrays)
    (folder / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    (folder / "a-folder.pt").mkdir()
    return folder


def _mask():
    m = np.zeros((16, 16), np.float32)
    m[4:8, 4:8] = 1
    return m


def _panel(s, **kw):
    return gw.AblationPanel(s, "layer2", **{"seeds": [0], **kw})


_MISSING_DEVICE = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"

# name -> (call(session, folder), exception, fragments the message must hold)
CASES = {
    "generate(state='x')": (lambda s, f: s.generate([0], state="x"), TypeError,
                            ["state must be a State", "got str"]),
    "fingerprint(state='x')": (lambda s, f: s.fingerprint(state="x"), TypeError,
                               ["state must be a State"]),
    "a State with an out-of-range ablation": (
        lambda s, f: s.generate([0], state=State((Ablation("layer2", [999]),))), ValueError,
        ["unit 999 is out of range", "16 units (0-15)"]),
    "run('abc')": (lambda s, f: s.run("abc"), TypeError, ["inputs must be a torch.Tensor"]),
    "dissect(segmenter=object())": (
        lambda s, f: s.dissect("layer2", n=8, segmenter=object(), cache=False, progress=False),
        TypeError, ["segmenter must be", ".segment(images)"]),
    "dissect(executor='x')": (
        lambda s, f: s.dissect("layer2", n=8, executor="x", cache=False, progress=False),
        TypeError, ["executor must be a concurrent.futures.Executor"]),
    "dissect(seeds=[2**62])": (
        lambda s, f: s.dissect("layer2", seeds=[2**62], cache=False, progress=False), KeyError,
        ["sample 4611686018427387904 is not a photo", "seeds are below 2**62"]),
    "rewrite(cancel='yes')": (
        lambda s, f: s.rewrite("layer2", [(1, _mask())], (0, _mask()), (2, (8, 8)), cancel="yes",
                               cache=False),
        TypeError, ["cancel must be a threading.Event or None"]),
    "AblationPanel(None, ...)": (lambda s, f: gw.AblationPanel(None, "layer2"), TypeError,
                                 ["session must be a gandissect_widgets.Session", "None"]),
    "AblationPanel(units=[16]) on a 16-unit layer": (
        lambda s, f: _panel(s, units=[16]), ValueError, ["unit 16 is out of range", "(0-15)"]),
    "AblationPanel(size=-1)": (lambda s, f: _panel(s, size=-1), ValueError,
                               ["size must be a positive integer"]),
    "AblationPanel(columns=0)": (lambda s, f: _panel(s, columns=0), ValueError,
                                 ["columns must be a positive integer"]),
    "RuleEditor(seeds=[])": (lambda s, f: gw.RuleEditor(s, "layer2", seeds=[]), ValueError,
                             ["seeds must not be empty", "None"]),
    "UnitBrowser(top=0)": (lambda s, f: gw.UnitBrowser(s, "layer2", seeds=[0], top=0),
                           ValueError, ["top must be a positive integer"]),
    "ImageGrid(opacity=nan)": (
        lambda s, f: gw.ImageGrid(np.zeros((1, 4, 4, 3), np.uint8), opacity=math.nan),
        ValueError, ["opacity must be in [0, 1]"]),
    "ImageGrid(opacity=inf)": (
        lambda s, f: gw.ImageGrid(np.zeros((1, 4, 4, 3), np.uint8), opacity=math.inf),
        ValueError, ["opacity must be in [0, 1]"]),
    "zoo.load('')": (lambda s, f: gw.zoo.load(""), ValueError,
                     ["model must be a zoo name", "checkpoint file"]),
    "zoo.load(a folder)": (lambda s, f: gw.zoo.load(str(f / "a-folder.pt")), ValueError,
                           ["a-folder.pt is a folder", "checkpoint file"]),
    "zoo.load(corrupt .safetensors)": (lambda s, f: gw.zoo.load(str(f / "bad.safetensors")),
                                       ValueError, ["bad.safetensors is not a valid .safetensors"]),
    "Session(layers='layer2')": (
        lambda s, f: gw.Session(TinyGenerator(), device="cpu", layers="layer2"), TypeError,
        ["layers must be a list of names", "['layer2']"]),
    "Session(data=5)": (lambda s, f: gw.Session(TinyClassifier(), device="cpu", data=5),
                        TypeError, ["data must be a function seeds -> images"]),
    "Session(concepts=5)": (
        lambda s, f: gw.Session(TinyClassifier(), device="cpu", data=tiny_data, concepts=5),
        TypeError, ["concepts must be a list of names"]),
    "Session(segmenter=object())": (
        lambda s, f: gw.Session(TinyGenerator(), device="cpu", segmenter=object()), TypeError,
        ["segmenter must be", ".concepts"]),
    "Session(device='cuda') without CUDA": (
        lambda s, f: gw.Session(TinyGenerator(), device=_MISSING_DEVICE), ValueError,
        ["device must be a device that exists here", "cpu"]),
    "Session(device='cuda:99')": (
        lambda s, f: gw.Session(TinyGenerator(), device="cuda:99"), ValueError,
        ["device must be a device that exists here", "cpu"]),
    "Rewrite with 3-D directions": (
        lambda s, f: rw.Rewrite("layer2", "1.weight", torch.ones(1, 32, 1), torch.ones(16, 1, 3, 3),
                                request={}, fingerprint=""),
        ValueError, ["directions must be (rank, C_in)", "(1, 32, 1)"]),
    "samples = [2**62]": (lambda s, f: setattr(s, "samples", [2**62]), KeyError,
                          ["is not a photo of this Session", "no photos"]),
    "observe(None)": (lambda s, f: s.observe(None), TypeError,
                      ["observe() takes a function"]),
    "generate(dict seeds)": (lambda s, f: s.generate({0: "a", 1: "b"}), TypeError,
                             ["seeds must be", "not a dict"]),
    "ablation(dict units)": (lambda s, f: s.ablation("layer2", {1: 0}), TypeError,
                             ["units must be", "not a dict"]),
    "excluding('x')": (lambda s, f: s.excluding("x").__enter__(), TypeError,
                       ["excluding() takes an Edit or None"]),
    "replace('x', new)": (lambda s, f: s.replace("x", s.ablation("layer2", [1])), TypeError,
                          ["an edit must be", "replace() got old="]),
    "export() to a folder": (lambda s, f: s.export(f / "a-folder.pt"), IsADirectoryError,
                             ["a-folder.pt is a folder"]),
}  # fmt: skip
for name in ["empty", "truncated", "random", "mismatched", "nan"]:
    words = ["is not a consistent saved rewrite"] if name in ("mismatched", "nan") else []
    CASES[f"load_edit({name})"] = (
        lambda s, f, name=name: rw.load_edit(f / f"{name}.npz"),
        ValueError,
        [f"{name}.npz is not a", *words],
    )
CASES["load_edit(.npy)"] = (lambda s, f: rw.load_edit(f / "array.npy"), ValueError,
                            ["array.npy is not a saved rewrite", "one array (.npy)"])  # fmt: skip


def _hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _files(folder) -> dict:
    return {p.name: p.read_bytes() if p.is_file() else "folder" for p in sorted(folder.iterdir())}


def _snapshot(s, folder) -> tuple:
    images = hashlib.sha256(s.generate([0, 1, 2]).tobytes()).hexdigest()
    weights = gw.cache.weights_fingerprint(s.model)
    return (images, weights, list(s.edits), list(s.stack.undone), _hooks(s.model), s.samples,
            s.observers, dict(s.dissections), _files(folder))  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_and_changes_nothing(s, files, case):
    call, exc, fragments = CASES[case]
    before = _snapshot(s, files)
    with pytest.raises(exc) as info:
        call(s, files)
    msg = str(info.value).strip("'\"")
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    assert len(msg) < 500 and "allow_pickle" not in msg, msg
    assert _snapshot(s, files) == before


def test_a_view_without_the_rewrite_a_later_one_was_fitted_on_is_refused(tmp_path):
    s = gw.Session(TinyGenerator(), device="cpu", batch_size=8)
    first = s.push(_rule(s))
    second = s.push(_rule(s))  # fitted on the weights with ``first``
    s.generate([0])
    before = _snapshot(s, tmp_path)
    with pytest.raises(ValueError, match="made for weights with fingerprint"):
        with s.excluding(first):
            s.generate([0])
    with pytest.raises(ValueError, match="made for weights with fingerprint"):
        s.generate([0], state=State((second,)))
    with pytest.raises(ValueError, match="made for weights with fingerprint"):
        s.activations("layer3", [0], state=s.state.minus(first))
    assert _snapshot(s, tmp_path) == before
    with s.excluding(second):  # the newest may go: what is left is as push built it
        assert s.generate([0]).shape == (1, 16, 16, 3)


def test_nan_weights_warn_when_loaded(tmp_path):
    from safetensors.torch import save_file

    from gandissect_widgets.zoo.checkpoints import load

    g = gw.zoo.load("hamlet")
    sd = {k: v.clone() for k, v in g.state_dict().items()}
    name = next(k for k, v in sd.items() if v.is_floating_point())
    sd[name][...] = float("nan")
    save_file(sd, str(tmp_path / "nan.safetensors"))
    with pytest.warns(UserWarning, match=f"NaN or infinite values in {name}"):
        load(str(tmp_path / "nan.safetensors"))
