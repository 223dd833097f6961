"""Failures found at the edges (issue 25): each test here failed before its fix."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch

from gandissect_widgets.widgets import AblationPanel


def test_apply_with_invalid_units_applies_nothing(gen_session):
    panel = AblationPanel(gen_session, "layer2", units=[1, 2], seeds=[0])
    try:
        panel.units = "1, 2, 999"  # 999 is out of range: the controls describe no edit
        panel.wait()
        assert panel.apply() is None
        assert gen_session.edits == [] and panel.applied is False
        assert panel.status_kind == "error" and "999" in panel.status
        panel.press("apply")
        panel.wait()
        assert gen_session.edits == [] and panel.applied is False
        panel.units = "1, 2"
        assert panel.apply() is not None
        assert gen_session.edits == [panel.edit] and panel.applied is True
        panel.units = "1, 999"  # while applied: an invalid state leaves the applied edit alone
        panel.wait()
        panel.apply()
        assert gen_session.edits == [panel._applied] and panel.applied is True
    finally:
        panel.close()


def test_ablation_panel_refuses_units_out_of_range(gen_session):
    with pytest.raises(ValueError, match=r"unit 16 is out of range.*0-15"):
        AblationPanel(gen_session, "layer2", units=[16], seeds=[0])
    with pytest.raises(TypeError, match="session must be a gandissect_widgets.Session"):
        AblationPanel(None, "layer2")
    assert gen_session.edits == [] and gen_session.observers == []


# ------------------------------------------------------------------ damaged cache files
def _rewrite(path, digest=True, **changes):
    """Rewrite a cache file with ``changes`` (None deletes an array); with ``digest``, a new
    digest that matches (a file consistent in itself, wrong for the request)."""
    from gandissect_widgets import cache

    with np.load(path) as f:
        arrays = {name: f[name] for name in f.files}
    for name, value in changes.items():
        if value is None:
            arrays.pop(name, None)
        else:
            arrays[name] = value(arrays[name]) if callable(value) else np.asarray(value)
    if digest and hasattr(cache, "_digest"):  # (the test also runs on the code before it)
        body = {k: v for k, v in arrays.items() if k not in cache._RESERVED}
        arrays["__digest__"] = np.array(cache._digest(body))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


DISSECTION_DAMAGE = {
    "no top_seeds": dict(top_seeds=None),
    "no concepts": dict(concepts=None),
    "other concepts": dict(concepts=["a", "b"]),
    "top_seeds not among the samples": dict(top_seeds=lambda a: a + 1000),
    "other seeds": dict(seeds=lambda a: a + 1),
    "iou above 1": dict(iou=lambda a: a + 1.5),
    "another layer's table": dict(layer="layer3"),
    "values changed, digest not": dict(digest=False, thresholds=lambda a: a * 2),
}


@pytest.fixture(scope="module")
def dissect_reference(tmp_path_factory):
    from conftest import ThresholdSegmenter, TinyGenerator

    from gandissect_widgets import Session

    s = Session(TinyGenerator(), device="cpu", batch_size=8, segmenter=ThresholdSegmenter())
    folder = tmp_path_factory.mktemp("dissect-cache")
    d = s.dissect("layer2", n=8, k=4, cache=folder, progress=False)
    (path,) = folder.glob("dissect-*.npz")
    return s, d, path, path.read_bytes()


@pytest.mark.parametrize("case", sorted(DISSECTION_DAMAGE))
def test_damaged_dissection_file_is_removed_and_recomputed(dissect_reference, case):
    s, want, path, good = dissect_reference
    path.write_bytes(good)
    _rewrite(path, **DISSECTION_DAMAGE[case])
    with pytest.warns(UserWarning, match=f"cache file {re.escape(str(path))} .*removed it"):
        got = s.dissect("layer2", n=8, k=4, cache=path.parent, progress=False)
    for name, array in want.arrays().items():
        assert np.array_equal(got.arrays()[name], array), name
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the file written again is served
        s.dissect("layer2", n=8, k=4, cache=path.parent, progress=False)


def test_a_failing_save_keeps_the_dissection(seg_session, tmp_path):
    from gandissect_widgets.cache import ResultCache

    seg_session.dissect("layer2", n=8, k=4, cache=tmp_path, progress=False)
    (path,) = tmp_path.glob("dissect-*.npz")
    path.unlink()
    path.mkdir()  # a folder where the file goes
    (path / "x").write_text("x")
    with pytest.warns(UserWarning, match="could not save to cache file .* kept in memory"):
        d = seg_session.dissect("layer2", n=8, k=4, cache=tmp_path, progress=False)
    assert seg_session.dissections["layer2"] is d and d.iou.shape == (16, 2)
    assert ResultCache(tmp_path).path({"kind": "x"}).parent == tmp_path


SECOND_MOMENT_DAMAGE = {
    "count 0": dict(count=np.array(0)),
    "negative count": dict(count=np.array(-64)),
    "count not a multiple of n": dict(count=lambda a: a + 1),
    "asymmetric sum": dict(sum=lambda a: a + np.triu(np.ones_like(a), 1)),
    "sums scaled, digest not": dict(digest=False, sum=lambda a: a * 3),
}


@pytest.mark.parametrize("case", sorted(SECOND_MOMENT_DAMAGE))
def test_damaged_second_moment_file_is_removed_and_recomputed(gen_session, tmp_path, case):
    from gandissect_widgets.rewrite import keys

    want = keys.second_moment(gen_session, "layer2", n=4, cache=tmp_path)
    (path,) = tmp_path.glob("rewrite-second-moment-*.npz")
    _rewrite(path, **SECOND_MOMENT_DAMAGE[case])
    keys._moments.clear()  # not from memory: from the file
    with pytest.warns(UserWarning, match="removed it to recompute"):
        got = keys.second_moment(gen_session, "layer2", n=4, cache=tmp_path)
    assert torch.equal(got, want)


# ------------------------------------------------------------------ cache keys of user code
def _notebook_segmenter(brighter: bool):
    """A segmenter class as a notebook cell defines it (module __main__, a plain qualname);
    re-running the corrected cell gives a class of the same name that computes otherwise."""

    class MySeg:
        concepts = ["dark", "bright"]

        def segment(self, images):
            grey = torch.from_numpy(images.astype("float32").mean(-1))
            bright = grey > grey.flatten(1).median(1).values[:, None, None]
            return (bright if brighter else ~bright).long()

    MySeg.__module__, MySeg.__qualname__ = "__main__", "MySeg"
    return MySeg()


def test_a_redefined_segmenter_is_not_served_the_old_table(gen_session, tmp_path):
    first = gen_session.dissect(
        "layer2", n=8, k=4, segmenter=_notebook_segmenter(False), cache=tmp_path, progress=False
    )
    fresh = gen_session.dissect(
        "layer2", n=8, k=4, segmenter=_notebook_segmenter(True), cache=False, progress=False
    )
    again = gen_session.dissect(
        "layer2", n=8, k=4, segmenter=_notebook_segmenter(True), cache=tmp_path, progress=False
    )
    assert not torch.equal(first.iou, fresh.iou)  # the two compute different tables
    assert torch.equal(again.iou, fresh.iou)


def _notebook_data(shift: int):
    from conftest import tiny_data

    def data(seeds):
        return (tiny_data(seeds).astype("int64") + shift).clip(0, 255).astype("uint8")

    data.__module__, data.__qualname__ = "__main__", "data"
    return data


def test_a_redefined_data_function_is_not_served_the_old_table(tmp_path):
    from conftest import ThresholdSegmenter, TinyClassifier

    from gandissect_widgets import Session

    def table(shift, cache):
        s = Session(TinyClassifier(), device="cpu", data=_notebook_data(shift))
        d = s.dissect("conv1", n=8, k=4, segmenter=ThresholdSegmenter(), cache=cache,
                      progress=False)  # fmt: skip
        return d.top_values

    table(0, tmp_path)
    assert torch.equal(table(90, tmp_path), table(90, False))


# ------------------------------------------------------------------ errors inside widgets
def _rule(session, layer="layer2"):
    """A small valid Rewrite of ``layer`` made for ``session``'s weights (no optimisation)."""
    from gandissect_widgets.cache import weights_fingerprint
    from gandissect_widgets.rewrite import Rewrite
    from gandissect_widgets.rewrite.request import conv_of

    path, param = conv_of(session, layer)
    w = session.model.get_submodule(path).weight
    mask = np.zeros((16, 16), np.float32)
    mask[4:8, 4:8] = 1
    request = {"layer": layer, "context": [(1, mask)], "copy": (0, mask), "paste": (2, (8.0, 8.0)),
               "rank": 1, "steps": 1, "lr": 0.01}  # fmt: skip
    directions = torch.ones(1, w.shape[1]) / w.shape[1] ** 0.5
    lam = torch.full((w.shape[0], 1, *w.shape[2:]), 1e-3)
    fp = weights_fingerprint(session.model)
    return Rewrite(layer, param, directions, lam, request=request, fingerprint=fp)


