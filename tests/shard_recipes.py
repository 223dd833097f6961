"""Picklable Session recipes for sharded-statistics tests (imported by worker processes)."""

from __future__ import annotations

import time

import torch
from conftest import ThresholdSegmenter, TinyGenerator


class SlowTinyGenerator(TinyGenerator):
    """The tiny generator, slowed down so a worker can be killed in the middle of a shard."""

    def forward(self, z):
        time.sleep(0.15)
        return super().forward(z)


def tiny_session():
    from gandissect_widgets import Session

    torch.set_num_threads(1)
    return Session(TinyGenerator(), device="cpu", batch_size=4, segmenter=ThresholdSegmenter())


def slow_tiny_session():
    from gandissect_widgets import Session

    torch.set_num_threads(1)
    return Session(SlowTinyGenerator(), device="cpu", batch_size=4, segmenter=ThresholdSegmenter())
