"""Picklable Session recipes for sharded-statistics tests (imported by worker processes)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from conftest import ThresholdSegmenter, TinyGenerator


def _distinct(z) -> bool:
    return z.shape[0] > 1 and not bool((z == z[:1]).all())


class GatedTinyGenerator(TinyGenerator):
    """The tiny generator whose batches of distinct samples (not the Session's probe, which runs
    one sample as two identical rows) first announce themselves in ``folder`` with a file
    ``started-<pid>`` and then wait until a file ``release`` appears there: a test can kill a
    worker that is inside a shard."""

    def __init__(self, folder: str):
        super().__init__()
        self.folder = Path(folder)

    def forward(self, z):
        if _distinct(z):
            (self.folder / f"started-{os.getpid()}").touch()
            deadline = time.monotonic() + 300
            while not (self.folder / "release").exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no release file in {self.folder} after 300 s")
                time.sleep(0.01)
        return super().forward(z)


class FailingTinyGenerator(TinyGenerator):
    """The tiny generator with a bug: any batch of distinct samples raises RuntimeError
    (the Session's probe, one sample as two identical rows, passes: the Session can be built)."""

    def forward(self, z):
        if _distinct(z):
            raise RuntimeError("bug in the model: batches of more than one sample fail")
        return super().forward(z)


def _session(generator):
    from gandissect_widgets import Session

    torch.set_num_threads(1)
    return Session(generator, device="cpu", batch_size=4, segmenter=ThresholdSegmenter())


def tiny_session():
    return _session(TinyGenerator())


def gated_session(folder: str):
    return _session(GatedTinyGenerator(folder))


def failing_session():
    return _session(FailingTinyGenerator())
