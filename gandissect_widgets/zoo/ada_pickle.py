"""NVIDIA StyleGAN2-ADA network pickles read without running their code, and the ADA key layout.

A StyleGAN2-ADA snapshot (``network-snapshot-*.pkl``, also NVIDIA's published ``ffhq.pkl``
and the community models made with it) is a Python pickle of ``{"G", "D", "G_ema",
"augment_pipe", "training_set_kwargs"}``. Each network is an instance of a *persistent class*
(``torch_utils.persistence``): its pickle calls ``_reconstruct_persistent_obj(meta)``, where
``meta`` carries the source code of the module that defined the class
(``training/networks.py``), the class name (``Generator``, ``MappingNetwork``,
``SynthesisNetwork``, ``SynthesisBlock``, ``SynthesisLayer``, ``ToRGBLayer``,
``FullyConnectedLayer``, ...), and the object's state (the ``nn.Module.__dict__``: parameters,
buffers, submodules, and attributes such as ``conv_clamp``, ``weight_gain``, ``architecture``).
NVIDIA's loader executes that source code, so opening an untrusted ``.pkl`` runs whatever the
file's author wrote.

:func:`read_pickle` does not. Its unpickler resolves only a fixed table of names: torch's
tensor and storage rebuild functions (storages are read with ``torch.load(...,
weights_only=True)``), ``collections.OrderedDict``, plain ``builtins`` containers, numpy's
scalar and dtype (numbers only), ``dnnlib`` 's ``EasyDict`` (read as a dict) and
``_reconstruct_persistent_obj``, which here returns a :class:`PersistentRecord` holding the
class name, a digest of the source code (never compiled) and the state as data. Anything else a
pickle asks for (``os.system``, ``builtins.eval``, any unknown module) raises
:class:`UnsafePickleError` naming it, before anything is called. Each load gets its own copies
of these functions and classes, and BUILD (``__setstate__``/``setattr``) applies only to the
numpy dtype records the load itself made: a file cannot change the package for later loads.

Why not PyTorch's own restricted unpickler (``torch.load(..., weights_only=True)`` with
stand-ins allowed through ``torch.serialization.safe_globals``)? Tried on torch 2.13 with the
snapshots the tests build, it cannot read them: it knows the protocol-2 opcodes that
``torch.save`` writes, while a snapshot is protocol 4 (it stops at the first opcode, FRAME;
SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL and SHORT_BINBYTES follow), storages arrive as
``torch.storage._load_from_bytes(bytes)``, which it does not allow, and it refuses SETITEMS
on a dict subclass (``EasyDict``). So this reader remains for ADA pickles; the storage bytes
inside them, and every other checkpoint, are read by torch's (``weights_only=True``).

:func:`load_pickle` maps ``G_ema`` onto :class:`~.stylegan2.StyleGAN2Generator` (see
:func:`from_ada_state_dict` for the key table). :func:`ada_state_dict` writes a generator back in
ADA's ``G_ema.state_dict()`` layout (the export format for ``.safetensors``), with
:func:`ada_config` as its metadata.

Example (not run in the tests: it needs a StyleGAN2-ADA pickle file):
    >>> g, source = load_pickle("network-snapshot-000200.pkl")   # doctest: +SKIP
    >>> g.resolution, source.config["conv_clamp"]                # doctest: +SKIP
    (256, 256.0)
"""

from __future__ import annotations

import _compat_pickle
import collections
import hashlib
import io
import math
import pickle
import re
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .stylegan2 import StyleGAN2Generator, make_kernel

