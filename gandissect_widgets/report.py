"""Lab reports: one self-contained HTML file that opens offline, widgets included.

Widgets are saved by state and drawn by the Jupyter widget manager and the anywidget front-end,
both inlined from ``report_assets/`` (no CDN, no kernel, no network request). Live Session
widgets become :class:`~gandissect_widgets.widgets.snapshot.Snapshot` pages first.

>>> import gandissect_widgets as gw
>>> d = session.dissect("layer4", n=64, progress=False)
>>> gw.save_html("lab.html", "# Hamlet", d, gw.ImageGrid(session.generate(range(4))),
...              title="hamlet")
PosixPath('lab.html')
"""

from __future__ import annotations

import base64
import html
import io
import json
import pathlib
import re
import warnings

import numpy as np

from . import render
from .cache import unwritable

__all__ = [
    "check_out_path",
    "export_notebook",
    "save_html",
    "save_report",
    "to_html",
    "unit_table",
]

_ASSETS = pathlib.Path(__file__).parent / "report_assets"
_SOURCE_MAP = re.compile(r"^//# sourceMappingURL=.*$", re.MULTILINE)
_STATE = "application/vnd.jupyter.widget-state+json"
_VIEW = "application/vnd.jupyter.widget-view+json"
_KINDS = (
    "str (Markdown-ish text, or HTML when it starts with '<'), a matplotlib Figure, a "
    "Dissection, a UnitBrowser or AblationPanel (saved as a snapshot), an object with a "
    "snapshot() method, or any ipywidget"
)

_PAGE_CSS = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 24px auto;
       padding: 0 16px; color: #222; }
h1, h2, h3 { line-height: 1.2; }
section { margin: 18px 0 28px; }
img.gw-figure { max-width: 100%; }
table.gw-units { border-collapse: collapse; font-size: 13px; }
table.gw-units th, table.gw-units td { border-bottom: 1px solid #ddd; padding: 3px 8px;
       text-align: left; vertical-align: middle; }
