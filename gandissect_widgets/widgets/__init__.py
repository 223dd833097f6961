"""Notebook widgets.

Every widget is one anywidget: one Python class, one ES module (shared parts bundled in, see
``_bundle.py``), its whole state in synced traits, so it runs in JupyterLab, Notebook 7,
VS Code, Colab and marimo, and a saved page replays it. Base widgets: :class:`ImageGrid`,
:class:`PaintCanvas`, :class:`Snapshot` (saved, kernel-free views for reports). Session
widgets: :class:`UnitBrowser`, :class:`AblationPanel` (previews until Apply),
:class:`RuleEditor`, :class:`ClassifierProbe`.

>>> from gandissect_widgets.widgets import ImageGrid, PaintCanvas, UnitBrowser, AblationPanel
"""

from .ablation_panel import AblationPanel
from .classifier_probe import ClassifierProbe
from .image_grid import ImageGrid
from .paint_canvas import PaintCanvas
from .rule_editor import RuleEditor
from .snapshot import Snapshot, snapshot, snapshot_ablation, snapshot_compare, snapshot_units
from .unit_browser import UnitBrowser

__all__ = [
    "ImageGrid", "PaintCanvas", "Snapshot", "UnitBrowser", "AblationPanel", "RuleEditor",
    "snapshot", "snapshot_units", "snapshot_compare", "snapshot_ablation", "ClassifierProbe",
]  # fmt: skip