__all__ = [
    "UnsafePickleError",
    "PersistentRecord",
    "read_pickle",
    "load_pickle",
    "generator_from_data",
    "AdaSource",
    "generator_record",
    "from_ada_state_dict",
    "ada_state_dict",
    "ada_config",
    "is_ada_state_dict",
    "ALLOWED",
]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for something other than tensor data and plain containers."""


# ---------------------------------------------------------------------------------- data records
@dataclass
class PersistentRecord:
    """An object of a ``torch_utils.persistence`` class, as data: nothing of it was executed.

    ``state`` is the object's ``__dict__`` as pickled (for an ``nn.Module``: ``_parameters``,
    ``_buffers``, ``_modules`` and the attributes); ``source_sha256`` identifies the module
    source code the pickle carried (kept as a digest only).
    """

    class_name: str
    state: dict
    version: int | None = None
    source_sha256: str = ""
    source_chars: int = 0

    def child(self, name: str):
        return (self.state.get("_modules") or {}).get(name)

    def attr(self, name: str, default=None):
        return self.state.get(name, default)


class _EasyDict(dict):
    """``dnnlib.EasyDict`` read as a plain dict subclass (no attribute magic)."""


@dataclass
class _DType:
    code: str
    order: str = "="

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) >= 2 and isinstance(state[1], str)):
            raise UnsafePickleError(f"unexpected numpy dtype state {state!r}")
        self.order = state[1]

    def numpy(self) -> np.dtype:
        d = np.dtype(self.code)
        return d.newbyteorder(self.order) if self.order in "<>" else d


# ---------------------------------------------------------------------------------- allowed names
_NUMPY_CODES = {
    "f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1", "?",
    "float16", "float32", "float64", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool",
}  # fmt: skip


def _refuse(what: str):
    raise UnsafePickleError(what)


def _no_hooks(hooks, what):
    if hooks:
        _refuse(f"{what} carries backward hooks ({len(hooks)}); a weights file has none")


def _storage_from_bytes(data):
    """``torch.storage._load_from_bytes``, but read with ``weights_only=True``."""
    if not isinstance(data, (bytes, bytearray)):
        _refuse(f"a tensor storage must be bytes; got {type(data).__name__}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation
            obj = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UnsafePickleError(f"a tensor storage is not plain data ({first})") from None
    if not isinstance(obj, (torch.storage.TypedStorage, torch.UntypedStorage)):
        _refuse(f"a tensor storage holds a {type(obj).__name__}, not a storage")
    return obj


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, meta=None):
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        _refuse(f"a tensor must be rebuilt from a storage; got {type(storage).__name__}")
    _no_hooks(hooks, "a tensor")
    if meta is not None and not isinstance(meta, dict):
        _refuse(f"unexpected tensor metadata {type(meta).__name__}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch._utils._rebuild_tensor_v2(
            storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict(), meta
        )


def _rebuild_parameter(data, requires_grad=False, hooks=None):
    if not isinstance(data, torch.Tensor):
        _refuse(f"a parameter must hold a tensor; got {type(data).__name__}")
    _no_hooks(hooks, "a parameter")
    return torch.nn.Parameter(data, requires_grad=False)


def _rebuild_parameter_with_state(data, requires_grad=False, hooks=None, state=None):
    if state:
        _refuse("a parameter carries Python state")
    return _rebuild_parameter(data, requires_grad, hooks)


_TENSOR, _PARAMETER = object(), object()  # markers: torch.Tensor / Parameter as type arguments


def _rebuild_from_type(func, new_type, args, state):
    if not any(
        _is(func, f) for f in (_rebuild_tensor, _rebuild_parameter, _rebuild_parameter_with_state)
    ):
        _refuse("a tensor subclass is rebuilt by an unexpected function")
    if new_type not in (_TENSOR, _PARAMETER):
        _refuse(f"a tensor of unexpected type {new_type!r}")
    if state:
        _refuse("a tensor carries Python state")
    t = func(*args)
    return torch.nn.Parameter(t, requires_grad=False) if new_type is _PARAMETER else t


def _numpy_dtype(code, align=False, copy=True):
    if not isinstance(code, str) or code not in _NUMPY_CODES:
        _refuse(f"numpy dtype {code!r} (only numeric dtypes are read)")
    return _DType(code)


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, _DType) or not isinstance(data, (bytes, bytearray)):
        _refuse("a numpy scalar that is not a plain number")
    d = dtype.numpy()
    if len(data) != d.itemsize:
        _refuse(f"a numpy {d} scalar of {len(data)} bytes")
    return np.frombuffer(bytes(data), dtype=d)[0].item()


def _persistent_record(meta):
    if not isinstance(meta, dict) or meta.get("type") != "class":
        _refuse("a persistent object whose record is not a class record")
    name, state, src = meta.get("class_name"), meta.get("state"), meta.get("module_src", "")
    if not isinstance(name, str) or not isinstance(state, dict) or not isinstance(src, str):
        _refuse("a persistent class record without class_name, state and module_src")
    return PersistentRecord(
        class_name=name,
        state=dict(state),
        version=meta.get("version") if isinstance(meta.get("version"), int) else None,
        source_sha256=hashlib.sha256(src.encode("utf-8", "surrogatepass")).hexdigest(),
        source_chars=len(src),
    )


def _latin1_bytes(text, encoding="latin1"):
    """``_codecs.encode(text, "latin1")``: how protocol 0-2 pickles write bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        _refuse(f"_codecs.encode with {type(text).__name__} and {encoding!r}")
    return text.encode("latin1")


