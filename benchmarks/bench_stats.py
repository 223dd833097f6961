"""Running statistics, timed like for like, against their physical limits and against baukit.

Speed: each statistic's update on (64, 128, 16, 16) and (64, 512, 8, 8) float32 batches at 1
and 2 torch threads, then at 2 threads beside a busy process (one spinning core).  Every call
gets a *different* batch, cycling through a pool larger than the CPU's last-level cache, and a
figure is the mean call over a sweep, so the statistics' own compactions (TopK's bulk
reduction, the sketch's level sorts) are paid at the rate they happen.  Each figure is set
beside, in the same interleaved rounds:

- **one read**: ``torch.sum`` over the same batch, the least any statistic of every value must
  pay; for SecondMoment also **one GEMM** of its size (``rows.T @ rows``, rows (N H W, C));
- **baukit** (``runningstats`` from ``BAUKIT_PATH``, a checkout of github.com/davidbau/baukit
  kept outside this repository), fed rows (N H W, C) that are a free view of a channels-last
  copy of the batch (a caller can hook channels-last), and **baukit + copy**, fed the NCHW
  batch through the ``permute(0, 2, 3, 1)`` copy its API needs otherwise.

Interleaved rounds: every candidate sweeps in turn, round after round, so bursts of other work
hit them alike; a figure is the median of the rounds' per-call means, in wall time and in this
process's CPU time (all its threads: spinning threads count), which a machine shared with other
work disturbs less at 1 thread.  The machine's load average is printed with every block.

Accuracy: the quantile sketch's rank error at q = 0.99 on 10^6 values per unit, single pass and
merged; and on hamlet layers as a dissection builds it (shards of 256 samples, each sketch
seeded by its shard index, merged in the fixed tree order) over five disjoint sample sets,
against the exact per-unit quantile.

``python -m benchmarks.bench_stats [speed] [busy] [accuracy] [hamlet]`` (all by default).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import statistics
import subprocess
import sys
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
)

SHAPES = [(64, 128, 16, 16), (64, 512, 8, 8)]
THREADS = [1, 2]
CONCEPT_SIZE, N_CONCEPTS = 64, 32
ROUNDS = int(os.environ.get("GW_BENCH_ROUNDS", "7"))
POOL = int(os.environ.get("GW_BENCH_POOL", "8"))  # 8 x 8 MB per layout: beyond a 32 MB cache
RANK_UNITS = int(os.environ.get("GW_BENCH_RANK_UNITS", "64"))
HAMLET_SAMPLES = int(os.environ.get("GW_BENCH_SAMPLES", "2000"))
HAMLET_LAYERS = ["layer4", "layer5", "layer6", "layer7"]
# a subset of the statistics, e.g. "Moments;SecondMoment"; names as printed
CASES = [n for n in os.environ.get("GW_BENCH_CASES", "").split(";") if n]


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


def load() -> str:
    """The 1-minute load average and the number of cores, for the record."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


class _Sweep:
    """``calls`` calls of ``fn(i)`` on successive batch indices ``i`` (mod the pool size)."""

    def __init__(self, fn, calls: int):
        self.fn, self.calls, self.i = fn, calls, 0

    def __call__(self) -> tuple[float, float]:
        """(wall ms, CPU ms of this process, all threads) per call over one sweep."""
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(self.calls):
            self.fn(self.i % POOL)
            self.i += 1
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return wall / self.calls * 1e3, cpu / self.calls * 1e3


def interleaved(fns: dict, calls: int, rounds: int = ROUNDS) -> tuple[dict, dict]:
    """ms per call of each ``fn(i)``, wall and CPU time: the medians over ``rounds``
    interleaved rounds of the mean call of a sweep of ``calls`` distinct batches."""
    sweeps = {name: _Sweep(fn, calls) for name, fn in fns.items()}
    for sweep in sweeps.values():  # warm-up: allocations, first compactions
        sweep()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, sweep in sweeps.items():
            times[name].append(sweep())
    wall = {name: statistics.median(w for w, _ in v) for name, v in times.items()}
    cpu = {name: statistics.median(c for _, c in v) for name, v in times.items()}
    return wall, cpu


def _wanted(name: str) -> bool:
    return not CASES or name in CASES


