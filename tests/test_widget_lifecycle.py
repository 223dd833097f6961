"""Widgets free what they hold: close() ends worker threads and closes every model made
(children, layouts, styles); a constructor that fails leaves nothing behind."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from ipywidgets.widgets.widget import _instances  # ipywidgets 8: every registered model

import gandissect_widgets as gw
from gandissect_widgets.widgets import (
    AblationPanel,
    ImageGrid,
    PaintCanvas,
    RuleEditor,
    Snapshot,
    UnitBrowser,
)
from gandissect_widgets.widgets._latest import Latest

CYCLES = 200
_IMAGES = np.zeros((2, 16, 16, 3), np.uint8)


@pytest.fixture(scope="module")
def hamlet():
    return gw.Session.from_zoo("hamlet")


def _held():
    """(Python threads, registered widget models) now."""
    return threading.active_count(), len(_instances)


MAKERS = {
    "ImageGrid": lambda s: ImageGrid(_IMAGES, columns=2, size=32),
    "PaintCanvas": lambda s: PaintCanvas(_IMAGES[0], size=32),
    "Snapshot": lambda s: Snapshot(title="t", size=32),
    "UnitBrowser": lambda s: UnitBrowser(s, "layer4", seeds=[0, 1], top=2, pool=4, size=32),
    "AblationPanel": lambda s: AblationPanel(s, "layer4", seeds=[0, 1], size=32),
    "RuleEditor": lambda s: RuleEditor(s, "layer6", seeds=[0, 1], size=32),
}


@pytest.mark.parametrize("name", list(MAKERS))
def test_close_frees_threads_and_models(hamlet, name):
    before, observers = _held(), hamlet.observers
    for _ in range(CYCLES):
        widget = MAKERS[name](hamlet)
        widget.close()
        widget.close()  # twice is harmless
    assert _held() == before
    assert hamlet.observers == observers and hamlet.edits == []


def _boom(*_args, **_kwargs):
    raise RuntimeError("boom")


# each breaks a call the constructor makes after session.observe(...)
AFTER_SUBSCRIPTION = [
    (UnitBrowser, "layer4", "refresh"),
    (AblationPanel, "layer4", "refresh"),
    (RuleEditor, "layer6", "_render"),
]


@pytest.mark.parametrize("cls, layer, method", AFTER_SUBSCRIPTION)
def test_constructor_failing_after_subscription_leaves_nothing(
    hamlet, monkeypatch, cls, layer, method
):
    before, observers = _held(), hamlet.observers
    monkeypatch.setattr(cls, method, _boom)
    with pytest.raises(RuntimeError, match="boom"):
        cls(hamlet, layer, seeds=[0, 1], size=32)
    assert hamlet.observers == observers
    assert _held() == before
    edit = hamlet.ablate("layer4", [3])  # events reach only live observers
    assert hamlet.edits == [edit]
    hamlet.replace(edit, None)
    assert hamlet.edits == []


@pytest.mark.parametrize("cls", [UnitBrowser, AblationPanel, RuleEditor])
def test_bad_layer_leaves_nothing(hamlet, cls):
    before, observers = _held(), hamlet.observers
    with pytest.raises(KeyError, match="nope"):
        cls(hamlet, "nope", seeds=[0, 1], size=32)
    assert hamlet.observers == observers and _held() == before


def test_base_widget_failing_after_registration_leaves_nothing():
    before = _held()
    with pytest.raises(ValueError, match="images must be"):
        ImageGrid(np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="image must be"):
        PaintCanvas(np.zeros((2, 3), np.uint8))
    assert _held() == before


def test_rule_editor_close_cancels_a_running_execute(gen_session):
    before = _held()
    editor = RuleEditor(gen_session, "layer2", seeds=range(4), stat_samples=16, cache=False)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:10, 4:10] = 1
    editor.canvas.mask = mask
    editor.take_copy()
    editor.place(2, 8, 8)
    editor.canvas.mask = mask
    editor.add_context()
    editor.steps = 20000
    editor.execute()
    editor.close()
    assert not editor._job.is_alive()
    assert _held() == before and gen_session.edits == []


def test_latest_close_ends_worker_and_ignores_later_submits():
    before = threading.active_count()
    ran, started, release = [], threading.Event(), threading.Event()
    runner = Latest()
    assert threading.active_count() == before + 1
    assert runner.submit(lambda: started.set() or release.wait(5) and ran.append(1))
    assert started.wait(5)
    runner.submit(lambda: ran.append(2))  # pending: dropped by close
    release.set()
    assert runner.close() is True  # the running request finishes, the worker ends
    assert threading.active_count() == before
    assert ran == [1]
    assert runner.submit(lambda: ran.append(3)) is False
    assert runner.wait(0) and runner.close() is True
    assert ran == [1]


def test_latest_close_wakes_an_idle_worker_at_once():
    runner = Latest()
    runner.submit(lambda: None)
    runner.wait()
    assert runner.close(timeout=0.5) is True
