"""The shipped tutorials match their generator (notebooks/_build.py) and read well unrun: every
widget output carries a picture, nothing prints a stray repr, no stale progress bar is saved.
(nbval re-runs them in ``make test``; this checks the saved files without a kernel.)"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
VIEW = "application/vnd.jupyter.widget-view+json"


def _build_module():
    spec = importlib.util.spec_from_file_location("_tutorial_build", NOTEBOOKS / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = _build_module()
NAMES = list(BUILD.NOTEBOOKS)


def _load(name: str) -> dict:
    return json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())


def test_every_registered_tutorial_is_shipped():
    assert "06_your_own_photo" in NAMES
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_saved_cells_are_the_generated_ones(name):
    """A hand edit of a .ipynb (or a forgotten rebuild) shows up here."""
    saved = [("".join(c["source"]), c["cell_type"]) for c in _load(name)["cells"]]
    generated = [(c.source, c.cell_type) for c in BUILD.NOTEBOOKS[name]()]
    assert saved == generated


@pytest.mark.parametrize("name", NAMES)
def test_saved_outputs_read_well_without_a_kernel(name):
    outputs = [o for c in _load(name)["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert outputs, f"{name} was saved unrun"
    widgets = [i for i, o in enumerate(outputs) if VIEW in o.get("data", {})]
    assert widgets, f"{name} shows no widget"
    for i in widgets:  # its picture: in its bundle, or (shown by IPython) the next output's
        data = outputs[i]["data"]
        if "image/png" not in data:
            data = outputs[i + 1].get("data", {}) if i + 1 < len(outputs) else {}
            assert "gw-static-picture" in "".join(data.get("text/html", "")), name
        assert "image/png" in data and "<img " in "".join(data["text/html"])
    for o in outputs:
        text = json.dumps(o.get("data", {}).get("text/plain", "")) + json.dumps(o.get("text", ""))
        assert "matplotlib.legend.Legend" not in text, f"stray legend repr in {name}"
        assert "object at 0x" not in text or "image/png" in o.get("data", {}), text[:200]
        assert o.get("output_type") != "error", f"{name} saved an error"
        assert not BUILD._progress_bar(o), f"{name} saved a progress bar"


def test_slow_cells_show_progress():
    """Dissection, inversion and the loops over many generations run with a progress bar."""
    sources = "\n".join(c.source for name in NAMES for c in BUILD.NOTEBOOKS[name]())
    assert "progress=False" not in sources
    assert sources.count("progress=True") >= 4 and "tqdm" in sources
    sanitize = (NOTEBOOKS / "sanitize.cfg").read_text()
    assert "[tqdm bars]" in sanitize