def _rows(x: torch.Tensor) -> torch.Tensor:
    """baukit's layout, one row per position (N H W, C): a view of a channels-last batch, a
    copy of an NCHW one."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def cases(shape, rs) -> dict[str, dict]:
    """name -> {"calls": sweep length, candidate name -> fn(i) on batch i of the pool}."""
    torch.manual_seed(0)
    n, c = shape[:2]
    maps = [torch.randn(shape) for _ in range(POOL)]  # NCHW, as forward hooks give them
    last = [x.contiguous(memory_format=torch.channels_last) for x in maps]
    rows = [_rows(x) for x in last]  # free views
    peaks = [x.flatten(2).amax(dim=2) for x in maps]  # per-sample maxima (N, C)
    ids = [torch.arange(i * n, (i + 1) * n) for i in range(POOL)]
    concepts = [torch.randint(0, N_CONCEPTS, (n, CONCEPT_SIZE, CONCEPT_SIZE)) for _ in maps]
    values_per_unit = n * shape[2] * shape[3]

    def read(i):
        return torch.sum(maps[i])

    quantile = Quantile(seed=0)
    for x in maps if _wanted("Quantile (sketch)") else maps[:1]:
        quantile.update(x)  # a filled sketch: updates pay for steady-state compactions
    thresholds = quantile.quantile(0.99)
    tail_total = 64 * values_per_unit  # a dissection of 64 such batches (4096 samples)
    tail = TailQuantile(0.99, tail_total)
    moments, second, topk, topk_rows = Moments(), SecondMoment(), TopK(k=64), TopK(k=64)
    iou = IoU(thresholds, N_CONCEPTS)

    def tail_update(i):
        if tail.count + values_per_unit > tail.total:  # the dissection is over: start again
            tail.__init__(0.99, tail_total)
        tail.update(maps[i])

    found = {
        "Quantile (sketch)": {"calls": 8, "ours": lambda i: quantile.update(maps[i])},
        "TailQuantile (exact, q=0.99)": {"calls": 8, "ours": tail_update},
        "Moments": {"calls": 16, "ours": lambda i: moments.update(maps[i])},
        "SecondMoment": {
            "calls": 8,
            "ours": lambda i: second.update(maps[i]),
            "GEMM": lambda i: rows[i].T @ rows[i],
        },
        "TopK, from the batch": {"calls": 32, "ours": lambda i: topk.update(maps[i], ids[i])},
        "TopK, from (N, C) maxima": {
            "calls": 64,
            "ours": lambda i: topk_rows.update(peaks[i], ids[i]),
        },
        "IoU, 32 concepts at 64x64": {
            "calls": 1,
            "ours": lambda i: iou.update(maps[i], concepts[i]),
        },
    }
    for case in found.values():
        case["read"] = read
    if rs is not None:
        _add_baukit(found, rs, maps, last, peaks, ids, concepts, thresholds)
    return found


def _add_baukit(found, rs, maps, last, peaks, ids, concepts, thresholds) -> None:
    """baukit's counterparts: "baukit" on free row views, "baukit + copy" on NCHW batches."""
    size = (CONCEPT_SIZE, CONCEPT_SIZE)

    def filled_quantile(feed):
        q = rs.Quantile()
        for x in feed:
            q.add(_rows(x))
        return q

    onehot = [torch.nn.functional.one_hot(k.reshape(-1), N_CONCEPTS) for k in concepts]

    def cross_iou(stat, batches):
        def add(i):
            up = torch.nn.functional.interpolate(
                batches[i], size=size, mode="bilinear", align_corners=False
            )
            stat.add(_rows(up > thresholds[:, None, None]), onehot[i])

        return add

    def per_row(make, method="add"):
        """(no copy, with copy) adders of a fresh baukit statistic each."""
        free, copied = make(), make()
        return (
            lambda i: getattr(free, method)(_rows(last[i])),
            lambda i: getattr(copied, method)(_rows(maps[i])),
        )

    for name, make in (
        ("Moments", rs.Variance),
        ("SecondMoment", rs.SecondMoment),
    ):
        found[name]["baukit"], found[name]["baukit + copy"] = per_row(make)
    for name in ("Quantile (sketch)", "TailQuantile (exact, q=0.99)"):
        if _wanted(name):  # filling baukit's sketch takes a while
            free, copied = filled_quantile(last), filled_quantile(maps)
            found[name]["baukit"] = lambda i, q=free: q.add(_rows(last[i]))
            found[name]["baukit + copy"] = lambda i, q=copied: q.add(_rows(maps[i]))
    # TopK: both take the per-sample spatial max of the NCHW batch (no permute either way)
    top_free, top_rows = rs.TopK(k=64), rs.TopK(k=64)
    found["TopK, from the batch"]["baukit"] = lambda i: top_free.add(
        maps[i].flatten(2).amax(dim=2), ids[i]
    )
    found["TopK, from (N, C) maxima"]["baukit"] = lambda i: top_rows.add(peaks[i], ids[i])
    iou_free, iou_copied = rs.CrossIoU(), rs.CrossIoU()
    found["IoU, 32 concepts at 64x64"]["baukit"] = cross_iou(iou_free, last)
    found["IoU, 32 concepts at 64x64"]["baukit + copy"] = cross_iou(iou_copied, maps)


