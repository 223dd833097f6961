"""The rough edges a newcomer met following the README and tutorials, one test each."""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TinyClassifier, tiny_data

import gandissect_widgets as gw
from gandissect_widgets import effects, zoo
from gandissect_widgets.photos import _pictures
from gandissect_widgets.rewrite import rule_hint
from gandissect_widgets.widgets import AblationPanel, RuleEditor, UnitBrowser
from gandissect_widgets.widgets._validate import InvalidValue

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block(section: str) -> str:
    """The first ```python block after the README heading ``section``."""
    text = README.read_text()
    start = text.index(f"## {section}\n")
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_the_readme_examples_run_as_written_and_print_what_they_promise(tmp_path, monkeypatch):
    """Both README blocks, in order, with fewer samples: the effect printed is the share of
    tree pixels the 20 tree units remove (it printed -0.0 when measured after apply)."""

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GANDISSECT_CACHE", str(tmp_path / "cache"))  # not the user's cache
    code = _python_block("In a notebook").replace("n=1000", "n=200")
    out = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("error")  # the README's own order draws no warning
        exec(compile(code, "README: In a notebook", "exec"), namespace)
    printed = re.findall(r"^(-?\d+\.\d+)$", out.getvalue(), re.M)  # display() prints too
    assert len(printed) == 1 and float(printed[0]) > 0.5, out.getvalue()
    session = namespace["session"]
    assert len(session.edits) == 1  # the panel's apply
    report = _python_block("Lab reports that open anywhere")
    exec(compile(report, "README: reports", "exec"), namespace)
    assert (tmp_path / "report.html").stat().st_size > 100_000
    namespace["browser"].close()
    namespace["panel"].close()


def test_measuring_an_ablation_that_is_already_applied_warns(seg_session):
    units = [0, 1, 2]
    seg_session.ablate("layer2", units[:2])
    with pytest.warns(UserWarning, match=r"units 0, 1 of layer2 are already changed.*excluding"):
        seg_session.ablation_effect("layer2", units, "bright", n=8)
    seg_session.undo()
    seg_session.ablate("layer2", units)
    with pytest.warns(UserWarning, match="already changed") as seen:
        same = seg_session.ablation_effect("layer2", units, "bright", n=8)
    assert str(same.removed) == "0.0"  # the model against itself, and not printed as -0.0
    assert [w.filename for w in seen] == [__file__]  # it points at the user's line

    with pytest.warns(UserWarning, match="already changed") as seen:  # called directly too
        effects.ablation_effect(seg_session, "layer2", units, "bright", n=8)
    assert [w.filename for w in seen] == [__file__]


@pytest.mark.parametrize(
    "typo, meant", [("hamlet-classifer", "hamlet-classifier"), ("hamlet_vit", "hamlet-vit")]
)
def test_a_mistyped_zoo_name_lists_the_session_names_and_the_close_one(typo, meant):

    with pytest.raises(
        KeyError,
        match=rf"known names are: hamlet, hamlet-classifier, hamlet-vit, "
        rf".*did you mean '{meant}'",
    ):
        gw.Session.from_zoo(typo)


# ---------------------------------------------------------------- errors that name the mistake
def test_a_widget_without_its_session_says_so(gen_session):

    for widget in (UnitBrowser, AblationPanel, RuleEditor):
        with pytest.raises(TypeError, match=rf"{widget.__name__}\(session, layer.*got 'layer2'"):
            widget("layer2", gen_session)


def test_a_widgets_layer_is_fixed_once_made(seg_session):

    browser = UnitBrowser(seg_session, "layer2", seeds=[0, 1])
    try:
        with pytest.raises(InvalidValue, match=r"fixed.*UnitBrowser\(session, 'layer3'\)"):
            browser.layer = "layer3"
        assert browser.layer == "layer2"
        browser.layer = "layer2"  # the same value is no change
    finally:
        browser.close()


def test_a_bare_context_mask_says_to_pair_it_with_its_seed(gen_session):

    mask = np.ones((32, 32), bool)
    with pytest.raises(TypeError, match=r"bare mask: pair it with its seed"):
        gen_session.rewrite("layer2", copy=(0, mask), paste=(1, mask), context=mask)
    assert gen_session.edits == []


def test_a_grey_photo_is_named_as_grey():

    with pytest.raises(ValueError, match=r"got \(64, 64\), a grey one.*convert\('RGB'\)"):
        _pictures(np.zeros((64, 64), np.uint8))


def test_one_image_given_to_the_segmenter_says_how_to_make_a_batch():

    with pytest.raises(TypeError, match=r"uint8 batch.*images\[None\]"):
        zoo.load_segmenter("hamlet").segment(np.zeros((64, 64, 3), np.uint8))


def test_an_image_grid_of_the_wrong_shape_names_both_accepted_forms():

    with pytest.raises(ValueError, match=r"uint8 \(N, H, W, 3\).*float.*got float32 of shape"):
        gw.ImageGrid(np.random.default_rng(0).random((2, 8, 8, 3), np.float32))  # matplotlib's


def test_a_panels_units_take_a_list_as_well_as_text(gen_session):

    panel = AblationPanel(gen_session, "layer2", units=[1, 2], seeds=[0], size=16)
    try:
        assert panel.units == "1, 2"
        panel.units = [4, np.int64(5)]
        assert panel.units == "4, 5" and panel._wanted_edit().units == [4, 5]
        with pytest.raises(InvalidValue, match=r"list of ints or text like '3, 12'; got \[1.5\]"):
            panel.units = [1.5]
        assert panel.units == "4, 5"
    finally:
        panel.close()