def _reconstructor(cls, base, state=None):
    """``copyreg._reconstructor`` (protocol 0/1 pickles) for EasyDict only."""
    if not (isinstance(cls, type) and issubclass(cls, _EasyDict)) or base is not dict:
        _refuse(f"copyreg._reconstructor of {cls!r}")
    return _EasyDict(state or {})


#: (module, name) a pickle may ask for -> what it gets. Nothing else resolves.
ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "list"): list,
    ("builtins", "dict"): dict,
    ("builtins", "tuple"): tuple,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "complex"): complex,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("_codecs", "encode"): _latin1_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch", "Tensor"): _TENSOR,
    ("torch.nn.parameter", "Parameter"): _PARAMETER,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}

_HINTS = {
    "dnnlib.tflib": "this is a TensorFlow-era StyleGAN pickle; convert it to PyTorch first "
    "(NVIDIA's legacy.py does, by running the pickle's code: only for files you trust)",
}


def _fresh(obj):
    """A copy of a function or class of the table, made for one load: whatever a pickle does
    to what it is handed stays in that load (the package's own objects never reach it)."""
    if isinstance(obj, types.FunctionType):
        copy = types.FunctionType(
            obj.__code__, obj.__globals__, obj.__name__, obj.__defaults__, obj.__closure__
        )
        copy.__kwdefaults__ = dict(obj.__kwdefaults__) if obj.__kwdefaults__ else None
        copy.__qualname__ = obj.__qualname__
        return copy
    if isinstance(obj, type) and obj.__module__ == __name__:
        return type(obj.__name__, (obj,), {"__module__": __name__})
    return obj  # builtin types (immutable) and plain object() markers (no attributes)


def _is(func, original) -> bool:
    """Whether ``func`` is ``original`` or a load's copy of it."""
    return getattr(func, "__code__", None) is original.__code__


