"""Notebook widgets.

Base widgets with their own front-end (anywidget): :class:`ImageGrid`, :class:`PaintCanvas`.
Session widgets composed from them: :class:`UnitBrowser`, :class:`AblationPanel`.

>>> from gandissect_widgets.widgets import ImageGrid, PaintCanvas, UnitBrowser, AblationPanel
"""

from .ablation_panel import AblationPanel
from .image_grid import ImageGrid
from .paint_canvas import PaintCanvas
from .unit_browser import UnitBrowser

__all__ = ["ImageGrid", "PaintCanvas", "UnitBrowser", "AblationPanel"]
