"""Notebook widgets with their own front-end (anywidget): ImageGrid and PaintCanvas.

>>> from gandissect_widgets.widgets import ImageGrid, PaintCanvas
"""

from .image_grid import ImageGrid
from .paint_canvas import PaintCanvas

__all__ = ["ImageGrid", "PaintCanvas"]