class _Unpickler(pickle._Unpickler):
    """Python's own unpickling loop (``pickle._Unpickler``) with two changes: names resolve
    only through a per-load copy of :data:`ALLOWED`, and BUILD (``__setstate__``, ``setattr``
    or a ``__dict__`` update) only applies to numpy dtype records this load created."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file):
        super().__init__(file)
        self._table = {key: _fresh(obj) for key, obj in ALLOWED.items()}

    def find_class(self, module, name):
        # protocol 0-2 pickles name Python 2 modules (__builtin__, copy_reg): map them as
        # pickle's own find_class does, then look the result up like any other name
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        found = self._table.get((module, name))
        if found is None:
            hint = next((h for m, h in _HINTS.items() if module.startswith(m)), None)
            raise UnsafePickleError(
                f"the pickle asks for {module}.{name}, which is not tensor data or a plain "
                "container; refused without running anything" + (f" ({hint})" if hint else "")
            )
        return found

    def persistent_load(self, pid):
        raise UnsafePickleError(f"the pickle asks for persistent id {str(pid)[:80]!r}; refused")

    def _load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) is not _DType:  # exactly: never a class, function or module
            kind = inst.__name__ if isinstance(inst, type) else type(inst).__name__
            _refuse(
                f"the pickle sets attributes of a {kind} (BUILD); only numpy dtypes take a "
                "state here; refused"
            )
        inst.__setstate__(state)

    dispatch[pickle.BUILD[0]] = _load_build


def read_pickle(path_or_file):
    """The contents of a pickle, read with the restricted unpickler (see the module docstring).

    Raises :class:`UnsafePickleError` naming the first thing the pickle asks for that is not
    data; nothing the pickle names is imported or called first.
    """
    if hasattr(path_or_file, "read"):
        return _Unpickler(path_or_file).load()
    with open(Path(path_or_file).expanduser(), "rb") as f:
        return _Unpickler(f).load()


# ---------------------------------------------------------------------------------- records -> sd
def generator_record(data) -> PersistentRecord:
    """``G_ema`` (else ``G``) of an unpickled snapshot, or the record itself."""
    if isinstance(data, PersistentRecord):
        return data
    if isinstance(data, dict):
        for key in ("G_ema", "G"):
            if isinstance(data.get(key), PersistentRecord):
                return data[key]
        raise ValueError(
            "not a StyleGAN2-ADA snapshot: expected a dict with 'G_ema'; found keys "
            f"{sorted(map(str, data))[:8]}"
        )
    raise ValueError(f"not a StyleGAN2-ADA snapshot: the pickle holds a {type(data).__name__}")


def _walk(rec: PersistentRecord, prefix: str, tensors: dict, records: dict) -> None:
    """Fill ``tensors`` as ``nn.Module.state_dict()`` would, ``records`` by module path."""
    records[prefix.rstrip(".")] = rec
    st = rec.state
    skip = set(st.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        for name, t in (st.get(group) or {}).items():
            if t is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"{prefix}{name} is a {type(t).__name__}, not a tensor")
            tensors[prefix + name] = t.detach()
    for name, child in (st.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise ValueError(f"submodule {prefix}{name} is a {type(child).__name__}")
        _walk(child, f"{prefix}{name}.", tensors, records)


def _number(x, what):
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"{what} should be a number; found {x!r}")
    return float(x)


def _expect(records: dict, path: str, cls: str) -> PersistentRecord:
    rec = records.get(path)
    if rec is None:
        raise ValueError(f"unsupported generator: it has no {path or 'top-level network'}")
    if rec.class_name != cls:
        raise ValueError(
            f"unsupported generator: {path or 'the network'} is a {rec.class_name}, "
            f"expected StyleGAN2-ADA's {cls}"
        )
    return rec


def _config_from_records(records: dict) -> dict:
    """What the state dict cannot tell: clamps, gains, architecture (checked for support)."""
    g = _expect(records, "", "Generator")
    if int(g.attr("c_dim", 0) or 0):
        raise ValueError(
            f"conditional generators (c_dim={g.attr('c_dim')}) are not supported: the Session "
            "draws unconditional samples"
        )
    if int(g.attr("img_channels", 3)) != 3:
        raise ValueError(
            f"only RGB generators are supported; img_channels={g.attr('img_channels')}"
        )
    _expect(records, "mapping", "MappingNetwork")
    _expect(records, "synthesis", "SynthesisNetwork")
    gains, i = [], 0
    while f"mapping.fc{i}" in records:
        fc = _expect(records, f"mapping.fc{i}", "FullyConnectedLayer")
        if fc.attr("activation", "lrelu") != "lrelu":
            raise ValueError(f"mapping.fc{i} uses activation {fc.attr('activation')!r}; "
                             "only 'lrelu' is supported")  # fmt: skip
        gains.append((_number(fc.attr("weight_gain"), "weight_gain"),
                      _number(fc.attr("bias_gain", 1), "bias_gain")))  # fmt: skip
        i += 1
    clamps, archs = set(), set()
    for path, rec in records.items():
        if re.fullmatch(r"synthesis\.b\d+", path):
            _expect(records, path, "SynthesisBlock")
            archs.add(rec.attr("architecture", "skip"))
        elif re.fullmatch(r"synthesis\.b\d+\.(conv0|conv1)", path):
            _expect(records, path, "SynthesisLayer")
            if rec.attr("activation", "lrelu") != "lrelu":
                raise ValueError(f"{path} uses activation {rec.attr('activation')!r}")
            clamps.add(_number(rec.attr("conv_clamp"), "conv_clamp"))
        elif re.fullmatch(r"synthesis\.b\d+\.torgb", path):
            _expect(records, path, "ToRGBLayer")
            clamps.add(_number(rec.attr("conv_clamp"), "conv_clamp"))
    if len(clamps) > 1:
        raise ValueError(f"layers with different conv_clamp values {sorted(map(str, clamps))}")
    if len(archs) > 1:
        raise ValueError(f"blocks with different architectures {sorted(archs)}")
    arch = archs.pop() if archs else "skip"
    if arch not in ("skip", "orig"):
        raise ValueError(f'the "{arch}" synthesis architecture is not supported ("skip", "orig")')
    init = g.attr("_init_kwargs")
    return {
        "conv_clamp": clamps.pop() if clamps else None,
        "architecture": arch,
        "mapping_gains": gains,
        "init_kwargs": _plain(init) if isinstance(init, dict) else None,
    }


def _plain(x):
    """JSON-friendly copy of init kwargs (EasyDicts -> dicts, tuples -> lists)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return repr(x)