def _line(t: dict[str, float]) -> str:
    ours = t["ours"]
    parts = [f"{ours:8.3f} ms", f"read {t['read']:7.3f} ({ours / t['read']:5.2f}x)"]
    if "GEMM" in t:
        parts.append(f"GEMM {t['GEMM']:7.3f} ({ours / t['GEMM']:4.2f}x)")
    for name in ("baukit", "baukit + copy"):
        if name in t:
            parts.append(f"{name} {t[name]:8.3f} (speed-up {t[name] / ours:5.2f}x)")
    return " | ".join(parts)


def speed(rs, threads=THREADS, label="") -> dict:
    """Every case at each thread count; returns {(threads, shape, name): {candidate: ms}}."""
    results = {}
    for count in threads:
        torch.set_num_threads(count)
        for shape in SHAPES:
            print(f"-- {shape} batches, {count} torch thread(s){label}; {load()}", flush=True)
            for name, case in cases(shape, rs).items():
                if not _wanted(name):
                    continue
                calls = case.pop("calls")
                wall, cpu = interleaved(case, calls)
                results[(count, shape, name)] = wall, cpu
                report(f"  {name}", "wall " + _line(wall))
                report("", "CPU  " + _line(cpu))
            print(f"   ({load()})", flush=True)
    if rs is None:
        report("baukit side by side", "skipped: set BAUKIT_PATH to a baukit checkout")
    return results


@contextlib.contextmanager
def busy_process():
    """A process spinning one core for as long as the block runs."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        spinner.kill()
        spinner.wait()


def busy(rs) -> None:
    """The 2-thread run again beside a process spinning a core."""
    with busy_process():
        speed(rs, threads=[2], label=", beside a process spinning a core")


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


def hamlet(sets: int = 5, q: float = 0.99) -> None:
    """The sketch as a dissection builds it, on hamlet layers, against the exact quantile;
    ``GW_BENCH_CAPACITIES=4096,6144`` compares capacities on the same activations."""
    import gandissect_widgets as gw
    from gandissect_widgets import passes

    torch.set_num_threads(2)
    session = gw.Session.from_zoo("hamlet", device="cpu")
    bs, shard = session.batch_size, passes.shard_size(None, session.batch_size)
    default = Quantile().capacity
    capacities = [int(c) for c in os.environ.get("GW_BENCH_CAPACITIES", str(default)).split(",")]
    worst = {(layer, cap): [] for layer in HAMLET_LAYERS for cap in capacities}
    for s in range(sets):
        seeds = list(range(s * HAMLET_SAMPLES, (s + 1) * HAMLET_SAMPLES))
        acts = {layer: [] for layer in HAMLET_LAYERS}
        for chunk in passes.batches(seeds, bs):
            _, seen = session.forward(chunk, session.state, retain=HAMLET_LAYERS)
            for layer in HAMLET_LAYERS:
                acts[layer].append(seen[layer].float())
        for layer in HAMLET_LAYERS:
            c = acts[layer][0].shape[1]
            exact = np.sort(torch.cat(acts[layer]).transpose(0, 1).reshape(c, -1).numpy(), axis=1)
            per_shard = shard // bs
            for cap in capacities:
                sketches = []  # as passes.Levels.statistic makes them: seeded by shard index
                for index, start in enumerate(range(0, len(acts[layer]), per_shard)):
                    sketch = Quantile(c, capacity=cap, seed=index)
                    for batch in acts[layer][start : start + per_shard]:
                        sketch.update(batch)
                    sketches.append(sketch)
                merged = merge_tree(sketches)
                error = _rank_error(exact, merged.quantile(q).float().numpy(), q)
                worst[(layer, cap)].append(error.max())
                report(
                    f"hamlet {layer}, capacity {cap}, samples {seeds[0]}-{seeds[-1]}",
                    f"worst unit {error.max():.4%}, RMS {np.sqrt((error**2).mean()):.4%} over "
                    f"{c} units; bound {merged.rank_error():.3%}",
                )
    for (layer, cap), errors in worst.items():
        report(
            f"hamlet {layer}, capacity {cap}: worst unit, {sets} sets",
            f"{max(errors):.4%} (goal <= 0.05%; per set: {', '.join(f'{e:.4%}' for e in errors)})",
        )


PARTS = {"speed": speed, "busy": busy, "accuracy": accuracy, "hamlet": hamlet}


def main(argv=()) -> None:
    chosen = list(argv) or list(PARTS)
    unknown = set(chosen) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown part(s) {sorted(unknown)}; parts are: {', '.join(PARTS)}")
    rs = baukit_runningstats()
    for part in chosen:
        if part in ("speed", "busy"):
            PARTS[part](rs)
        else:
            PARTS[part]()


if __name__ == "__main__":
    main(sys.argv[1:])
