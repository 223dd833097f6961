"""Lab reports from any saved notebook: ``export`` runs a notebook without widget state, says so,
stops at a failing cell with its number; ``--no-execute`` warns with the count; ``save_report``
takes the widgets live from the kernel."""

from __future__ import annotations

import json
import re

import nbformat
import numpy as np
import pytest

from gandissect_widgets import cli, jobs, notebook_run, report
from gandissect_widgets.widgets import ImageGrid

_VIEW = "application/vnd.jupyter.widget-view+json"
_STATE = "application/vnd.jupyter.widget-state+json"


def _saved_without_state(path, cells, model_id="0" * 32):
    """A notebook as JupyterLab saves it with default settings: the last cell's output names a
    widget model, the metadata holds no widget state."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    view = {"version_major": 2, "version_minor": 0, "model_id": model_id}
    nb.cells[-1].outputs = [
        nbformat.v4.new_output("display_data", data={_VIEW: view, "text/plain": "IntSlider"})
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "py"}
    nbformat.write(nb, path)
    return path


def _page_state(page: str) -> dict:
    found = re.search(rf'<script type="{re.escape(_STATE)}">(.*?)</script>', page, re.S)
    assert found, "the page carries no widget state"
    return json.loads(found.group(1).replace("<\\/", "</"))["state"]


def test_a_notebook_without_widget_state_is_run_and_says_so(tmp_path, capsys):
    nb = _saved_without_state(
        tmp_path / "lab.ipynb", ["import ipywidgets", "ipywidgets.IntSlider(value=7)"]
    )
    out = tmp_path / "lab.html"
    assert cli.main(["export", str(nb), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert re.search(r"ran lab\.ipynb headless \(1 widget output\(s\) had no saved state\): "
                     r"2 code cells in [\d.]+ s", printed.out), printed.out  # fmt: skip
    assert "running the notebook" in printed.err  # the per-cell progress bar
    state = _page_state(out.read_text())
    sliders = [m for m in state.values() if m["model_name"] == "IntSliderModel"]
    assert [m["state"]["value"] for m in sliders] == [7]
    assert nbformat.read(nb, as_version=4).metadata.get("widgets") is None  # file untouched


def test_no_execute_warns_with_the_count_of_widgets_without_state(tmp_path, capsys):
    nb = _saved_without_state(tmp_path / "lab.ipynb", ["import ipywidgets", "w = 1"])
    out = tmp_path / "lab.html"
    assert cli.main(["export", str(nb), "--out", str(out), "--no-execute"]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 widget output(s) of lab.ipynb have no saved state" in err, err
    assert _STATE not in out.read_text()
    with pytest.warns(UserWarning, match="1 widget output"):
        report.export_notebook(nb, out, execute=False)


def test_a_failing_cell_stops_the_export_with_its_number_and_error(tmp_path, capsys):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# title")]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in ("x = 1", "x / 0", "print('never')")]
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, path)  # never run: export runs it
    out = tmp_path / "bad.html"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["export", str(path), "--out", str(out), "--quiet"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "cell 3 failed, so the export stopped: ZeroDivisionError: division by zero" in err
    assert not out.exists()


def test_save_report_takes_the_widgets_live_from_the_kernel(tmp_path):
    grid = ImageGrid(np.full((2, 8, 8, 3), 90, np.uint8), size=32, captions=["a", "b"])
    nb = _saved_without_state(tmp_path / "live.ipynb", ["grid"], model_id=grid.model_id)
    out = report.save_report(tmp_path / "live.html", notebook=nb)
    state = _page_state(out.read_text())
    assert grid.model_id in state
    assert state[grid.model_id]["state"]["captions"] == ["a", "b"]
    with pytest.raises(ValueError, match="pass notebook="):
        report.save_report(tmp_path / "x.html", notebook=tmp_path / "missing.ipynb")
    # with items it is save_html: the widgets given, no notebook needed
    page = report.save_report(tmp_path / "items.html", "# Two", grid).read_text()
    assert grid.model_id in _page_state(page) and "<h1>" in page


def test_a_finished_progress_bar_leaves_nothing_in_the_saved_notebook(tmp_path):
    """tqdm's notebook bar (leave=False) stays in the saved outputs as it was displayed,
    "0%"; the package's bar (dissections use it) empties its output once done."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(  # jobs.py alone: the kernel need not import torch
            "import importlib.util\nfrom tqdm.auto import tqdm\n"
            f"spec = importlib.util.spec_from_file_location('jobs', {jobs.__file__!r})\n"
            "module = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(module)\n"
            "progress_bar = module.progress_bar"
        ),
        nbformat.v4.new_code_cell(
            "with tqdm(total=4, desc='plain', leave=False) as bar: bar.update(4)"
        ),
        nbformat.v4.new_code_cell("with progress_bar(4, 'ours') as bar: bar.update(4)"),
    ]
    notebook_run.execute(nb, tmp_path, progress=False)
    plain, ours = ([o.get("data", {}) for o in c.outputs] for c in nb.cells[1:])
    assert plain and plain[0]["text/plain"].startswith("plain:   0%")  # the defect, in tqdm
    assert [d.get("text/plain") for d in ours] == [""]