# ---------------------------------------------------------------------------------- key layout
def is_ada_state_dict(sd) -> bool:
    """Whether a dict of tensors has StyleGAN2-ADA ``G_ema.state_dict()`` keys."""
    return isinstance(sd, dict) and "synthesis.b4.const" in sd and "mapping.fc0.weight" in sd


def _ada_pairs(g: StyleGAN2Generator) -> list[tuple[str, str | None, str]]:
    """(ADA key, our key or None, conversion) in ``G_ema.state_dict()`` order.

    Conversions: "copy"; "const" (C,4,4) <-> (1,C,4,4); "conv" raw weight <-> ours times
    1/sqrt(fan_in), flipped for upsampling layers; "rgb" raw <-> ours times 1/sqrt(fan_in)
    (ADA applies that gain to the styles); "vec" (3,) <-> (1,3,1,1); "noise" (R,R) <->
    (1,1,R,R); "scalar" () <-> (1,); "filter" f <-> our kernel 4f; "fc" mapping weights and
    biases at our gains; "extra" ADA buffers our model does not use (unused filter copies).
    """
    pairs: list[tuple[str, str | None, str]] = []
    skip = g.architecture == "skip"
    n_res = len(g.channels)
    for j in range(n_res):
        res = 4 * 2**j
        b = f"synthesis.b{res}"
        if j == 0:
            pairs.append((f"{b}.const", "const", "const"))
        pairs.append((f"{b}.resample_filter", f"torgb.{j}.upsample_kernel" if skip and j else None,
                      "filter" if skip and j else "extra"))  # fmt: skip
        convs = [("conv1", 0)] if j == 0 else [("conv0", 2 * j - 1), ("conv1", 2 * j)]
        for name, i in convs:
            p, o = f"{b}.{name}", f"layer{i}"
            up = name == "conv0"
            pairs += [
                (f"{p}.weight", f"{o}.conv.weight", "conv"),
                (f"{p}.noise_strength", f"{o}.noise_strength", "scalar"),
                (f"{p}.bias", f"{o}.bias", "copy"),
                (f"{p}.resample_filter", f"{o}.blur_kernel" if up else None,
                 "filter" if up else "extra"),
                (f"{p}.noise_const", f"{o}.noise", "noise"),
                (f"{p}.affine.weight", f"{o}.modulation.weight", "copy"),
                (f"{p}.affine.bias", f"{o}.modulation.bias", "copy"),
            ]  # fmt: skip
        if skip or j == n_res - 1:
            t = f"torgb.{j if skip else 0}"
            pairs += [
                (f"{b}.torgb.weight", f"{t}.conv.weight", "rgb"),
                (f"{b}.torgb.bias", f"{t}.bias", "vec"),
                (f"{b}.torgb.affine.weight", f"{t}.modulation.weight", "copy"),
                (f"{b}.torgb.affine.bias", f"{t}.modulation.bias", "copy"),
            ]
    pairs.append(("mapping.w_avg", "latent_avg", "copy"))  # own buffers before children
    for i in range(len(g.mapping) - 1):
        pairs += [(f"mapping.fc{i}.weight", f"mapping.{i + 1}.weight", "fc"),
                  (f"mapping.fc{i}.bias", f"mapping.{i + 1}.bias", "fc")]  # fmt: skip
    return pairs


