"""The ``gandissect-widgets`` command: dissection reports and lab reports as HTML files.

    gandissect-widgets dissect --model hamlet --layer layer4 --samples 2000 --out report.html
    gandissect-widgets report --model hamlet --out out/hamlet_report.html
    gandissect-widgets export lab.ipynb --out lab.html      # any saved notebook, live offline

>>> main(["dissect", "--model", "hamlet", "--layer", "layer4", "--samples", "64", "--units", "2",
...       "--out", "d.html", "--quiet"])
0
"""

from __future__ import annotations

import argparse
import time

from . import report

__all__ = ["main", "MODELS"]


def _zoo(name: str):
    from .session import Session

    return lambda: Session.from_zoo(name)


# Model name -> function returning a ready Session (with a segmenter, for dissection).
MODELS = {
    "hamlet": _zoo("hamlet"),
    "hamlet-classifier": _zoo("hamlet-classifier"),
    "hamlet-vit": _zoo("hamlet-vit"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gandissect-widgets",
        description="Dissect a network and write self-contained HTML reports.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{dissect,report,export}")
    dissect = sub.add_parser("dissect", help="label every unit of a layer; write an HTML report")
    lab = sub.add_parser("report", help="write a lab report with saved, interactive widgets")
    for p, samples in ((dissect, 1000), (lab, 300)):
        p.add_argument("--model", required=True, help=f"zoo model: {', '.join(MODELS)}")
        p.add_argument("--layer", help="layer to dissect (default: the middle layer)")
        p.add_argument("--samples", type=_positive, default=samples, help="samples to dissect")
        p.add_argument("--out", required=True, help="the HTML file to write")
        p.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
    dissect.add_argument("--top", type=_positive, default=4, help="top images per unit")
    dissect.add_argument("--units", type=_positive, help="rows to show (default: every unit)")
    lab.add_argument("--units", type=_positive, default=12, help="units in the unit snapshot")
    lab.add_argument("--ablate", type=_positive, default=10, help="units to ablate")
    export = sub.add_parser(
        "export", help="an executed notebook as one HTML page with live widgets, offline"
    )
    export.add_argument(
        "notebook", help="the .ipynb file; run headless first when it has no saved widget state"
    )
    export.add_argument("--out", required=True, help="the HTML file to write")
    export.add_argument(
        "--no-execute",
        action="store_true",
        help="never run the notebook (widgets without saved state show static pictures)",
    )
    export.add_argument(
        "--execute", action="store_true", help="always run the notebook, even with saved state"
    )
    export.add_argument("--quiet", action="store_true", help="print nothing but warnings")
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {value}")
    return value


def _fail(parser, message: str):
    """Exit 2 with one line on stderr (no usage: the arguments parsed, the place is wrong)."""
    parser.exit(2, f"{parser.prog}: error: {message}\n")


def _check_places(parser, args) -> None:
    """The report file and the cache folder can be written, checked before any model work."""
    from .cache import ResultCache, default_dir, unwritable

    try:
        report.check_out_path(args.out)
    except (ValueError, OSError) as err:
        _fail(parser, f"--out: {err}")
    if not args.no_cache:
        try:
            ResultCache.resolve(True)
        except OSError as err:
            why = unwritable(default_dir()) or err.strerror or type(err).__name__
            _fail(
                parser,
                f"cache folder '{default_dir()}' is not writable ({why}); pass --no-cache or "
                "set GANDISSECT_CACHE to a writable folder",
            )


def _open(parser, args):
    """(session, layer) from the arguments; argparse errors name the valid choices."""
    if not args.out.lower().endswith((".html", ".htm")):
        parser.error(f"--out must name an .html file; got {args.out!r}")
    if args.model not in MODELS:
        parser.error(f"unknown model {args.model!r}; models are: {', '.join(MODELS)}")
    _check_places(parser, args)
    try:
        session = MODELS[args.model]()
    except FileNotFoundError as err:
        parser.error(f"cannot load model {args.model!r}: {err}")
    layer = args.layer or session.layers[len(session.layers) // 2]
    if layer not in session.layers:
        parser.error(f"unknown layer {layer!r}; layers are: {', '.join(session.layers)}")
    return session, layer


def _dissect(session, layer, args):
    start = time.perf_counter()
    d = session.dissect(layer, n=args.samples, cache=not args.no_cache, progress=not args.quiet)
    return d, time.perf_counter() - start


def _summary_text(args, layer, d, seconds) -> str:
    share = len(d.interpretable()) / len(d.labels)
    return (
        f"**{args.model}** · layer `{layer}` · {len(d.labels)} units · {args.samples} samples · "
        f"{share:.0%} of units interpretable · dissected in {seconds:.1f} s"
    )


def _run_dissect(session, layer, args) -> list:
    d, seconds = _dissect(session, layer, args)
    units = d.best_iou.argsort(descending=True).tolist()[: args.units]
    return [
        _summary_text(args, layer, d, seconds),
        d.plot_summary(),
        "## Units, best label first\n\nEach row: the unit's label, its IoU with that concept, "
        "and the samples where it fires most, with its activation as a heatmap.",
        report.unit_table(d, session, units=units, top=args.top),
    ]


def _run_report(session, layer, args) -> list:
    from .widgets.snapshot import snapshot_ablation, snapshot_units

    d, seconds = _dissect(session, layer, args)
    items = [
        _summary_text(args, layer, d, seconds),
        "## Dissection\n\nInterpretable units per concept, and every unit's best label.",
        d,
        "## Unit browser\n\nThe best-labelled units: pick one to see where it fires.",
        snapshot_units(session, layer, max_units=args.units),
    ]
    if session.kind == "generator":
        concept = next(iter(d.summary()), d.labels[int(d.best_iou.argmax())])
        units = d.ranked_for(concept)[: args.ablate]
        effect = session.ablation_effect(layer, units, concept, n=min(args.samples, 64))
        items += [
            f"## Ablation\n\nRemoving the {len(units)} units most aligned with *{concept}* "
            f"{_removal_text(effect.removed)}; other concepts change by "
            f"{effect.others_changed():.0%}. Toggle to compare.",
            snapshot_ablation(session, layer, units),
            *_rewrite_section(session, args),
        ]
    elif session.classes:
        items.append(_accuracy_section(session, layer, args))
    return items


def _removal_text(removed: float) -> str:
    """What an ablation did to its concept's area, in words (a negative share is growth)."""
    if removed > -0.005:  # would print as 0% or more
        return f"removes {max(removed, 0.0):.0%} of its pixels"
    return f"removes none of its pixels (they grow by {-removed:.0%})"


def _rewrite_section(session, args) -> list:
    """The scripted rule ("trees grow on roofs") applied, measured and shown before/after."""
    from .effects import rewrite_eval
    from .widgets.snapshot import compare_edit
    from .zoo.hamlet import example_rule

    try:
        rule = example_rule(session)
    except (KeyError, ValueError):  # a segmenter without those concepts: no scripted rule
        return []
    edit = session.rewrite(rule["layer"], **rule["request"])
    try:
        n = min(args.samples, 100)
        scores = rewrite_eval(session, edit, rule["source_concept"], rule["target_concept"], n=n)
        seeds = list(range(100, 116))
        shown = compare_edit(session, edit, seeds, 96, ("original", "rewritten"))
    finally:
        session.undo()
    src, tgt = rule["source_concept"], rule["target_concept"]
    return [
        f"## Rewriting\n\nOne rank-one edit of {rule['layer']} teaches the rule *every {src} "
        f"gets a {tgt}*: {scores['success']:.0%} of {src} pixels become {tgt} on {n} samples "
        f"nobody painted; samples without any {src} change by "
        f"{scores['change_without_source']:.1%} on average. Toggle to compare.",
        shown,
    ]


def _accuracy_section(session, layer, args) -> str:
    name, n = session.classes[0], min(args.samples, 200)
    units = session.class_units(layer, name, n=n)[: args.ablate]
    change = session.ablation_accuracy(layer, units, n=n)
    rows = "\n".join(
        f"- {c}: {change.before[c]:.0%} → {change.after[c]:.0%}" for c in session.classes
    )
    return (
        f"## Ablation\n\nRemoving the {len(units)} units that most support *{name}* "
        f"(units {', '.join(map(str, units))}) changes per-class accuracy:\n\n{rows}"
    )


def _export(parser, args) -> int:
    """``export``: run the notebook when it needs it, say so, and print warnings plainly."""
    import sys
    import warnings

    if args.execute and args.no_execute:
        parser.error("--execute and --no-execute contradict each other; pass one")
    execute = True if args.execute else (False if args.no_execute else None)
    say = None if args.quiet else print
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            path = report.export_notebook(
                args.notebook, args.out, execute=execute, progress=not args.quiet, log=say
            )
        except (OSError, ValueError) as err:
            _fail(parser, str(err))
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if say:
        say(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def main(argv=None) -> int:
    """Run the command line; returns the exit status (argparse exits 2 on bad arguments)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "export":
        return _export(parser, args)
    session, layer = _open(parser, args)
    if args.command == "dissect":
        items = _run_dissect(session, layer, args)
        title = f"Dissection of {args.model} {layer}"
    else:
        items = _run_report(session, layer, args)
        title = f"{args.model} lab report"
    path = report.save_html(args.out, *items, title=title)
    if not args.quiet:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
