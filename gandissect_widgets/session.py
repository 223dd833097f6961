"""Session: the one object per model that every widget shares.

It owns the model on its device, draws samples by seed, caches activations, holds the stack of
edits and tells observers when what they show has changed. It is the only place that runs the
model, under one lock.

>>> import gandissect_widgets as gw
>>> s = gw.Session.from_zoo("hamlet")                     # doctest: +SKIP
>>> s.layers[:3]                                           # doctest: +SKIP
['layer1', 'layer2', 'layer3']
>>> edit = s.ablate("layer4", [3, 12], strength=1.0)       # doctest: +SKIP
>>> images = s.generate(range(8))                          # uint8 (8, 64, 64, 3), edited
>>> s.undo()                                               # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import render
from .cache import weights_fingerprint
from .edits import Ablation, Edit, EditStack
from .hooks import StopForward, hooked, resolve

__all__ = ["Session", "SessionEvent"]

_IMAGE = "<image>"


@dataclass(frozen=True)
class SessionEvent:
    """What changed: ``kind`` is "edits", "weights" or "samples"; ``edit`` the edit involved."""

    kind: str
    edit: Edit | None = None
    detail: dict = field(default_factory=dict)


def _pick_device(device) -> torch.device:
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _check_seeds(seeds) -> list[int]:
    if isinstance(seeds, (int, np.integer)):
        seeds = [seeds]
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"seeds must be non-negative integers; got {s!r} ({type(s).__name__})")
        if s < 0:
            raise ValueError(f"seeds must be non-negative integers; got {s}")
        out.append(int(s))
    return out


class _LRU:
    """Tensors keyed by anything, evicted least-recently-used to stay within ``limit`` bytes."""

    def __init__(self, limit_bytes: int):
        self.limit = int(limit_bytes)
        self.bytes = 0
        self._d: OrderedDict = OrderedDict()

    def get(self, key):
        value = self._d.get(key)
        if value is not None:
            self._d.move_to_end(key)
        return value

    def put(self, key, value: torch.Tensor):
        size = value.element_size() * value.nelement()
        if size > self.limit:
            return
        old = self._d.pop(key, None)
        if old is not None:
            self.bytes -= old.element_size() * old.nelement()
        self._d[key] = value
        self.bytes += size
        while self.bytes > self.limit:
            _, dropped = self._d.popitem(last=False)
            self.bytes -= dropped.element_size() * dropped.nelement()

    def clear(self):
        self._d.clear()
        self.bytes = 0

    def __len__(self):
        return len(self._d)


class Session:
    """Wrap a generator or a classifier for inspection and editing.

    - A **generator** maps latents (N, z_dim) to images (N, 3, H, W) in [-1, 1]; ``z_dim`` is
      read from the model (``model.z_dim``) or given. Samples are identified by seeds.
    - A **classifier** takes images (N, 3, H, W) in [-1, 1]; its samples come from ``data``, a
      function ``seeds -> uint8 images (N, H, W, 3)`` (or a tuple whose first item is that).

    Args:
        model: the ``nn.Module``.
        layers: names of the inspectable layers (default: the model's ``layer_names`` if it
            has them, else its direct children with spatial outputs).
        device: "auto" (CUDA, then MPS, then CPU) or any torch device.
        cache_mb: bound on the activation/image cache.
        z_dim: latent size for generators without a ``z_dim`` attribute.
        data: the sample source of a classifier.
        segmenter: an object with ``concepts`` and ``segment(images)`` (for dissection).
        batch_size: the largest batch run at once.
        concepts: names of the concept ids in ``data``'s concept maps (classifier dissection).
        classes: names of a classifier's outputs, in logit order.

    ``data(seeds)`` may return ``images``, ``(images, concept_maps)`` or
    ``(images, concept_maps, labels)``: concept maps (N, H, W) of ids into ``concepts`` give
    exact Network Dissection, labels (N,) class ids measure accuracy.

    >>> s = Session(my_generator, z_dim=128)                 # doctest: +SKIP
    >>> s.activations("layer4", [0, 1]).shape                # doctest: +SKIP
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
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        self.device = _pick_device(device)
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.z_dim = int(z_dim if z_dim is not None else getattr(model, "z_dim", 0) or 0)
        self.data = data
        if not self.z_dim and data is None:
            raise ValueError(
                "cannot tell what the model's samples are: give z_dim= for a generator "
                "(or a model with a z_dim attribute), or data= (seeds -> images) for a classifier"
            )
        self.kind = "generator" if data is None else "classifier"
        self.segmenter = segmenter
        self.concepts = list(concepts) if concepts is not None else None
        self.classes = list(classes) if classes is not None else None
        self.batch_size = int(batch_size)
        self.lock = threading.RLock()
        self.stack = EditStack()
        self._cache = _LRU(int(cache_mb * 2**20))
        self._observers: list[Callable] = []
        self._shapes: dict[str, tuple[int, int, int]] = {}
        self._unit_levels: dict[str, dict[str, torch.Tensor]] = {}
        self.dissections: dict = {}
        self._samples = list(range(8))
        self._fingerprint_memo: dict = {}
        self._data_memo: tuple | None = None
        self.recipe: Callable[[], Session] | None = None  # rebuilds this Session elsewhere
        self.image_size = self._probe(layers)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_zoo(cls, name: str = "hamlet", **kwargs) -> Session:
        """A ready Session on a zoo model, with its segmenter attached.

        "hamlet" is the embedded generator (segmenter attached); "hamlet-classifier" the scene
        classifier over rendered hamlet scenes with exact concept maps and labels.

        >>> s = Session.from_zoo("hamlet")     # doctest: +SKIP
        """
        from . import zoo
        from .zoo import hamlet

        simple = {k: v for k, v in kwargs.items() if isinstance(v, (str, int, float, bool))}
        if name == "hamlet":
            kwargs.setdefault("segmenter", zoo.load_segmenter("hamlet"))
            session = cls(zoo.load("hamlet"), **kwargs)
        elif name == "hamlet-classifier":
            kwargs.setdefault("concepts", list(hamlet.CONCEPTS))
            kwargs.setdefault("classes", list(hamlet.SCENES))
            session = cls(zoo.load_classifier("hamlet"), data=hamlet.render, **kwargs)
        else:
            session = cls(zoo.load(name), **kwargs)
        session.recipe = functools.partial(cls.from_zoo, name, **simple)
        return session

    def _probe(self, layers) -> tuple[int, int]:
        """Run one sample with every candidate hooked to learn layer names and shapes."""
        if layers is None:
            layers = getattr(self.model, "layer_names", None)  # a model may name its layers
        names = [n for n, _ in self._candidates()] if layers is None else list(layers)
        for n in names:
            resolve(self.model, n)
        with self.lock, torch.no_grad(), hooked(self.model, retain=names) as seen:
            out = self.model(self._inputs([0]))
        if layers is None:
            names = [n for n in names if self._spatial(seen.get(n))]
        else:
            bad = [n for n in names if not self._spatial(seen.get(n))]
            if bad:
                raise ValueError(f"layers without a spatial (N, C, h, w) output: {bad}")
        for n in names:
            self._shapes[n] = tuple(seen[n].shape[1:])
        self.layers = names
        if self.kind == "generator":
            if out.dim() != 4 or out.shape[1] != 3:
                raise ValueError(
                    f"a generator must return images (N, 3, H, W); got shape {tuple(out.shape)}"
                )
            return tuple(out.shape[-2:])
        return tuple(self._inputs([0]).shape[-2:])

    @staticmethod
    def _spatial(t) -> bool:
        return isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[-1] * t.shape[-2] > 1

    def _candidates(self):
        """The model's direct children; deeper modules are reachable by their dotted path."""
        return list(self.model.named_children())

    # ------------------------------------------------------------------ inputs
    def latents(self, seeds) -> torch.Tensor:
        """Standard-normal latents (N, z_dim), one per seed, independent of batch composition."""
        seeds = _check_seeds(seeds)
        if not self.z_dim:
            raise ValueError("this Session wraps a classifier: it has no latents")
        z = [torch.randn(self.z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds]
        return torch.stack(z) if z else torch.zeros(0, self.z_dim)

    def _data_out(self, seeds):
        """``data(seeds)``, remembered for the last batch: a dissection pass asks one batch for
        inputs, images and concept maps in turn, and the data is drawn only once."""
        key = tuple(seeds)
        memo = self._data_memo
        if memo is None or memo[0] != key:
            memo = self._data_memo = (key, self.data(list(seeds)))
        return memo[1]

    def _data_images(self, seeds) -> np.ndarray:
        out = self._data_out(seeds)
        images = out[0] if isinstance(out, tuple) else out
        return render.to_uint8(images)

    def _data_part(self, seeds, index: int, what: str):
        out = self._data_out(seeds) if self.data is not None else None
        if not isinstance(out, tuple) or len(out) <= index or out[index] is None:
            raise ValueError(
                f"this Session's data gives no {what}; data(seeds) must return "
                "(images, concept_maps, labels)"
            )
        return torch.as_tensor(np.asarray(out[index]))

    def concept_maps(self, seeds) -> torch.Tensor:
        """Concept maps (N, H, W) int64 from a classifier Session's data."""
        return self._data_part(_check_seeds(seeds), 1, "concept maps").long()

    def labels(self, seeds) -> torch.Tensor:
        """Class ids (N,) from a classifier Session's data."""
        return self._data_part(_check_seeds(seeds), 2, "labels").long()

    def _inputs(self, seeds) -> torch.Tensor:
        if self.kind == "generator":
            return self.latents(seeds).to(self.device)
        imgs = torch.from_numpy(np.ascontiguousarray(self._data_images(seeds)))
        return (imgs.permute(0, 3, 1, 2).float() / 127.5 - 1).to(self.device)

    # ------------------------------------------------------------------ layers
    def _check_layer(self, layer: str) -> str:
        if layer in self._shapes:
            return layer
        if not isinstance(layer, str):
            raise TypeError(f"layer must be a name (str); got {type(layer).__name__}")
        try:
            resolve(self.model, layer)
        except KeyError:
            raise KeyError(
                f"unknown layer {layer!r}; layers are: {', '.join(self.layers)} "
                "(or any module path of the model)"
            ) from None
        with self.lock, torch.no_grad(), hooked(self.model, retain=[layer]) as seen:
            try:
                self.model(self._inputs([0]))
            except StopForward:
                pass
        if not self._spatial(seen.get(layer)):
            raise ValueError(f"layer {layer!r} has no spatial (N, C, h, w) output")
        self._shapes[layer] = tuple(seen[layer].shape[1:])
        return layer

    def layer_shape(self, layer: str) -> tuple[int, int, int]:
        """(C, h, w) of a layer's output."""
        return self._shapes[self._check_layer(layer)]

    # ------------------------------------------------------------------ running
    @property
    def state_key(self) -> tuple[int, ...]:
        """Identifies the current edits: equal keys, equal outputs."""
        return self.stack.key

    def _forward(self, seeds: list[int], name: str) -> torch.Tensor:
        """One batch through the model with the current edits: ``name``'s output for the seeds.

        ``name`` is a layer (the pass stops after it) or the image marker. Caller holds the lock.
        """
        layers = [] if name == _IMAGE else [name]
        with (
            torch.no_grad(),
            hooked(
                self.model,
                retain=layers,
                edit=self.stack.output_edits(self),
                stop_after_retained=bool(layers),
            ) as seen,
        ):
            try:
                out = self.model(self._inputs(seeds))
            except StopForward:
                out = None
        if name == _IMAGE:
            return torch.from_numpy(render.to_uint8(out))
        return seen[name].detach()

    def _fetch(self, name: str, seeds: list[int]) -> torch.Tensor:
        """``name``'s output for the seeds: cached rows reused, the rest computed in batches."""
        with self.lock:
            key = self.state_key
            found = {s: self._cache.get((name, s, key)) for s in seeds}
            missing = [s for s in dict.fromkeys(seeds) if found[s] is None]
            for i in range(0, len(missing), self.batch_size):
                chunk = missing[i : i + self.batch_size]
                out = self._forward(chunk, name)
                for j, s in enumerate(chunk):
                    found[s] = out[j]
                    self._cache.put((name, s, key), out[j].clone())
            return torch.stack([found[s] for s in seeds])

    def generate(self, seeds) -> np.ndarray:
        """Images (N, H, W, 3) uint8 for the seeds, with the current edits applied.

        For a classifier Session these are the data images (edits change activations only).
        """
        seeds = _check_seeds(seeds)
        if not seeds:
            return np.zeros((0, *self.image_size, 3), np.uint8)
        if self.kind == "classifier":
            return self._data_images(seeds)
        return self._fetch(_IMAGE, seeds).numpy()

    def activations(self, layer: str, seeds) -> torch.Tensor:
        """A layer's output (N, C, h, w) for the seeds, with the current edits applied."""
        layer = self._check_layer(layer)
        seeds = _check_seeds(seeds)
        if not seeds:
            return torch.zeros(0, *self._shapes[layer])
        return self._fetch(layer, seeds)

    def run(self, inputs: torch.Tensor, *, retain=(), retain_input=(), edits: bool = True):
        """Forward raw inputs (latents or images) under the lock; returns (output, retained).

        For statistics passes and custom experiments; nothing is cached.
        """
        with self.lock, torch.no_grad():
            fns = self.stack.output_edits(self) if edits else {}
            with hooked(self.model, retain=retain, retain_input=retain_input, edit=fns) as seen:
                out = self.model(inputs.to(self.device))
            return out, dict(seen)

    def classify(self, seeds) -> torch.Tensor:
        """Logits of a classifier Session for the data samples of ``seeds`` (current edits on)."""
        if self.kind != "classifier":
            raise ValueError("classify() needs a classifier Session (one made with data=)")
        seeds = _check_seeds(seeds)
        out, _ = self.run(self._inputs(seeds))
        return out.cpu()

    def fingerprint(self) -> str:
        """A short hash of the current weights and active output edits.

        Equal fingerprints mean the model computes the same function; caches key on it.
        """
        with self.lock:
            key = self.state_key
            if self._fingerprint_memo.get("key") != key:
                h = hashlib.sha256(weights_fingerprint(self.model).encode())
                for e in self.stack.active:
                    if not e.changes_weights:
                        h.update(e.signature().encode())
                self._fingerprint_memo = {"key": key, "value": h.hexdigest()[:16]}
            return self._fingerprint_memo["value"]

    def attribution_pass(self, layer: str, seeds):
        """Forward with gradients to ``layer``'s output: (activations leaf, model output)."""
        layer = self._check_layer(layer)

        def leaf(out):
            return out.detach().requires_grad_(True)

        with self.lock, torch.enable_grad():
            fns = self.stack.output_edits(self)
            fns[layer] = fns.get(layer, []) + [leaf]
            with hooked(self.model, retain=[layer], edit=fns) as seen:
                out = self.model(self._inputs(_check_seeds(seeds)))
            return seen[layer], out

    # ------------------------------------------------------------------ analysis
    def dissect(self, layer: str, **kwargs):
        """Dissect a layer; see :func:`gandissect_widgets.dissect.dissect`.

        >>> d = s.dissect("layer4", n=1000)     # doctest: +SKIP
        """
        from .dissect import dissect

        return dissect(self, layer, **kwargs)

    def ablation_effect(self, layer: str, units, concept: str, **kwargs):
        """Concept pixels removed by ablating units; see :func:`dissect.ablation_effect`."""
        from .dissect import ablation_effect

        return ablation_effect(self, layer, units, concept, **kwargs)

    def ablation_accuracy(self, layer: str, units, **kwargs):
        """Per-class accuracy before/after ablating units; see :func:`dissect.ablation_accuracy`."""
        from .dissect import ablation_accuracy

        return ablation_accuracy(self, layer, units, **kwargs)

    def class_units(self, layer: str, name: str, **kwargs):
        """Units ranked by support for a class; see :func:`dissect.class_units`."""
        from .dissect import class_units

        return class_units(self, layer, name, **kwargs)

    def rewrite(self, layer: str, context, copy=None, paste=None, **kwargs):
        """Rewrite a rule of the generator (rank-one edit of ``layer``'s convolution); the
        edit is pushed on the stack. See :func:`gandissect_widgets.rewrite.rewrite`.

        >>> e = s.rewrite("layer6", [(3, roof)], copy=(7, tree), paste=(3, roof))  # doctest: +SKIP
        """
        from .rewrite import rewrite

        return rewrite(self, layer, context, copy, paste, **kwargs)

    def context_matches(self, layer: str, context, n: int = 64, **kwargs):
        """Samples ranked by how strongly a rule's context key matches, with heatmaps.
        See :func:`gandissect_widgets.rewrite.context_matches`."""
        from .rewrite import context_matches

        return context_matches(self, layer, context, n, **kwargs)

    # ------------------------------------------------------------------ samples
    @property
    def samples(self) -> list[int]:
        """The seeds widgets show by default; setting them notifies observers ("samples")."""
        return list(self._samples)

    @samples.setter
    def samples(self, seeds):
        self._samples = _check_seeds(seeds)
        self._emit(SessionEvent("samples"))

    # ------------------------------------------------------------------ edits
    def _check_units(self, layer, units) -> list[int]:
        n = self._shapes[layer][0]
        if isinstance(units, (int, np.integer)):
            units = [units]
        units = list(units)
        if not units:
            raise ValueError("units is empty; give at least one unit index")
        for u in units:
            if isinstance(u, bool) or not isinstance(u, (int, np.integer)):
                raise TypeError(f"unit indices must be integers; got {u!r}")
            if not 0 <= u < n:
                raise ValueError(
                    f"unit {u} is out of range: layer {layer!r} has {n} units (0-{n - 1})"
                )
        return [int(u) for u in units]

    def _check_mask(self, mask):
        if mask is None:
            return None
        if isinstance(mask, torch.Tensor):
            mask = mask.detach().cpu().numpy()
        if not isinstance(mask, np.ndarray):
            raise TypeError(
                f"mask must be a numpy array or tensor (H, W); got {type(mask).__name__}"
            )
        if mask.shape != tuple(self.image_size):
            raise ValueError(
                f"mask shape {mask.shape} does not match the image size {tuple(self.image_size)}"
            )
        if mask.dtype == np.bool_ or mask.dtype == np.uint8:
            mask = mask.astype(np.float32) / (255.0 if mask.max(initial=0) > 1 else 1.0)
        elif not np.issubdtype(mask.dtype, np.floating):
            raise TypeError(f"mask must be float in [0, 1], bool or uint8; got dtype {mask.dtype}")
        if np.isnan(mask).any() or mask.min(initial=0) < 0 or mask.max(initial=0) > 1:
            raise ValueError("mask values must lie in [0, 1]")
        return torch.from_numpy(mask.astype(np.float32))

    def _layer_mask(self, layer: str, mask: torch.Tensor) -> torch.Tensor:
        return render.resize_mask(mask, self._shapes[layer][1:])

    def unit_levels(self, layer: str, n: int = 64) -> dict[str, torch.Tensor]:
        """Per-unit "mean" and "high" (0.99 quantile) activation levels of a layer.

        Taken from a Dissection of the layer when one exists, else from ``n`` samples.
        """
        layer = self._check_layer(layer)
        if layer not in self._unit_levels:
            saved = self.stack.active
            with self.lock:
                self.stack.active = []
                try:
                    acts = torch.cat(
                        [
                            self._forward(list(range(i, min(i + self.batch_size, n))), layer)
                            for i in range(0, n, self.batch_size)
                        ]
                    )
                finally:
                    self.stack.active = saved
            flat = acts.transpose(0, 1).reshape(acts.shape[1], -1).float()
            self._unit_levels[layer] = {
                "mean": flat.mean(1).cpu(),
                "high": torch.quantile(flat, 0.99, dim=1).cpu(),
            }
        return self._unit_levels[layer]

    def _unit_values(self, layer, value, units: torch.Tensor) -> torch.Tensor:
        if isinstance(value, str):
            return self.unit_levels(layer)[value][units]
        v = torch.as_tensor(value, dtype=torch.float32).cpu()
        return v.expand(len(units)) if v.dim() == 0 else v

    def _check_value(self, value, n_units):
        if isinstance(value, str):
            if value not in ("mean", "high"):
                raise ValueError(f"value must be a number, 'mean' or 'high'; got {value!r}")
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        v = torch.as_tensor(value, dtype=torch.float32)
        if v.shape != (n_units,):
            raise ValueError(f"a per-unit value needs shape ({n_units},); got {tuple(v.shape)}")
        return v

    def ablation(self, layer, units, strength=1.0, mask=None, value=0.0) -> Ablation:
        """A checked :class:`Ablation`, not yet applied (see :meth:`push`, :meth:`temporarily`)."""
        layer = self._check_layer(layer)
        units = self._check_units(layer, units)
        if isinstance(strength, bool) or not isinstance(strength, (int, float, np.floating)):
            raise TypeError(f"strength must be a number in [0, 1]; got {strength!r}")
        if not 0 <= float(strength) <= 1:
            raise ValueError(f"strength must lie in [0, 1]; got {strength}")
        return Ablation(
            layer, units, strength, self._check_mask(mask), self._check_value(value, len(units))
        )

    def ablate(self, layer, units, strength=1.0, mask=None, value=0.0) -> Ablation:
        """Push an ablation of ``units`` of ``layer`` and return it.

        >>> s.ablate("layer4", [3, 12], strength=0.8, value="high")   # doctest: +SKIP
        """
        return self.push(self.ablation(layer, units, strength, mask, value))

    def push(self, edit: Edit) -> Edit:
        """Apply an edit on top of the stack (clears redo) and notify observers."""
        with self.lock:
            self.stack.push(edit, self.model)
        self._emit(SessionEvent("weights" if edit.changes_weights else "edits", edit))
        return edit

    def replace(self, old: Edit | None, new: Edit | None) -> Edit | None:
        """Swap an active output edit for ``new`` in place (one event); ``old=None`` pushes,
        ``new=None`` removes. Widgets use this to retune the edit they own.

        >>> e = s.ablate("layer4", [3])                             # doctest: +SKIP
        >>> e = s.replace(e, s.ablation("layer4", [3, 4]))          # doctest: +SKIP
        """
        if old is None or old not in self.stack.active:
            return self.push(new) if new is not None else None
        if old.changes_weights or (new is not None and new.changes_weights):
            raise ValueError(
                "replace() swaps output edits only; use undo()/push() for weight edits"
            )
        with self.lock:
            i = self.stack.active.index(old)
            if new is None:
                del self.stack.active[i]
            else:
                self.stack.active[i] = new
        self._emit(SessionEvent("edits", new or old))
        return new

    def undo(self) -> Edit | None:
        """Undo the newest edit; returns it (None when there is nothing to undo)."""
        with self.lock:
            edit = self.stack.undo(self.model)
        if edit is not None:
            self._emit(SessionEvent("weights" if edit.changes_weights else "edits", edit))
        return edit

    def redo(self) -> Edit | None:
        """Re-apply the newest undone edit; returns it (None when there is nothing to redo)."""
        with self.lock:
            edit = self.stack.redo(self.model)
        if edit is not None:
            self._emit(SessionEvent("weights" if edit.changes_weights else "edits", edit))
        return edit

    def reset(self) -> None:
        """Undo every edit and forget them (no redo)."""
        with self.lock:
            changed = bool(self.stack.active)
            weights = any(e.changes_weights for e in self.stack.active)
            while self.stack.active:
                self.stack.undo(self.model)
            self.stack.undone.clear()
        if changed:
            self._emit(SessionEvent("weights" if weights else "edits"))

    @property
    def edits(self) -> list[Edit]:
        """The active edits, oldest first."""
        return list(self.stack.active)

    @contextmanager
    def excluding(self, edit: Edit | None):
        """Leave one active edit out inside a ``with`` block (no events), e.g. to show a
        widget's "original" beside its edit. Weight edits are unwound and re-applied bit-exactly;
        cached results of the state without the edit are reused.

        >>> with s.excluding(edit):                 # doctest: +SKIP
        ...     original = s.generate(range(8))
        """
        if edit is None or edit not in self.stack.active:
            yield
            return
        with self.lock:
            active = self.stack.active
            i = active.index(edit)
            above = active[i + 1 :]
            self._unwind(i)
            for e in above:
                self._reapply(e)
            try:
                yield
            finally:
                self._unwind(i)
                for e in (edit, *above):
                    self._reapply(e)

    def _unwind(self, i: int) -> None:
        """Take active edits i.. off the stack, reverting weight edits newest first."""
        active = self.stack.active
        for e in reversed(active[i:]):
            if e.changes_weights:
                e.revert(self.model)
        del active[i:]

    def _reapply(self, e: Edit) -> None:
        if e.changes_weights:
            e.apply(self.model)
        self.stack.active.append(e)

    @contextmanager
    def temporarily(self, edit: Edit):
        """Apply ``edit`` inside a ``with`` block only (for previews); observers are not told.

        >>> with s.temporarily(s.ablation("layer4", [3])):   # doctest: +SKIP
        ...     preview = s.generate([0])
        """
        with self.lock:
            undone = list(self.stack.undone)
            self.stack.push(edit, self.model)
            try:
                yield edit
            finally:
                self.stack.undo(self.model)
                self.stack.undone[:] = undone

    # ------------------------------------------------------------------ events
    def observe(self, callback: Callable[[SessionEvent], None]) -> None:
        """Call ``callback(event)`` whenever what the Session shows changes."""
        if callback not in self._observers:
            self._observers.append(callback)

    def unobserve(self, callback) -> None:
        """Stop calling ``callback``; unknown callbacks are ignored."""
        if callback in self._observers:
            self._observers.remove(callback)

    def _emit(self, event: SessionEvent) -> None:
        for cb in list(self._observers):
            cb(event)

    def __repr__(self):
        return (
            f"<Session {self.kind} {type(self.model).__name__} on {self.device}, "
            f"{len(self.layers)} layers, {len(self.stack.active)} edits>"
        )
