"""ClassifierProbe: show a classifier one picture (a sample, a dropped photo or a sketch drawn
on it), see its class probabilities and the units that carry them; steer it, attack it.

Steering PREVIEWS on the probe's picture until **Apply** (``probe.apply()``) puts the edit on
the Session, as AblationPanel does. An attack runs as a background Job (progress, cancel) and
changes no state; its result shows the perturbation magnified and the units that moved most.

>>> s = gw.Session.from_zoo("hamlet-classifier")              # doctest: +SKIP
>>> probe = gw.ClassifierProbe(s, "conv4")                     # doctest: +SKIP
>>> probe.steer_class, probe.steer_k = "forest", 10; probe.wait()   # doctest: +SKIP
>>> probe.probs_preview                                        # doctest: +SKIP
"""

from __future__ import annotations

import threading

import numpy as np
import torch
import traitlets as t

from ..jobs import Cancelled, Job
from ._bundle import css, esm
from ._fallback import StaticFallback
from ._grid import GridData
from ._session_widget import SessionWidget, closes_on_failure
from ._validate import InvalidValue, check_session, fixed, in_range
from .paint_canvas import CanvasPart, CanvasTraits

__all__ = ["ClassifierProbe"]

_KINDS = ("units", "class")


def _resize(picture: np.ndarray, size) -> np.ndarray:
    from PIL import Image

    h, w = size
    return np.asarray(Image.fromarray(picture).convert("RGB").resize((w, h), Image.BILINEAR))


