"""gandissect-widgets: look inside generative and classifier networks, and edit how they behave.

>>> import gandissect_widgets as gw
>>> session = gw.Session.from_zoo("hamlet")
>>> browser = gw.UnitBrowser(session, "layer4", seeds=range(4))
>>> browser.unit, browser.info.split(" · ")[0]   # opens on the first unit that fires on them
(1, 'unit 1')
"""

from . import attacks, render, stats, steering, zoo
from .attacks import Attack, attack_units
from .dissect import Dissection
from .edits import Ablation, EditStack, State, WeightEdit
from .effects import AblationEffect, AccuracyChange, rewrite_eval
from .jobs import Cancelled, Job
from .report import save_html, save_report
from .rewrite import Rewrite, load_edit
from .session import Session, SessionEvent
from .steering import Steering, steering_effect
from .survey import RewriteSurvey, Survey, rewrite_survey, survey
from .widgets import (
    AblationPanel,
    ClassifierProbe,
    ImageGrid,
    PaintCanvas,
    RuleEditor,
    Snapshot,
    UnitBrowser,
)

__version__ = "0.1.0"

__all__ = [
    "Session", "SessionEvent", "State", "Ablation", "WeightEdit", "EditStack", "Dissection",
    "AblationEffect", "AccuracyChange", "Job", "Cancelled",
    "ImageGrid", "PaintCanvas", "UnitBrowser", "AblationPanel", "RuleEditor", "Snapshot",
    "Rewrite", "load_edit", "rewrite_eval", "save_html", "save_report", "render", "stats", "zoo",
    "survey", "Survey", "rewrite_survey", "RewriteSurvey",
    "ClassifierProbe", "Steering", "steering_effect", "Attack", "attack_units", "steering",
    "attacks",
]  # fmt: skip
