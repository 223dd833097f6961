"""gandissect-widgets: look inside generative and classifier networks, and edit how they behave.

>>> import gandissect_widgets as gw
>>> session = gw.Session.from_zoo("hamlet")      # doctest: +SKIP
>>> gw.UnitBrowser(session, "layer4")            # doctest: +SKIP
"""

from . import render
from .edits import Ablation, EditStack, WeightEdit
from .session import Session, SessionEvent

__version__ = "0.1.0"

__all__ = ["Session", "SessionEvent", "Ablation", "WeightEdit", "EditStack", "render"]
