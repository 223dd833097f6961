"""Every Session method that hands the Session to an analysis shows that analysis's parameters
(Shift-Tab, help()), so a signature never reads ``**kwargs``."""

from __future__ import annotations

import inspect
import pydoc

import pytest

from gandissect_widgets import Session, dissect, effects, export, invert, photos, rewrite

# Session method -> (the function it calls with the session first, where its **kwargs go)
DELEGATES = {
    "dissect": (dissect.dissect, None),
    "ablation_effect": (effects.ablation_effect, None),
    "ablation_accuracy": (effects.ablation_accuracy, None),
    "class_units": (effects.class_units, None),
    "rewrite": (rewrite.rewrite, rewrite.make_rewrite),
    "export": (export.export, None),
    "invert": (photos.invert_photos, invert.fit_photo),
    "context_matches": (rewrite.context_matches, None),
}


def _expected(target, forwards) -> list[tuple]:
    params = list(inspect.signature(target).parameters.values())[1:]
    if forwards is not None:
        assert params[-1].kind is inspect.Parameter.VAR_KEYWORD, f"{target} takes no **kwargs"
        own = {p.name for p in params}
        params = params[:-1] + [
            p
            for p in inspect.signature(forwards).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in own
        ]
    return [(p.name, p.kind, p.default) for p in params]


@pytest.mark.parametrize("name", DELEGATES)
def test_each_delegate_has_its_targets_signature(name):
    target, forwards = DELEGATES[name]
    sig = inspect.signature(getattr(Session, name))
    got = [(p.name, p.kind, p.default) for p in sig.parameters.values()]
    assert got[0][0] == "self"
    assert got[1:] == _expected(target, forwards)
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    text = pydoc.render_doc(getattr(Session, name))
    assert all(f"{p}" in text for p, *_ in got[1:]), text


def test_every_method_that_forwards_kwargs_is_listed():
    """A new analysis method forwarding **kwargs fails here until it shows real parameters."""
    for name, member in vars(Session).items():
        if not callable(member) or name.startswith("_") or name == "forward":
            continue
        kinds = [p.kind for p in inspect.signature(member).parameters.values()]
        assert inspect.Parameter.VAR_KEYWORD not in kinds or name == "from_zoo", name


def test_a_delegate_still_calls_its_target(gen_session):
    with pytest.raises(ValueError, match="name the file .pt, .pth or .safetensors"):
        gen_session.export("model.bin")
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        gen_session.dissect("layer2", bogus=1)