# ---------------------------------------------------------------- mistakes no longer accepted
@pytest.mark.parametrize(
    "images, captions, message",
    [
        ("int64", None, r"integer images must be uint8.*got int64"),
        ("float 0-255", None, r"float images must be in \[-1, 1\]; these range from .* to 2\d\d"),
        ("uint8", ["only one"], r"1 captions for 3 images"),
    ],
)
def test_an_image_grid_refuses_what_it_would_show_wrongly(images, captions, message):

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, 3, 8, 8))
    given = {
        "int64": pixels.transpose(0, 2, 3, 1),
        "float 0-255": pixels.astype("float32"),
        "uint8": pixels.transpose(0, 2, 3, 1).astype(np.uint8),
    }[images]
    with pytest.raises(ValueError, match=message):
        gw.ImageGrid(given, captions=captions)


def test_class_names_that_do_not_match_the_logits_are_refused():

    with pytest.raises(ValueError, match=r"classes names 2 classes, but .* logits of shape"):
        gw.Session(TinyClassifier(), data=tiny_data, classes=["a", "b"])


def test_class_units_take_a_class_index_like_steering_does():

    s = gw.Session.from_zoo("hamlet-classifier")
    lake = s.classes.index("lake")
    assert s.class_units("conv4", lake, n=64) == s.class_units("conv4", "lake", n=64)
    with pytest.raises(KeyError, match=r"class index 9 is out of range; classes are: .*index 0..4"):
        s.class_units("conv4", 9)


def test_an_image_grid_still_takes_caption_generators_and_clamps_an_unclamped_generators_tails():

    torch.manual_seed(0)
    tails = torch.randn(2, 3, 16, 16) * 0.8  # a few values past 2: clamped, as before
    grid = gw.ImageGrid(tails, captions=(f"s{i}" for i in range(2)))
    assert grid.captions == ["s0", "s1"] and len(grid) == 2
    with pytest.raises(ValueError, match="float images must be in"):  # a list is checked too
        gw.ImageGrid([torch.rand(3, 8, 8) * 255] * 2)


# ---------------------------------------------------------------- what the widgets say
def test_an_applied_edit_is_named_when_the_controls_take_it_off_or_cannot_be_read(gen_session):

    panel = AblationPanel(gen_session, "layer2", units=[3, 4], seeds=[0], size=16)
    try:
        edit = panel.apply()
        panel.units = "abc"  # unreadable: an error; the applied edit stays, and is named
        panel.wait()
        assert gen_session.edits == [edit] and panel.applied and panel.status_kind == "error"
        assert "still applied: remove 2 units of layer2" in panel.status
        panel.units = ""  # no edit described: the applied one is taken off, and it says so
        panel.wait()
        assert gen_session.edits == [] and not panel.applied
        assert panel.status.startswith("your applied edit was taken off the Session")
        assert "no units chosen" in panel.status
        panel.units = "3, 4, 5"  # a new preview, not applied
        panel.wait()
        assert gen_session.edits == [] and panel.status.startswith("PREVIEW")
        panel.apply()
        panel.strength = 0  # the slider to 0 takes it off too; up again is a preview
        panel.wait()
        assert gen_session.edits == [] and "taken off" in panel.status
        panel.strength = 0.5
        panel.wait()
        assert gen_session.edits == [] and panel.status.startswith("PREVIEW")
    finally:
        panel.close()


def test_execute_too_early_names_the_first_missing_step(gen_session):

    editor = RuleEditor(gen_session, "layer2", seeds=[0, 1, 2], size=32)
    try:
        steps = []
        for do in (
            lambda: None,
            lambda: setattr(editor, "copy", (0, np.ones(editor.mask_shape, np.float32))),
            lambda: setattr(editor, "paste", (1, (8, 8))),
        ):
            do()
            editor.execute()
            steps.append((editor.status.split(":")[0], editor.status_kind, editor.running))
        assert steps == [
            ("Copy first", "error", False),
            ("Paste next", "error", False),
            ("Add context", "error", False),
        ]
        assert gen_session.edits == []
    finally:
        editor.close()


def test_the_rule_check_leads_with_its_verdict(gen_session):

    def box(y0, y1, x0, x1):
        m = np.zeros((16, 16), np.float32)
        m[y0:y1, x0:x1] = 1
        return m

    fast = {"stat_samples": 16, "cache": False}
    hint = rule_hint(
        gen_session, "layer2", [(2, box(7, 8, 7, 8))], (1, box(4, 8, 4, 8)), (2, (8, 8)), **fast
    )
    assert hint["text"].startswith("rule check: before Execute: the context covers only 1"), hint
    assert "paint larger regions" in hint["text"].split(" (")[0]  # advice before the figures
    assert hint["text"].endswith("heuristic thresholds)")


def test_the_unit_list_shows_the_number_it_is_sorted_on(seg_session):

    seg_session.dissect("layer2", n=16, cache=False, progress=False)
    browser = UnitBrowser(seg_session, "layer2", seeds=[0, 1])
    try:
        browser.sort = "activation"
        browser.wait()
        means = seg_session.unit_levels("layer2")["mean"]
        shown = [float(label.rsplit("mean ", 1)[1]) for label in browser.labels]
        assert shown == sorted(shown, reverse=True)
        assert shown[0] == round(float(means.max()), 2)
        browser.sort = "iou"
        browser.wait()
        assert "mean" not in browser.labels[0]
    finally:
        browser.close()