class ClassifierProbe(StaticFallback, SessionWidget, CanvasTraits):
    """A classifier Session's view of one picture, at ``layer``.

    ``sample``: the seed shown (a dropped photo replaces it, resized to the model's size);
    strokes on the canvas paint ``canvas_color`` onto the picture (a sketch). ``probs`` are
    the class probabilities at the Session's state, ``probs_preview`` with the steering
    preview; ``units`` lists the layer's units contributing most (activation x gradient) to
    the predicted and the ``chosen`` class, with their dissection labels and heatmaps.
    Steering: ``steer_class`` ("" = none), ``steer_k``, ``steer_value`` (a multiple of each
    unit's high level). Attack: ``attack_target``, ``attack_eps`` (pixel levels),
    ``attack_kind`` ("units": 10 target units raised and 10 source units lowered; "class":
    the logits); :meth:`attack` starts it, :meth:`cancel_attack` stops it.
    """

    attack_job = None  # the last attack's Job
    result = None  # the last Attack

    _esm = esm("classifier_probe.js")
    _css = css("image_grid.css", "paint_canvas.css", "classifier_probe.css")

    layer = t.Unicode("").tag(sync=True)
    _fixed_layer = fixed("layer")
    classes = t.List(t.Unicode()).tag(sync=True)
    sample = t.Int(0).tag(sync=True)
    source = t.Unicode("").tag(sync=True)
    probs = t.List(t.Float()).tag(sync=True)
    probs_preview = t.List(t.Float()).tag(sync=True)
    chosen = t.Unicode("").tag(sync=True)
    units = t.List(t.Dict()).tag(sync=True)
    heat = t.Dict().tag(sync=True)
    steer_class = t.Unicode("").tag(sync=True)
    steer_k = t.Int(10).tag(sync=True)
    steer_value = t.Float(2.0).tag(sync=True)
    applied = t.Bool(False).tag(sync=True)
    attack_target = t.Unicode("").tag(sync=True)
    attack_eps = t.Int(2).tag(sync=True)
    attack_kind = t.Unicode("units").tag(sync=True)
    attack_state = t.Unicode("").tag(sync=True)
    attack_progress = t.Float(0.0).tag(sync=True)
    attack_text = t.Unicode("").tag(sync=True)
    attack_grid = t.Dict().tag(sync=True)

    _check_value = in_range("steer_value", low=0, high=20)
    _check_eps = in_range("attack_eps", low=1, high=255)

    @closes_on_failure
    def __init__(self, session, layer: str, *, sample: int | None = None, size: int = 192):
        check_session(session, "ClassifierProbe")
        if session.kind != "classifier" or not session.classes:
            raise ValueError("ClassifierProbe needs a classifier Session with classes=")
        layer = session.check_layer(layer)
        self.session = session
        self.seeds = [int(session.samples[0] if sample is None else sample)]
        self.edit = None
        self._applied = None
        self.unit_grid = GridData(columns=4, size=96, encoding="raw")
        self.attack_images = GridData(columns=3, size=96, encoding="raw")
        sample = session.samples[0] if sample is None else int(sample)
        super().__init__(
            layer=layer,
            classes=list(session.classes),
            sample=sample,
            attack_target=session.classes[0],
            steer_k=min(10, session.layer_shape(layer)[0]),
        )
        self._base = session.generate([sample])[0]
        self.canvas = CanvasPart(self, self._base, size=size, brush=6)
        self.canvas_color = "#2e7d32"
        self.canvas_opacity = 1.0
        self._bind(session)
        self.accept_photos = True
        self.source = f"sample #{sample}"
        self.refresh()

    # ------------------------------------------------------------ input
    @property
    def picture(self) -> np.ndarray:
        """The picture shown: the sample or photo with the sketch painted on (uint8 H, W, 3)."""
        pic = self._base.copy()
        mask = self.canvas.mask.astype(bool)
        if mask.any():
            color = [int(self.canvas_color[i : i + 2], 16) for i in (1, 3, 5)]
            pic[mask] = color
        return pic

    def _invert_photo(self, picture, name: str) -> None:  # a classifier reads photos as they are
        self.show(_resize(picture, self.session.image_size), name)

    def show(self, picture: np.ndarray, name: str = "picture") -> None:
        """Probe ``picture`` (uint8 (H, W, 3) at the Session's image size)."""
        from ..attacks import pictures

        pic = pictures(self.session, np.asarray(picture))[0]
        self._base = pic
        self.canvas.image = pic
        self.canvas.clear()
        self.source = name
        self.schedule()

    @t.observe("sample")
    def _on_sample(self, change) -> None:
        if getattr(self, "canvas", None) is None:
            return
        self.show(self.session.generate([change["new"]])[0], f"sample #{change['new']}")

    @t.validate("chosen", "steer_class", "attack_target")
    def _check_class(self, proposal) -> str:
        value = proposal["value"]
        if value and value not in self.classes:
            raise InvalidValue(f"unknown class {value!r}; classes are: {', '.join(self.classes)}")
        return value

    @t.validate("attack_kind")
    def _check_kind(self, proposal) -> str:
        if proposal["value"] not in _KINDS:
            raise InvalidValue(f"attack_kind must be one of {_KINDS}; got {proposal['value']!r}")
        return proposal["value"]

    @t.observe("chosen", "steer_class", "steer_k", "steer_value", "canvas_mask", "canvas_color")
    def _on_control(self, _change) -> None:
        if self._runner is not None:
            self.schedule()

    # ------------------------------------------------------------ steering
    def _wanted_edit(self):
        if not self.steer_class or self.steer_value <= 0:
            return None
        return self.session.steering(self.layer, self.steer_class, self.steer_k, self.steer_value)

    def apply(self):
        """Put the previewed steering edit on the Session; returns it (None: no edit)."""
        self.schedule(self._apply_now)
        self.wait()
        return self._applied

    def unapply(self) -> None:
        """Take this probe's steering edit off the Session again."""
        self.schedule(self._unapply_now)
        self.wait()

    def _do_apply(self) -> None:
        self.schedule(self._apply_now)

    def _do_unapply(self) -> None:
        self.schedule(self._unapply_now)

    def _apply_now(self) -> None:
        self._render()
        if self.edit is not None and self._applied is None:
            with self._quietly():
                self._applied = self.session.push(self.edit)
            self._render()

    # ------------------------------------------------------------ rendering
    def refresh(self) -> None:
        """Redraw for the Session as it is now."""
        self._render()

    def _probs(self, x, state) -> list[float]:
        out, _ = self.session.run(x, state=state)
        return [round(float(p), 4) for p in out.float().softmax(1)[0].cpu()]

    def _render(self) -> None:
        s = self.session
        if self._applied is not None and self._applied not in s.edits:
            self._applied = None
        try:
            new = self._wanted_edit()
        except (ValueError, KeyError, TypeError) as err:
            self._show_error(err)
            return
        if self._applied is not None and new is not None:
            new = self._applied if new.signature() == self._applied.signature() else new
            if new is not self._applied:
                with self._quietly():
                    self._applied = s.replace(self._applied, new)
        self.edit = new
        pic = self.picture
        x = torch.from_numpy(pic).permute(2, 0, 1)[None].float() / 127.5 - 1
        state = s.state
        base = state.minus(self._applied) if self._applied is not None else state
        shown = base.plus(new) if new is not None else base
        probs, preview = self._probs(x, base), self._probs(x, shown)
        rows, heat = self._contributions(x, shown, preview)
        self.unit_grid.set_images(np.repeat(pic[None], len(rows), 0))
        self.unit_grid.captions = [f"unit {r['unit']} {r['label']}".strip() for r in rows]
        self.unit_grid.set_heatmaps(heat if len(rows) else None)
        with self.hold_sync():
            self.probs, self.probs_preview, self.units = probs, preview, rows
            self.heat = self.unit_grid.payload()
            self.applied = self._applied is not None
            top = self.classes[int(np.argmax(preview))]
            if new is None:
                self._say(f"{self.source}: the classifier says {top}", "")
            elif self._applied is not None:
                self._say(f"APPLIED: {new.describe()}; it says {top}", "applied")
            else:
                self._say(
                    f"PREVIEW: {new.describe()}; it says {top}. Only this probe shows it; Apply "
                    "puts it on the Session.",
                    "preview",
                )

    def _contributions(self, x, state, probs, k: int = 4):
        """Top units (activation x gradient of the logit) for the predicted and chosen class."""
        s = self.session
        keep = {}

        def leaf(out):
            keep["acts"] = out.detach().requires_grad_(True)
            return keep["acts"]

        out, _ = s.runner.run(x, state, extra={self.layer: [leaf]}, grad=True)
        predicted = int(np.argmax(probs))
        wanted = [predicted]
        if self.chosen and self.classes.index(self.chosen) != predicted:
            wanted.append(self.classes.index(self.chosen))
        d = s.dissections.get(self.layer)
        labels = d.labels if d is not None else None
        rows, maps = [], []
        acts = keep["acts"]
        for c in wanted:
            (grad,) = torch.autograd.grad(out[0, c], acts, retain_graph=True)
            score = (acts * grad)[0].sum((1, 2)).detach()
            for u in score.argsort(descending=True)[:k].tolist():
                rows.append(
                    {
                        "unit": u,
                        "class": self.classes[c],
                        "score": round(float(score[u]), 4),
                        "label": labels[u] if labels else "",
                    }
                )
                maps.append(acts[0, u].detach().float().cpu().numpy())
        return rows, (np.stack(maps) if maps else None)

    # ------------------------------------------------------------ attack
    def attack(self) -> Job:
        """Attack the picture towards ``attack_target`` in the background; returns the Job."""
        if self.attack_job is not None and self.attack_job.running:
            return self.attack_job
        s, pic, target = self.session, self.picture, self.attack_target
        units = None
        if self.attack_kind == "units":
            from ..attacks import unit_targets

            source = self.classes[int(np.argmax(self.probs))]
            units = unit_targets(s, self.layer, target, source if source != target else None)
        eps, steps = self.attack_eps / 255, 10

        def work(job):
            return s.attack(pic, target, eps, steps, self.layer, units, job=job)

        with self.hold_sync():
            self.attack_state, self.attack_progress, self.attack_text = "running", 0.0, ""
        self._attack_shown = threading.Event()
        job = self.attack_job = Job(work, total=steps, name="attack")
        job.watch(self._attack_watch)
        return job

    def wait_attack(self, timeout: float = 60) -> bool:
        """Block until the last attack has ended and its result is shown; False on timeout."""
        shown = getattr(self, "_attack_shown", None)
        return shown is None or shown.wait(timeout)

    def cancel_attack(self) -> None:
        """Stop the running attack (its result is dropped)."""
        if self.attack_job is not None and self.attack_job.running:
            self.attack_job.cancel()

    def _do_attack(self) -> None:
        self.attack()

    def _do_cancel_attack(self) -> None:
        self.cancel_attack()

    def _attack_watch(self, job) -> None:
        if job.running:
            self.attack_progress = round(job.progress, 2)
            return
        try:
            self._show_attack(job)
        finally:
            self._attack_shown.set()

    def _show_attack(self, job) -> None:
        try:
            a = job.result()
        except Cancelled:
            with self.hold_sync():
                self.attack_state, self.attack_text = "cancelled", "attack cancelled"
            return
        except Exception as err:
            with self.hold_sync():
                self.attack_state, self.attack_text = "error", f"{type(err).__name__}: {err}"
            return
        self.result = a
        self.attack_images.set_images(np.stack([a.originals[0], a.images[0], a.magnified()[0]]))
        self.attack_images.captions = ["before", "after", "perturbation, magnified"]
        moved = ", ".join(
            f"unit {r['unit']}{' ' + r['label'] if r['label'] else ''} {r['change']:+.2f}"
            for r in a.moved_units(5)
        )
        target, after = self.classes[a.target], self.classes[a.after[0]]
        verdict = (
            f"the attack worked: it now says {target}"
            if after == target
            else f"the attack did not reach {target} (it says {after}); try a larger eps"
        )
        with self.hold_sync():
            self.attack_grid = self.attack_images.payload()
            self.attack_progress = 1.0
            self.attack_state = "done"
            self.attack_text = (
                f"{verdict}. {self.classes[a.before[0]]} ({a.probs_before[0].max():.0%}) -> "
                f"{after} ({a.probs_after[0].max():.0%}) at {a.psnr[0]:.1f} dB; units that "
                f"moved most: {moved}"
            )

    def close(self) -> None:
        """Cancel a running attack, then close as every Session widget does."""
        self.cancel_attack()
        if self._runner is not None:
            self.wait(5)
        super().close()