table.gw-units td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.gw-units img { image-rendering: auto; margin-right: 2px; }
code { background: #f2f2f2; padding: 0 3px; border-radius: 3px; }
footer { color: #888; font-size: 12px; margin-top: 40px; }
"""


def _asset(name: str) -> str:
    return _SOURCE_MAP.sub("", (_ASSETS / name).read_text(encoding="utf-8"))


def _script(code: str) -> str:
    return "<script>" + code.replace("</script", "<\\/script") + "</script>"


def _scripts() -> str:
    """requirejs, anywidget registered as the AMD module 'anywidget', then the manager."""
    anywidget = (
        "(function (define) {\n" + _asset("anywidget.js") + "\n})(function (deps, factory) "
        '{ window.define("anywidget", deps, factory); });'
    )
    parts = [_asset("require.js"), anywidget, _asset("html-manager-embed-amd.js")]
    return "\n".join(_script(code) for code in parts)


def _json_script(kind: str, data) -> str:
    text = json.dumps(data).replace("</", "<\\/")
    return f'<script type="{kind}">{text}</script>'


def _inline(match: re.Match) -> str:
    code, bold, em = match.group(1), match.group(2), match.group(3)
    if code is not None:
        return f"<code>{code}</code>"
    if bold is not None:
        return f"<b>{bold}</b>"
    return f"<i>{em}</i>"


def _markdown(text: str) -> str:
    """Headings (#), paragraphs, bullet lists (- ), `code`, **bold** and *italic*."""
    if text.lstrip().startswith("<"):
        return text
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        esc = re.sub(r"`([^`]+)`|\*\*([^*]+)\*\*|\*([^*]+)\*", _inline, html.escape(block.strip()))
        heading = re.match(r"(#{1,3}) (.*)", esc, re.DOTALL)
        lines = esc.splitlines()
        if heading:
            n = len(heading.group(1))
            out.append(f"<h{n}>{heading.group(2)}</h{n}>")
        elif lines and all(line.lstrip().startswith("- ") for line in lines):
            items = "".join(f"<li>{line.lstrip()[2:]}</li>" for line in lines)
            out.append(f"<ul>{items}</ul>")
        else:
            out.append(f"<p>{esc}</p>")
    return "\n".join(out)


def _figure(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img class="gw-figure" alt="figure" src="data:image/png;base64,{data}">'


def _png_uri(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(render.png_bytes(image)).decode()


def unit_table(dissection, session=None, *, units=None, top: int = 4, size: int = 56) -> str:
    """HTML table, a row per unit: label, IoU, threshold and (given the ``session``) its
    ``top`` images with heatmap overlays. ``units`` default to all, best IoU first.

    >>> d = session.dissect("layer4", n=64, progress=False)
    >>> gw.save_html("d.html", gw.report.unit_table(d, session, units=[3, 12]))
    PosixPath('d.html')
    """
    order = dissection.best_iou.argsort(descending=True).tolist()
    units = order if units is None else list(units)
    head = "<th>unit</th><th>label</th><th>IoU</th><th>threshold</th>"
    if session is not None:
        head += f"<th>top {top} images</th>"
    rows = []
    for u in units:
        cells = (
            f"<td class=num>{u}</td><td>{html.escape(dissection.labels[u])}</td>"
            f"<td class=num>{float(dissection.best_iou[u]):.3f}</td>"
            f"<td class=num>{float(dissection.thresholds[u]):.3f}</td>"
        )
        if session is not None:
            cells += "<td>" + _top_images(session, dissection, u, top, size) + "</td>"
        rows.append(f"<tr>{cells}</tr>")
    return f'<table class="gw-units"><tr>{head}</tr>{"".join(rows)}</table>'


def _top_images(session, dissection, unit, top, size) -> str:
    seeds = dissection.top_seeds[unit, :top].tolist()
    acts = session.activations(dissection.layer, seeds)[:, unit]
    vmax = max(float(dissection.top_values[unit].max()), 1e-6)
    if session.layer_kind(dissection.layer) == "vector":  # one value per image: no heatmap
        over = session.generate(seeds)
        titles = [f"sample #{s}, value {float(v):.3f} (vector layer: no heatmap)" for s, v in
                  zip(seeds, acts.flatten())]  # fmt: skip
    else:
        over = render.overlay(session.generate(seeds), acts, vmin=0.0, vmax=vmax)
        titles = [f"sample #{s}" for s in seeds]
    return "".join(
        f'<img width={size} height={size} alt="#{s}" title="{t}" src="{_png_uri(im)}">'
        for s, t, im in zip(seeds, titles, over)
    )


def _dissection(d) -> str:
    import matplotlib.pyplot as plt

    fig = d.plot_summary()
    try:
        plot = _figure(fig)
    finally:
        plt.close(fig)
    table = unit_table(d)
    return f"{plot}<details><summary>all {len(d.labels)} units</summary>{table}</details>"


def _as_section(item, widgets: list) -> str:
    """HTML for one item; widgets to embed are appended to ``widgets``."""
    import ipywidgets

    from .dissect import Dissection
    from .widgets.snapshot import snapshot

    if isinstance(item, str):
        return _markdown(item)
    if isinstance(item, Dissection):
        return _dissection(item)
    if type(item).__name__ == "Figure" and hasattr(item, "savefig"):
        return _figure(item)
    if _snapshottable(item):
        item = snapshot(item)
    if isinstance(item, ipywidgets.Widget):
        widgets.append(item)
        view = {"version_major": 2, "version_minor": 0, "model_id": item.model_id}
        return _json_script(_VIEW, view)
    raise TypeError(f"cannot put a {type(item).__name__} in a report; items may be: {_KINDS}")


def _snapshottable(item) -> bool:
    from .widgets.ablation_panel import AblationPanel
    from .widgets.unit_browser import UnitBrowser

    return isinstance(item, (UnitBrowser, AblationPanel)) or callable(
        getattr(item, "snapshot", None)
    )


def to_html(*items, title: str = "gandissect-widgets report") -> str:
    """The report page as a string; see :func:`save_html`.

    >>> "<h1>" in to_html("some *text*", title="t")
    True
    """
    import ipywidgets.embed as embed

    widgets: list = []
    sections = [f"<section>{_as_section(item, widgets)}</section>" for item in items]
    state = ""
    if widgets:
        data = embed.dependency_state(widgets, drop_defaults=False)
        manager = embed.embed_data(views=widgets, drop_defaults=False, state=data)
        state = _json_script(_STATE, manager["manager_state"])
    scripts = _scripts() if widgets else ""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_PAGE_CSS}</style>\n{scripts}\n"
        f"</head><body>\n<h1>{html.escape(title)}</h1>\n{state}\n"
        + "\n".join(sections)
        + "\n<footer>Made with gandissect-widgets. Opens offline; saved widgets replay their "
        "saved state.</footer>\n</body></html>\n"
    )


def save_html(path, *items, title: str = "gandissect-widgets report") -> pathlib.Path:
    """Write one self-contained HTML report of ``items`` in order; returns the path.

    Items: strings (Markdown-ish: ``#`` headings, paragraphs, ``- `` lists, ```code```,
    ``**bold**``; HTML when it starts with ``<``), matplotlib Figures, Dissections (summary
    plot + unit table), UnitBrowser / AblationPanel (saved as snapshots you can still switch),
    and any ipywidget (saved by state, e.g. an ImageGrid).

    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots(figsize=(2, 2)); bars = ax.bar(["a", "b"], [3, 5])
    >>> grid = gw.ImageGrid(session.generate(range(4)), captions=list("abcd"))
    >>> gw.save_html("report.html", "# Notes", fig, grid, title="my lab")
    PosixPath('report.html')
    >>> plt.close(fig)
    """
    path = check_out_path(path)
    page = to_html(*items, title=title)
    path.write_text(page, encoding="utf-8")
    return path


def check_out_path(path) -> pathlib.Path:
    """``path`` as a Path once it is sure a report can be written there; else a clear error,
    before any rendering: ``ValueError`` (not .html/.htm), ``IsADirectoryError`` (a folder),
    ``PermissionError`` (its folder cannot be created or written, or the file is read-only).
    Creates the missing folders; the file itself is left as it is.
    """
    path = pathlib.Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"report path must end in .html or .htm; got {str(path)!r}")
    if path.is_dir():
        raise IsADirectoryError(f"report path '{path}' is a folder; name an .html file in it")
    folder = path.parent
    why = unwritable(folder)
    if why is not None:
        raise PermissionError(
            f"cannot write the report '{path}': its folder '{folder}' is not writable ({why})"
        )
    if path.exists():
        try:
            open(path, "ab").close()  # appends nothing: the file stays as it is
        except OSError as err:
            why = err.strerror or type(err).__name__
            raise PermissionError(f"cannot write the report '{path}' ({why})") from err
    return path


_CDN_SCRIPT = re.compile(r"<script[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>")
_CDN_MODULE = re.compile(
    r"<script type=\"module\">(?:(?!</script>).)*?https?://(?:(?!</script>).)*</script>", re.S
)
_RENDERER = re.compile(
    r"<script>\s*\(function\(\) \{\s*function addWidgetsRenderer\(\).*?</script>", re.S
)


def _read_notebook(path):
    """The notebook at ``path``, validated; ValueError naming ``path`` and what is wrong when
    the file is not a Jupyter notebook (a missing file stays FileNotFoundError)."""
    import nbformat

    try:
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as err:  # noqa: BLE001 - JSON, schema or structure: one line says why
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        why = (lines[0] if lines else type(err).__name__)[:200]
        raise ValueError(f"{path} is not a Jupyter notebook ({why})") from None
    return nb


def export_notebook(
    notebook,
    out,
    *,
    execute: bool | None = None,
    progress: bool = True,
    timeout: float = 600,
    log=None,
) -> pathlib.Path:
    """Write a notebook as one HTML page that opens offline with live widgets.

    A page draws a widget from the state of its model saved in the notebook. JupyterLab saves
    that state only with *Save Widget State Automatically* on; VS Code and cleared notebooks
    save none. So by default (``execute=None``), a notebook with a widget output that has no
    saved state, or one never run, is first run headless in a fresh kernel in its folder (a
    progress bar per cell; the file itself is not changed) and the page gets the state of that
    run. ``execute=True`` always runs it; ``execute=False`` never does, and warns with the count
    of widgets that will show only their static pictures. A failing cell stops the export with
    a ``ValueError`` naming the cell (1-based) and its error. ``log`` (e.g. ``print``) is told
    what was done and how long it took.

    The page is nbconvert's "lab" template with every script it would fetch from a CDN
    (require.js, the widget renderer, MathJax, mermaid) dropped and the assets of
    :func:`save_html` inlined. Returns the path written.

    Not run here (it needs a notebook file and starts a kernel; tests/test_notebook_export.py
    runs it):

    >>> export_notebook("lab.ipynb", "lab.html", log=print)   # doctest: +SKIP
    ran lab.ipynb headless (1 widget output(s) had no saved state): 12 code cells in 9.3 s
    PosixPath('lab.html')
    """

    from . import notebook_run

    out = check_out_path(out)
    notebook = pathlib.Path(notebook)
    nb = _read_notebook(notebook)
    missing = notebook_run.missing_state(nb)
    unrun = notebook_run.never_run(nb)
    if execute is None:
        execute = bool(missing) or unrun
    if execute:
        why = (
            f"{missing} widget output(s) had no saved state"
            if missing
            else ("it had never been run" if unrun else "asked to")
        )
        seconds = notebook_run.execute(
            nb, notebook.resolve().parent, timeout=timeout, progress=progress
        )
        code = sum(1 for c in nb.cells if c.cell_type == "code" and c.source.strip())
        if log is not None:
            log(f"ran {notebook.name} headless ({why}): {code} code cells in {seconds:.1f} s")
    elif missing:
        warnings.warn(
            f"{missing} widget output(s) of {notebook.name} have no saved state, so the page "
            "shows only their static pictures; export without --no-execute (execute=None) to "
            "run the notebook, or save it with JupyterLab's Save Widget State Automatically",
            UserWarning,
            stacklevel=2,
        )
    out.write_text(_notebook_page(nb), encoding="utf-8")
    return out


def _notebook_page(nb) -> str:
    from nbconvert import HTMLExporter

    page, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    has_state = bool(nb.metadata.get("widgets", {}).get(_STATE, {}).get("state"))
    page = _RENDERER.sub("", page)
    page = _CDN_MODULE.sub("", page)
    page = _CDN_SCRIPT.sub("", page)
    if has_state:
        page = page.replace("</head>", _scripts() + "\n</head>", 1)
    return page


def save_report(path, *items, title: str = "gandissect-widgets report", notebook=None):
    """A lab report from inside a notebook, whatever Jupyter's settings: no item saved by hand.

    With ``items`` (widgets on screen, figures, text, as :func:`save_html` takes them) this is
    :func:`save_html`. Without, it writes the running notebook as :func:`export_notebook` does,
    its widgets taken live from this kernel: the notebook file (``notebook``, or the one
    Jupyter started this kernel for) gives the cells and outputs, so save it first (Ctrl+S);
    nothing is run again. Returns the path written.

    >>> grid = gw.ImageGrid(session.generate(range(4)))
    >>> gw.save_report("two.html", "# Two widgets", grid, gw.PaintCanvas(size=64))
    PosixPath('two.html')

    The running notebook (not run here: it needs the kernel of a saved notebook):

    >>> gw.save_report("lab.html")                     # doctest: +SKIP
    PosixPath('lab.html')
    """
    if items:
        return save_html(path, *items, title=title)
    import os

    import ipywidgets
    import nbformat

    from . import notebook_run

    notebook = notebook or os.environ.get("JPY_SESSION_NAME")
    if not notebook or not pathlib.Path(notebook).is_file():
        raise ValueError(
            "save_report without items needs the notebook file: pass notebook='name.ipynb' "
            f"(this kernel was not started for a notebook file it can find: {notebook!r}), or "
            "pass the widgets to save: save_report(path, widget, ...)"
        )
    out = check_out_path(path)
    nb = nbformat.read(str(notebook), as_version=4)
    live = ipywidgets.Widget.get_manager_state(drop_defaults=False)
    nb.metadata["widgets"] = {_STATE: live}
    views = notebook_run.widget_views(nb)
    missing = notebook_run.missing_state(nb)
    if not views:
        warnings.warn(
            f"{pathlib.Path(notebook).name} as saved has no widget outputs: save the notebook "
            "(Ctrl+S) after running it, then call save_report again",
            UserWarning,
            stacklevel=2,
        )
    elif missing:
        warnings.warn(
            f"{missing} of the {len(views)} widget outputs saved in "
            f"{pathlib.Path(notebook).name} are no longer alive in this kernel (the file is "
            "older than the cells' last run): save the notebook and call save_report again",
            UserWarning,
            stacklevel=2,
        )
    out.write_text(_notebook_page(nb), encoding="utf-8")
    return out
