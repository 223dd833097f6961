"""Start and stop a private JupyterLab 4 or Notebook 7 server for end-to-end browser tests.

The server listens on 127.0.0.1 with a random token, serves a temporary root directory, and
reads its config, data, runtime and settings from temporary directories, so nothing of the
user's own Jupyter set-up leaks in. Its kernel is this interpreter (``sys.executable``).

>>> with JupyterServer("lab", tmp_path) as server:          # doctest: +SKIP
...     page.goto(server.url("lab/tree/demo.ipynb"))
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import subprocess
import sys
import time
import urllib.request

FRONTENDS = {"lab": "jupyterlab", "notebook": "notebook"}

# Settings that keep the page quiet and deterministic: no news or update pop-ups, every cell
# in the DOM (no windowing), no autosave racing the test.
_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
}


class JupyterServer:
    """A Jupyter server process: ``frontend`` is "lab" (JupyterLab) or "notebook" (Notebook 7).

    ``root`` is the directory it serves; its private Jupyter directories go in ``root/.jupyter``.
    Use it as a context manager, or call :meth:`start` and :meth:`stop`.

    >>> server = JupyterServer("notebook", tmp_path).start()   # doctest: +SKIP
    >>> server.url("notebooks/demo.ipynb")                     # doctest: +SKIP
    'http://127.0.0.1:41234/notebooks/demo.ipynb?token=...'
    >>> server.stop()                                          # doctest: +SKIP
    """

    def __init__(self, frontend: str, root, *, timeout: float = 90):
        if frontend not in FRONTENDS:
            raise ValueError(f"unknown frontend {frontend!r}; valid: {', '.join(FRONTENDS)}")
        self.frontend = frontend
        self.root = pathlib.Path(root)
        self.timeout = timeout
        self.token = secrets.token_hex(16)
        self.home = self.root / ".jupyter"
        self.log_path = self.home / "server.log"
        self.port: int | None = None
        self._process: subprocess.Popen | None = None
        self._log = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> JupyterServer:
        """Launch the server and wait until its API answers; RuntimeError with the log if not."""
        env = self._environment()
        args = [
            sys.executable,
            "-m",
            FRONTENDS[self.frontend],
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port=0",
            f"--ServerApp.root_dir={self.root}",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.jpserver_extensions={'jupyter_lsp': False}",
            f"--LabApp.workspaces_dir={self.home / 'workspaces'}",
        ]
        if self.frontend == "notebook":
            args[-1] = f"--JupyterNotebookApp.workspaces_dir={self.home / 'workspaces'}"
        self._log = open(self.log_path, "wb")
        self._process = subprocess.Popen(
            args, cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        try:
            self.port = self._wait_for_port(env["JUPYTER_RUNTIME_DIR"])
            self._wait_for_api()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Shut the server (and its kernels) down; kill it if it does not exit in 15 s."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            if self.port is not None:
                try:
                    self._request("api/shutdown", method="POST")
                except OSError:
                    pass
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> JupyterServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ use
    def url(self, path: str) -> str:
        """Absolute URL of ``path`` (e.g. "lab/tree/x.ipynb") with the token attached."""
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}{sep}token={self.token}"

    def notebook_url(self, name: str) -> str:
        """URL that opens notebook ``name`` (relative to root) in this server's frontend."""
        prefix = "lab/tree" if self.frontend == "lab" else "notebooks"
        return self.url(f"{prefix}/{name}")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log (for failure messages)."""
        if not self.log_path.exists():
            return "(no server log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    # ------------------------------------------------------------ helpers
    def _environment(self) -> dict[str, str]:
        dirs = {
            "JUPYTER_CONFIG_DIR": self.home / "config",
            "JUPYTER_DATA_DIR": self.home / "data",
            "JUPYTER_RUNTIME_DIR": self.home / "runtime",
            "JUPYTERLAB_SETTINGS_DIR": self.home / "settings",
            "JUPYTERLAB_WORKSPACES_DIR": self.home / "workspaces",
            "IPYTHONDIR": self.home / "ipython",
        }
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        for name, values in _SETTINGS.items():
            plugin, _, file = name.rpartition("/")
            target = dirs["JUPYTERLAB_SETTINGS_DIR"] / plugin / f"{file}.jupyterlab-settings"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values))
        kernel = dirs["JUPYTER_DATA_DIR"] / "kernels" / "python3"
        kernel.mkdir(parents=True, exist_ok=True)
        spec = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (gandissect-widgets tests)",
            "language": "python",
        }
        (kernel / "kernel.json").write_text(json.dumps(spec))
        env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
        env.update({k: str(v) for k, v in dirs.items()})
        env["JUPYTER_PREFER_ENV_PATH"] = "0"  # our kernelspec over the venv's
        env.setdefault("OMP_NUM_THREADS", "1")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _wait_for_port(self, runtime_dir: str) -> int:
        """The port from the server's jpserver-<pid>.json once it has bound its socket."""
        info = pathlib.Path(runtime_dir) / f"jpserver-{self._process.pid}.json"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(self._failure(f"exited with code {self._process.returncode}"))
            if info.exists():
                try:
                    return int(json.loads(info.read_text())["port"])
                except (ValueError, KeyError):
                    pass  # half-written; read again
            time.sleep(0.2)
        raise RuntimeError(self._failure(f"wrote no {info.name} within {self.timeout:.0f} s"))

    def _wait_for_api(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                self._request("api/status")
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(self._failure(f"did not answer within {self.timeout:.0f} s"))

    def _request(self, path: str, method: str = "GET") -> bytes:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def _failure(self, what: str) -> str:
        return f"Jupyter {self.frontend} server {what}; log tail:\n{self.log_tail()}"
