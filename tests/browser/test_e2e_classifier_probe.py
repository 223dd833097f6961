"""ClassifierProbe end to end in JupyterLab 4 and Notebook 7: a sketch drawn with the mouse
changes the bars, steering previews and leaves the Session unchanged until Apply, an attack
runs and shows its result; no console errors from our code."""

from __future__ import annotations

import pytest

from .jupyter_server import JupyterServer
from .test_e2e_jupyter import (
    REPORT,
    Notebook,
    _diagnostics,
    _ours,
    _paint_stroke,
    _until,
    _write_notebook,
    lab_page,  # noqa: F401  (a fixture)
)

NAME = "probe.ipynb"
PROBE = (
    REPORT
    + """
session = gw.Session.from_zoo("hamlet-classifier", device="cpu")
probe = gw.ClassifierProbe(session, "conv4", sample=1_000_000_004)
probe.attack_target = "lake"
probe.attack_eps = 16
probe.wait()
display(probe)
report("probe", probs=probe.probs, edits=[])
"""
)
STATE = """\
probe.wait()
report("state", probs=probe.probs, preview=probe.probs_preview, mask=int(probe.canvas.mask.sum()),
       kind=probe.status_kind, edits=[e.describe() for e in session.edits],
       attack=probe.attack_state, text=probe.attack_text)
"""


@pytest.fixture(params=["lab", "notebook"], ids=["jupyterlab4", "notebook7"])
def probe_server(request, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    _write_notebook(root, [PROBE, STATE], NAME)
    with JupyterServer(request.param, root) as server:
        yield server


@pytest.mark.browser
@pytest.mark.slow
def test_sketch_steer_apply_and_attack_in_the_frontends(lab_page, probe_server, tmp_path):  # noqa: F811
    page = lab_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)) if _ours(exc) else None)
    nb = Notebook(page)
    with _diagnostics(page, probe_server, tmp_path):
        page.goto(probe_server.notebook_url(NAME))
        nb.wait_for_kernel()
        start = nb.run(0)
        probe = nb.cells.nth(0).locator(".gw-classifier-probe")
        probe.wait_for()
        _paint_stroke(page, probe.locator(".gw-paint-view"))
        sketched = _until(nb, 1, lambda s: s["mask"] > 0)
        assert sketched["probs"] != start["probs"], (start, sketched)

        probe.get_by_label("steer towards").select_option("village")
        preview = _until(nb, 1, lambda s: s["kind"] == "preview")
        assert preview["edits"] == [] and preview["preview"] != preview["probs"], preview
        probe.get_by_role("button", name="Apply").click()
        applied = _until(nb, 1, lambda s: bool(s["edits"]))
        assert "towards village" in applied["edits"][0], applied

        probe.get_by_role("button", name="Attack").click()
        done = _until(nb, 1, lambda s: s["attack"] == "done", tries=100)
        assert "dB" in done["text"], done
        result = probe.locator(".gw-cp-attack-text")
        page.wait_for_function("el => el.innerText.includes('dB')", arg=result.element_handle())
        assert result.inner_text().startswith("the attack "), result.inner_text()  # its verdict
        assert result.evaluate("el => getComputedStyle(el).opacity") == "1"  # not a faint hint
    assert not errors, errors
