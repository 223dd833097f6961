"""Photos as samples: invert pictures into a Session's generator and register them.

The fit (:mod:`gandissect_widgets.invert`) runs on a private copy of the unedited generator, so
the Session keeps answering meanwhile; each photo then gets a sample id (from ``2**62`` on) that
``generate``, ``activations``, ``dissect``, ``ablate``, ``rewrite`` and the widgets take like a
seed.

Not run in the tests (inverting takes minutes on a CPU; tests/test_photos.py covers it):

>>> ids = session.invert(pictures)                        # doctest: +SKIP
>>> session.generate(ids)                                 # doctest: +SKIP
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from tqdm.auto import tqdm

from .edits import State
from .invert import DEFAULTS, ENCODED, fit_photo
from .jobs import Job

__all__ = ["invert_photos"]


def _pictures(images) -> list:
    """One uint8 (H, W, 3) picture, a batch (N, H, W, 3), or a list of pictures -> a list."""
    if isinstance(images, (list, tuple)):
        return list(images)
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
    if not isinstance(arr, np.ndarray):
        raise TypeError(
            f"images must be a uint8 array (H, W, 3) or (N, H, W, 3), or a list of them; "
            f"got {type(images).__name__}"
        )
    if arr.ndim == 2:
        raise ValueError(
            f"a picture must be colour, (H, W, 3) or (H, W, 4); got {arr.shape}, a grey one: "
            "convert it to RGB first (PIL: image.convert('RGB'))"
        )
    return [arr] if arr.ndim == 3 else list(arr)


def invert_photos(session, images, *, background=False, progress=True, on_preview=None, **kwargs):
    """Invert ``images`` into ``session``'s generator; returns their sample ids (a list), or a
    :class:`~gandissect_widgets.jobs.Job` with ``background=True`` (progress, cancel).

    ``kwargs`` go to :func:`~gandissect_widgets.invert.fit_photo` (``layer``, ``steps``, ...);
    ``encoder`` defaults to ``session.encoder`` (hamlet's: a first guess in milliseconds, then
    a short refinement). ``on_preview(index, sample_id)`` is called with a preview id (see
    :meth:`Sources.add_photo <gandissect_widgets.sources.Sources.add_photo>`) for picture
    ``index`` whenever its fit so far is shown: first the start, then every
    ``preview_every`` seconds (0.5 s by default).
    """
    if session.kind != "generator":
        raise ValueError("photos are inverted into a generator; this Session is a classifier")
    pictures = _pictures(images)
    if not pictures:
        raise ValueError("images is empty; give at least one picture")
    if "preview" in kwargs:
        raise TypeError("invert takes on_preview(index, sample_id), not fit_photo's preview")
    if on_preview is not None and not callable(on_preview):
        raise TypeError(f"on_preview must be a callable (index, sample_id); got {on_preview!r}")
    layer = session.check_layer(kwargs.pop("layer", DEFAULTS["layer"]))
    kwargs.setdefault("encoder", getattr(session, "encoder", None))
    chosen = DEFAULTS if kwargs["encoder"] is None else ENCODED
    steps = kwargs.get("steps") or chosen["steps"]
    with session.weights_at(State()) as model:  # a private copy of the unedited generator
        model = copy.deepcopy(model)
    for m in model.modules():
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
    total = len(pictures) * int(steps) if isinstance(steps, int) else None

    def work(job=None):
        bar = tqdm(total=total, desc="invert", disable=not progress, leave=False)

        def step(*_):
            bar.update()
            if job is not None:
                job.step()  # raises Cancelled once cancel() was asked

        def shown(index):
            if on_preview is None:
                return None

            def show(photo):
                pid = session.sources.add_photo(photo.z, photo.layer, photo.residual, preview=True)
                on_preview(index, pid)

            return show

        try:
            photos = [
                fit_photo(model, p, layer=layer, progress=step, preview=shown(i), **kwargs)
                for i, p in enumerate(pictures)
            ]
        finally:
            bar.close()
        return [session.sources.add_photo(p.z, p.layer, p.residual) for p in photos]

    if background:
        return Job(work, total=total, name="invert")
    return work()
