"""save_html / to_html and the Snapshot widget, without a browser (see tests/browser for that)."""

from __future__ import annotations

import base64
import io
import json
import re

import matplotlib
import numpy as np
import pytest
import traitlets
from PIL import Image

from gandissect_widgets import report
from gandissect_widgets.widgets import AblationPanel, ImageGrid, UnitBrowser
from gandissect_widgets.widgets.snapshot import (
    Snapshot,
    snapshot,
    snapshot_ablation,
    snapshot_compare,
    snapshot_units,
)

matplotlib.use("Agg")

STATE = re.compile(
    r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', re.DOTALL
)
VIEW = re.compile(r'<script type="application/vnd.jupyter.widget-view\+json">(.*?)</script>')


def _imgs(n=3, value=100, size=8):
    return np.full((n, size, size, 3), value, np.uint8)


def _state(page: str) -> dict:
    (text,) = STATE.findall(page)
    return json.loads(text)["state"]


def test_markdown_text_is_escaped_and_formatted():
    page = report.to_html("# Results\n\n- a `x<y`\n- **b**\n\nplain <i> & *em*", title="T&T")
    assert "<title>T&amp;T</title>" in page
    assert "<h1>Results</h1>" in page
    assert "<ul><li>a <code>x&lt;y</code></li><li><b>b</b></li></ul>" in page
    assert "<p>plain &lt;i&gt; &amp; <i>em</i></p>" in page
    assert "<script" not in page  # no widgets: no manager inlined


def test_html_strings_pass_through():
    assert "<div id='raw'>ok</div>" in report.to_html("<div id='raw'>ok</div>")


def test_figure_is_an_inline_png():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [1, 0])
    page = report.to_html(fig)
    plt.close(fig)
    (data,) = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    img = Image.open(io.BytesIO(base64.b64decode(data)))
    assert img.format == "PNG" and img.size[0] > 50


def test_widgets_are_embedded_by_full_state_with_the_front_end_inline():
    grid = ImageGrid(_imgs(2), captions=["a", "b"])
    page = report.to_html("intro", grid, "outro")
    state = _state(page)
    model = state[grid.model_id]
    assert model["model_module"] == "anywidget"
    assert "export default" in model["state"]["_esm"]  # drop_defaults=False keeps the module
    assert model["state"]["captions"] == ["a", "b"]
    assert {b["path"][0] for b in model["buffers"]} >= {"_images", "_lut"}
    views = [json.loads(v)["model_id"] for v in VIEW.findall(page)]
    assert views == [grid.model_id]
    view = VIEW.search(page).start()
    assert page.index("<p>intro</p>") < view < page.index("<p>outro</p>")
    assert 'window.define("anywidget"' in page and "@jupyter-widgets/html-manager" in page
    assert not re.search(r"^//# sourceMappingURL", page, re.MULTILINE)


def test_script_end_tags_in_state_cannot_close_the_script():
    snap = Snapshot(title="</script><b>x</b>")
    snap.add_page("p", [("g", _imgs(1))])
    page = report.to_html(snap)
    assert _state(page)[snap.model_id]["state"]["title"] == "</script><b>x</b>"


def test_save_html_writes_file_and_checks_path(tmp_path):
    path = report.save_html(tmp_path / "sub" / "r.html", "hello", title="t")
    assert path.read_text().count("<p>hello</p>") == 1
    path = report.save_html(path, "again")  # an existing file is overwritten
    assert "<p>again</p>" in path.read_text() and "hello" not in path.read_text()
    with pytest.raises(ValueError, match=r"must end in \.html or \.htm; got '.*r\.txt'"):
        report.save_html(tmp_path / "r.txt", "hello")


@pytest.fixture
def no_rendering(monkeypatch):
    def render(*items, **kwargs):
        raise AssertionError("the report was rendered although it cannot be written")

    monkeypatch.setattr(report, "to_html", render)


def test_save_html_to_a_folder_is_refused_before_rendering(tmp_path, no_rendering):
    (tmp_path / "r.html").mkdir()
    with pytest.raises(IsADirectoryError, match=r"report path '.*r\.html' is a folder"):
        report.save_html(tmp_path / "r.html", "hello")


