"""ClassifierProbe: a sketch changes the bars, steering previews until Apply, an attack runs in
the background and can be cancelled, a saved notebook shows its picture."""

from __future__ import annotations

import numpy as np
import pytest

import gandissect_widgets as gw


@pytest.fixture
def probe(labelled_session):
    p = gw.ClassifierProbe(labelled_session, "conv2", sample=3)
    p.wait()
    yield p
    p.close()


def test_a_sketch_and_a_photo_change_the_bars(probe):
    before = list(probe.probs)
    probe.canvas_color = "#ffffff"
    probe.canvas.mask = np.ones((16, 16))
    probe.wait()
    assert probe.probs != before and probe.picture.min() == 255
    probe.add_photo(np.zeros((40, 30, 3), np.uint8), "dark.png")
    probe.wait()
    assert probe.source == "dark.png" and probe.picture.shape == (16, 16, 3)
    assert probe.units and probe.heat["images"]


def test_steering_previews_until_apply(probe, labelled_session):
    s = labelled_session
    probe.steer_class, probe.steer_k, probe.steer_value = "brightish", 4, 6
    probe.wait()
    assert probe.probs_preview != probe.probs and s.edits == [] and not probe.applied
    edit = probe.apply()
    assert s.edits == [edit] and probe.applied and "APPLIED" in probe.status
    probe.unapply()
    assert s.edits == [] and not probe.applied
    with pytest.raises(ValueError, match="classes are: darkish, brightish"):
        probe.steer_class = "tree"


def test_an_attack_runs_in_the_background_and_can_be_cancelled(probe):
    probe.attack_target, probe.attack_eps, probe.attack_kind = "brightish", 8, "class"
    probe.attack()
    assert probe.wait_attack(30)
    assert probe.attack_state == "done" and probe.result.images.shape == (1, 16, 16, 3)
    assert len(probe.attack_grid["images"]) == 3 and "dB" in probe.attack_text
    reached = probe.classes[probe.result.after[0]] == "brightish"
    verdict = "the attack worked: it now says" if reached else "the attack did not reach brightish"
    assert probe.attack_text.startswith(verdict), probe.attack_text
    probe.attack_kind = "units"
    running = probe.attack()
    probe.cancel_attack()
    with pytest.raises(gw.Cancelled):
        running.result(timeout=30)
    assert probe.wait_attack(30)
    assert probe.attack_state in ("cancelled", "done")


def test_a_saved_notebook_shows_the_probe(probe):
    data, _ = probe._repr_mimebundle_()
    assert "image/png" in data and "<img " in data["text/html"]


def test_a_generator_session_is_refused(gen_session):
    with pytest.raises(ValueError, match="classifier"):
        gw.ClassifierProbe(gen_session, "layer2")
