"""Committed notebooks stay small, kernel-neutral and in order, so they never rot silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
EXPECTED = [
    "01_explore_units",
    "02_ablation",
    "03_rewriting",
    "04_classifier_dissection",
    "05_your_own_model",
    "06_your_own_photo",
    "07_fool_the_classifier",
    "08_transformers",
]
MAX_OUTPUT_BYTES = 150_000
MAX_NOTEBOOK_BYTES = 600_000


def test_every_tutorial_is_there():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_hygiene(path):
    assert path.stat().st_size <= MAX_NOTEBOOK_BYTES, f"{path.name} is {path.stat().st_size} bytes"
    nb = json.loads(path.read_text())
    meta = nb.get("metadata", {})
    assert "widgets" not in meta, "saved widget state bloats the file; clear it"
    assert meta.get("kernelspec", {}).get("name", "python3") == "python3"
    counts = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        for out in cell.get("outputs", []):
            size = len(json.dumps(out))
            assert size <= MAX_OUTPUT_BYTES, f"an output of {size} bytes in {path.name}"
        counts.append(cell.get("execution_count"))
    numbered = [c for c in counts if c is not None]
    assert numbered == sorted(numbered) and len(set(numbered)) == len(numbered), (
        f"execution counts out of order in {path.name}: {counts}"
    )
    if numbered:
        assert numbered == list(range(1, len(numbered) + 1)), (
            f"{path.name} was not run top to bottom"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_output_shows_a_python_object_address(path):
    """A text-only viewer shows a widget's text/plain: its caption, never "<... at 0x7f...>"."""
    cells = json.loads(path.read_text())["cells"]
    texts = [
        "".join(out.get("data", {}).get("text/plain", ""))
        for cell in cells
        for out in cell.get("outputs", [])
    ]
    assert not [t for t in texts if " object at 0x" in t], path.stem
