"""The rough edges a new user met in a first hour (issue 23's walk-through), one test each."""

from __future__ import annotations

import pytest


# ---------------------------------------------------------------- 2: progress bars
def test_a_cached_dissection_draws_no_progress_bar(seg_session, tmp_path, capsys):
    seg_session.dissect("layer2", n=16, cache=tmp_path, progress=True)
    assert "dissect layer2" in capsys.readouterr().err  # computed: a bar
    seg_session.dissections.clear()
    d = seg_session.dissect("layer2", n=16, cache=tmp_path, progress=True)
    assert "dissect layer2" not in capsys.readouterr().err  # from the cache: no "0% 0/4"
    assert seg_session.dissections["layer2"] is d
    job = seg_session.dissect("layer2", n=16, cache=tmp_path, progress=True, background=True)
    assert job.result(10).labels == d.labels and job.progress == 1.0
    assert "dissect layer2" not in capsys.readouterr().err


# ---------------------------------------------------------------- 3, 4: AblationPanel
@pytest.fixture
def panel(gen_session):
    from gandissect_widgets.widgets import AblationPanel

    p = AblationPanel(gen_session, "layer2", units=[1, 2], seeds=[0, 1], size=32)
    yield p
    p.close()


def test_units_typed_with_spaces_are_read_like_commas(panel):
    panel.units = "3 12  4 - 6"
    panel.wait()
    assert panel.status_kind == "preview", panel.status
    assert panel.edit.units == [3, 12, 4, 5, 6]


def test_an_invalid_control_empties_the_edited_side(panel):
    panel.wait()
    assert len(panel.edited["images"]) == 2
    panel.units = "1, 99"
    panel.wait()
    assert panel.status_kind == "error" and "0-15" in panel.status, panel.status
    assert panel.edited["images"] == []
    assert "edited side is empty" in panel.status
    panel.units = "1"
    panel.wait()
    assert len(panel.edited["images"]) == 2 and panel.status_kind == "preview"


def test_status_drops_undone_elsewhere_once_the_edit_is_applied_again(panel, gen_session):
    panel.apply()
    gen_session.undo()
    panel.refresh()
    assert "undone elsewhere" in panel.status
    panel.apply()
    assert panel.applied and "undone elsewhere" not in panel.status, panel.status
    gen_session.undo()
    panel.refresh()
    gen_session.redo()  # re-applied elsewhere: the panel sees it applied, no stale note
    panel.refresh()
    assert panel.applied and "undone elsewhere" not in panel.status, panel.status


def test_undone_elsewhere_is_not_said_once_the_edit_is_back(panel, gen_session):
    panel.apply()
    gen_session.undo()
    panel.strength = 0.5  # a new preview, then the old edit comes back by redo
    panel.wait()
    assert "undone elsewhere" in panel.status
    gen_session.redo()
    panel.refresh()
    assert "undone elsewhere" not in panel.status, panel.status


# ---------------------------------------------------------------- 6c, 3: a later dissection
def test_widgets_made_before_the_dissection_pick_it_up(seg_session):
    from gandissect_widgets.widgets import AblationPanel, UnitBrowser
    from gandissect_widgets.widgets._session_widget import parse_units

    browser = UnitBrowser(seg_session, "layer2", seeds=[0, 1], size=16, top=2, pool=4)
    panel = AblationPanel(seg_session, "layer2", units=[1], seeds=[0, 1], size=16)
    try:
        assert [v for _, v in browser.sorts] == ["unit", "activation"] and not panel.concepts
        d = seg_session.dissect("layer2", n=16, cache=False, progress=False)
        browser.wait()
        panel.wait()
        assert [v for _, v in browser.sorts] == ["iou", "unit", "activation"]
        assert (
            browser.sort == "iou" and browser.order == d.best_iou.argsort(descending=True).tolist()
        )
        assert d.labels[browser.order[0]] in browser.labels[0] and "label" in browser.info
        assert panel.concepts == sorted(set(d.labels))
        # the units field agrees with the concept and top-k controls as they change
        panel.concept = panel.concepts[0]
        panel.top = 3
        assert parse_units(panel.units, 16) == d.ranked_for(panel.concept)[:3]
        panel.concept = panel.concepts[-1]
        assert parse_units(panel.units, 16) == d.ranked_for(panel.concept)[:3]
    finally:
        browser.close()
        panel.close()


