"""Browser-test fixtures: headless Chromium, a local harness page, and a Python<->view bridge.

``mount(widget)`` renders an anywidget's ES module alone in the harness page with a fake model
holding the widget's state. What Python sets reaches the view at once; what the view saves or
sends reaches Python on ``view.sync()``, the way a kernel round trip would.

Tests are marked ``@pytest.mark.browser``. Without Chromium they skip with a clear message,
unless ``GW_REQUIRE_BROWSER=1``, which makes them fail instead (CI sets it).
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import pathlib
import shutil
import tempfile
import threading

import numpy as np
import pytest

_HERE = pathlib.Path(__file__).parent
_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _find_chromium() -> str | None:
    """$GW_CHROMIUM if set (and nothing else), else /usr/bin/chromium, else one on PATH."""
    if "GW_CHROMIUM" in os.environ:
        path = os.environ["GW_CHROMIUM"]
        return path if os.access(path, os.X_OK) else None
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return next((p for p in map(shutil.which, _CANDIDATES) if p), None)


def _unavailable(reason: str):
    if os.environ.get("GW_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests required (GW_REQUIRE_BROWSER=1) but {reason}", pytrace=False)
    pytest.skip(f"{reason}; install Debian's chromium or set GW_CHROMIUM to run browser tests")


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium (Debian's, never a Playwright download), shared by the session."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed")
    executable = _find_chromium()
    if executable is None:
        where = os.environ.get("GW_CHROMIUM") or "/usr/bin/chromium or on PATH"
        _unavailable(f"no Chromium executable was found ({where})")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=_ARGS)
        yield chromium
        chromium.close()


def block_the_network(page, url: str, *, allow_data: bool = False) -> list[str]:
    """Let ``page`` load only ``url`` (and ``data:`` URLs with ``allow_data``): every other
    request is aborted and its URL appended to the returned list, which an offline test
    expects empty."""
    blocked: list[str] = []

    def route(r):
        if r.request.url == url or (allow_data and r.request.url.startswith("data:")):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return blocked


@pytest.fixture(scope="session")
def harness_url():
    """URL of harness.html, served from 127.0.0.1 by a background http.server."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(_HERE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/harness.html"
    server.shutdown()
    server.server_close()


@pytest.fixture
def page(browser, harness_url):
    """A fresh page on the harness, 1 CSS pixel = 1 device pixel; page errors fail the test."""
    context = browser.new_context(viewport={"width": 1000, "height": 800}, device_scale_factor=1)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(harness_url)
    yield pg
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def _to_wire(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (list, tuple)):
        return [_to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_wire(v) for k, v in value.items()}
    return value


def _from_wire(value):
    if isinstance(value, dict) and set(value) == {"$b64"}:
        return memoryview(base64.b64decode(value["$b64"]))
    if isinstance(value, list):
        return [_from_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: _from_wire(v) for k, v in value.items()}
    return value


class WidgetView:
    """One widget's ES module rendered in the harness page, wired to the Python widget."""

    def __init__(self, page, widget, dark: bool = False):
        self.page, self.widget = page, widget
        self.saves = 0
        widget.send_state = self._send_state  # what the kernel would send now goes to the view
        state = _to_wire(widget.get_state())
        self.page.evaluate(
            "([esm, css, state, dark]) => gw.mount(esm, css, state, dark)",
            [str(widget._esm), str(getattr(widget, "_css", "")), state, dark],
        )
        self.el = page.locator("#root > div")

    def _send_state(self, key=None):
        self.page.evaluate("state => gw.update(state)", _to_wire(self.widget.get_state(key)))

    def sync(self) -> list[dict]:
        """Deliver what the view saved and sent to Python; return the messages it sent."""
        out = self.page.evaluate("() => gw.take()")
        self.saves = out["saves"]
        if out["state"]:
            self.widget.set_state(_from_wire(out["state"]))
        for content in out["sent"]:
            self.widget._handle_custom_msg(content, [])
        self.settle()
        return out["sent"]

    def settle(self) -> None:
        """Wait for pending image decodes and two animation frames."""
        self.page.evaluate("() => gw.settle()")

    def model(self, name: str):
        """A trait's value as the view's model holds it (binary values as bytes)."""
        value = _from_wire(self.page.evaluate("n => gw.state(n)", name))
        return bytes(value) if isinstance(value, memoryview) else value

    def pixels(self, selector: str = "canvas", index: int = 0) -> np.ndarray:
        """RGBA uint8 (H, W, 4) of the index-th canvas matching ``selector``."""
        out = self.page.evaluate("([s, i]) => gw.pixels(s, i)", [selector, index])
        rgba = np.frombuffer(base64.b64decode(out["data"]), np.uint8)
        return rgba.reshape(out["height"], out["width"], 4)

    def box(self, selector: str = "canvas", index: int = 0) -> dict:
        """Page-coordinate bounding box (x, y, width, height) of an element in the view."""
        return self.el.locator(selector).nth(index).bounding_box()

    def screenshot(self, name: str, directory) -> pathlib.Path:
        """PNG screenshot of the view; also copied to $GW_SCREENSHOTS when that is set."""
        path = pathlib.Path(directory) / f"{name}.png"
        self.el.screenshot(path=str(path))
        if os.environ.get("GW_SCREENSHOTS"):
            shutil.copy(path, pathlib.Path(os.environ["GW_SCREENSHOTS"]) / path.name)
        return path


@pytest.fixture
def mount(page):
    """``mount(widget, dark=False)`` -> WidgetView of the widget rendered alone in the page."""
    return functools.partial(WidgetView, page)


class ServedFolder:
    """One test's folder on a shared Jupyter server: its URLs, the server's log, and the
    shutdown of the kernels its notebooks started (so the next test starts clean)."""

    def __init__(self, server, folder: pathlib.Path):
        self.server, self.folder, self.frontend = server, folder, server.frontend

    def notebook_url(self, name: str) -> str:
        # "reset": JupyterLab opens this notebook alone, not the last test's restored tabs
        url = self.server.notebook_url(f"{self.folder.name}/{name}")
        return url.replace("?", "?reset&", 1) if self.frontend == "lab" else url

    def log_tail(self, lines: int = 40) -> str:
        return self.server.log_tail(lines)

    def shut_down_kernels(self) -> None:
        for session in json.loads(self.server._request("api/sessions")):
            if session.get("path", "").startswith(self.folder.name + "/"):
                self.server._request(f"api/sessions/{session['id']}", method="DELETE")


@pytest.fixture(scope="session")
def jupyter_servers(tmp_path_factory):
    """``get(frontend)``: one private JupyterLab 4 / Notebook 7 server per frontend for the whole
    run, started on first use (a start costs seconds of both cores)."""
    from .jupyter_server import JupyterServer

    servers: dict = {}

    def get(frontend: str):
        if frontend not in servers:
            root = tmp_path_factory.mktemp(f"jupyter-{frontend}")
            servers[frontend] = JupyterServer(frontend, root).start()
        return servers[frontend]

    yield get
    for server in servers.values():
        server.stop()


@pytest.fixture
def jupyter_folder(jupyter_servers):
    """``make(frontend) -> ServedFolder``: a fresh folder of this test on the shared server;
    the kernels its notebooks started are shut down after the test."""
    made: list[ServedFolder] = []

    def make(frontend: str) -> ServedFolder:
        server = jupyter_servers(frontend)
        folder = pathlib.Path(tempfile.mkdtemp(prefix="t", dir=server.root))
        made.append(ServedFolder(server, folder))
        return made[-1]

    yield make
    for served in made:
        served.shut_down_kernels()
