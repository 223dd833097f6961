"""A script that ends while widgets render or jobs run exits cleanly (no abort at shutdown)."""

from __future__ import annotations

import subprocess
import sys

import pytest

_SCRIPT = """
import gandissect_widgets as gw
session = gw.Session.from_zoo("hamlet")
panel = gw.AblationPanel(session, "layer6", units=[1, 2, 3])
session.ablate("layer6", [5])  # the panel re-renders in its worker as the script ends
{job}
"""
_JOB = 'job = session.dissect("layer4", n=2000, cache=False, progress=False, background=True)'
_PHOTOS = """
import time
for name in "abc":  # one inverted, two queued: a cancelled one starts the next
    panel.add_photo(session.generate([5])[0], name)
time.sleep(0.5)
"""


@pytest.mark.parametrize(
    "job", ["", _JOB, _PHOTOS], ids=["render", "render-and-job", "queued-photos"]
)
def test_a_script_that_ends_mid_work_exits_cleanly(job):
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(job=job)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
