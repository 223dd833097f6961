"""Invert a picture into a generator, GANPaint style, so that unit edits act on it.

:func:`fit_photo` finds a latent ``z`` whose render is close to the picture (the best of many
random draws, refined together by gradient descent, first on the coarse layout, keeping the
best quarter after a while), then adds a per-image residual ``r`` to one layer's output and fits
``z`` and ``r`` together, with a penalty that keeps ``r`` small, so the generator's own units
still draw as much of the picture as they can. Edits then act on the photo like on a generated
sample:

- the residual is added to layer ``L``'s output first (:func:`residual_edit`), and edits of
  layer ``L`` (an ablation) run after it in the same ``hooked`` list;
- a rewrite of layer ``L``'s weights changes what the layer computes while ``r`` stays fixed;
- every later layer sees the photo's features and is edited as usual.

The default ``L`` is hamlet's ``layer5``, the layer *before* the one whose units draw trees and
roofs (``layer6``): those units then compute from the photo's features, so ablating them or
rewriting their rule reaches what the residual added, not only what the latent draws. The
residual is held small in the metric of the layer's own feature covariance (``prior="cov"``:
cheap along directions the units vary together), which keeps the features like the
generator's; ``residual_weight`` trades the fit's fidelity for how far edits carry over (see
BENCHMARKS.md, ``python -m benchmarks invert``).

With an ``encoder`` (a picture -> latent network trained for the generator, as hamlet ships:
:func:`~gandissect_widgets.zoo.hamlet.load_encoder`), the fit starts from the encoder's guess
instead of the best random draws and needs far fewer steps (:data:`ENCODED`); ``preview``
receives the fit so far, from that first guess (milliseconds) on, so a view can show it while
the fit goes on. Generators without an encoder keep the random starts (:data:`DEFAULTS`).

No Session is needed: it takes the model and plain tensors.

>>> import numpy as np
>>> from gandissect_widgets import zoo
>>> g = zoo.load("hamlet")
>>> image = zoo.hamlet.render([zoo.hamlet.TEST_SEED_START])[0][0]
>>> photo = fit_photo(g, image, steps=20, restarts=2, candidates=8, seed=0)
>>> photo.z.shape, photo.layer, tuple(photo.residual.shape)
(torch.Size([128]), 'layer5', (64, 16, 16))
>>> reconstruct(g, photo).shape
torch.Size([3, 64, 64])

The model is hooked while it is being fitted (the hooks act only on the fitting thread's
forward passes), but edits that another thread installs meanwhile would reach the fit: run it
under the owner's lock, or on ``copy.deepcopy(model)``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .hooks import StopForward, hooked, resolve
from .jobs import one_torch_thread

__all__ = ["Photo", "fit_photo", "reconstruct", "residual_edit", "psnr", "DEFAULTS", "ENCODED"]

#: Defaults of :func:`fit_photo`, chosen with ``python -m benchmarks invert``.
DEFAULTS = {
    "layer": "layer5",
    "steps": 800,
    "restarts": 32,
    "candidates": 256,
    "z_fraction": 0.5,
    "residual_weight": 0.3,
    "lr": 0.05,
    "residual_lr": 0.06,
    "l1_weight": 0.0,
    "prior": "cov",
    "residual_norm": "l1",
}

#: What changes with an encoder's first guess (``fit_photo(..., encoder=...)``): far fewer
#: steps, and a faster residual, chosen with ``python -m benchmarks invert``.
ENCODED = {"steps": 300, "z_fraction": 0.25, "residual_lr": 0.1}


@dataclass
class Photo:
    """A picture inverted into a generator.

    ``z``: latent (z_dim,); ``layer``: where ``residual`` (C, h, w) is added to the output;
    ``psnr``: of the reconstruction against the (resized) picture, in dB for values in [-1, 1];
    ``losses``: the objective at every step; ``target``: the picture as the generator's float
    image (3, H, W) in [-1, 1], after any crop and resize; ``settings``: the fit's arguments.
    """

    z: torch.Tensor
    layer: str
    residual: torch.Tensor
    psnr: float
    losses: list[float] = field(default_factory=list, repr=False)
    target: torch.Tensor | None = field(default=None, repr=False)
    settings: dict = field(default_factory=dict, repr=False)

    def edits(self) -> dict[str, list[Callable[[torch.Tensor], torch.Tensor]]]:
        """``{layer: [add residual]}`` for :func:`~gandissect_widgets.hooks.hooked`; append
        the layer's own edits (ablation) after it so they act on the photo's features."""
        return {self.layer: [residual_edit(self.residual)]}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two float images in [-1, 1] (peak-to-peak 2).

    >>> round(psnr(torch.zeros(3, 4, 4), torch.full((3, 4, 4), 0.2)), 2)
    20.0
    """
    mse = float((a.detach().float() - b.detach().float()).square().mean())
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)


