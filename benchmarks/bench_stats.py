"""Running statistics: update time on (64, 128, 16, 16) and (64, 512, 8, 8) activation batches
at 1 and 2 torch threads, against the bare torch operations each update needs and, when
``BAUKIT_PATH`` points at a checkout of github.com/davidbau/baukit (kept outside this
repository), against baukit's ``runningstats`` on the same batches in the same process (goal:
>= 2x faster); then the quantile sketch's rank error at q = 0.99 on 10^6 values per unit
(goal: <= 0.05% worst unit, single pass and merged).

Each figure is a candidate's fastest call over interleaved rounds (every candidate timed in
turn, round after round): on a shared machine other work only ever adds time, and bursts of it
hit the candidates alike.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._timing import report
from gandissect_widgets.stats import (
    IoU,
    Moments,
    Quantile,
    SecondMoment,
    TailQuantile,
    TopK,
    merge_tree,
    upsample,
)

SHAPES = [(64, 128, 16, 16), (64, 512, 8, 8)]
THREADS = [1, 2]
CONCEPT_SIZE, N_CONCEPTS = 64, 32
ROUNDS = int(os.environ.get("GW_BENCH_ROUNDS", "9"))
RANK_UNITS = int(os.environ.get("GW_BENCH_RANK_UNITS", "64"))


def baukit_runningstats():
    """baukit's ``runningstats`` module from ``BAUKIT_PATH``, or None.  Loaded from its file:
    the package's ``__init__`` imports torchvision, which runningstats does not need."""
    root = os.environ.get("BAUKIT_PATH")
    if not root:
        return None
    path = Path(root) / "baukit" / "runningstats.py"
    if not path.exists():
        raise SystemExit(f"BAUKIT_PATH={root} has no baukit/runningstats.py")
    spec = importlib.util.spec_from_file_location("baukit_runningstats", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _best_ms(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls, in ms: on a shared machine other work only ever adds
    time, so the minimum is the least disturbed figure (``timeit``'s convention)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """ms per call of each function: its fastest call over ``ROUNDS`` interleaved rounds of
    ``repeats`` calls (each function timed in turn, round after round)."""
    for fn in fns.values():  # warm-up
        fn()
    rounds = {name: [] for name in fns}
    for _ in range(ROUNDS):
        for name, fn in fns.items():
            rounds[name].append(_best_ms(fn, repeats))
    return {name: min(v) for name, v in rounds.items()}


def cases(shape, rs):
    """name -> (ours, bare torch floor, baukit or None, repeats)."""
    torch.manual_seed(0)
    n, c = shape[:2]
    x = torch.randn(shape)
    ids = torch.arange(n)
    peaks = x.flatten(2).amax(dim=2)  # per-sample maxima (N, C)
    concepts = torch.randint(0, N_CONCEPTS, (n, CONCEPT_SIZE, CONCEPT_SIZE))
    values_per_unit = n * shape[2] * shape[3]

    def rows():  # baukit's layout: one row per position, (N H W, C)
        return x.permute(0, 2, 3, 1).reshape(-1, c)

    def units_major():
        return x.transpose(0, 1).reshape(c, -1)

    quantile = Quantile(seed=0)
    for _ in range(8):  # a filled sketch: updates pay for steady-state compactions
        quantile.update(x)
    thresholds = quantile.quantile(0.99)
    tail_total = 64 * values_per_unit  # a dissection of 64 such batches (4096 samples)
    tail = TailQuantile(0.99, tail_total)
    moments, second, topk, topk_rows = Moments(), SecondMoment(), TopK(k=64), TopK(k=64)
    iou = IoU(thresholds, N_CONCEPTS)
    tail_keep = tail.keep

    def tail_update():
        if tail.count + values_per_unit > tail.total:  # the dissection is over: start again
            tail.__init__(0.99, tail_total)
        tail.update(x)

    def iou_floor():
        return upsample(x, (CONCEPT_SIZE, CONCEPT_SIZE)) > thresholds[:, None, None]

    ref = {}
    if rs is not None:
        ref_quantile = rs.Quantile()
        for _ in range(8):
            ref_quantile.add(rows())
        ref_tail = rs.Quantile()
        for _ in range(8):
            ref_tail.add(rows())
        ref_variance, ref_second = rs.Variance(), rs.SecondMoment()
        ref_topk, ref_topk_rows, ref_iou = rs.TopK(k=64), rs.TopK(k=64), rs.CrossIoU()
        onehot = torch.nn.functional.one_hot(concepts.reshape(-1), N_CONCEPTS)

        def ref_iou_update():
            up = torch.nn.functional.interpolate(
                x, size=(CONCEPT_SIZE, CONCEPT_SIZE), mode="bilinear", align_corners=False
            )
            above = (up > thresholds[:, None, None]).permute(0, 2, 3, 1).reshape(-1, c)
            ref_iou.add(above, onehot)

        ref = {
            "Quantile.update": lambda: ref_quantile.add(rows()),
            "TailQuantile.update (q=0.99)": lambda: ref_tail.add(rows()),
            "Moments.update": lambda: ref_variance.add(rows()),
            "SecondMoment.update": lambda: ref_second.add(rows()),
            "TopK.update": lambda: ref_topk.add(x.flatten(2).amax(dim=2), ids),
            "TopK.update, (N, C) maxima": lambda: ref_topk_rows.add(peaks, ids),
            "IoU.update, 32 concepts at 64x64": ref_iou_update,
        }

    u = units_major()
    return {
        "Quantile.update": (lambda: quantile.update(x), lambda: u.sort(dim=1), 5),
        "TailQuantile.update (q=0.99)": (
            tail_update,
            lambda: u.topk(tail_keep, dim=1, sorted=False),
            9,
        ),
        "Moments.update": (lambda: moments.update(x), lambda: torch.var_mean(x, dim=(0, 2, 3)), 9),
        "SecondMoment.update": (lambda: second.update(x), lambda: u @ u.T, 9),
        # the floor is the spatial max alone: the k-best reduction is amortised over updates
        "TopK.update": (lambda: topk.update(x, ids), lambda: x.flatten(2).amax(dim=2), 31),
        "TopK.update, (N, C) maxima": (
            lambda: topk_rows.update(peaks, ids),
            lambda: peaks.T.topk(64, 1),
            31,
        ),
        "IoU.update, 32 concepts at 64x64": (lambda: iou.update(x, concepts), iou_floor, 3),
    }, ref


def speed(rs) -> None:
    for threads in THREADS:
        torch.set_num_threads(threads)
        for shape in SHAPES:
            print(f"-- {shape} batches, {threads} torch thread(s)", flush=True)
            found, ref = cases(shape, rs)
            for name, (ours, floor, repeats) in found.items():
                fns = {"ours": ours, "floor": floor}
                if name in ref:
                    fns["baukit"] = ref[name]
                t = interleaved(fns, repeats)
                ours, floor = t["ours"], t["floor"]
                line = f"{ours:8.2f} ms  bare torch {floor:8.2f} ms ({ours / floor:.2f}x)"
                if "baukit" in t:
                    line += (
                        f"  baukit {t['baukit']:8.2f} ms  speed-up {t['baukit'] / t['ours']:.2f}x"
                    )
                report(f"  {name}", line)
    if rs is None:
        report("baukit side by side", "skipped: set BAUKIT_PATH to a baukit checkout")


def _rank_error(sorted_rows: np.ndarray, estimate: np.ndarray, q: float) -> np.ndarray:
    """Distance of q from the interval of ranks each estimate has in its unit's data."""
    n = sorted_rows.shape[1]
    lo = np.array([np.searchsorted(r, v, "left") for r, v in zip(sorted_rows, estimate)]) / n
    hi = np.array([np.searchsorted(r, v, "right") for r, v in zip(sorted_rows, estimate)]) / n
    return np.where((lo <= q) & (q <= hi), 0.0, np.minimum(abs(lo - q), abs(hi - q)))


def accuracy() -> None:
    n, units, q = 10**6, RANK_UNITS, 0.99
    torch.set_num_threads(2)
    generator = torch.Generator().manual_seed(1)
    data = {
        "normal": torch.randn(n, units, generator=generator),
        "Cauchy": torch.distributions.Cauchy(0.0, 1.0).sample((n, units)),
    }
    for name, x in data.items():
        exact = np.sort(x.T.numpy(), axis=1)
        single = Quantile(seed=0)
        for i in range(0, n, 16384):  # batches of 64 images x 16 x 16
            single.update(x[i : i + 16384])
        shards = [Quantile(seed=s) for s in range(3)]
        for j, i in enumerate(range(0, n, 30000)):  # another batching, round-robin shards
            shards[j % 3].update(x[i : i + 30000])
        merged = merge_tree(shards)
        for label, stat in (("single pass", single), ("merged from 3 shards", merged)):
            error = _rank_error(exact, stat.quantile(q).numpy(), q)
            report(
                f"rank error q=0.99, {name}, {label}",
                f"worst unit {error.max():.4%}, RMS {np.sqrt((error**2).mean()):.4%} "
                f"over {units} units (goal <= 0.05%); worst-case bound {stat.rank_error():.3%}",
            )
        report(f"  values held per unit ({name})", f"{single.size} (capacity {single.capacity})")


def main() -> None:
    rs = baukit_runningstats()
    speed(rs)
    accuracy()


if __name__ == "__main__":
    main()