def _bad_edit_files(folder, good: bytes) -> dict:
    files = {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "random": bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8)),
    }
    out = {}
    for name, data in files.items():
        (folder / f"{name}.npz").write_bytes(data)
        out[name] = folder / f"{name}.npz"
    np.save(folder / "array.npy", np.arange(4))
    out["npy"] = folder / "array.npy"
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    out["pickled objects"] = folder / "objects.npy"
    return out


def test_rule_editor_load_and_tray_errors_show_in_the_widget(gen_session, tmp_path):
    from gandissect_widgets.widgets import RuleEditor

    good = _rule(gen_session).save(tmp_path / "good.npz").read_bytes()
    editor = RuleEditor(gen_session, "layer2", seeds=[0, 1], stat_samples=8, cache=False)
    try:
        for name, path in _bad_edit_files(tmp_path, good).items():
            editor.path = str(path)
            editor.press("load")  # as the page's Load button: nothing may escape
            assert editor.wait()
            assert editor.status_kind == "error", (name, editor.status)
            assert str(path) in editor.status and "allow_pickle" not in editor.status, name
            assert gen_session.edits == []
        mask = np.zeros((16, 16), np.float32)
        mask[2:6, 2:6] = 1
        editor.context = [(0, mask)]
        for index in (-7, -1, 1, 5):
            editor.press("tray", index=index, x=0, y=0)
            assert editor.status_kind == "error" and "tray" in editor.status, index
            assert len(editor.context) == 1 and editor.copy is None
        editor.press("tray", index=0, x=0, y=0)
        assert editor.context == []
    finally:
        editor.close()


