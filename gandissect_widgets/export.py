"""Write a Session's model with its active edits folded in, in the layout it was loaded from.

``session.export(path)`` (or :func:`export`) writes the weights at the Session's state: weight
edits (rewrites, :class:`~gandissect_widgets.edits.WeightEdit`) are in the weights already;
an output edit is folded only when the result is exactly the same function (below); any other
active output edit is refused with an error naming it. The file's suffix picks the container:

==================  ====================================  ====================================
model (source)      ``.pt`` / ``.pth``                    ``.safetensors``
==================  ====================================  ====================================
ProGAN, hamlet      ProGAN state_dict (``layer1.conv.     the same keys (hamlet's own format)
                    weight``, ``layer1.wscale.b``, ...)
StyleGAN2           rosinality ``{"g_ema": ...,           StyleGAN2-ADA ``G_ema.state_dict()``
(rosinality, ADA)   "latent_avg": ...}``                  keys, settings in the metadata
other modules       ``model.state_dict()``                ``model.state_dict()``
==================  ====================================  ====================================

Each file is read back by :func:`gandissect_widgets.zoo.load` and by the original project's
loader: ProGAN's ``load_state_dict``, hamlet's ``load_generator(path)``, rosinality's
``g_ema.load_state_dict(ckpt["g_ema"])``, and ADA's ``Generator(**init_kwargs)
.load_state_dict(...)`` with ``init_kwargs`` from the file's metadata. No pickle is written: a
pickle runs code when loaded. Keys, shapes and dtypes are the source file's (``model.source``,
see :class:`gandissect_widgets.zoo.checkpoints.Source`); rosinality's layout has no
``conv_clamp``, so an ADA generator with one is written without it (a warning says so).

**dtypes.** By default every tensor keeps its source dtype, except an *edited* tensor whose
edited values that dtype cannot hold exactly (a rewrite of a float16 file): it is written in
float32, with a warning naming it, so the file computes what the Session shows. Pass
``dtype=torch.float16`` (or any float dtype) to force one dtype for every tensor.

**Folding output edits.** An :class:`~gandissect_widgets.edits.Ablation` folds when it removes
units completely everywhere (strength 1, value 0, no region mask) from a conv block whose unit
is exactly zero when its output weights and bias are zero: a ProGAN block (conv, wscale bias,
leaky ReLU) or a StyleGAN2 layer without noise (``noise_strength`` 0; noise is added to every
unit, so otherwise zeroing weights would not zero the unit). Those units' rows of the conv
weight and their biases are set to zero. Every other output edit is refused.

Example:
    >>> s = gw.Session.from_zoo("hamlet")    # roof3, tree1: masks painted on samples 3 and 1
    >>> edit = s.rewrite("layer6", [(3, roof3)], (1, tree1), (3, (20, 30)), steps=20,
    ...                  stat_samples=100)
    >>> s.export("hamlet-edited.safetensors")
    PosixPath('hamlet-edited.safetensors')
    >>> g = gw.zoo.load("hamlet-edited.safetensors")
    >>> z = s.latents([3, 9])   # a batch of two: a batch of one takes other kernels
    >>> with torch.no_grad():
    ...     print(torch.allclose(g.eval()(z), s.run(z)[0].cpu(), atol=1e-5))
    True
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from .cache import unwritable
from .edits import Ablation, Edit, State
from .zoo import ada_pickle
from .zoo.checkpoints import Source
from .zoo.progan import NormConvBlock, ProgressiveGenerator
from .zoo.stylegan2 import StyledConv, StyleGAN2Generator, rosinality_state_dict

__all__ = ["export", "fold_reason"]

_TORCH = (".pt", ".pth")
_SAFE = (".safetensors",)


def fold_reason(model, edit: Edit) -> str | None:
    """Why ``edit`` cannot be folded into ``model``'s weights exactly (None when it can)."""
    if edit.changes_weights:
        return None
    if not isinstance(edit, Ablation):
        return f"a {type(edit).__name__} changes the output of {edit.layer}"
    if edit.mask is not None:
        return "it acts in a region only (a mask)"
    if edit.strength != 1:
        return f"its strength is {edit.strength:.0%} (only complete removal folds)"
    if edit.values is None or bool(torch.as_tensor(edit.values).ne(0).any()):
        return f"it sets units to {edit.value!r} levels, not 0"
    try:
        module = model.get_submodule(edit.layer)
    except AttributeError:
        return f"the model has no module {edit.layer!r}"
    if isinstance(module, NormConvBlock):
        return None
    if isinstance(module, StyledConv):
        if bool(module.noise_strength.ne(0).any()) and bool(module.noise.ne(0).any()):
            return (
                f"{edit.layer} adds noise to every unit (noise_strength "
                f"{float(module.noise_strength.reshape(-1)[0]):.3g}), so zeroing weights "
                "would not zero its units"
            )
        return None
    return f"{edit.layer} is a {type(module).__name__}, not a conv block that folds"


