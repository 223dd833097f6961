"""Stages: where a forward pass may start over, for models that are their children in order.

A model whose forward feeds its input through its top-level children one after another
(``nn.Sequential`` and subclasses that only reshape the input first, as hamlet's and ProGAN's
generators and the hamlet classifier do) can be resumed at child ``k`` from the input that
child saw: the children from ``k`` on are called in order, with every hook in place. The
:class:`~gandissect_widgets.runner.Runner` uses it to start a pass at the first edited layer,
or after it when only that layer's output is edited (it checks once per start that the result
is bit-identical to a full pass before trusting it).

>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
>>> names = stages(net)
>>> names, stage_of(names, "2.weight"), stage_of(names, "x")
(['0', '1', '2'], 2, None)
>>> x = torch.ones(4, 3)
>>> torch.equal(run_from(net, names, 1, x), net[2](net[1](x)))
True
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["stages", "stage_of", "run_from"]


def stages(model: nn.Module) -> list[str]:
    """The names of ``model``'s top-level children if it is an ``nn.Sequential`` (whose forward
    runs them in order), else ``[]`` (a pass cannot start over inside it)."""
    if not isinstance(model, nn.Sequential):
        return []
    return [name for name, _ in model.named_children()]


def stage_of(names: list[str], layer: str) -> int | None:
    """Index of the stage holding module path ``layer`` (``"layer6.conv"`` is in ``"layer6"``)."""
    head = layer.split(".", 1)[0]
    try:
        return names.index(head)
    except ValueError:
        return None


def run_from(model: nn.Module, names: list[str], k: int, x: torch.Tensor) -> torch.Tensor:
    """Call the stages ``k``, ``k + 1``, ... of ``model`` on ``x`` (stage ``k``'s input)."""
    for name in names[k:]:
        x = model.get_submodule(name)(x)
    return x
