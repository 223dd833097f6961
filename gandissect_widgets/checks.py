"""Input validation shared by every entry point.

Each check returns its argument in one canonical form (a Python int or float, a list of ints, a
float32 CPU tensor) or raises ``TypeError`` for a wrong type and ``ValueError`` for a wrong value.
Every message names the argument, shows the bad value and says what is valid.

>>> import numpy as np
>>> from gandissect_widgets.checks import fraction
>>> fraction(np.float32(0.25), "strength")
0.25
>>> fraction(float("nan"), "strength")
Traceback (most recent call last):
...
ValueError: strength must be a number in [0, 1]; got nan
"""

from __future__ import annotations

import math
import numbers
import re
import reprlib
from collections.abc import Iterable, Mapping

import numpy as np
import torch

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 80
_repr.maxlist = _repr.maxtuple = 8


def _error(kind: type[Exception], what: str, valid: str, value, note: str = "") -> Exception:
    """``kind("<what> must be <valid><note>; got <value>")`` with a one-line, truncated repr."""
    shown = re.sub(r"\s*\n\s*", " ", _repr.repr(value))
    return kind(f"{what} must be {valid}{note}; got {shown}")


def _real(value, what: str, valid: str, integer: bool = False):
    """One real number (no bool, complex, str, or array of size > 1) as a Python int when
    ``integer``, else as a finite float; TypeError for a wrong type, ValueError for NaN or inf."""
    x = value
    if isinstance(x, (np.ndarray, torch.Tensor)):
        if x.ndim and (x.numel() if isinstance(x, torch.Tensor) else x.size) != 1:
            note = f" (a single number, not an array of shape {tuple(x.shape)})"
            raise _error(TypeError, what, valid, value, note)
        x = x.item()
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, kind):
        raise _error(TypeError, what, valid, value)
    if integer:
        return int(x)
    try:
        x = float(x)
    except OverflowError:  # an int or Fraction beyond the float range
        x = math.inf
    if not math.isfinite(x):
        raise _error(ValueError, what, valid, value)
    return x


def _many(value, what: str, valid: str) -> list | None:
    """The items of a 1-d collection as a list, or None when ``value`` is a single item."""
    if isinstance(value, (str, bytes)):
        raise _error(TypeError, what, valid, value)
    if isinstance(value, Mapping):  # iterating would read its keys
        raise _error(TypeError, what, valid, value, " (a list, not a dict)")
    if isinstance(value, (np.ndarray, torch.Tensor)):
        if value.ndim > 1:
            raise _error(TypeError, what, valid, value, f" (1-d, not shape {tuple(value.shape)})")
        return value.tolist() if value.ndim else None
    return list(value) if isinstance(value, Iterable) else None


def seed(value, what: str = "seed") -> int:
    """A non-negative integer below 2**63.

    >>> seed(np.int64(7))
    7
    """
    valid = "a non-negative integer below 2**63"
    x = _real(value, what, valid, integer=True)
    if not 0 <= x < 2**63:
        raise _error(ValueError, what, valid, value)
    return x


def seeds(value, what: str = "seeds") -> list[int]:
    """One seed or an iterable of seeds, as a list (possibly empty).

    >>> seeds(range(3)), seeds(5)
    ([0, 1, 2], [5])
    """
    items = _many(value, what, "a seed or a list of seeds (non-negative integers below 2**63)")
    if items is None:
        return [seed(value, what)]
    return [seed(s, f"{what}[{i}]") for i, s in enumerate(items)]


def count(value, what: str) -> int:
    """A positive integer (n, batch_size, steps, rank, k).

    >>> count(torch.tensor(4), "batch_size")
    4
    """
    x = _real(value, what, "a positive integer", integer=True)
    if x < 1:
        raise _error(ValueError, what, "a positive integer", value)
    return x