# ---------------------------------------------------------------- 7: what a person reads
def test_rule_editor_says_why_rank_0_is_refused_and_claims_no_change_before_one(gen_session):
    from gandissect_widgets.widgets import RuleEditor

    editor = RuleEditor(gen_session, "layer2", seeds=range(2), stat_samples=16, cache=False)
    try:
        assert editor.canvas_caption == "painting on sample #0", editor.canvas_caption
        editor.set_state({"rank": 0})  # what the page sends for a typed 0
        assert editor.rank == 1 and editor.status_kind == "error"
        assert "rank must be >= 1; got 0" in editor.status, editor.status
    finally:
        editor.close()


def test_photo_ids_read_as_photo_k():
    from gandissect_widgets.sources import PHOTO_BASE
    from gandissect_widgets.widgets._session_widget import sample_name

    assert PHOTO_BASE > 10**18  # the id nobody should have to read
    assert [sample_name(PHOTO_BASE), sample_name(PHOTO_BASE + 2, short=True)] == [
        "photo 0",
        "photo 2",
    ]


# ---------------------------------------------------------------- 6b: static pictures say what
def _said(widget) -> tuple[str, str]:
    data, _ = widget._repr_mimebundle_()
    return data["text/html"], data["text/plain"]


def test_static_pictures_are_labelled(gen_session):
    import numpy as np

    from gandissect_widgets.widgets import AblationPanel, ImageGrid, UnitBrowser

    panel = AblationPanel(gen_session, "layer2", units=[1, 2], seeds=[0, 1], size=32)
    browser = UnitBrowser(gen_session, "layer2", seeds=[0, 1], pool=4, size=32)
    try:
        panel.strength = 0.2
        panel.apply()
        page, text = _said(panel)
        for words in ("Top to bottom: original; edited", "units 1, 2 of layer2", "strength 20%"):
            assert words in page and words in text, (words, text)
        assert "applied to the Session" in text and "<img" in page
        page, text = _said(browser)
        assert "unit 0" in text and "Units listed first: unit 0; unit 1" in text
        grid = ImageGrid(np.zeros((2, 8, 8, 3), np.uint8), captions=["original", "trees ablated"])
        assert "original · trees ablated" in _said(grid)[0]
    finally:
        panel.close()
        browser.close()


# ---------------------------------------------------------------- 8: a hint before Execute
def _box(y0, y1, x0, x1):
    import numpy as np

    m = np.zeros((16, 16), np.float32)
    m[y0:y1, x0:x1] = 1
    return m


def test_a_painted_rule_gets_a_quality_hint_before_execute(gen_session):
    from gandissect_widgets import rewrite as rw
    from gandissect_widgets.widgets import RuleEditor

    copy, paste = (1, _box(4, 8, 4, 8)), (2, (8, 8))
    fast = {"stat_samples": 16, "cache": False}
    # a click handler's check never computes the key statistics: no spread until they exist
    quick = rw.rule_hint(gen_session, "layer2", [(2, _box(7, 8, 7, 8))], copy, paste, **fast,
                         quick=True)  # fmt: skip
    assert quick["spread"] is None and "spread after the first fit" in quick["text"]
    thin = rw.rule_hint(gen_session, "layer2", [(2, _box(7, 8, 7, 8))], copy, paste, **fast)
    assert thin["spread"] is not None  # computed now, and kept for the quick check
    again = rw.rule_hint(gen_session, "layer2", [(2, _box(7, 8, 7, 8))], copy, paste, **fast,
                         quick=True)  # fmt: skip
    assert again["spread"] == thin["spread"]
    assert thin["positions"] < 8 and "paint larger regions" in thin["text"], thin
    wide = rw.rule_hint(gen_session, "layer2", [(2, _box(2, 14, 2, 14))], copy, paste, **fast)
    assert wide["positions"] > thin["positions"] and "paint larger" not in wide["text"]
    assert 0 < wide["agreement"] <= 1 and wide["paste_match"] is not None
    # the paste target inside the context scores like the context itself
    assert wide["paste_match"] > 0.6 * wide["agreement"], wide
    assert gen_session.edits == []  # a hint changes nothing
    editor = RuleEditor(gen_session, "layer2", seeds=range(3), stat_samples=8, cache=False)
    try:
        editor.copy, editor.paste = copy, paste
        editor.context = [(2, _box(7, 8, 7, 8))]
        editor.select(2)
        editor.canvas.mask = _box(7, 9, 7, 9).astype("uint8")
        editor.add_context()
        assert "rule check:" in editor.status and "paint larger regions" in editor.status
    finally:
        editor.close()


