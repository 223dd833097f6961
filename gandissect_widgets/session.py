"""Session: the one object per model that every widget shares.

A thin facade: a :class:`~gandissect_widgets.runner.Runner` (model, device, lock, results at a
State), the :class:`~gandissect_widgets.edits.EditStack`, observers, and the analyses as
methods. Every call runs against one immutable State (the active edits), so equal states give
equal results whatever ran before, in any thread.

>>> import gandissect_widgets as gw
>>> s = gw.Session.from_zoo("hamlet")
>>> s.layers[:3]
['layer1', 'layer2', 'layer3']
>>> edit = s.ablate("layer4", [3, 12], strength=1.0)
>>> images = s.generate(range(8))
>>> images.shape, images.dtype
((8, 64, 64, 3), dtype('uint8'))
>>> s.undo() is edit
True
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import checks, layerkinds, render
from .dissect import dissect
from .edits import Ablation, Edit, EditStack, State, WeightEdit
from .effects import ablation_accuracy, ablation_effect, class_units
from .events import Observers, SessionEvent
from .export import export
from .hooks import hooked, module_names, resolve
from .invert import fit_photo
from .photos import invert_photos
from .rewrite import context_matches, make_rewrite, rewrite
from .runner import IMAGE, Runner
from .sources import Sources
from .survey import survey

__all__ = ["Session", "SessionEvent"]


def _delegate(target, doc: str, *, forwards=None, name: str | None = None, example: str = ""):
    """A Session method calling ``target(session, ...)`` whose signature is ``target``'s less
    its first parameter; with ``forwards``, ``target``'s ``**kwargs`` are shown as the keyword
    parameters of the function they go to (those ``target`` does not set itself)."""
    sig = inspect.signature(target)
    params = list(sig.parameters.values())[1:]
    if forwards is not None and params[-1].kind is inspect.Parameter.VAR_KEYWORD:
        own = {p.name for p in params}
        params = params[:-1] + [
            p
            for p in inspect.signature(forwards).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in own
        ]
    self_ = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)

    def method(self, *args, **kwargs):
        return target(self, *args, **kwargs)

    method.__name__ = name or target.__name__
    method.__qualname__ = f"Session.{method.__name__}"
    method.__module__ = __name__
    method.__signature__ = sig.replace(parameters=[self_, *params])
    see = f"See :func:`{target.__module__}.{target.__name__}`."
    method.__doc__ = "\n\n".join(filter(None, [doc + ".", see, example]))
    return method


def _spatial(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[-1] * t.shape[-2] > 1


class Session:
    """Wrap a generator or a classifier for inspection and editing.

    - A **generator** maps latents (N, z_dim) to images (N, 3, H, W) in [-1, 1]; ``z_dim`` is
      read from the model (``model.z_dim``) or given. Samples are identified by seeds.
    - A **classifier** takes images (N, 3, H, W) in [-1, 1]; its samples come from ``data``, a
      function ``seeds -> uint8 images (N, H, W, 3)``, or ``(images, concept_maps, labels)``
      (concept maps give exact Network Dissection, labels measure accuracy).

    Layers may output maps (N, C, H, W), token grids (N, T, C) or vectors (N, C); every
    analysis and widget sees a token layer as the (N, C, h, w) map of its patch tokens and a
    vector layer as (N, C, 1, 1) (see :mod:`gandissect_widgets.layerkinds` and
    :meth:`layer_info`). The token grid is read from ``tokens=(prefix, h, w)``, else the
    model's ``token_grid``, else its ``patch_size`` and the image size.

    Args: ``layers`` (default: the model's ``layer_names``, else its direct children with
    spatial or token outputs), ``device`` ("auto": CUDA, MPS, CPU), ``cache_mb`` (bound on cached
    results), ``z_dim``, ``data``, ``segmenter`` (``concepts`` + ``segment(images)``),
    ``batch_size``, ``concepts`` (names of ``data``'s concept ids), ``classes`` (logit names).

    >>> my_generator = gw.zoo.load("hamlet")
    >>> s = Session(my_generator, z_dim=128)
    >>> s.activations("layer4", [0, 1]).shape
    torch.Size([2, 128, 8, 8])
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        layers: Iterable[str] | None = None,
        device="auto",
        cache_mb: float = 512,
        z_dim: int | None = None,
        data: Callable | None = None,
        segmenter=None,
        batch_size: int = 32,
        concepts: list[str] | None = None,
        classes: list[str] | None = None,
        tokens: tuple[int, int, int] | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if layers is not None:
            layers = checks.names(layers, "layers")
        if data is not None and not callable(data):
            raise TypeError(f"data must be a function seeds -> images; got {type(data).__name__}")
        concepts = checks.names(concepts, "concepts") if concepts is not None else None
        classes = checks.names(classes, "classes") if classes is not None else None
        segmenter = checks.segmenter(segmenter)
        self.batch_size = checks.count(batch_size, "batch_size")
        cache_bytes = int(checks.number(cache_mb, "cache_mb", lo=0) * 2**20)
        z_dim = z_dim if z_dim is not None else getattr(model, "z_dim", 0) or 0
        self.z_dim = checks.count(z_dim, "z_dim") if z_dim else 0
        if not self.z_dim and data is None:
            raise ValueError(
                "cannot tell what the model's samples are: give z_dim= for a generator "
                "(or a model with a z_dim attribute), or data= (seeds -> images) for a classifier"
            )
        self.runner = Runner(model, checks.available_device(device), cache_bytes)
        self.sources = Sources(self.z_dim, data, self.runner.device)
        self.data = data
        self.kind = self.sources.kind
        self.segmenter = segmenter
        self.encoder = None  # picture -> latent: the first guess of invert() (hamlet has one)
        self.concepts = list(concepts) if concepts is not None else None
        self.classes = list(classes) if classes is not None else None
        self.stack = EditStack()
        self.dissections: dict = {}
        self.recipe: Callable[[], Session] | None = None  # rebuilds this Session elsewhere
        self._view = contextvars.ContextVar("gandissect-view", default=())
        self._observers = Observers()
        self._shapes: dict[str, tuple[int, int, int]] = {}
        self.tokens = None if tokens is None else layerkinds.check_grid(tokens)
        self._levels: dict[str, dict[str, torch.Tensor]] = {}
        self._samples = list(range(8))
        self._samples_lock = threading.Lock()
        self.image_size = self._probe(layers)

    @property
    def model(self) -> nn.Module:
        return self.runner.model

    @property
    def device(self) -> torch.device:
        return self.runner.device

    @property
    def lock(self):
        return self.runner.lock

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_zoo(cls, name: str = "hamlet", **kwargs) -> Session:
        """A ready Session on a zoo model: "hamlet" (generator, segmenter attached),
        "hamlet-classifier" (scene classifier with exact concept maps and labels),
        "hamlet-vit" (the same task for a vision transformer: token layers), or any
        name or file :func:`gandissect_widgets.zoo.load` knows.

        >>> Session.from_zoo("hamlet-classifier").classes[:2]
        ['village', 'lake']
        """
        from . import zoo
        from .zoo import hamlet

        simple = {k: v for k, v in kwargs.items() if isinstance(v, (str, int, float, bool))}
        if name == "hamlet":
            kwargs.setdefault("segmenter", zoo.load_segmenter("hamlet"))
            session = cls(zoo.load("hamlet"), **kwargs)
            session.encoder = hamlet.load_encoder()
        elif name in ("hamlet-classifier", "hamlet-vit"):
            kwargs.setdefault("concepts", list(hamlet.CONCEPTS))
            kwargs.setdefault("classes", list(hamlet.SCENES))
            net = zoo.load_classifier("hamlet" if name == "hamlet-classifier" else name)
            session = cls(net, data=hamlet.render, **kwargs)
        else:
            if (
                isinstance(name, str)
                and name.strip()
                and name not in zoo.names()
                and not Path(name).exists()
            ):
                known = sorted({"hamlet-classifier", "hamlet-vit", *zoo.names()})
                raise KeyError(
                    f"unknown model {name!r}: not a file, and known names are: "
                    f"{', '.join(known)}{checks.did_you_mean(name, known)}"
                )
            session = cls(zoo.load(name), **kwargs)
        session.recipe = functools.partial(cls.from_zoo, name, **simple)
        return session

    def _probe(self, layers) -> tuple[int, int]:
        """Run one sample with every candidate hooked to learn layer names and shapes."""
        if layers is None:
            layers = getattr(self.model, "layer_names", None)  # a model may name its layers
        if layers is None:
            names = [n for n, _ in self.model.named_children()]
        else:
            names = [checks.layer_name(n) for n in layers]
        for n in names:
            self._resolve(n)
        out, seen = self.runner.run(self.inputs([0]), State(), retain=names)
        if layers is None:  # children with spatial maps or token grids
            views = {}
            for n in names:
                try:
                    views[n] = self._view_for(seen.get(n), n)
                except ValueError:
                    continue
                if views[n].kind == "vector" or (views[n].kind == "map" and not _spatial(seen[n])):
                    del views[n]
            names = list(views)
        else:
            views = {n: self._view_for(seen.get(n), n) for n in names}
        for n, view in views.items():
            self._shapes[n] = view.shape(seen[n].shape)
            self.runner.views[n] = view
        self.layers = names
        if self.kind == "generator":
            if out.dim() != 4 or out.shape[1] != 3:
                raise ValueError(
                    f"a generator must return images (N, 3, H, W); got shape {tuple(out.shape)}"
                )
            return tuple(out.shape[-2:])
        if self.classes is not None and (out.dim() != 2 or out.shape[1] != len(self.classes)):
            raise ValueError(
                f"classes names {len(self.classes)} classes, but the classifier returns "
                f"logits of shape {tuple(out.shape)}: give one name per logit"
            )
        return tuple(self.inputs([0]).shape[-2:])

    # ------------------------------------------------------------------ inputs
    def latents(self, seeds) -> torch.Tensor:
        """Standard-normal latents (N, z_dim), one per seed, independent of batch composition."""
        return self.sources.latents(seeds)

    def inputs(self, seeds) -> torch.Tensor:
        """The model's inputs for the seeds: latents, or a classifier's data images in [-1, 1]."""
        return self.sources.inputs(seeds)

    def concept_maps(self, seeds) -> torch.Tensor:
        """Concept maps (N, H, W) int64 from a classifier Session's data."""
        return self.sources.concept_maps(seeds)

    def labels(self, seeds) -> torch.Tensor:
        """Class ids (N,) from a classifier Session's data."""
        return self.sources.labels(seeds)

    # ------------------------------------------------------------------ layers
    def _resolve(self, layer: str):
        """The module at ``layer``, or a KeyError suggesting close names and listing layers."""
        try:
            return resolve(self.model, layer)
        except KeyError:
            raise KeyError(
                f"unknown layer {layer!r}; "
                f"layers are: {', '.join(self.layers if hasattr(self, 'layers') else [])} "
                "(or any module path of the model: session.layer_info() lists them)"
                + checks.did_you_mean(layer, module_names(self.model))
            ) from None

    def _view_for(self, out, layer: str):
        """The layer's :class:`~gandissect_widgets.layerkinds.LayerView` from one output."""
        image = tuple(self.inputs([0]).shape[-2:]) if self.kind == "classifier" else None
        grid = self.tokens if self.tokens is not None else getattr(self.model, "token_grid", None)
        patch = getattr(self.model, "patch_size", None)
        return layerkinds.view_for(out, layer, grid=grid, image_size=image, patch_size=patch)

    def _raw_outputs(self, names) -> dict:
        """What the modules ``names`` return, as they return it, for two samples (unedited)."""
        with self.runner.at(State()) as model, torch.no_grad(), hooked(model, retain=names) as seen:
            model(self.inputs([0, 0]).to(self.device))
        return dict(seen)

    def check_layer(self, layer) -> str:
        """``layer`` if the model has it with a map, token or vector output; else a KeyError
        (unknown name: close names suggested) or a ValueError (an output of another shape)."""
        layer = checks.layer_name(layer)
        if layer in self._shapes:
            return layer
        self._resolve(layer)
        seen = self._raw_outputs([layer])
        view = self._view_for(seen.get(layer), layer)
        with self.lock:
            self.runner.views[layer] = view
            self._shapes[layer] = view.shape(seen[layer].shape)
        return layer

    def layer_shape(self, layer: str) -> tuple[int, int, int]:
        """(C, h, w) of a layer's map view: a token layer's patch grid, (C, 1, 1) for vectors."""
        return self._shapes[self.check_layer(layer)]

    def layer_kind(self, layer: str) -> str:
        """ "map", "tokens" or "vector": what ``layer`` outputs (see :meth:`layer_info`)."""
        layer = self.check_layer(layer)
        view = self.runner.views.get(layer)
        return "map" if view is None else view.kind

    def layer_info(self, listed_only: bool = False):
        """A table of the model's modules: output shape, kind (map / tokens / vector, or why
        not) and the (C, h, w) map every analysis sees; ``listed_only``: :attr:`layers` only.

        >>> s.layer_info(listed_only=True)  # doctest: +NORMALIZE_WHITESPACE +ELLIPSIS
        layer         module         output           kind  map           listed
        layer1        NormConvBlock  (N, 128, 4, 4)   map   (128, 4, 4)   yes
        ...
        output_64x64  OutputBlock    (N, 3, 64, 64)   map   (3, 64, 64)   yes

        A ViT's blocks read ``blocks.0  Block  (N, 65, 96)  tokens  (96, 8, 8)``.
        """
        names = list(self.layers) if listed_only else module_names(self.model)
        seen = self._raw_outputs(names)
        rows = []
        for name in names:
            out, module = seen.get(name), self.model.get_submodule(name)
            try:
                view, note = self._view_for(out, name), ""
                kind, shape = view.kind, view.shape(out.shape)
            except ValueError as err:
                kind, shape, note = "-", None, str(err).split(": ", 1)[-1]
            rows.append(
                {
                    "layer": name,
                    "module": type(module).__name__,
                    "output": layerkinds.describe_shape(out) if name in seen else "not run",
                    "kind": kind,
                    "map": shape,
                    "listed": name in self.layers,
                    "note": note if name in seen else "not called in a forward pass",
                }
            )
        return layerkinds.LayerTable(rows)

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> State:
        """The State calls from here see: the active edits, with this thread's
        :meth:`temporarily` / :meth:`excluding` blocks applied."""
        state = self.stack.state
        for add, edit in self._view.get():
            state = state.plus(edit) if add else state.minus(edit)
        return state

    def _checked(self, state) -> State:
        """``state`` (None: :attr:`state`) as a State that :meth:`push` could have built: its
        ablations fit their layers, and each weight edit sits on the weights it was checked
        (or fitted) on. TypeError/ValueError say what is wrong; the stack's own states and
        their weight prefixes pass at once."""
        if state is None:
            return self.state
        if not isinstance(state, State):
            raise TypeError(
                f"state must be a State (e.g. session.state) or None; got {type(state).__name__}"
            )
        if state.key == self.stack.state.key:
            return state
        for edit in state.edits:
            if isinstance(edit, Ablation):
                self.check_edit(edit)
            elif not isinstance(edit, Edit):
                raise TypeError(f"a State holds edits only; got {type(edit).__name__}")
        weights = state.weight_edits
        verified = self.__dict__.setdefault("_verified_weights", set())  # chains of edit uids
        key = tuple(e.uid for e in weights)
        if weights != self.stack.state.weight_edits[: len(weights)] and key not in verified:
            for i, edit in enumerate(weights):  # as push checks it: on the weights below it
                self.check_edit(edit, State(weights[: i + 1]))
            verified.add(key)  # edits never change: a chain checked once stays valid
        return state

    @property
    def state_key(self) -> tuple[str, ...]:
        """Identifies :attr:`state`: equal keys, equal outputs."""
        return self.state.key

    def fingerprint(self, state: State | None = None) -> str:
        """A short hash of the weights and output edits at ``state`` (default: :attr:`state`)."""
        return self.runner.fingerprint(self._checked(state))

    @contextmanager
    def weights_at(self, state: State | None = None):
        """The model under the lock with its weights at ``state`` (e.g. to copy a block)."""
        with self.runner.at(self._checked(state)) as model:
            yield model

    # ------------------------------------------------------------------ running
    def forward(self, seeds, state: State | None = None, *, retain=(), retain_input=(), **kw):
        """One uncached forward of the samples ``seeds`` (photos included) at ``state``:
        (output, retained). Keywords as :meth:`Runner.run` (``stop``, ``extra``, ``grad``)."""
        seeds = checks.seeds(seeds)
        return self.runner.run(
            self.inputs(seeds),
            self._checked(state),
            retain=retain,
            retain_input=retain_input,
            before=self.sources.adapters(seeds),
            rows=seeds,
            **kw,
        )

    def _rows(self, name: str, seeds: list[int], state: State) -> torch.Tensor:
        retain = [] if name == IMAGE else [name]

        def compute(todo):
            outs = []
            for i in range(0, len(todo), self.batch_size):
                chunk = todo[i : i + self.batch_size]
                out, seen = self.forward(chunk, state, retain=retain, stop=bool(retain))
                outs.append(seen[name] if retain else torch.from_numpy(render.to_uint8(out)))
            return torch.cat(outs)

        return self.runner.fetch(name, seeds, state, compute)

    def generate(self, seeds, *, state: State | None = None) -> np.ndarray:
        """Images (N, H, W, 3) uint8 for the seeds at :attr:`state` (or ``state``).

        For a classifier Session these are the data images (edits change activations only).
        """
        seeds = checks.seeds(seeds)
        if not seeds:
            return np.zeros((0, *self.image_size, 3), np.uint8)
        if self.kind == "classifier":
            return self.sources.images(seeds)
        return self._rows(IMAGE, seeds, self._checked(state)).numpy()

    def activations(self, layer: str, seeds, *, state: State | None = None) -> torch.Tensor:
        """A layer's output (N, C, h, w) on the CPU for the seeds at :attr:`state`."""
        layer = self.check_layer(layer)
        seeds = checks.seeds(seeds)
        if not seeds:
            return torch.zeros(0, *self._shapes[layer])
        return self._rows(layer, seeds, self._checked(state))

    def run(self, inputs, *, retain=(), retain_input=(), edits: bool = True, state=None):
        """Forward raw inputs (latents or images) at ``state``; returns (output, retained).

        ``edits=False`` leaves output edits out (weight edits stay). Nothing is cached.
        """
        state = self._checked(state)
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(
                "inputs must be a torch.Tensor of latents (N, z_dim) or images (N, 3, H, W); "
                f"got {type(inputs).__name__}"
            )
        return self.runner.run(
            inputs,
            state if edits else state.weights_only(),
            retain=retain,
            retain_input=retain_input,
        )

    def classify(self, seeds) -> torch.Tensor:
        """Logits of a classifier Session for the data samples of ``seeds`` (edits on)."""
        if self.kind != "classifier":
            raise ValueError("classify() needs a classifier Session (one made with data=)")
        out, _ = self.forward(seeds)
        return out.cpu()

    def attribution_pass(self, layer: str, seeds):
        """Forward with gradients to ``layer``'s output: (activations leaf, model output)."""
        layer = self.check_layer(layer)

        def leaf(out):
            return out.detach().requires_grad_(True)

        out, seen = self.forward(seeds, retain=[layer], extra={layer: [leaf]}, grad=True)
        return seen[layer], out

    def unit_levels(self, layer: str, n: int = 64) -> dict[str, torch.Tensor]:
        """Per-unit "mean" and "high" (0.99 quantile) levels of a layer in the unedited model.

        From the layer's Dissection of the unedited model when there is one, else from
        seeds ``0..n-1``.
        """
        layer = self.check_layer(layer)
        n = checks.count(n, "n")
        d = self.dissections.get(layer)
        if d is not None and d.fingerprint == self.fingerprint(State()):
            return {"mean": d.mean, "high": d.high}
        with self.lock:
            if layer not in self._levels:
                acts = self.activations(layer, range(n), state=State())
                flat = acts.transpose(0, 1).reshape(acts.shape[1], -1).float()
                self._levels[layer] = {
                    "mean": flat.mean(1),
                    "high": torch.quantile(flat, 0.99, dim=1),
                }
            return self._levels[layer]

    # ------------------------------------------------------------------ analyses
    # Each is the analysis function with the Session as its first argument; help() and
    # Shift-Tab show the function's own parameters (one source of truth: _delegate).
    dissect = _delegate(dissect, "Dissect a layer: label every unit with a concept")
    ablation_effect = _delegate(ablation_effect, "Concept pixels removed by ablating units")
    ablation_accuracy = _delegate(
        ablation_accuracy, "Per-class accuracy before/after ablating units"
    )
    class_units = _delegate(class_units, "Units ranked by support for a class")
    rewrite = _delegate(
        rewrite,
        "Rewrite a rule (rank-one edit of ``layer``'s conv or token Linear) and push it",
        forwards=make_rewrite,
    )
    export = _delegate(
        export, "Write the model with the active edits folded in, in its source's layout"
    )
    invert = _delegate(
        invert_photos,
        "Invert pictures (uint8 (H, W, 3) or a batch) into the generator; returns sample ids\n"
        "that every call and widget takes like seeds",
        forwards=fit_photo,
        name="invert",
        example="Not run in the tests (inverting takes minutes on a CPU):\n\n"
        ">>> ids = s.invert(pictures); s.ablate('layer6', trees); s.generate(ids)  "
        "# doctest: +SKIP",
    )
    context_matches = _delegate(
        context_matches, "Samples ranked by how strongly a rule's context matches"
    )
    survey = _delegate(survey, "Dissect every layer on one sample set")

    def add_dissection(self, result) -> None:
        """Keep ``result`` as its layer's dissection (``session.dissections``) and tell the
        observers (kind "dissection"): widgets made before it pick up its labels."""
        self.dissections[result.layer] = result
        self._emit(SessionEvent("dissection", detail={"layer": result.layer}))

    def steering(self, layer, target, k=10, value="high", mask=None, *, n=200):
        """A steering edit, not applied: class ``target``'s top ``k`` units set to ``value``
        ("high", "mean" or a multiple of "high"); see :func:`steering.steering`."""
        from .steering import steering

        return steering(self, layer, target, k, value, mask, n=n)

    def steer(self, layer, target, k=10, value="high", mask=None, *, n=200):
        """Push a steering edit and return it.

        >>> s.steer("conv4", "forest", k=10, value=2)      # doctest: +SKIP
        """
        return self.push(self.steering(layer, target, k, value, mask, n=n))

    def attack(self, samples, target, eps=2 / 255, steps=10, layer=None, units=None, *, job=None):
        """Attack ``samples`` (seeds or uint8 pictures) towards class ``target`` inside an
        L-infinity ball of ``eps``; changes no state. See :func:`attacks.attack`.

        >>> a = s.attack(range(8), "forest", eps=4 / 255)       # doctest: +SKIP
        """
        from .attacks import attack

        return attack(self, samples, target, eps, steps, layer, units, job=job)

    # ------------------------------------------------------------------ samples
    @property
    def samples(self) -> list[int]:
        """The seeds widgets show by default; setting them notifies observers ("samples")."""
        return list(self._samples)

    @samples.setter
    def samples(self, seeds):
        seeds = self.sources.check(checks.seeds(seeds))
        with self._samples_lock:
            self._samples = seeds
        self._emit(SessionEvent("samples"))

    def add_samples(self, seeds) -> list[int]:
        """Append ``seeds`` (e.g. photo ids) to :attr:`samples` in one step, so that threads
        adding at once all land; notifies observers and returns the new samples.

        >>> s.add_samples([40, 41])
        [0, 1, 2, 3, 4, 5, 6, 7, 40, 41]

        Photos join the same way: ``s.add_samples(s.invert(picture))``.
        """
        seeds = self.sources.check(checks.seeds(seeds))
        with self._samples_lock:
            self._samples = [*self._samples, *seeds]
            now = list(self._samples)
        self._emit(SessionEvent("samples"))
        return now

    def replace_sample(self, old: int | None, new: int | None) -> list[int]:
        """Put sample ``new`` where ``old`` is in :attr:`samples` (appended when ``old`` is
        absent or None; ``new=None`` removes ``old``) in one step, e.g. a photo's better fit
        in place of its preview; notifies observers and returns the new samples.

        >>> s.replace_sample(preview_id, photo_id)                # doctest: +SKIP
        """
        old, new = (None if v is None else checks.seeds([v])[0] for v in (old, new))
        with self._samples_lock:
            now = list(self._samples)
            if old in now:
                at = now.index(old)
                now[at : at + 1] = [] if new is None else [new]
            elif new is not None:
                now.append(new)
            self._samples = now
        self._emit(SessionEvent("samples"))
        return list(now)

    # ------------------------------------------------------------------ edits
    def ablation(self, layer, units, strength=1.0, mask=None, value=0.0, prefix=False) -> Ablation:
        """A checked :class:`Ablation`, not yet applied (see :meth:`push`, :meth:`temporarily`).

        On a token layer the edit changes the patch tokens; ``prefix=True`` also changes the
        class (and register) tokens, without a mask there."""
        layer = self.check_layer(layer)
        units = checks.units(units, self._shapes[layer][0], layer)
        return self.check_edit(
            Ablation(
                layer,
                units,
                checks.fraction(strength, "strength"),
                checks.mask(mask, self.image_size, allow_empty=False),
                checks.unit_value(value, len(units)),
                prefix,
            )
        )

    def check_edit(self, edit: Edit, state: State | None = None) -> Edit:
        """Check that ``edit`` can apply at ``state`` (default: :attr:`state`) and fix its
        levels; raises TypeError/ValueError/KeyError saying what is wrong. Returns ``edit``."""
        if not isinstance(edit, Edit):
            raise TypeError(f"an edit must be an Ablation, Rewrite or WeightEdit; got {edit!r}")
        if isinstance(edit, Ablation):
            layer = self.check_layer(edit.layer)
            units = checks.units(edit.units, self._shapes[layer][0], layer)
            checks.fraction(edit.strength, "strength")
            checks.mask(edit.mask, self.image_size, allow_empty=False)
            if getattr(edit, "prefix", False) and self.layer_kind(layer) != "tokens":
                raise ValueError(
                    f"prefix=True edits a token layer's class tokens; {layer!r} is a "
                    f"{self.layer_kind(layer)} layer"
                )
            if edit.mask is not None and self.layer_kind(layer) == "vector":
                raise ValueError(
                    f"{layer!r} is a vector layer (one value per unit and image): a region mask "
                    "does not apply; ablate it without mask="
                )
            value = checks.unit_value(edit.value, len(units))
            if edit.values is None:
                edit.fix_levels(self.unit_levels(layer)[value][torch.tensor(units)])
            checks.unit_value(edit.values, len(units))
        elif isinstance(edit, WeightEdit):
            state = state or self.state
            if edit in state.edits:  # check it against the weights below it
                state = State(state.edits[: state.edits.index(edit)])
            with self.runner.at(state) as model:
                edit.check(model)
        return edit

    def _change(self, how: Callable[[EditStack], Edit | None], kind: str = "edits"):
        """Try ``how(stack) -> edit involved`` on a copy of the stack under the lock, put the
        weights in step, then publish the copy and tell observers (outside the lock). Other
        threads never see a state that failed; nothing changes on error."""
        with self.lock:
            before = self.stack.state
            trial = self.stack.copy()
            edit = how(trial)
            self.runner.set_live(trial.state)  # restores the weights itself when it fails
            self.stack = trial
        if trial.state.key != before.key:
            weights = any(e.changes_weights for e in set(before.edits) ^ set(trial.state.edits))
            self._emit(SessionEvent("weights" if weights else kind, edit))
        return edit

    def push(self, edit: Edit) -> Edit:
        """Apply a checked edit on top of the stack (clears redo) and notify observers."""

        def how(stack):
            before = stack.state
            stack.push(edit)  # refuses an edit already active
            self.check_edit(edit, before)  # on a trial copy: nobody sees it before it passes
            return edit

        return self._change(how)

    def replace(self, old: Edit | None, new: Edit | None) -> Edit | None:
        """Swap an active output edit for ``new`` in place (one event); ``old=None`` (or one no
        longer active) pushes, ``new=None`` removes. Widgets retune the edit they own with it.

        >>> e = s.ablate("layer4", [3])
        >>> e = s.replace(e, s.ablation("layer4", [3, 4]))
        >>> s.edits == [e]
        True
        """

        for what, edit in (("old", old), ("new", new)):
            if edit is not None and not isinstance(edit, Edit):
                raise TypeError(
                    f"an edit must be an Ablation, Rewrite or WeightEdit (or None); replace() got "
                    f"{what}={edit!r}"
                )

        def how(stack):
            if new is not None:
                self.check_edit(new, stack.state)
            if old is None or old not in stack.state.edits:
                if new is not None:
                    stack.push(new)
                return new
            if old.changes_weights or (new is not None and new.changes_weights):
                raise ValueError(
                    "replace() swaps output edits only; use undo()/push() for weight edits"
                )
            stack.replace(old, new)
            return new or old

        self._change(how)
        return new

    def ablate(self, layer, units, strength=1.0, mask=None, value=0.0, prefix=False) -> Ablation:
        """Push an ablation of ``units`` of ``layer`` and return it.

        >>> s.ablate("layer4", [3, 12], strength=0.8, value="high").describe()
        'set 2 units of layer4 at 80%'
        """
        return self.push(self.ablation(layer, units, strength, mask, value, prefix))

    def undo(self) -> Edit | None:
        """Undo the newest edit; returns it (None when there is nothing to undo)."""

        def how(stack):
            edit = stack.state.edits[-1] if stack.state.edits else None
            stack.undo()
            return edit

        return self._change(how)

    def redo(self) -> Edit | None:
        """Re-apply the newest undone edit; returns it (None when there is nothing to redo)."""

        def how(stack):
            edit = stack.undone[-1] if stack.undone else None
            stack.redo()
            return edit

        return self._change(how)

    def reset(self) -> None:
        """Undo every edit and forget them (no redo)."""
        self._change(lambda stack: stack.reset())

    @property
    def edits(self) -> list[Edit]:
        """The active edits, oldest first (the stack; :attr:`state` adds this thread's view)."""
        return list(self.stack.state.edits)

    @contextmanager
    def _viewing(self, add: bool, edit: Edit):
        token = self._view.set((*self._view.get(), (add, edit)))
        try:
            yield edit
        finally:
            self._view.reset(token)

    @contextmanager
    def temporarily(self, edit: Edit):
        """Inside the block, calls from this thread see the stack with ``edit`` on top.

        The stack itself never changes: edits pushed or undone inside the block stay so after
        it, other threads and observers see nothing. Blocks nest; an edit already active is
        shown as it is.

        >>> with s.temporarily(s.ablation("layer4", [3])):
        ...     preview = s.generate([0])
        >>> s.edits
        []
        """
        self.check_edit(edit, self.state)
        with self._viewing(True, edit):
            yield edit

    @contextmanager
    def excluding(self, edit: Edit | None):
        """Inside the block, calls from this thread see the stack without ``edit`` (e.g. a
        widget's "original" beside its edit). Same rules as :meth:`temporarily`.

        >>> edit = s.ablate("layer4", [3, 12])
        >>> with s.excluding(edit):
        ...     original = s.generate(range(8))
        >>> bool((original != s.generate(range(8))).any())
        True
        """
        if edit is None:
            yield
            return
        if not isinstance(edit, Edit):
            raise TypeError(f"excluding() takes an Edit or None; got {type(edit).__name__}")
        self._checked(self.state.minus(edit))  # a rewrite stays on what it was fitted on
        with self._viewing(False, edit):
            yield

    # ------------------------------------------------------------------ events
    def observe(self, callback: Callable[[SessionEvent], None]) -> None:
        """Call ``callback(event)`` after each change of what the Session shows (outside the
        lock; one that raises is reported with a RuntimeWarning and the change stands)."""
        if not callable(callback):
            raise TypeError(f"observe() takes a function of one event; got {callback!r}")
        self._observers.add(callback)

    def unobserve(self, callback) -> None:
        """Stop calling ``callback``; unknown callbacks are ignored."""
        self._observers.remove(callback)

    @property
    def observers(self) -> list[Callable]:
        """The callbacks told about changes (a copy)."""
        return list(self._observers)

    def _emit(self, event: SessionEvent) -> None:
        self._observers.emit(event)

    def __repr__(self):
        return (
            f"<Session {self.kind} {type(self.model).__name__} on {self.device}, "
            f"{len(self.layers)} layers, {len(self.stack.state.edits)} edits>"
        )
