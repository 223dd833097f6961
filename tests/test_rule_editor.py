"""RuleEditor driven from Python as the page drives it (``press``): copy, paste with a preview,
context, execute, toggle, undo and redo of the rewrite, status, save/load, matches."""

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


def _gallery(editor) -> np.ndarray:
    return editor.gallery_grid.images.copy()


@pytest.fixture
def editor(gen_session):
    ed = RuleEditor(gen_session, "layer2", seeds=range(4), stat_samples=16, cache=False)
    ed.steps = 40
    assert ed.wait()
    yield ed
    ed.close()


def test_copy_paste_context_execute_undo_redo_and_status(editor, gen_session):
    before = _gallery(editor)
    canvas_before = editor.canvas.image.copy()
    editor.press("gallery", index=1, x=3, y=3)  # select sample 1
    assert editor.current == 1 and "#1" in editor.canvas_caption
    _paint(editor, 2, 8, 2, 8)
    editor.press("copy")
    assert editor.copy[0] == 1 and editor.copy[1].sum() == 36 and not editor.canvas.mask.any()
    assert editor.copy_seed == 1 and len(editor.copy_mask) == 256  # synced traits
    editor.press("paste")
    assert editor.placing
    editor.press("gallery", index=2, x=11, y=10)
    assert editor.paste == (2, (10, 11)) and editor.paste_at == [2, 10, 11]
    assert editor.current == 1 and not editor.placing
    # the paste is previewed: sample 2 with sample 1's copied pixels centred at (10, 11)
    preview = editor.tray_grid.images[1]
    copied = editor.session.generate([1])[0][2:8, 2:8]
    np.testing.assert_array_equal(preview[8:14, 8:14], copied)  # centre 4.5 -> 10.5
    assert editor.tray_grid.heatmaps[1][8:14, 8:14].min() == 1
    for seed in (2, 3):
        editor.select(seed)
        _paint(editor, 6, 14, 4, 12)
        editor.press("context")
    assert editor.context_seeds == [2, 3]
    assert editor.tray["captions"] == [
        "copy · #1",
        "paste · #2 at x 11, y 10",  # clicked at x 11, y 10, as the hover says
        "context · #2",
        "context · #3",
    ]
    assert editor.tray_grid.heatmaps.shape == (4, 16, 16)
    editor.press("execute")
    assert editor.wait()
    assert isinstance(editor.edit, Rewrite) and gen_session.edits == [editor.edit]
    assert editor.status.startswith("rewritten: loss") and editor.status_kind == "applied"
    assert editor.rewrite_applied and editor.has_rewrite and not editor.running
    changed = _gallery(editor)
    assert not np.array_equal(changed, before)
    # the canvas shows the rewritten model too
    editor.select(0)
    assert not np.array_equal(editor.canvas.image, canvas_before)
    editor.view = "original"
    assert editor.wait()
    np.testing.assert_array_equal(_gallery(editor), before)
    np.testing.assert_array_equal(editor.canvas.image, canvas_before)
    assert gen_session.edits == [editor.edit] and "original" in editor.status
    editor.view = "changed"
    editor.press("undo")
    assert editor.wait() and gen_session.edits == []
    assert editor.status.startswith("rewrite undone") and editor.can_redo
    assert not editor.rewrite_applied
    np.testing.assert_array_equal(_gallery(editor), before)
    editor.press("redo")
    assert editor.wait()
    np.testing.assert_array_equal(_gallery(editor), changed)
    assert editor.status.startswith("applied") and not editor.can_redo


def test_undo_elsewhere_updates_the_status(editor, gen_session):
    editor.copy = (0, np.pad(np.ones((4, 4), np.float32), ((2, 10), (2, 10))))
    editor.place(1, 12, 12)
    editor.context = [(1, np.pad(np.ones((6, 6), np.float32), ((8, 2), (8, 2))))]
    editor.execute()
    assert editor.wait() and editor.status_kind == "applied"
    gen_session.undo()
    assert editor.wait()
    assert editor.status.startswith("rewrite undone") and editor.status_kind == "preview"


def test_tray_click_removes_and_missing_paste_is_reported(editor, gen_session):
    _paint(editor, 2, 8, 2, 8)
    editor.press("copy")
    _paint(editor, 2, 8, 2, 8)
    editor.press("context")
    editor.press("tray", index=0, x=1, y=1)  # remove the copy region
    assert editor.copy is None and editor.tray["captions"] == ["context · #0"]
    editor.press("execute")
    assert editor.wait()
    assert editor.status_kind == "error" and editor.status.startswith("Copy first: paint")
    assert gen_session.edits == [] and not editor.running
    editor.press("paste")
    assert "Copy a region first" in editor.status
    editor.press("copy")  # nothing painted
    assert "paint a region" in editor.status


def test_save_load_and_matches(editor, gen_session, tmp_path):
    editor.copy = (0, np.pad(np.ones((4, 4), np.float32), ((2, 10), (2, 10))))
    editor.place(1, 12, 12)
    editor.context = [(1, np.pad(np.ones((6, 6), np.float32), ((8, 2), (8, 2))))]
    editor.execute()
    assert editor.wait() and len(gen_session.edits) == 1
    weights = gen_session.model.layer2[1].weight.detach().clone()
    editor.path = str(tmp_path / "rule.npz")
    editor.press("save")
    assert (tmp_path / "rule.npz").exists() and "saved to" in editor.status
    gen_session.undo()
    editor.press("load")
    assert editor.wait()
    assert len(gen_session.edits) == 1 and "loaded" in editor.status
    assert torch.equal(gen_session.model.layer2[1].weight, weights)
    editor.press("matches")
    assert editor.wait()
    assert sorted(editor.seeds) == [0, 1, 2, 3] and editor.gallery_grid.heatmaps.shape == (4, 8, 8)
    assert editor.gallery["captions"] == [f"#{s}" for s in editor.seeds]
    assert "context match" in editor.status


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


def test_bad_values_are_refused(editor):
    with pytest.raises(ValueError, match="view must be"):
        editor.view = "both"
    with pytest.raises(ValueError, match="rank must be >= 1"):
        editor.rank = 0
    with pytest.raises(ValueError, match="region mask must be"):
        editor.copy = (0, np.ones((3, 3)))
