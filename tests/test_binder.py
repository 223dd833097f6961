"""The Binder set-up installs into a fresh venv and runs a tutorial there (slow: ~2-4 min)."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_binder_install_runs_a_notebook(tmp_path):
    env_dir = tmp_path / "binder-venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(env_dir),
    }
    env.pop("PYTHONPATH", None)
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "-q"]
    subprocess.run(
        [*pip, "-r", str(ROOT / "binder" / "requirements.txt")], check=True, env=env, timeout=900
    )
    subprocess.run(
        ["bash", str(ROOT / "binder" / "postBuild")], check=True, env=env, cwd=ROOT, timeout=900
    )
    out = tmp_path / "ran.ipynb"
    subprocess.run(
        [str(bin_dir / "jupyter"), "nbconvert", "--to", "notebook", "--execute",
         "--ExecutePreprocessor.timeout=300", "--ExecutePreprocessor.kernel_name=python3",
         "--output", str(out), str(ROOT / "notebooks" / "05_your_own_model.ipynb")],
        check=True, env=env, cwd=tmp_path, timeout=900,
    )  # fmt: skip
    assert out.exists()
    probe = "import gandissect_widgets, sys; print(gandissect_widgets.__file__, sys.prefix)"
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", probe],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(env_dir) in where.stdout, where.stdout  # the notebook ran on the Binder install
    assert sys.prefix not in where.stdout.split()[0]
