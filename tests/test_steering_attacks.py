"""Steering a classifier through its units, and attacking it on its class or through units."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gandissect_widgets as gw
from gandissect_widgets import attacks, steering


@pytest.fixture
def events(labelled_session):
    seen = []
    labelled_session.observe(seen.append)
    return seen


def test_steering_is_an_ablation_to_a_multiple_of_high_on_the_one_stack(labelled_session):
    s = labelled_session
    ranked = s.class_units("conv2", "brightish", n=200)
    edit = s.steering("conv2", "brightish", k=3, value=2)
    assert isinstance(edit, gw.Ablation) and edit.units == ranked[:3]
    high = s.unit_levels("conv2")["high"][torch.tensor(ranked[:3])]
    assert torch.allclose(edit.values, 2 * high)
    assert s.edits == [] and "towards brightish (2x high)" in edit.describe()
    before = s.classify(range(8))
    with s.temporarily(edit):
        previewed = s.classify(range(8))
    assert torch.equal(s.classify(range(8)), before) and not torch.equal(previewed, before)
    pushed = s.steer("conv2", "brightish", k=3, value=2)
    assert s.edits == [pushed] and torch.equal(s.classify(range(8)), previewed)
    s.undo()
    assert torch.equal(s.classify(range(8)), before)


def test_steering_effect_counts_flips_of_the_other_class(labelled_session):
    s = labelled_session
    seeds = range(1000, 1060)
    e = gw.effects.steering_effect(s, "conv2", "brightish", k=4, value=4, seeds=seeds)
    labels = s.labels(seeds)
    others = [x for x, lab in zip(seeds, labels.tolist()) if lab != 1]
    with s.temporarily(s.steering("conv2", "brightish", k=4, value=4)):
        flipped = (s.classify(others).argmax(1) == 1).float().mean().item()
    assert e.n == len(others) and e.flip_rate == pytest.approx(flipped)
    assert e.by_source == {"darkish": pytest.approx(flipped)} and e.prob_after > e.prob_before
    assert "| **all others** |" in e.table() and s.edits == []
    curve = steering.steering_curve(s, "conv2", 1, ks=[1, 4], value=4, seeds=seeds)
    assert curve[4].flip_rate == pytest.approx(e.flip_rate) and curve[1].units == e.units[:1]


def test_a_class_attack_stays_in_its_ball_and_is_judged_on_uint8(labelled_session):
    s = labelled_session
    s.batch_size = 4  # two batches
    a = s.attack(range(6), "brightish", eps=8 / 255, steps=5, layer="conv2")
    assert a.images.dtype == np.uint8 and a.images.shape == (6, 16, 16, 3)
    assert np.abs(a.perturbation).max() <= 8 and np.array_equal(a.originals, s.generate(range(6)))
    assert np.array_equal(a.before, s.classify(range(6)).argmax(1).numpy())
    logits, _ = s.run(torch.from_numpy(a.images).permute(0, 3, 1, 2).float() / 127.5 - 1)
    assert np.array_equal(a.after, logits.argmax(1).numpy())
    assert np.allclose(a.probs_after, logits.softmax(1).numpy(), atol=1e-5)
    assert (a.probs_after[:, 1] >= a.probs_before[:, 1] - 1e-6).all()
    mse = ((a.images.astype(float) - a.originals) ** 2).mean((1, 2, 3))
    assert np.allclose(a.psnr, 10 * np.log10(255**2 / mse))
    assert a.unit_change("conv2").shape == (6, 8) and len(a.moved_units(3)) == 3
    small = s.attack(range(6), 1, eps=2 / 255, steps=3)
    assert np.abs(small.perturbation).max() <= 2 and small.psnr.min() >= 42


def test_a_unit_attack_moves_its_units_without_the_logits(labelled_session):
    s = labelled_session
    a = s.attack(range(6), 1, eps=8 / 255, steps=5, layer="conv2", units={2: 1, 5: -1})
    change = a.unit_change().mean(0)
    assert change[2] > 0 and change[5] < 0 and a.units == {2: 1.0, 5: -1.0}
    pictures = s.generate(range(3))
    b = s.attack(pictures, 1, eps=4 / 255, steps=2, layer="conv2", units=[4])
    assert b.images.shape == pictures.shape and b.unit_change()[:, 4].mean() > 0
    assert gw.Attack is attacks.Attack and s.edits == []


def test_an_attack_job_can_be_cancelled(labelled_session):
    s = labelled_session
    job = gw.Job(lambda job: (job.cancel(), s.attack(range(4), 1, steps=50, job=job)), total=50)
    with pytest.raises(gw.Cancelled):
        job.result(timeout=30)
    assert job.done <= 1


def test_attack_units_reports_a_ratio_to_random_units(labelled_session):
    r = gw.effects.attack_units(
        labelled_session, "conv2", range(1000, 1012), eps=8 / 255, steps=3, k=2, top=2
    )
    assert r.n == 12 and 0 <= r.overlap <= 1 and r.random == pytest.approx(r.overlap / r.ratio)
    assert set(r.by_target) <= {"darkish", "brightish"} and "ratio" in r.table()


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda s: s.attack(range(2), "tree"), KeyError, "unknown class 'tree'"),
        (lambda s: s.attack(range(2), 5), KeyError, "out of range"),
        (lambda s: s.attack(range(2), 1, eps=0), ValueError, "eps"),
        (lambda s: s.attack(range(2), 1, eps=1.5), ValueError, "eps"),
        (lambda s: s.attack(range(2), 1, eps=math.nan), ValueError, "eps"),
        (lambda s: s.attack(range(2), 1, layer="conv2", units=[]), ValueError, "must not be empty"),
        (lambda s: s.attack(range(2), 1, layer="conv2", units=[8]), ValueError, "conv2"),
        (lambda s: s.attack(range(2), 1, layer="conv2", units={1: 3}), ValueError, "+1"),
        (lambda s: s.attack(range(2), 1, units=[1]), ValueError, "layer="),
        (lambda s: s.attack(range(2), 1, layer="fc", units=[2]), ValueError, "fc"),
        (lambda s: s.attack(np.zeros((1, 8, 8, 3), np.uint8), 1), ValueError, "(N, 16, 16, 3)"),
        (lambda s: s.attack(np.zeros((1, 16, 16, 3)), 1), TypeError, "uint8"),
        (lambda s: s.steer("conv2", "tree"), KeyError, "classes are: darkish, brightish"),
        (lambda s: s.steer("conv2", 1, k=9), ValueError, "at most the 8 units"),
        (lambda s: s.steer("conv2", 1, k=3, value=-1), ValueError, "value"),
        (lambda s: s.steer("conv2", 1, k=3, value="max"), ValueError, "'high', 'mean'"),
        (lambda s: s.steer("fc", 1), ValueError, "at most the 2 units of fc"),
        (lambda s: s.steer("conv2", 1, k=3, mask=np.zeros((3, 3))), ValueError, "mask"),
    ],
)
def test_bad_input_says_what_is_valid_and_changes_nothing(
    labelled_session, events, call, error, words
):
    s = labelled_session
    key = s.state_key
    with pytest.raises(error) as err:
        call(s)
    assert words in str(err.value), str(err.value)
    assert s.state_key == key and events == []


def test_a_generator_session_is_refused(gen_session):
    with pytest.raises(ValueError, match="classifier"):
        gen_session.attack([0], 0)
    with pytest.raises(ValueError, match="classifier"):
        gen_session.steer("layer2", 0)


def test_the_tutorial_checks_fail_on_wrong_figures():
    """Tutorial 07's `# check` cells assert on the figures it measured: wrong ones fail."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "notebooks" / "_build.py"
    spec = importlib.util.spec_from_file_location("_tutorial_build_07", path)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    checks = [
        c.source
        for c in build.NOTEBOOKS["07_fool_the_classifier"]()
        if c.cell_type == "code" and c.source.startswith("# check")
    ]
    from types import SimpleNamespace

    def curve(flip):
        return {10: SimpleNamespace(flip_rate=flip, by_source={"lake": flip})}

    good = dict(
        village_drop=1.0,
        curve=curve(0.96),
        unit_flip=0.9,
        ratio=1.9,
        forest_before=0.02,
        forest_after=0.9,
        np=np,
        attack=SimpleNamespace(perturbation=np.full(3, 16)),
    )
    assert len(checks) == 5
    for source in checks:
        exec(source, dict(good))
    wrong = [
        ("village_drop", 0.5),
        ("curve", curve(0.6)),
        ("unit_flip", 0.2),
        ("ratio", 1.0),
        ("forest_after", 0.1),
    ]
    for (name, value), source in zip(wrong, checks):
        with pytest.raises(AssertionError):
            exec(source, {**good, name: value})