def _fan_in(t: torch.Tensor) -> float:
    return float(t.shape[1] * t.shape[2] * t.shape[3])


def _fc_ratio(g, our_key, lr_mul) -> float | None:
    """ADA gain / our gain for a mapping tensor, None when equal (values copy bit for bit)."""
    layer = g.mapping[int(our_key.split(".")[1])]
    if our_key.endswith("weight"):
        ada = lr_mul / math.sqrt(layer.weight.shape[1])
        r = layer.scale / ada
    else:
        r = layer.lr_mul / lr_mul
    return None if abs(r - 1) < 1e-9 else r


def _to_ours(g, ada_key, our_key, how, v: torch.Tensor) -> torch.Tensor:
    v = v.detach().float()
    if how == "const":
        return v[None]
    if how in ("conv", "rgb"):
        v = v / math.sqrt(_fan_in(v))
        return torch.flip(v, [2, 3]) if how == "conv" and _is_up(our_key) else v
    if how == "vec":
        return v.view(1, -1, 1, 1)
    if how == "noise":
        return v[None, None]
    if how == "scalar":
        return v.reshape(1)
    if how == "filter":
        f = v if v.dim() == 2 else v[:, None] * v[None, :]
        return f * 4
    return v


def _is_up(our_key: str) -> bool:
    m = re.fullmatch(r"layer(\d+)\.conv\.weight", our_key)
    return bool(m) and int(m.group(1)) % 2 == 1


