"""What can be checked offline about the front-ends we cannot run here (VS Code, Colab): the ES
modules use only the anywidget model API every widget manager offers (no Lab-only API, no
import), and every widget's display bundle carries a picture and text for front-ends that draw
no widgets (nbconvert, GitHub)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import gandissect_widgets as gw

STATIC = Path(gw.__file__).parent / "widgets" / "static"
# anywidget's AFM model interface (get/set/save_changes/on/off/send) and the manager handle
# _util.js reads to tell a saved page (the HTML manager) from a live one
MODEL_API = {"get", "set", "save_changes", "on", "off", "send", "widget_manager"}
LAB_ONLY = re.compile(r"@jupyterlab|@lumino|jupyterapp|window\.jupyter|requirejs|\bdefine\(")


def test_es_modules_use_only_the_anywidget_model_api():
    for path in STATIC.glob("*.js"):
        code = path.read_text()
        used = set(re.findall(r"\bmodel\.([A-Za-z_]+)", code))
        assert used <= MODEL_API, f"{path.name} uses {used - MODEL_API}"
        assert not LAB_ONLY.search(code), f"{path.name}: {LAB_ONLY.search(code).group()}"
        assert not re.search(r"^\s*import\s|import\(", code, re.M), f"{path.name} imports"


def test_every_widget_bundle_has_a_picture_and_text(gen_session):
    widgets = [
        gw.ImageGrid(np.zeros((2, 8, 8, 3), np.uint8)),
        gw.PaintCanvas(np.zeros((8, 8, 3), np.uint8), size=32),  # empty: text only, by design
        gw.AblationPanel(gen_session, "layer2", units=[1], seeds=[0]),
        gw.UnitBrowser(gen_session, "layer2", seeds=[0], pool=2),
        gw.RuleEditor(gen_session, "layer2", seeds=[0], stat_samples=8, cache=False),
    ]
    try:
        for w in widgets:
            bundle = w._repr_mimebundle_()
            data = bundle[0] if isinstance(bundle, tuple) else bundle
            kinds = set(data)
            name = type(w).__name__
            assert "application/vnd.jupyter.widget-view+json" in kinds, name
            assert {"image/png", "text/plain"} <= kinds, f"{name}: {kinds}"
    finally:
        for w in widgets:
            w.close()
