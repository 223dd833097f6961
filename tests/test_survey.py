"""Layer surveys on the tiny generator: the table agrees with the dissections it ran."""

from __future__ import annotations

import numpy as np
import pytest

import gandissect_widgets as gw


def test_survey_rows_agree_with_dissections(seg_session):
    s = seg_session
    table = gw.survey(s, n=16, effect_n=8, min_iou=0.04, cache=False, progress=False)
    assert [r["layer"] for r in table.rows] == s.layers
    for row in table.rows:
        d = s.dissections[row["layer"]]
        assert row["interpretable"] == len(d.interpretable()) / row["units"]
        assert row["concepts"] == len(d.summary()) and row["counts"] == d.summary()
        for concept, (unit, iou) in row["best"].items():
            assert unit == d.units_for(concept, 0.04)[0] and d.labels[unit] == concept
            assert iou == pytest.approx(float(d.best_iou[unit]), abs=1e-4)
        assert set(row["removed"]) == set(row["counts"])
        assert all(-10 < v <= 1 for v in row["removed"].values())
    assert table.best_layer() in s.layers
    assert "interpretable" in repr(table) and "<table>" in table._repr_html_()
    with pytest.raises(ValueError, match="by must be"):
        table.best_layer(by="iou")


def _rule(session, layer):
    dark = np.zeros((16, 16), np.float32)
    dark[4:12, 4:12] = 1
    return {
        "request": {"context": [(1, dark), (2, dark)], "copy": (3, dark), "paste": (4, (8, 8))},
        "source_concept": "dark",
        "target_concept": "bright",
    }


def test_rewrite_survey_measures_each_layer(seg_session):
    table = gw.rewrite_survey(
        seg_session, _rule, ["layer2", "layer3", "output"], n=8, steps=20, stat_samples=32,
        cache=False,
    )  # fmt: skip
    rows = {r["layer"]: r for r in table.rows}
    assert seg_session.edits == []
    for layer in ("layer2", "layer3"):
        assert 0 <= rows[layer]["success"] <= 1 and rows[layer]["n"] == 8
    assert table.best()["layer"] in rows
    assert "success" in repr(table)