def _fold(model, tensors: dict, edit: Ablation) -> None:
    """Zero the output weights and biases of the ablated units (``fold_reason`` was None)."""
    module = model.get_submodule(edit.layer)
    bias = "wscale.b" if isinstance(module, NormConvBlock) else "bias"
    idx = torch.tensor(edit.units, dtype=torch.long)
    for key in (f"{edit.layer}.conv.weight", f"{edit.layer}.{bias}"):
        tensors[key][idx] = 0


def _weights(session, state: State) -> dict:
    """Our ``state_dict()`` at ``state``, on the CPU, with foldable output edits folded."""
    with session.weights_at(state) as model:
        tensors = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    for edit in state.edits:
        if not edit.changes_weights:
            _fold(session.model, tensors, edit)
    return tensors


def _source(model) -> Source | None:
    src = getattr(model, "source", None)
    return src if isinstance(src, Source) else None


def _container(path: Path, src: Source | None) -> str:
    suffix = path.suffix.lower()
    if suffix in _TORCH:
        return "torch"
    if suffix in _SAFE:
        return "safetensors"
    if suffix == ".pkl":
        raise ValueError(
            "export does not write pickles (a pickle runs code when it is loaded); use .pt "
            "(rosinality StyleGAN2 checkpoint) or .safetensors (StyleGAN2-ADA G_ema layout)"
        )
    hint = ""
    if src is not None:
        hint = f" (this model came from a {src.format} {src.container} file)"
    raise ValueError(f"name the file .pt, .pth or .safetensors; got {path.name!r}{hint}")


def _layout_files(model, tensors: dict, container: str, src: Source | None):
    """(tensors in the file's keys, wrapper keys or None, source layout, metadata)."""
    if isinstance(model, StyleGAN2Generator):
        if container == "torch":
            ckpt = rosinality_state_dict(model, tensors)
            layout = dict(src.layout) if src and src.format == "rosinality" else {}
            if src and src.format == "rosinality" and not src.top:
                return ckpt["g_ema"], None, layout, None  # a bare g_ema state_dict
            if src and src.format == "rosinality":
                layout["latent_avg"] = src.config.get("latent_avg", (None, torch.float32))
                top = [k for k in src.top if k in ckpt] or ["g_ema", "latent_avg"]
            else:
                top = ["g_ema", "latent_avg"]
            flat = {**ckpt["g_ema"], "latent_avg": ckpt["latent_avg"]}
            return flat, top, layout, None
        ada = src is not None and src.format == "stylegan2-ada"
        out = ada_pickle.ada_state_dict(
            model,
            tensors,
            layout=src.layout if ada else None,
            extras=src.extras if ada else None,
        )
        cfg = ada_pickle.ada_config(model, src.config.get("init_kwargs") if ada else None)
        meta = {"format": "stylegan2-ada", **{k: json.dumps(v) for k, v in cfg.items()}}
        return out, None, dict(src.layout) if ada else {}, meta
    layout = dict(src.layout) if src is not None else {}
    if isinstance(model, ProgressiveGenerator) and src is not None and set(layout) != set(tensors):
        layout = {}
    meta = {"format": src.format} if src is not None and container == "safetensors" else None
    if src is not None and src.format == "hamlet":
        meta = None  # hamlet's own files carry no metadata
    return tensors, None, layout, meta