def residual_edit(residual: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """An edit adding ``residual`` ((C, h, w), or (N, C, h, w) one per sample) to a layer's output.

    >>> residual_edit(torch.ones(2, 1, 1))(torch.zeros(3, 2, 1, 1)).sum().item()
    6.0
    """
    if residual.dim() not in (3, 4):
        raise ValueError(f"residual must be (C, h, w) or (N, C, h, w); got {tuple(residual.shape)}")

    def add_residual(out: torch.Tensor) -> torch.Tensor:
        r = residual.to(device=out.device, dtype=out.dtype)
        if r.shape[-3:] != out.shape[-3:]:
            raise ValueError(
                f"residual {tuple(r.shape)} does not fit the layer output {tuple(out.shape)}"
            )
        return out + r

    return add_residual


@torch.no_grad()
def reconstruct(model: nn.Module, photo: Photo) -> torch.Tensor:
    """The photo as the generator draws it: float image (3, H, W) in [-1, 1], on the model's
    device."""
    device = _device(model)
    with hooked(model, edit=photo.edits()):
        return model(photo.z.to(device).unsqueeze(0))[0]


@one_torch_thread()  # one picture's small steps: see one_torch_thread
def fit_photo(
    model: nn.Module,
    image,
    *,
    layer: str = DEFAULTS["layer"],
    steps: int | None = None,
    restarts: int = DEFAULTS["restarts"],
    candidates: int = DEFAULTS["candidates"],
    z_fraction: float | None = None,
    residual_weight: float = DEFAULTS["residual_weight"],
    lr: float = DEFAULTS["lr"],
    residual_lr: float | None = None,
    l1_weight: float = DEFAULTS["l1_weight"],
    prior: str = DEFAULTS["prior"],
    residual_norm: str = DEFAULTS["residual_norm"],
    seed: int = 0,
    encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
    preview: Callable[[Photo], object] | None = None,
    preview_every: float = 0.5,
    progress: Callable[[int, int, float], object] | None = None,
    cancel: threading.Event | None = None,
) -> Photo | None:
    """Invert ``image`` into ``model``; ``None`` when ``cancel`` is set before the end.

    Args:
        model: a generator with ``z_dim``, mapping latents (N, z_dim) to images (N, 3, H, W)
            in [-1, 1]; it is not modified (no gradients are stored in its parameters).
        image: uint8 (H, W, 3) (or (H, W, 4), alpha dropped), numpy or torch; or a float
            tensor (3, H, W) in [-1, 1]. Centre-cropped to a square and resized (antialiased)
            to the model's output size when it differs.
        layer: the layer whose output gets the residual: best the layer *before* the one
            whose units you will ablate or rewrite, so they draw what the residual adds.
        steps: gradient steps in all (default ``DEFAULTS["steps"]``, or ``ENCODED["steps"]``
            with an encoder); the first ``z_fraction`` of them fit ``restarts`` latents at once
            (the best of ``candidates`` random draws; the encoder's one guess with an encoder),
            the rest fit the best latent and the residual together.
        residual_weight: weight of the residual's size in the objective (larger keeps the
            residual smaller: edits act more like on samples, the fit is less exact).
        residual_norm: "l1" (mean absolute value, the default: a sparse residual) or "l2"
            (mean square) of the residual's coordinates.
        prior: the residual's coordinates: "cov" (the default: whitened by the units'
            covariance over the candidates' features, so cheap along the directions the units
            vary together), "diag" (units scaled by their spread) or "none" (the units).
        lr, residual_lr: Adam step sizes of the latent and of the residual (cosine decay;
            ``residual_lr`` defaults to ``DEFAULTS``'s, or ``ENCODED``'s with an encoder).
        l1_weight: weight of a mean absolute pixel error added to the mean squared one.
        seed: the candidates' random draw; equal arguments give equal results on one machine.
        encoder: maps the picture (1, 3, H, W) in [-1, 1] to a latent (1, z_dim), e.g.
            hamlet's (:func:`~gandissect_widgets.zoo.hamlet.load_encoder`): the fit then starts
            from its guess instead of the best random draws, and ``steps``, ``z_fraction``
            and ``residual_lr`` default to :data:`ENCODED` (far fewer steps); the candidates
            only measure the layer's covariance.
        preview: called as ``preview(photo)`` with the fit so far (a :class:`Photo`; its
            ``psnr`` and ``losses`` so far): first with the start (the encoder's guess, or
            the best random draw), then at most every ``preview_every`` seconds, and at the end.
        progress: called as ``progress(step, steps, loss)`` after every step.
        cancel: a ``threading.Event``; once set, the fit stops and returns ``None``.
    """
    chosen = DEFAULTS if encoder is None else ENCODED
    steps = chosen["steps"] if steps is None else steps
    z_fraction = chosen["z_fraction"] if z_fraction is None else z_fraction
    residual_lr = chosen["residual_lr"] if residual_lr is None else residual_lr
    steps, restarts, candidates = (
        _positive_int(steps, "steps"),
        _positive_int(restarts, "restarts"),
        _positive_int(candidates, "candidates"),
    )
    for name, value in [
        ("residual_weight", residual_weight), ("lr", lr), ("residual_lr", residual_lr),
        ("l1_weight", l1_weight), ("z_fraction", z_fraction),
    ]:  # fmt: skip
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    if prior not in ("cov", "diag", "none"):
        raise ValueError(f"prior must be 'cov', 'diag' or 'none'; got {prior!r}")
    if residual_norm not in ("l1", "l2"):
        raise ValueError(f"residual_norm must be 'l1' or 'l2'; got {residual_norm!r}")
    if z_fraction > 1:
        raise ValueError(f"z_fraction must be in [0, 1]; got {z_fraction!r}")
    z_dim = getattr(model, "z_dim", None)
    if not isinstance(z_dim, int) or z_dim < 1:
        raise TypeError(f"model must be a generator with an int z_dim; got {type(model).__name__}")
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a layer name (str); got {type(layer).__name__}")
    resolve(model, layer)  # KeyError listing the valid names
    if encoder is not None and not callable(encoder):
        raise TypeError(f"encoder must map images to latents (a callable); got {encoder!r}")
    if preview is not None and not callable(preview):
        raise TypeError(f"preview must be a callable taking a Photo; got {preview!r}")
    if not isinstance(preview_every, (int, float)) or not preview_every >= 0:
        raise ValueError(f"preview_every must be a number of seconds >= 0; got {preview_every!r}")
    if cancel is not None and not hasattr(cancel, "is_set"):
        raise TypeError("cancel must be a threading.Event (or have is_set())")
    settings = dict(
        layer=layer, steps=steps, restarts=restarts, candidates=candidates, z_fraction=z_fraction,
        residual_weight=residual_weight, lr=lr, residual_lr=residual_lr, l1_weight=l1_weight,
        prior=prior, residual_norm=residual_norm, seed=seed, encoder=encoder is not None,
    )  # fmt: skip
    device = _device(model)
    image = _as_float_image(image)

    generator = torch.Generator().manual_seed(int(seed))
    zs = torch.randn(candidates, z_dim, generator=generator).to(device)
    with torch.no_grad(), hooked(model, retain=[layer]) as seen:
        first = model(zs[:1])
    features = seen.get(layer)
    if features is None or features.dim() != 4:
        shape = None if features is None else tuple(features.shape)
        raise ValueError(f"layer {layer!r} must give a spatial (N, C, h, w) output; got {shape}")
    if first.dim() != 4 or first.shape[1] != 3:
        raise ValueError(f"model must draw images (N, 3, H, W); got {tuple(first.shape)}")
    target = _fit_size(image, tuple(first.shape[-2:])).to(device)
    guess = None
    if encoder is not None:
        with torch.no_grad():
            guess = torch.as_tensor(encoder(target)).float().to(device)
        if guess.shape != (1, z_dim) or not torch.isfinite(guess).all():
            raise ValueError(
                f"encoder must give one finite latent (1, {z_dim}); got {tuple(guess.shape)}"
            )

    def loss_per_image(y, pool=1):
        err = y - target
        if pool > 1:
            err = F.avg_pool2d(err, pool)
        loss = err.square().mean((1, 2, 3))
        if l1_weight:
            loss = loss + l1_weight * err.abs().mean((1, 2, 3))
        return loss

    owner = threading.get_ident()
    current = {"r": torch.zeros(features.shape[1:], device=device)}
    gathered: list[torch.Tensor] | None = []
    losses: list[float] = []
    shown = [-math.inf]  # when the last preview was shown

    def show(z, force=False):
        """Hand the fit so far to ``preview`` (at most every ``preview_every`` seconds)."""
        if preview is None or (not force and time.perf_counter() - shown[0] < preview_every):
            return
        with torch.no_grad():
            y = model(z.detach())[0]
        shown[0] = time.perf_counter()
        preview(_photo(z, layer, current["r"], y, target, list(losses), settings))

    def add_residual(out):
        if threading.get_ident() != owner:
            return out
        if gathered is not None and not out.requires_grad:
            gathered.append(out.detach())
        return out + current["r"]

    z_steps = round(steps * z_fraction)
    with hooked(model, edit={layer: [add_residual]}):
        if guess is not None:
            gathered = None
            show(guess, force=True)  # the encoder's guess, before anything else
            gathered = []
            with torch.no_grad(), hooked(model, retain=[layer], stop_after_retained=True):
                for c in zs.split(64):
                    try:
                        model(c)
                    except StopForward:
                        pass
            z, loss = guess.clone().requires_grad_(True), None
        else:
            with torch.no_grad():
                scores = torch.cat([loss_per_image(model(c)) for c in zs.split(64)])
            loss, order = scores.sort()
            z = zs[order[:restarts]].clone().requires_grad_(True)
            loss = loss[:restarts]
        mix = _mixing(torch.cat(gathered), prior)  # residual = mix @ u at each position
        gathered = None
        if guess is None:
            show(z[:1], force=True)  # the best random draw

        # phase 1: the best latents, refined together (the residual is still zero); first on
        # 4x4-pooled pixels (the layout), after a quarter of the steps only the best quarter
        adam = _Adam([z], [lr])
        for i in range(z_steps):
            if cancel is not None and cancel.is_set():
                return None
            if i == z_steps // 4 and len(z) > 1:  # `loss`: of the step before
                keep = loss.detach().argsort()[: max(1, len(z) // 4)]
                z = z.detach()[keep].clone().requires_grad_(True)
                adam.keep(keep, z)
            y = model(z)
            loss = loss_per_image(y, pool=4 if i < z_steps // 2 else 1)
            adam.step(torch.autograd.grad(loss.sum(), [z]), _cosine(i, z_steps))
            losses.append(float(loss.detach().min()))
            if progress is not None:
                progress(len(losses), steps, losses[-1])
            show(z[loss.detach().argmin()][None])
        with torch.no_grad():
            best = loss_per_image(model(z)).argmin() if z_steps else 0
            z = z[best][None].clone().requires_grad_(True)

        # phase 2: latent and residual together, the residual held small in the metric of
        # the layer's own feature distribution (cheap along the directions units vary)
        r_steps = steps - z_steps
        u = torch.zeros_like(current["r"], requires_grad=True)
        adam = _Adam([z, u], [lr * 0.2, residual_lr])
        for i in range(r_steps):
            if cancel is not None and cancel.is_set():
                return None
            current["r"] = torch.einsum("dc,chw->dhw", mix, u)
            loss = loss_per_image(model(z)).sum()
            size = u.abs().mean() if residual_norm == "l1" else u.square().mean()
            loss = loss + residual_weight * size
            adam.step(torch.autograd.grad(loss, [z, u]), _cosine(i, r_steps))
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(len(losses), steps, losses[-1])
            current["r"] = torch.einsum("dc,chw->dhw", mix, u.detach())
            show(z)
        current["r"] = torch.einsum("dc,chw->dhw", mix, u.detach())
        with torch.no_grad():
            final = model(z)[0]
    if cancel is not None and cancel.is_set():
        return None
    photo = _photo(z, layer, current["r"], final, target, losses, settings)
    if preview is not None:
        preview(photo)
    return photo


def _photo(z, layer, residual, image, target, losses, settings) -> Photo:
    """A :class:`Photo` of latent ``z`` (1, z_dim) and ``residual``, drawn as ``image``."""
    return Photo(
        z=z[0].detach().cpu().clone(),
        layer=layer,
        residual=residual.detach().cpu().clone(),
        psnr=psnr(image, target[0]),
        losses=losses,
        target=target[0].cpu(),
        settings=settings,
    )


def _mixing(features: torch.Tensor, prior: str) -> torch.Tensor:
    """(C, C) matrix M such that ``r = M u`` with ``u`` white has the features' covariance
    (``prior="cov"``), their per-channel variance (``"diag"``), or is ``u`` itself (``"none"``)."""
    c = features.shape[1]
    if prior == "none":
        return torch.eye(c, device=features.device)
    x = features.transpose(0, 1).reshape(c, -1).double()
    x = x - x.mean(1, keepdim=True)
    cov = x @ x.T / max(x.shape[1] - 1, 1)
    if prior == "diag":
        return cov.diagonal().clamp_min(1e-8).sqrt().diag().float()
    cov += 1e-3 * cov.diagonal().mean() * torch.eye(c, device=cov.device, dtype=cov.dtype)
    return torch.linalg.cholesky(cov).float()


class _Adam:
    """Adam written out (torch.optim's first use imports dynamo, which costs seconds)."""

    def __init__(self, params, lrs, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lrs, self.betas, self.eps = params, lrs, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def keep(self, rows, param):
        """Go on with ``param``, the given rows of the (single) parameter, and their moments."""
        self.params = [param]
        self.m = [m[rows] for m in self.m]
        self.v = [v[rows] for v in self.v]

    @torch.no_grad()
    def step(self, grads, scale=1.0):
        self.t += 1
        b1, b2 = self.betas
        for p, g, m, v, lr in zip(self.params, grads, self.m, self.v, self.lrs, strict=True):
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            m_hat = m / (1 - b1**self.t)
            v_hat = v / (1 - b2**self.t)
            p.sub_(lr * scale * m_hat / (v_hat.sqrt() + self.eps))


def _cosine(i, n, floor=0.05):
    """Learning-rate factor at step ``i`` of ``n``: cosine from 1 down to ``floor``."""
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * i / max(n, 1)))


def _device(model):
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {value!r}")
    return int(value)


def _as_float_image(image) -> torch.Tensor:
    """uint8 (H, W, 3|4) or float (3, H, W) in [-1, 1] -> float (1, 3, H, W) in [-1, 1]."""
    if isinstance(image, np.ndarray):
        if image.dtype.kind not in "uf":
            raise TypeError(f"image must be uint8 (H, W, 3); got a numpy array of {image.dtype}")
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a uint8 (H, W, 3) array or tensor; got {type(image)}")
    if image.dtype == torch.uint8:
        if image.dim() != 3 or image.shape[-1] not in (3, 4) or min(image.shape[:2]) < 1:
            shape = tuple(image.shape)
            raise ValueError(f"a uint8 image must be (H, W, 3) or (H, W, 4); got {shape}")
        return image[..., :3].permute(2, 0, 1).float().div(127.5).sub(1).unsqueeze(0)
    if not image.is_floating_point():
        raise TypeError(f"image must be uint8 (H, W, 3) or float (3, H, W); got {image.dtype}")
    if image.dim() != 3 or image.shape[0] != 3 or min(image.shape[1:]) < 1:
        raise ValueError(f"a float image must be (3, H, W) in [-1, 1]; got {tuple(image.shape)}")
    if not torch.isfinite(image).all():
        raise ValueError("image has NaN or infinite values")
    if image.min() < -1.0001 or image.max() > 1.0001:
        raise ValueError(
            f"a float image must lie in [-1, 1]; got [{float(image.min()):.3g}, "
            f"{float(image.max()):.3g}] (pass uint8 (H, W, 3) for 0..255 pixels)"
        )
    return image.detach().float().clamp(-1, 1).unsqueeze(0).cpu()


def _fit_size(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre-crop (1, 3, H, W) to the aspect ratio of ``size``, then resize to it."""
    h, w = image.shape[-2:]
    if (h, w) == size:
        return image
    th, tw = size
    if h * tw > w * th:  # too tall
        ch = max(1, round(w * th / tw))
        image = image[..., (h - ch) // 2 : (h - ch) // 2 + ch, :]
    elif h * tw < w * th:  # too wide
        cw = max(1, round(h * tw / th))
        image = image[..., (w - cw) // 2 : (w - cw) // 2 + cw]
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)
