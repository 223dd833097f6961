"""Update throughput of each running statistic on (64, 128, 16, 16) activation batches.

Each line also gives a bare-torch floor for the same batch (the one kernel the update cannot
avoid), so the ratio shows the statistic's own overhead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks._timing import median_seconds, report
from gandissect_widgets.stats import IoU, Moments, Quantile, SecondMoment, TopK

SHAPE = (64, 128, 16, 16)
CONCEPT_SIZE, N_CONCEPTS = 64, 32


def _line(name: str, seconds: float, floor: float) -> None:
    values = SHAPE[0] * SHAPE[1] * SHAPE[2] * SHAPE[3]
    report(
        name,
        f"{seconds * 1e3:8.1f} ms/batch  {values / seconds / 1e6:7.1f} M values/s  "
        f"({seconds / floor:.1f}x bare torch)",
    )


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(SHAPE)
    ids = torch.arange(SHAPE[0])
    rows = x.transpose(0, 1).reshape(SHAPE[1], -1)
    concepts = torch.randint(0, N_CONCEPTS, (SHAPE[0], CONCEPT_SIZE, CONCEPT_SIZE))

    quantile, moments, second, topk = Quantile(seed=0), Moments(), SecondMoment(), TopK(k=64)
    for _ in range(8):  # fill the sketch so updates pay for steady-state compactions
        quantile.update(x)
    iou = IoU(quantile.quantile(0.99), N_CONCEPTS)

    def iou_floor():
        up = F.interpolate(x, size=(CONCEPT_SIZE, CONCEPT_SIZE), mode="bilinear")
        return up > 0

    cases = [
        ("Quantile.update", lambda: quantile.update(x), lambda: rows.sort(dim=1)),
        ("Moments.update", lambda: moments.update(x), lambda: torch.var_mean(rows, dim=1)),
        ("SecondMoment.update", lambda: second.update(x), lambda: rows @ rows.T),
        ("TopK.update", lambda: topk.update(x, ids), lambda: x.flatten(2).amax(dim=2)),
        (f"IoU.update ({N_CONCEPTS} concepts, 64x64)", lambda: iou.update(x, concepts), iou_floor),
    ]
    for name, update, floor in cases:
        _line(name, median_seconds(update, repeats=5, warmup=1), median_seconds(floor, 5, 1))
    report("Quantile values held per unit", f"{quantile.size} (capacity {quantile.capacity})")


if __name__ == "__main__":
    main()
