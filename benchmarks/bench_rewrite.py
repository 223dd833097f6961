"""Rewriting on hamlet: second moment over 1,000 samples, one rank-1 rewrite, and the scripted
"trees grow on roofs" rule's success and preservation (goals: <= 20 s, <= 3 s, >= 60%, <= 2%)."""

from __future__ import annotations

import time

import gandissect_widgets as gw
from benchmarks._timing import report
from gandissect_widgets import rewrite as rw
from gandissect_widgets.zoo.hamlet import example_rule


def main() -> None:
    session = gw.Session(
        gw.zoo.load("hamlet"), device="cpu", segmenter=gw.zoo.load_segmenter("hamlet")
    )
    rule = example_rule(session)
    layer, request = rule["layer"], rule["request"]

    t0 = time.perf_counter()
    rw.second_moment(session, layer, 1000, cache=False)
    report(
        f"second moment, 1000 samples, {layer} (goal <= 20 s)", f"{time.perf_counter() - t0:.2f} s"
    )

    t0 = time.perf_counter()
    edit = rw.rewrite(session, layer, **request, cache=False)
    seconds = time.perf_counter() - t0
    steps = edit.request["steps"]
    report(f"rank-1 rewrite, {steps} steps, moment cached (goal <= 3 s)", f"{seconds:.2f} s")

    held_out = range(10_000, 10_200)  # not among the seeds the rule was picked from
    result = gw.rewrite_eval(
        session, edit, rule["source_concept"], rule["target_concept"], seeds=held_out
    )
    report("trees on roofs: success (goal >= 60%)", f"{result['success']:.1%}")
    report("change on samples without roofs (goal <= 2%)", f"{result['change_without_source']:.2%}")
    report("change outside roofs", f"{result['preservation']:.2%}")
    report("samples with roofs / evaluated", f"{result['with_source']} / {result['n']}")


if __name__ == "__main__":
    main()