def _scenes(seeds):
    """32 px pictures with 5 labels (by mean brightness), for the real-layout classifiers."""
    imgs = np.stack(
        [np.random.default_rng(s).integers(0, 256, (32, 32, 3), dtype=np.uint8) for s in seeds]
    )
    return imgs, None, (np.arange(len(seeds)) + np.asarray(seeds)) % 5


@pytest.mark.parametrize("arch", ["vgg16", "resnet18"])
def test_the_same_code_runs_on_the_places365_layouts(arch):
    """VGG-16 and ResNet in their published layouts (random weights, narrow widths)."""
    from gandissect_widgets.zoo import classifiers as cl

    torch.manual_seed(5)
    if arch == "vgg16":
        net, layer = cl.VGG16(num_classes=5, widths=(4, 4, 8, 8, 8), hidden=16), "features.10"
    else:
        net, layer = cl.ResNet("basic", [1, 1, 1, 1], num_classes=5, widths=(4, 8, 8, 8)), "layer3"
    layers = [n for n in net.layer_names if n != "layer4"]  # 1 x 1 at 32 px: not a map
    s = gw.Session(net.eval(), device="cpu", data=_scenes, layers=layers, classes=list("abcde"))
    edit = s.steer(layer, "c", k=3, value=4, n=20)
    assert s.edits == [edit] and len(edit.units) == 3
    a = s.attack(range(2), "d", eps=4 / 255, steps=2, layer=layer, units=edit.units)
    assert a.images.shape == (2, 32, 32, 3) and np.abs(a.perturbation).max() <= 4
    assert a.unit_change().shape == (2, s.layer_shape(layer)[0])
    probe = gw.ClassifierProbe(s, layer)
    probe.wait()
    assert len(probe.probs) == 5 and probe.units
    probe.close()
