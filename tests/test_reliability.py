"""Failures found at the edges (issue 25): each test here failed before its fix."""

from __future__ import annotations

import pytest

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
