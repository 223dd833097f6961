"""The gandissect-widgets command line, on the tiny generator (the zoo stays untouched)."""

from __future__ import annotations

import json
import re

import pytest

from gandissect_widgets import cli


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
    _run("dissect", "--model", "tiny", "--samples", "8", "--units", "2", "--out", str(out))
    assert len(re.findall(r"<tr><td class=num>", out.read_text())) == 2
    assert list(tiny_zoo.dissections) == [tiny_zoo.layers[len(tiny_zoo.layers) // 2]]


def test_report_holds_dissection_units_and_ablation(tiny_zoo, tmp_path):
    out = tmp_path / "lab" / "r.html"
    _run("report", "--model", "tiny", "--layer", "layer3", "--samples", "16", "--units", "4",
         "--ablate", "3", "--out", str(out))  # fmt: skip
    page = out.read_text()
    (state,) = re.findall(r'widget-state\+json">(.*?)</script>', page, re.DOTALL)
    snaps = [m["state"] for m in json.loads(state)["state"].values() if "pages" in m["state"]]
    assert len(snaps) == 2
    units, ablation = snaps
    assert len(units["pages"]) == 4
    assert [p["label"] for p in ablation["pages"]] == ["original", "ablated"]
    assert "remove 3 units of layer3" in ablation["title"]
    assert re.search(r"removes -?\d+% of its pixels", page)
    assert tiny_zoo.edits == []


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


def test_missing_weights_are_an_argparse_error(monkeypatch, capsys):
    def missing():
        raise FileNotFoundError("hamlet generator weights are missing: expected /x")

    monkeypatch.setattr(cli, "MODELS", {"hamlet": missing})
    with pytest.raises(SystemExit):
        cli.main(["report", "--model", "hamlet", "--out", "r.html"])
    assert "cannot load model 'hamlet': hamlet generator weights are missing" in (
        capsys.readouterr().err
    )


def test_report_on_a_classifier_measures_accuracy_change(monkeypatch, labelled_session, tmp_path):
    monkeypatch.setattr(cli, "MODELS", {"tiny-classifier": lambda: labelled_session})
    out = tmp_path / "c.html"
    _run("report", "--model", "tiny-classifier", "--samples", "24", "--units", "3",
         "--ablate", "2", "--out", str(out))  # fmt: skip
    page = out.read_text()
    assert re.search(r"the 2 units that most support <i>darkish</i> \(units \d+, \d+\)", page)
    assert len(re.findall(r"<li>(darkish|brightish): \d+% → \d+%</li>", page)) == 2
    assert labelled_session.edits == []
