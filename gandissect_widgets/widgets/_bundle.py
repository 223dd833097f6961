"""One ES module (and one stylesheet) per widget, made from shared parts in ``static/``.

anywidget loads a widget's front-end as a single ES module with no imports, in every frontend
(JupyterLab, Notebook 7, VS Code, Colab, marimo, saved pages). Parts shared by several widgets
(the image grid, the paint canvas, helpers) are plain scripts put in front of the widget's own
module, which alone has ``export default``.

>>> "export default" in esm("image_grid.js")
True
"""

from __future__ import annotations

import functools
import pathlib

STATIC = pathlib.Path(__file__).parent / "static"
_PARTS = ("_util.js", "_grid_core.js", "_paint_core.js")


@functools.cache
def esm(name: str) -> str:
    """The shared parts followed by ``static/<name>``, as one module's source."""
    return "\n".join((STATIC / part).read_text(encoding="utf-8") for part in (*_PARTS, name))


@functools.cache
def css(*names: str) -> str:
    """The shared stylesheet followed by the named ones."""
    return "\n".join((STATIC / n).read_text(encoding="utf-8") for n in ("_common.css", *names))
