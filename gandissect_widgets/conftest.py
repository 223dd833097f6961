"""Names shared by the docstring examples (``pytest --doctest-modules``): ``gw``, ``np``,
``torch``, ``s`` / ``session`` (one hamlet Session loaded once for every example) and masks
painted on its samples for the rewriting examples: ``roof3``, ``roof9`` (the roofs of samples
3 and 9) and ``tree1`` (the trees of sample 1), float (64, 64) arrays. Each example
runs in a fresh temporary folder (files it writes go there), the examples share one result
cache (a dissection computed once serves the others), and the Session's edits are reset after
each."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gandissect_widgets as gw


@pytest.fixture(scope="session")
def _hamlet():
    torch.set_num_threads(1)
    return gw.Session.from_zoo("hamlet", device="cpu")


@pytest.fixture(scope="session")
def _masks(_hamlet):
    concepts = list(_hamlet.segmenter.concepts)
    maps = _hamlet.segmenter.segment(_hamlet.generate([1, 3, 9]))
    mask = {s: maps[i].numpy() for i, s in enumerate((1, 3, 9))}
    roof, tree = concepts.index("roof"), concepts.index("tree")
    as_float = lambda m, c: (m == c).astype("float32")  # noqa: E731
    return {
        "roof3": as_float(mask[3], roof),
        "roof9": as_float(mask[9], roof),
        "tree1": as_float(mask[1], tree),
    }


@pytest.fixture(scope="session")
def _cache(tmp_path_factory):
    return tmp_path_factory.mktemp("doctest-cache")


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace, _hamlet, _masks, _cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GANDISSECT_CACHE", str(_cache))
    doctest_namespace.update(gw=gw, np=np, torch=torch, s=_hamlet, session=_hamlet, **_masks)
    yield
    _hamlet.reset()