def test_the_rule_check_passes_the_scripted_rule_and_warns_on_a_context_that_is_everywhere():
    """On hamlet (benchmarks/bench_rule_hint.py has the 80-request study): the roof rule as
    scripted gets no advice; the same rule with the sky of its context samples as context
    (a rule that would act on most of every picture) is told that it acts widely."""
    import numpy as np

    import gandissect_widgets as gw
    from gandissect_widgets import rewrite as rw
    from gandissect_widgets.zoo.hamlet import example_rule

    s = gw.Session.from_zoo("hamlet")
    rule = example_rule(s)
    req, fast = rule["request"], {"stat_samples": 300, "cache": False}
    good = rw.rule_hint(s, "layer6", req["context"], req["copy"], req["paste"], **fast)
    assert good["advice"] == [] and good["spread"] < 0.05, good["text"]
    seeds = [seed for seed, _ in req["context"][:3]]
    labels = s.segmenter.segment(s.generate(seeds)).numpy()
    sky = [(seed, (m == s.segmenter.concepts.index("sky")).astype(np.float32))
           for seed, m in zip(seeds, labels, strict=True)]  # fmt: skip
    bad = rw.rule_hint(s, "layer6", sky, req["copy"], req["paste"], **fast)
    assert bad["spread"] > 0.1 and any("also act on" in a for a in bad["advice"]), bad["text"]


# ---------------------------------------------------------------- 6: a unit silent on the samples
def test_the_browser_opens_on_the_best_unit_that_shows_on_its_samples(seg_session):
    """Hamlet's layer6 dissected on 400 samples ranks a mountain unit first, and none of the
    eight default samples has a mountain where it fires: the browser opened on eight dimmed
    samples. It opens on the best-ranked unit above its threshold on a sample shown."""
    from gandissect_widgets.widgets import UnitBrowser

    d = seg_session.dissect("layer2", n=16, cache=False, progress=False)
    order = d.best_iou.argsort(descending=True).tolist()
    d.thresholds[order[0]] = 1e6  # the best unit fires nowhere (here: on no sample at all)
    seeds = [2, 3]
    acts = seg_session.activations("layer2", seeds)
    shows = [u for u in order if bool((acts[:, u] >= d.thresholds[u]).any())]
    assert shows and shows[0] != order[1]  # it skips more than the silenced unit
    browser = UnitBrowser(seg_session, "layer2", seeds=seeds, size=16, top=2)
    try:
        assert browser.order == order and browser.unit == shows[0]
        assert "below it on all" not in browser.info
        browser.sort = "unit"  # the list reorders; the unit chosen stays
        assert browser.unit == shows[0]
    finally:
        browser.close()
    d.thresholds[:] = 1e6  # no unit shows: the first listed one, with the note that says why
    browser = UnitBrowser(seg_session, "layer2", seeds=seeds, size=16, top=2)
    try:
        assert browser.unit == order[0] and "below it on all 2 samples" in browser.info
    finally:
        browser.close()


def test_a_dissection_arriving_later_opens_its_best_unit_unless_one_was_chosen(seg_session):
    from gandissect_widgets.widgets import UnitBrowser

    seeds = [2, 3]
    made_first = UnitBrowser(seg_session, "layer2", seeds=seeds, size=16, top=2)
    chosen = UnitBrowser(seg_session, "layer2", seeds=seeds, size=16, top=2)
    try:
        chosen.unit = 7
        d = seg_session.dissect("layer2", n=16, cache=False, progress=False)
        made_first.wait()
        chosen.wait()
        acts = seg_session.activations("layer2", seeds)
        best = next(u for u in made_first.order if bool((acts[:, u] >= d.thresholds[u]).any()))
        assert made_first.sort == "iou" and made_first.unit == best
        assert chosen.sort == "iou" and chosen.unit == 7
    finally:
        made_first.close()
        chosen.close()


def test_a_unit_below_threshold_on_every_sample_says_so(seg_session):
    from gandissect_widgets.widgets import UnitBrowser

    d = seg_session.dissect("layer2", n=16, cache=False, progress=False)
    browser = UnitBrowser(seg_session, "layer2", seeds=[0, 1], size=16, top=2)
    try:
        assert "below it on all" not in browser.info
        d.thresholds[browser.unit] = 1e6  # a unit that fires on none of the samples shown
        browser.refresh()
        assert "below it on all 2 samples shown (all dimmed)" in browser.info, browser.info
    finally:
        browser.close()