def test_save_html_under_a_file_is_refused_before_rendering(tmp_path, no_rendering):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "sub" / "r.html"  # a folder nobody can create, root included
    message = r"cannot write the report '.*r\.html': its folder '.*sub' is not writable \(.+\)"
    with pytest.raises(PermissionError, match=message):
        report.save_html(out, "hello")
    assert (tmp_path / "afile").read_text() == "x"


def test_save_html_to_read_only_places_is_refused_before_rendering(tmp_path, no_rendering):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "old.html").write_text("old")
    (folder / "old.html").chmod(0o400)
    folder.chmod(0o500)
    try:
        (folder / "probe").write_text("x")
    except PermissionError:
        pass
    else:
        folder.chmod(0o700)
        pytest.skip("read-only files and folders are writable here (running as root)")
    try:
        with pytest.raises(PermissionError, match=r"its folder '.*ro' is not writable"):
            report.save_html(folder / "new.html", "hello")
        folder.chmod(0o700)  # the folder is writable now, the file still read-only
        with pytest.raises(PermissionError, match=r"cannot write the report '.*old\.html' \("):
            report.save_html(folder / "old.html", "hello")
        assert (folder / "old.html").read_text() == "old"
    finally:
        folder.chmod(0o700)


def test_unknown_items_raise_type_error_listing_kinds():
    with pytest.raises(TypeError, match="cannot put a int.*matplotlib Figure.*ipywidget"):
        report.to_html(42)


def test_dissection_item_has_plot_and_a_row_per_unit(seg_session):
    d = seg_session.dissect("layer3", n=16, cache=False, progress=False)
    page = report.to_html(d)
    assert page.count("data:image/png") == 1  # the summary plot
    assert "<details><summary>all 8 units</summary>" in page
    rows = re.findall(r"<tr><td class=num>(\d+)</td><td>(\w+)</td>", page)
    assert sorted(int(u) for u, _ in rows) == list(range(8))
    assert all(label == d.labels[int(u)] for u, label in rows)


def test_unit_table_with_session_shows_top_overlays(seg_session):
    d = seg_session.dissect("layer3", n=16, cache=False, progress=False)
    html = report.unit_table(d, seg_session, units=[2, 5], top=3)
    assert html.count("<tr>") == 3 and html.count("<img") == 6
    seeds = d.top_seeds[2, :3].tolist()
    assert f'title="sample #{seeds[0]}"' in html


# ------------------------------------------------------------------ Snapshot


def test_snapshot_stores_shared_images_once_and_quantises_heat():
    snap = Snapshot()
    imgs = np.stack([_imgs(1, 10)[0], _imgs(1, 200)[0]])
    heat = np.array([[[0.0, 1.0]], [[2.0, 4.0]]])
    snap.add_page("a", [("g", imgs, heat, ["x", "y"])], info="first")
    snap.add_page("b", [("g", imgs)])
    assert len(snap._images) == 2 and len(snap._heats) == 2
    planes = [np.frombuffer(h, np.uint8).tolist() for h in snap._heats]
    assert planes == [[0, 64], [128, 255]]  # one range (0-4) over the group
    group = snap.pages[0]["groups"][0]
    assert group["heat_shape"] == [1, 2]
    assert [it["caption"] for it in group["items"]] == ["x", "y"]
    assert [it["heat"] for it in snap.pages[1]["groups"][0]["items"]] == [-1, -1]
    decoded = np.asarray(Image.open(io.BytesIO(snap._images[1])))
    np.testing.assert_array_equal(decoded, imgs[1])


def test_snapshot_bad_input():
    snap = Snapshot()
    with pytest.raises(TypeError, match="each group must be"):
        snap.add_page("p", ["nope"])
    with pytest.raises(ValueError, match="heatmaps must be float .N, h, w. with N = 3"):
        snap.add_page("p", [("g", _imgs(3), np.ones((2, 4, 4)))])
    with pytest.raises(ValueError, match="2 captions for 3 images"):
        snap.add_page("p", [("g", _imgs(3), None, ["a", "b"])])
    with pytest.raises(ValueError, match="NaN"):
        snap.add_page("p", [("g", _imgs(1), np.full((1, 2, 2), np.nan))])
    with pytest.raises(ValueError, match="unknown colormap 'nope'"):
        Snapshot(cmap="nope")
    assert snap.pages == []  # nothing half-added
    snap.add_page("p", [("g", _imgs(1))])
    with pytest.raises(traitlets.TraitError, match="page 3 is out of range: pages are 0-0"):
        snap.page = 3


