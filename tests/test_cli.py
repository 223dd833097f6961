"""The gandissect-widgets command line, on the tiny generator (the zoo stays untouched)."""

from __future__ import annotations

import json
import re

import pytest

from gandissect_widgets import cli


@pytest.fixture(autouse=True)
def own_cache(monkeypatch, tmp_path):
    """Commands without --no-cache check a cache folder of the test's own, not the user's, and
    relative --out paths land in the test's folder."""
    monkeypatch.setenv("GANDISSECT_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def tiny_zoo(monkeypatch, seg_session):
    monkeypatch.setattr(cli, "MODELS", {"tiny": lambda: seg_session})
    return seg_session


def _run(*argv):
    return cli.main([*argv, "--no-cache", "--quiet"])


def test_dissect_writes_a_row_per_unit_with_top_overlays(tiny_zoo, tmp_path):
    out = tmp_path / "d.html"
    assert _run("dissect", "--model", "tiny", "--layer", "layer2", "--samples", "16",
                "--top", "3", "--out", str(out)) == 0  # fmt: skip
    page = out.read_text()
    d = tiny_zoo.dissections["layer2"]
    assert "Dissection of tiny layer2" in page and "16 samples" in page
    rows = re.findall(r"<tr><td class=num>(\d+)</td><td>(\w+)</td><td class=num>([\d.]+)", page)
    assert len(rows) == 16  # layer2 has 16 units
    ious = [float(iou) for _, _, iou in rows]
    assert ious == sorted(ious, reverse=True)
    for unit, label, iou in rows:
        assert label == d.labels[int(unit)]
        assert float(iou) == pytest.approx(float(d.best_iou[int(unit)]), abs=5e-4)
    assert len(re.findall(r'<img width=56 height=56 alt="#\d+"', page)) == 16 * 3
    assert 'class="gw-figure"' in page  # the summary plot
    assert "<script" not in page  # plain HTML: no widgets


def test_dissect_units_limits_rows_and_default_layer(tiny_zoo, tmp_path):
    out = tmp_path / "d.html"
    assert (
        _run("dissect", "--model", "tiny", "--samples", "8", "--units", "2", "--out", str(out)) == 0
    )
    assert len(re.findall(r"<tr><td class=num>", out.read_text())) == 2
    assert list(tiny_zoo.dissections) == [tiny_zoo.layers[len(tiny_zoo.layers) // 2]]


def test_report_holds_dissection_units_and_ablation(tiny_zoo, tmp_path):
    out = tmp_path / "lab" / "r.html"  # the missing folder is created
    assert _run("report", "--model", "tiny", "--layer", "layer3", "--samples", "16",
                "--units", "4", "--ablate", "8", "--out", str(out)) == 0  # fmt: skip
    page = out.read_text()
    (state,) = re.findall(r'widget-state\+json">(.*?)</script>', page, re.DOTALL)
    snaps = [m["state"] for m in json.loads(state)["state"].values() if "pages" in m["state"]]
    assert len(snaps) == 2
    units, ablation = snaps
    assert len(units["pages"]) == 4
    assert [p["label"] for p in ablation["pages"]] == ["original", "ablated"]
    assert "remove 8 units of layer3" in ablation["title"]
    # Every unit of layer3 removed: the output is one flat colour, which the median segmenter
    # calls all "dark", so the concept ablated ("bright") loses all of its pixels.
    (removed,) = re.findall(r"most aligned with <i>bright</i> removes (\d+)% of its pixels", page)
    assert int(removed) == 100
    assert tiny_zoo.edits == []


@pytest.mark.parametrize(
    "removed, text",
    [
        (0.42, "removes 42% of its pixels"),
        (0.0, "removes 0% of its pixels"),
        (-0.004, "removes 0% of its pixels"),
        (-0.05, "removes none of its pixels (they grow by 5%)"),
    ],
)
def test_removal_text_never_prints_a_negative_share(removed, text):
    assert cli._removal_text(removed) == text


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["dissect", "--model", "nope", "--out", "x.html"],
            "unknown model 'nope'; models are: tiny",
        ),
        (
            ["dissect", "--model", "tiny", "--layer", "layr2", "--out", "x.html"],
            "unknown layer 'layr2'; layers are: layer1, layer2, layer3, output",
        ),
        (["dissect", "--model", "tiny", "--samples", "0", "--out", "x.html"], "positive integer"),
        (["report", "--model", "tiny", "--out", "x.png"], "--out must name an .html file"),
        (["explode"], "invalid choice: 'explode'"),
    ],
)
def test_bad_arguments_exit_2_naming_valid_choices(tiny_zoo, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_weights_are_an_argparse_error(monkeypatch, capsys, tmp_path):
    def missing():
        raise FileNotFoundError("hamlet generator weights are missing: expected /x")

    monkeypatch.setattr(cli, "MODELS", {"hamlet": missing})
    with pytest.raises(SystemExit) as exc:
        cli.main(["report", "--model", "hamlet", "--out", str(tmp_path / "r.html")])
    assert exc.value.code == 2
    assert "cannot load model 'hamlet': hamlet generator weights are missing" in (
        capsys.readouterr().err
    )


def test_report_on_a_classifier_measures_accuracy_change(monkeypatch, labelled_session, tmp_path):
    monkeypatch.setattr(cli, "MODELS", {"tiny-classifier": lambda: labelled_session})
    out = tmp_path / "c.html"
    assert _run("report", "--model", "tiny-classifier", "--samples", "24", "--units", "3",
                "--ablate", "2", "--out", str(out)) == 0  # fmt: skip
    page = out.read_text()
    assert re.search(r"the 2 units that most support <i>darkish</i> \(units \d+, \d+\)", page)
    assert len(re.findall(r"<li>(darkish|brightish): \d+% → \d+%</li>", page)) == 2
    assert labelled_session.edits == []


# ------------------------------------------------------------------ unwritable places, early


@pytest.fixture
def no_model_work(monkeypatch):
    """Zoo models that fail the test if anything tries to load one."""

    def load():
        raise AssertionError("a model was loaded although the command had to stop first")

    monkeypatch.setattr(cli, "MODELS", {"tiny": load})


def _under_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    return tmp_path / "afile" / "sub" / "r.html"  # a folder nobody can create, root included


def _a_folder(tmp_path):
    (tmp_path / "r.html").mkdir()
    return tmp_path / "r.html"


def _read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        (folder / "probe").write_text("x")
    except PermissionError:
        return folder / "r.html"
    folder.chmod(0o700)
    pytest.skip("a read-only folder is writable here (running as root)")


@pytest.mark.parametrize(
    "where, message",
    [
        (_under_a_file, r"--out: cannot write the report '.*r\.html': its folder '.*sub' is not "
                        r"writable \(.+\)$"),
        (_a_folder, r"--out: report path '.*r\.html' is a folder; name an \.html file in it$"),
        (_read_only_folder, r"--out: cannot write the report .* is not writable \(.+\)$"),
    ],
    ids=["under-a-file", "a-folder", "read-only-folder"],
)  # fmt: skip
@pytest.mark.parametrize("command", ["dissect", "report"])
def test_unwritable_out_exits_2_before_loading_the_model(
    no_model_work, capsys, tmp_path, where, message, command
):
    out = where(tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--model", "tiny", "--out", str(out), "--no-cache"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gandissect-widgets: error: ")  # one line
    assert re.search(message, err.strip()), err


def test_unwritable_cache_exits_2_before_loading_the_model(
    no_model_work, monkeypatch, capsys, tmp_path
):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("GANDISSECT_CACHE", str(tmp_path / "afile" / "cache"))
    with pytest.raises(SystemExit) as exc:
        cli.main(["dissect", "--model", "tiny", "--out", str(tmp_path / "d.html")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.search(r"cache folder '.*afile/cache' is not writable \(.+\); pass --no-cache", err)
    assert not (tmp_path / "d.html").exists()