def _cast(edited: dict, plain: dict, layout: dict, dtype) -> tuple[dict, list[str]]:
    """Each tensor in its source dtype (or ``dtype``); edited tensors the source dtype cannot
    hold exactly stay float32 (returned by name)."""
    out, kept = {}, []
    for k, v in edited.items():
        if not v.is_floating_point():
            out[k] = v
            continue
        want = dtype if dtype is not None else layout.get(k, (None, v.dtype))[1] or v.dtype
        c = v.to(want)
        if dtype is None and want != v.dtype and not torch.equal(c.to(v.dtype), v):
            if k in plain and not torch.equal(plain[k], v):
                out[k] = v
                kept.append(k)
                continue
        out[k] = c.contiguous()
    return out, kept


def _save(path: Path, container: str, tensors: dict, top, meta) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        if container == "safetensors":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
        elif top is not None:
            ckpt = {}
            for key in top:
                if key == "g_ema":
                    ckpt["g_ema"] = {k: v for k, v in tensors.items() if k != "latent_avg"}
                else:
                    ckpt[key] = tensors[key]
            torch.save(ckpt, tmp)
        else:
            torch.save(tensors, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch says "open file failed" without the path
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise OSError(f"cannot write {path}: {first}") from None
    finally:
        tmp.unlink(missing_ok=True)


def export(session, path, *, dtype: torch.dtype | None = None) -> Path:
    """Write ``session``'s model at its state (edits folded in) to ``path``; returns the path.

    The suffix picks the container (``.pt``/``.pth`` or ``.safetensors``); the layout follows
    the model's source (see the module docstring). ``dtype`` forces one floating dtype for
    every tensor (default: the source's, edited tensors kept exact). Raises ValueError naming
    each active output edit that cannot be folded into the weights exactly, and for a file
    name it cannot write.

    >>> edit = s.ablate("layer4", [3, 12])   # removed completely: folds into the weights
    >>> s.export("hamlet-edited.pt")
    PosixPath('hamlet-edited.pt')
    """
    path = Path(path).expanduser()
    model = session.model
    src = _source(model)
    container = _container(path, src)
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch dtype or None; got {dtype!r}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"no folder {path.parent} to write {path.name} into")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name to export to")
    why = unwritable(path.parent)
    if why is not None:
        raise PermissionError(f"cannot write {path}: its folder is not writable ({why})")
    state = session.state
    bad = [(e, r) for e in state.edits if (r := fold_reason(model, e)) is not None]
    if bad:
        listed = "; ".join(f"{e!r}: {r}" for e, r in bad)
        raise ValueError(
            "cannot export: these active edits change layer outputs in a way the weights cannot "
            f"hold exactly: {listed}. Undo them, or export without them "
            "(with session.excluding(edit): session.export(path))"
        )
    if isinstance(model, StyleGAN2Generator) and container == "torch":
        rosinality_state_dict(model)  # raises now if the layout cannot hold this generator
    if isinstance(model, StyleGAN2Generator) and container == "torch" and model.conv_clamp:
        warnings.warn(
            "rosinality's StyleGAN2 has no conv_clamp: the file leaves out this generator's "
            f"clamp of +-{model.conv_clamp:g} (outputs differ only where activations exceed "
            "it); .safetensors keeps it",
            UserWarning,
            stacklevel=3,  # the caller of Session.export
        )
    edited = _weights(session, state)
    plain = _weights(session, State()) if state.edits else edited
    files, top, layout, meta = _layout_files(model, edited, container, src)
    plain_files = files if plain is edited else _layout_files(model, plain, container, src)[0]
    files, kept = _cast(files, plain_files, layout, dtype)
    if kept:
        warnings.warn(
            f"written in float32, as the source's dtype cannot hold their edited values "
            f"exactly: {', '.join(kept)} (pass dtype= to force one dtype)",
            UserWarning,
            stacklevel=3,
        )
    _save(path, container, files, top, meta)
    return path
