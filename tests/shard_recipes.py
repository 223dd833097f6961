"""Picklable Session recipes for sharded-statistics tests (imported by worker processes)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from conftest import ThresholdSegmenter, TinyGenerator


class GatedTinyGenerator(TinyGenerator):
    """The tiny generator whose batches (more than one sample: not the Session's one-sample
    probe) first announce themselves in ``folder`` with a file ``started-<pid>`` and then wait
    until a file ``release`` appears there: a test can kill a worker that is inside a shard."""

    def __init__(self, folder: str):
        super().__init__()
        self.folder = Path(folder)

    def forward(self, z):
        if z.shape[0] > 1:
            (self.folder / f"started-{os.getpid()}").touch()
            deadline = time.monotonic() + 300
            while not (self.folder / "release").exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no release file in {self.folder} after 300 s")
                time.sleep(0.01)
        return super().forward(z)


class FailingTinyGenerator(TinyGenerator):
    """The tiny generator with a bug: any batch of more than one sample raises RuntimeError
    (the Session's one-sample probe passes, so the Session can be built)."""

    def forward(self, z):
        if z.shape[0] > 1:
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