def _shapes(sd: dict) -> dict:
    try:
        n_mlp = len([k for k in sd if re.fullmatch(r"mapping\.fc\d+\.weight", k)])
        fc = [sd[f"mapping.fc{i}.weight"] for i in range(n_mlp)]
        blocks = sorted(int(m.group(1)) for k in sd
                        if (m := re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", k)))  # fmt: skip
        chans = [int(sd[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in blocks]
        style_dim = int(sd["synthesis.b4.conv1.affine.weight"].shape[1])
    except KeyError as e:
        raise ValueError(f"not a StyleGAN2-ADA G_ema state_dict: missing {e}") from None
    if not n_mlp or blocks != [4 * 2**i for i in range(len(blocks))]:
        raise ValueError(f"not a StyleGAN2-ADA G_ema state_dict: blocks {blocks}, {n_mlp} fc")
    kernels = {
        int(sd[k].shape[-1]) for k in sd if re.fullmatch(r"synthesis\..*conv[01]\.weight", k)
    }
    if kernels != {3}:
        raise ValueError(f"only 3x3 synthesis convolutions are supported; found {kernels}")
    skip = "synthesis.b4.torgb.weight" in sd or len(blocks) == 1
    return dict(
        resolution=blocks[-1],
        style_dim=style_dim,
        n_mlp=n_mlp,
        channels=chans,
        z_dim=int(fc[0].shape[1]),
        mapping_dim=int(fc[0].shape[0]) if n_mlp > 1 else style_dim,
        architecture="skip" if skip else "orig",
    )


def from_ada_state_dict(sd: dict, config: dict | None = None) -> StyleGAN2Generator:
    """Our generator from ADA ``G_ema.state_dict()`` tensors (eval mode, CPU, float32).

    Sizes come from the shapes; ``config`` gives what shapes cannot: ``conv_clamp`` (default
    None), ``mapping_lr`` (default 0.01) or ``mapping_gains`` [(weight_gain, bias_gain), ...]
    as the pickle records them, ``architecture`` (default: read from the keys).

    Key table (R = 8, 16, ..; ours first)::

        mapping.{i+1}.weight/bias    mapping.fc{i}.weight/bias    (gains as attributes)
        latent_avg                   mapping.w_avg
        const (1,C,4,4)              synthesis.b4.const (C,4,4)
        layer0                       synthesis.b4.conv1
        layer{2j-1}, layer{2j}       synthesis.bR.conv0 (x2 up), synthesis.bR.conv1
          .conv.weight               .weight / sqrt(fan_in) (flipped in up layers)
          .modulation                .affine
          .noise_strength, .noise    .noise_strength, .noise_const
          .bias, .blur_kernel        .bias, 4 * .resample_filter
        torgb.{j}                    synthesis.bR.torgb (weight / sqrt(fan_in); bias (3,))
        torgb.{j}.upsample_kernel    4 * synthesis.bR.resample_filter
    """
    config = dict(config or {})
    sd = {k: v for k, v in sd.items()}
    shapes = _shapes(sd)
    if config.get("architecture"):
        shapes["architecture"] = config["architecture"]
    unsupported = [k for k in sd if k.startswith(("mapping.embed", "synthesis.")) and
                   re.search(r"\.skip\.|mapping\.embed", k)]  # fmt: skip
    if unsupported:
        raise ValueError(f"unsupported StyleGAN2-ADA parts (conditioning, resnet): {unsupported}")
    gains = config.get("mapping_gains")
    lr = float(config.get("mapping_lr") or (gains[0][1] if gains else 0.01))
    flt = sd.get("synthesis.b8.resample_filter", sd.get("synthesis.b4.resample_filter"))
    blur = flt.float() if flt is not None else (1, 3, 3, 1)
    g = StyleGAN2Generator(**shapes, mapping_lr=lr, conv_clamp=config.get("conv_clamp"), blur=blur)
    if gains:
        if len(gains) != len(g.mapping) - 1:
            raise ValueError(f"{len(gains)} mapping gains for {len(g.mapping) - 1} layers")
        for layer, (wg, bg) in zip(list(g.mapping)[1:], gains):
            layer.scale = float(wg) if wg is not None else layer.scale
            layer.lr_mul = float(bg) if bg is not None else layer.lr_mul
    ours = g.state_dict()
    new, used = {}, set()
    for ada_key, our_key, how in _ada_pairs(g):
        if our_key is None:
            used.add(ada_key)
            continue
        if ada_key not in sd:
            if how in ("noise", "scalar") and ".noise_" in ada_key:  # use_noise=False
                new[our_key] = torch.zeros_like(ours[our_key])
                continue
            if how == "filter":
                continue  # default [1, 3, 3, 1] kernel stays
            raise ValueError(f"StyleGAN2-ADA G_ema lacks {ada_key!r} (needed for {our_key!r})")
        used.add(ada_key)
        v = _to_ours(g, ada_key, our_key, how, sd[ada_key])
        if tuple(v.shape) != tuple(ours[our_key].shape):
            raise ValueError(
                f"StyleGAN2-ADA {ada_key!r} has shape {tuple(sd[ada_key].shape)}; expected one "
                f"matching {our_key} {tuple(ours[our_key].shape)}"
            )
        new[our_key] = v
    left = [k for k in sd if k not in used]
    if left:
        raise ValueError(f"StyleGAN2-ADA keys this generator cannot place: {left[:8]}")
    ours.update(new)
    g.load_state_dict(ours)
    return g.eval()


def ada_state_dict(
    g: StyleGAN2Generator,
    state: dict | None = None,
    *,
    layout: dict | None = None,
    extras: dict | None = None,
) -> dict[str, torch.Tensor]:
    """``g`` (or ``state``, our keys) in ADA's ``G_ema.state_dict()`` layout, float32.

    ``layout`` (ADA key -> (shape, dtype), the source file's) limits and orders the keys (a
    source without noise inputs has no ``noise_const``); ``extras`` supplies the ADA buffers our
    model does not use (else the normalised resampling filter). Mapping weights are written at
    the gains :func:`ada_config` declares (``mapping_lr``).
    """
    ours = g.state_dict() if state is None else state
    lr = _mapping_lr(g)
    base = make_kernel((1, 3, 3, 1))
    kernel = ours.get("layer1.blur_kernel")
    default_filter = kernel / 4 if kernel is not None else base
    out = {}
    for ada_key, our_key, how in _ada_pairs(g):
        if layout is not None and ada_key not in layout:
            continue
        if our_key is None:
            v = (extras or {}).get(ada_key, default_filter)
            out[ada_key] = v.detach().clone().float()
            continue
        v = ours[our_key].detach().float().clone()
        if how == "const":
            v = v[0]
        elif how in ("conv", "rgb"):
            if how == "conv" and _is_up(our_key):
                v = torch.flip(v, [2, 3])
            v = v * math.sqrt(_fan_in(v))
        elif how == "vec":
            v = v.reshape(-1)
        elif how == "noise":
            v = v[0, 0]
        elif how == "scalar":
            v = v.reshape(())
        elif how == "filter":
            v = v / 4
        elif how == "fc":
            r = _fc_ratio(g, our_key, lr)
            v = v if r is None else v * r
        out[ada_key] = v
    if layout is not None:
        missing = [k for k in layout if k not in out]
        if missing:
            raise ValueError(f"cannot write the source's keys {missing[:8]}")
        out = {k: out[k] for k in layout}
    return out


def _mapping_lr(g: StyleGAN2Generator) -> float:
    layers = list(g.mapping)[1:]
    return float(layers[0].lr_mul) if layers else 0.01


def _channel_rule(g: StyleGAN2Generator):
    """(channel_base, channel_max) giving ``g.channels`` by ADA's rule, or None."""
    res = [4 * 2**j for j in range(len(g.channels))]
    cmax = max(g.channels)
    for base in sorted({c * r for c, r in zip(g.channels, res)}):
        if [min(base // r, cmax) for r in res] == list(g.channels):
            return base, cmax
    return None


def ada_config(g: StyleGAN2Generator, init_kwargs: dict | None = None) -> dict:
    """What an ADA layout file needs beside its tensors: our loader's settings and, when the
    channel widths follow ADA's rule, the ``Generator(**init_kwargs)`` that takes the tensors."""
    cfg = {
        "conv_clamp": g.conv_clamp,
        "mapping_lr": _mapping_lr(g),
        "architecture": g.architecture,
    }
    if init_kwargs is None:
        rule = _channel_rule(g)
        if rule is not None:
            synthesis = {"channel_base": rule[0], "channel_max": rule[1],
                         "architecture": g.architecture, "conv_clamp": g.conv_clamp}  # fmt: skip
            init_kwargs = {
                "z_dim": g.z_dim, "c_dim": 0, "w_dim": g.style_dim,
                "img_resolution": g.resolution, "img_channels": 3,
                "mapping_kwargs": {"num_layers": len(g.mapping) - 1, "lr_multiplier": cfg[
                    "mapping_lr"], "layer_features": g.mapping_dim},
                "synthesis_kwargs": synthesis,
            }  # fmt: skip
    cfg["init_kwargs"] = init_kwargs
    return cfg


# ---------------------------------------------------------------------------------- entry point
@dataclass
class AdaSource:
    """What :func:`load_pickle` read besides the generator (for export and reports)."""

    layout: dict = field(default_factory=dict)  # ADA key -> (shape, dtype)
    extras: dict = field(default_factory=dict)  # ADA buffers the model does not hold
    config: dict = field(default_factory=dict)
    records: dict = field(default_factory=dict)  # class name per module path


def generator_from_data(data) -> tuple[StyleGAN2Generator, AdaSource]:
    """Our generator and its :class:`AdaSource` from unpickled snapshot contents (``G_ema``,
    else ``G``, else a bare Generator record)."""
    tensors, records = {}, {}
    _walk(generator_record(data), "", tensors, records)
    config = _config_from_records(records)
    g = from_ada_state_dict(tensors, config)
    filters = {k: v.detach().clone() for k, v in tensors.items() if k.endswith("resample_filter")}
    return g, AdaSource(
        layout={k: (tuple(v.shape), v.dtype) for k, v in tensors.items()},
        extras=filters,
        config={**config, "mapping_lr": _mapping_lr(g)},
        records={k: r.class_name for k, r in records.items()},
    )


def load_pickle(path) -> tuple[StyleGAN2Generator, AdaSource]:
    """``G_ema`` of a StyleGAN2-ADA pickle as our generator, read without running its code.

    Returns ``(generator, source)``: ``source.layout`` lists ``G_ema.state_dict()``'s keys,
    shapes and dtypes, ``source.config`` the settings read from the records (``conv_clamp``,
    ``architecture``, mapping gains, the init kwargs).
    """
    return generator_from_data(read_pickle(path))
