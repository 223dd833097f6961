"""RuleEditor driven from Python: copy, paste, context, execute, toggle, undo, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gandissect_widgets.rewrite import Rewrite
from gandissect_widgets.widgets.rule_editor import RuleEditor


def _paint(editor, y0, y1, x0, x1):
    m = np.zeros((16, 16), np.uint8)
    m[y0:y1, x0:x1] = 1
    editor.canvas.mask = m


@pytest.fixture
def editor(gen_session):
    ed = RuleEditor(gen_session, "layer2", seeds=range(4), stat_samples=16, cache=False)
    ed.steps.value = 40
    assert ed.wait()
    yield ed
    ed.close()


def test_copy_paste_context_execute_and_compare(editor, gen_session):
    before = editor.gallery._arrays.copy()
    editor.gallery.clicked = {"index": 1, "x": 3, "y": 3}  # select sample 1
    assert editor.current == 1
    _paint(editor, 2, 8, 2, 8)
    editor.copy_button.click()
    assert editor.copy[0] == 1 and editor.copy[1].sum() == 36 and not editor.canvas.mask.any()
    editor.paste_button.click()
    editor.gallery.clicked = {"index": 2, "x": 11, "y": 10}
    assert editor.paste == (2, (10, 11)) and editor.current == 1
    for seed in (2, 3):
        editor.select(seed)
        _paint(editor, 6, 14, 4, 12)
        editor.context_button.click()
    assert editor.tray.captions == ["copy · 1", "paste · 2", "context · 2", "context · 3"]
    assert editor.tray.heatmaps.shape == (4, 16, 16)
    editor.execute_button.click()
    assert editor.wait()
    assert isinstance(editor.edit, Rewrite) and gen_session.edits == [editor.edit]
    assert "done: loss" in editor.status.value
    changed = editor.gallery._arrays.copy()
    assert not np.array_equal(changed, before)
    editor.view.value = "original"
    assert editor.wait()
    np.testing.assert_array_equal(editor.gallery._arrays, before)
    assert gen_session.edits == [editor.edit]
    editor.view.value = "changed"
    editor.undo_button.click()
    assert editor.wait() and gen_session.edits == []
    np.testing.assert_array_equal(editor.gallery._arrays, before)
    editor.redo_button.click()
    assert editor.wait()
    np.testing.assert_array_equal(editor.gallery._arrays, changed)


def test_tray_click_removes_and_missing_paste_is_reported(editor, gen_session):
    _paint(editor, 2, 8, 2, 8)
    editor.copy_button.click()
    _paint(editor, 2, 8, 2, 8)
    editor.context_button.click()
    editor.tray.clicked = {"index": 0, "x": 1, "y": 1}  # remove the copy region
    assert editor.copy is None and editor.tray.captions == ["context · 0"]
    editor.execute_button.click()
    assert editor.wait()
    assert "ValueError" in editor.status.value and "copy= and paste= missing" in editor.status.value
    assert gen_session.edits == [] and not editor.execute_button.disabled
    editor.paste_button.click()
    assert "Copy a region first" in editor.status.value


def test_save_load_and_matches(editor, gen_session, tmp_path):
    editor.copy = (0, np.pad(np.ones((4, 4), np.float32), ((2, 10), (2, 10))))
    editor.place(1, 12, 12)
    editor.context = [(1, np.pad(np.ones((6, 6), np.float32), ((8, 2), (8, 2))))]
    editor.execute()
    assert editor.wait() and len(gen_session.edits) == 1
    weights = gen_session.model.layer2[1].weight.detach().clone()
    editor.path.value = str(tmp_path / "rule.npz")
    editor.save_button.click()
    assert (tmp_path / "rule.npz").exists()
    gen_session.undo()
    editor.load_button.click()
    assert len(gen_session.edits) == 1 and "loaded" in editor.status.value
    assert torch.equal(gen_session.model.layer2[1].weight, weights)
    editor.match_button.click()
    assert editor.wait()
    assert sorted(editor.seeds) == [0, 1, 2, 3] and editor.gallery.heatmaps.shape == (4, 8, 8)
    assert editor.gallery.captions == [str(s) for s in editor.seeds]


def test_snapshot_of_a_rule_editor_toggles_original_and_rewritten(editor, gen_session):
    from gandissect_widgets.widgets import snapshot

    editor.select(1)
    _paint(editor, 2, 8, 2, 8)
    editor.take_copy()
    editor.place(2, 10, 11)
    editor.select(3)
    _paint(editor, 6, 14, 4, 12)
    editor.add_context()
    editor.execute()
    assert editor.wait() and editor.edit is not None
    snap = snapshot(editor)
    labels = [p["label"] for p in snap.pages]
    assert labels == ["original", "rewritten"]
    assert gen_session.edits == [editor.edit]  # taking the snapshot changed nothing