def test_snapshot_compare_pages_and_shape_check():
    a, b = _imgs(2, 0), _imgs(2, 255)
    snap = snapshot_compare(a, b, labels=("off", "on"), captions=["1", "2"])
    assert [p["label"] for p in snap.pages] == ["off", "on"]
    first = [it["image"] for it in snap.pages[0]["groups"][0]["items"]]
    second = [it["image"] for it in snap.pages[1]["groups"][0]["items"]]
    assert first == [0, 0] and second == [1, 1]  # equal images deduplicated
    with pytest.raises(ValueError, match="same shape"):
        snapshot_compare(a, _imgs(3))


def test_snapshot_units_with_dissection(seg_session):
    d = seg_session.dissect("layer3", n=16, cache=False, progress=False)
    snap = snapshot_units(seg_session, "layer3", seeds=[0, 1, 2], top=4, max_units=5)
    best = d.best_iou.argsort(descending=True).tolist()[:5]
    assert [p["label"].split(" · ")[0] for p in snap.pages] == [f"unit {u}" for u in best]
    assert d.labels[best[0]] in snap.pages[0]["label"]
    samples, tops = snap.pages[0]["groups"]
    assert len(samples["items"]) == 3 and samples["heat_shape"] == [16, 16]
    assert [it["caption"] for it in tops["items"]] == [f"#{s}" for s in d.top_seeds[best[0], :4]]
    # the sample images are shared by every page
    assert len({it["image"] for p in snap.pages for it in p["groups"][0]["items"]}) == 3
    with pytest.raises(ValueError, match="more than max_units=2"):
        snapshot_units(seg_session, "layer3", [0, 1, 2], max_units=2)
    with pytest.raises(ValueError, match="out of range"):
        snapshot_units(seg_session, "layer3", [99])


def test_snapshot_units_without_dissection(gen_session):
    snap = snapshot_units(gen_session, "layer2", [3], seeds=[0, 1])
    assert snap.pages[0]["label"] == "unit 3"
    assert len(snap.pages[0]["groups"][1]["items"]) == 8


def test_snapshot_ablation_leaves_the_session_unchanged(gen_session):
    before = gen_session.generate([0, 1])
    snap = snapshot_ablation(gen_session, "layer2", list(range(16)), seeds=[0, 1])
    assert gen_session.edits == []
    np.testing.assert_array_equal(gen_session.generate([0, 1]), before)
    assert snap.pages[0]["groups"][0]["items"] != snap.pages[1]["groups"][0]["items"]
    assert "layer2" in snap.pages[1]["info"]


def test_snapshot_of_live_widgets(seg_session):
    seg_session.samples = [0, 1]
    seg_session.dissect("layer3", n=16, cache=False, progress=False)
    browser = UnitBrowser(seg_session, "layer3", top=2)
    browser.unit = 5
    snap = snapshot(browser)
    assert len(snap.pages) == 8 and snap.pages[0]["label"].startswith("unit 5 ")
    panel = AblationPanel(seg_session, "layer3", units=[0, 1, 2, 3, 4, 5, 6, 7])
    compare = snapshot(panel)
    assert [p["label"] for p in compare.pages] == ["original", "ablated"]
    assert seg_session.edits == []  # the panel previews: constructing it changes nothing
    page = report.to_html(browser, panel)
    assert len(VIEW.findall(page)) == 2
    kinds = {m["state"].get("title", "") for m in _state(page).values() if "pages" in m["state"]}
    assert len(kinds) == 2
    panel.close()
    browser.close()
    with pytest.raises(TypeError, match="cannot snapshot a str"):
        snapshot("text")