def test_load_edit_names_the_path_and_another_models_edit_names_the_mismatch(
    gen_session, cls_session, tmp_path
):
    from gandissect_widgets.rewrite import load_edit

    path = _rule(gen_session).save(tmp_path / "good.npz")
    for name, bad in _bad_edit_files(tmp_path, path.read_bytes()).items():
        with pytest.raises(ValueError, match=re.escape(str(bad))) as err:
            load_edit(bad)
        assert "allow_pickle" not in str(err.value), name
    edit = load_edit(path)
    with pytest.raises(ValueError, match="another model"):
        cls_session.push(edit)
    assert cls_session.edits == []


# ------------------------------------------------------------------ the command line
_NB_WITH_AN_EMPTY_CELL = '{"cells": [{}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


@pytest.mark.parametrize(
    "text",
    ['{"cells": 5}', "[1, 2]", _NB_WITH_AN_EMPTY_CELL, "not json", ""],
    ids=["cells-a-number", "a-list", "a-cell-without-keys", "not-json", "empty"],
)  # fmt: skip
def test_export_of_what_is_not_a_notebook_is_one_line_and_exit_2(tmp_path, capsys, text):
    from gandissect_widgets import cli

    nb = tmp_path / "lab.ipynb"
    nb.write_text(text)
    with pytest.raises(SystemExit) as exc:
        cli.main(["export", str(nb), "--out", str(tmp_path / "lab.html")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gandissect-widgets: error: "), err
    assert str(nb) in err and "not a Jupyter notebook" in err, err
    assert not (tmp_path / "lab.html").exists()


def test_unwritable_cache_message_says_it_once(monkeypatch, capsys, tmp_path):
    from gandissect_widgets import cli

    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("GANDISSECT_CACHE", str(tmp_path / "afile" / "cache"))
    with pytest.raises(SystemExit):
        cli.main(["dissect", "--model", "hamlet", "--out", str(tmp_path / "d.html")])
    err = capsys.readouterr().err
    assert err.count("is not writable") == 1 and err.count("GANDISSECT_CACHE") == 1, err