def _interval(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if lo is None and hi is None:
        return "a finite number"
    if hi is None:
        return f"a number {'>' if lo_open else '>='} {lo:g}"
    if lo is None:
        return f"a number {'<' if hi_open else '<='} {hi:g}"
    return f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def number(value, what: str, lo=None, hi=None, *, lo_open=False, hi_open=False) -> float:
    """A finite real number within optional bounds (closed unless ``lo_open``/``hi_open``).

    >>> number(np.array(2), "scale", 0, 10, lo_open=True)
    2.0
    """
    valid = _interval(lo, hi, lo_open, hi_open)
    x = _real(value, what, valid)
    below = lo is not None and (x < lo or (lo_open and x == lo))
    if below or (hi is not None and (x > hi or (hi_open and x == hi))):
        raise _error(ValueError, what, valid, value)
    return x


def fraction(value, what: str) -> float:
    """A number in [0, 1], e.g. an edit strength.

    >>> fraction(1, "strength")
    1.0
    """
    return number(value, what, 0, 1)


def learning_rate(value, what: str = "lr") -> float:
    """A number in (0, 10].

    >>> learning_rate(1e-3)
    0.001
    """
    return number(value, what, 0, 10, lo_open=True)


def quantile(value, what: str = "quantile") -> float:
    """A number in (0, 1).

    >>> quantile(0.99)
    0.99
    """
    return number(value, what, 0, 1, lo_open=True, hi_open=True)


def unit_value(value, n_units: int, what: str = "value"):
    """``"mean"``, ``"high"``, one finite float, or one finite value per unit as a float32 tensor.

    >>> unit_value("high", 3), unit_value(np.float32(2), 3), unit_value([1, 2, 3], 3)
    ('high', 2.0, tensor([1., 2., 3.]))
    """
    valid = f"'mean', 'high', a finite number or {n_units} finite numbers (one per unit)"
    if isinstance(value, str):
        if value in ("mean", "high"):
            return value
        raise _error(ValueError, what, valid, value)
    arrays = (np.ndarray, torch.Tensor)
    if not (isinstance(value, (list, tuple, range)) or isinstance(value, arrays) and value.ndim):
        return _real(value, what, valid)
    try:
        t = value.detach() if isinstance(value, torch.Tensor) else torch.tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError):
        raise _error(TypeError, what, valid, value) from None
    if t.dtype == torch.bool or t.is_complex():
        raise _error(TypeError, what, valid, value, f", not dtype {str(t.dtype)[6:]}")
    if tuple(t.shape) != (n_units,):
        raise _error(ValueError, what, valid, value, f", not shape {tuple(t.shape)}")
    t = t.to(device="cpu", dtype=torch.float32, copy=True)
    if not torch.isfinite(t).all():
        raise _error(ValueError, what, valid, value)
    return t


def units(value, count, layer="the layer") -> list[int]:
    """One unit index or an iterable of them, in [0, count), without duplicates, in first order.

    >>> units([3, np.int64(1), 3], 8, "layer4")
    [3, 1]
    """
    where = layer if layer == "the layer" else f"layer {layer!r}"
    span = f"{where} has {count} units (0-{count - 1})"
    items = _many(value, "units", "a unit index or a list of unit indices")
    items = [value] if items is None else items
    if not items:
        raise ValueError(f"units must not be empty: {span}; got {_repr.repr(value)}")
    out: dict[int, None] = {}
    for u in items:
        i = _real(u, "unit", f"an integer index from 0 to {count - 1}", integer=True)
        if not 0 <= i < count:
            raise ValueError(f"unit {i} is out of range: {span}")
        out[i] = None
    return list(out)


def layer_name(value) -> str:
    """A non-empty layer name without surrounding whitespace.

    >>> layer_name("layer4")
    'layer4'
    """
    valid = "a non-empty string without surrounding whitespace"
    if not isinstance(value, str):
        raise _error(TypeError, "layer name", valid, value)
    if not value or value != value.strip():
        raise _error(ValueError, "layer name", valid, value)
    return value


def names(value, what: str) -> list[str]:
    """A list of names (layers, concepts, classes) from a list or tuple of strings; one string
    is refused (it would read as its letters).

    >>> names(("sky", "tree"), "concepts")
    ['sky', 'tree']
    """
    valid = "a list of names (strings)"
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        note = f" (a one-name list: [{value!r}])" if isinstance(value, str) else ""
        raise _error(TypeError, what, valid, value, note)
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise _error(TypeError, f"{what}[{i}]", "a string", v)
    return list(value)


