"""Run every benchmark: ``python -m benchmarks [name ...]`` (names: session, stats, ...)."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import torch

import benchmarks


def main(argv: list[str]) -> None:
    torch.set_num_threads(2)
    names = sorted(
        m.name[6:] for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    )
    chosen = argv or names
    unknown = set(chosen) - set(names)
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {sorted(unknown)}; available: {names}")
    for name in chosen:
        print(f"== {name}", flush=True)
        importlib.import_module(f"benchmarks.bench_{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
