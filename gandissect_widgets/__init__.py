"""gandissect-widgets: look inside generative and classifier networks, and edit how they behave."""

__version__ = "0.1.0"