def segmenter(value, what: str = "segmenter"):
    """None, or an object with ``concepts`` (names) and a callable ``segment(images)``."""
    if value is not None:
        if not callable(getattr(value, "segment", None)) or not hasattr(value, "concepts"):
            valid = "None or an object with .concepts (names) and .segment(images)"
            raise _error(TypeError, what, valid, value)
        names(list(value.concepts), f"{what}.concepts")
    return value


def mask(value, size, *, what="mask", allow_empty=True) -> torch.Tensor | None:
    """None, or an (H, W) array or tensor (bool, uint8 0/1 or 0-255, float in [0, 1]) as float32.

    >>> mask(np.full((2, 2), 255, np.uint8), (2, 2))
    tensor([[1., 1.],
            [1., 1.]])
    """
    if value is None:
        return None
    size = tuple(int(s) for s in size)
    valid = f"None or a numpy array or torch tensor of shape {size}"
    if not isinstance(value, (np.ndarray, torch.Tensor)):
        note = " (convert a list with np.asarray)" if isinstance(value, (list, tuple)) else ""
        raise _error(TypeError, what, valid, value, note)
    dtype = value.dtype.name if isinstance(value, np.ndarray) else str(value.dtype)[6:]
    if not (dtype in ("bool", "uint8") or dtype.startswith(("float", "bfloat"))):
        valid = "bool, uint8 (0/1 or 0-255) and float (0 to 1)"
        raise TypeError(f"{what} has dtype {dtype}; valid dtypes are {valid}")
    if tuple(value.shape) != size:
        raise ValueError(f"{what} shape {tuple(value.shape)} does not match the image size {size}")
    if isinstance(value, np.ndarray):
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused below
            t = torch.from_numpy(np.array(value, dtype=np.float32))
    else:
        t = value.detach().to(device="cpu", dtype=torch.float32, copy=True)
    if dtype == "uint8" and (t > 1).any():
        t /= 255
    bad = t[~((t >= 0) & (t <= 1))]
    if bad.numel():
        raise _error(ValueError, f"{what} values", "finite and in [0, 1]", bad[0].item())
    if not allow_empty and not t.any():
        raise ValueError(f"{what} is empty (all zero); paint a region first")
    return t


def device(value) -> torch.device:
    """``"auto"`` (the best of cuda, mps, cpu) or anything ``torch.device`` accepts.

    >>> device("cpu")
    device(type='cpu')
    """
    valid = "a device such as 'cpu', 'cuda', 'cuda:1', 'mps' or 'auto'"
    if isinstance(value, torch.device):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _error(TypeError, "device", valid, value)
    if value == "auto":
        mps = torch.backends.mps.is_available()
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    try:
        return torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise _error(ValueError, "device", valid, value) from None


def available_device(value) -> torch.device:
    """:func:`device`, which must also exist on this machine (a Session's device).

    >>> available_device("cpu")
    device(type='cpu')
    """
    d = device(value)
    here = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    count = torch.cuda.device_count() if d.type == "cuda" else 1
    if not here.get(d.type, True) or (d.index or 0) >= count:
        found = ["cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
        found += ["mps"] if here["mps"] else []
        valid = f"a device that exists here ({', '.join(found)} or 'auto')"
        raise _error(ValueError, "device", valid, value)
    return d


def did_you_mean(name: str, names: Iterable[str]) -> str:
    """``"; did you mean 'a', 'b'?"`` for the names close to ``name``, else ``""``.

    >>> did_you_mean("layr6", ["layer6", "layer5", "output"])
    "; did you mean 'layer6', 'layer5'?"
    """
    import difflib

    close = difflib.get_close_matches(str(name), list(names), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(map(repr, close))}?" if close else ""


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning raised by its caller point at the first line
    outside this package (the user's call, however many package frames lie between).

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as seen:
    ...     warnings.simplefilter("always")
    ...     warnings.warn("x", stacklevel=user_stacklevel())
    >>> "checks.py" in seen[0].filename
    False
    """
    import os
    import sys

    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level
