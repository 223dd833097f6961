"""Results cached on disk as .npz, keyed by what produced them (model fingerprint, layer, ...).

The folder is checked when the cache is made: one that cannot be created or written is an
error at once, before any work. A damaged file (truncated, of another format, missing an
array, of the wrong shape, holding NaN or infinity) is reported with one warning, removed and
recomputed, never a crash. Files are written atomically, so an interrupted write leaves
nothing behind.

>>> import tempfile
>>> c = ResultCache.resolve(tempfile.mkdtemp())
>>> key = {"kind": "demo", "layer": "layer4", "n": 10}
>>> c.save(key, {"x": np.arange(3)}).suffix
'.npz'
>>> c.load(key, expect={"x": (None,)})["x"].tolist()
[0, 1, 2]
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

__all__ = ["ResultCache", "default_dir", "weights_fingerprint", "unwritable"]

# The layout ``save`` writes: the arrays plus ``__key__`` (the key as JSON) and ``__format__``.
# Files of any other format (or none: written before the field existed) are recomputed.
FORMAT = 2
_RESERVED = ("__key__", "__format__")


def default_dir() -> Path:
    """``$GANDISSECT_CACHE``, else ``~/.cache/gandissect-widgets``."""
    env = os.environ.get("GANDISSECT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "gandissect-widgets"


def weights_fingerprint(model, skip=()) -> str:
    """A short hash of every parameter and buffer of ``model`` (names in ``skip`` left out).

    >>> import torch
    >>> weights_fingerprint(torch.nn.Linear(2, 2)) == weights_fingerprint(torch.nn.Linear(2, 2))
    False
    """
    import itertools

    import torch

    h = hashlib.sha256()
    for name, t in itertools.chain(model.named_parameters(), model.named_buffers()):
        if name in skip:
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def unwritable(folder) -> str | None:
    """Why ``folder`` cannot be created or written to, or None when it can (it is created, and
    a probe file is written there and removed).

    >>> unwritable(tempfile.mkdtemp()) is None
    True
    """
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".probe-", suffix=".tmp")
        try:
            os.write(fd, b"probe")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        return err.strerror or type(err).__name__
    return None


def _key_text(key: dict) -> str:
    return json.dumps(key, sort_keys=True, default=str)


class _Damaged(Exception):
    """A cache file that is readable but not usable; the message says why."""


def _shape_text(shape) -> str:
    dims = ", ".join("any" if d is None else str(d) for d in shape)
    return f"({dims},)" if len(shape) == 1 else f"({dims})"


def _check(arrays: dict, key: dict, expect: dict | None) -> None:
    """Raise :class:`_Damaged` naming the first problem of ``arrays`` (a loaded file)."""
    if "__format__" not in arrays:
        raise _Damaged("is of an older format (no format version)")
    version = arrays.pop("__format__")
    if version.shape != () or not np.issubdtype(version.dtype, np.integer):
        raise _Damaged("has an unreadable format version")
    if int(version) != FORMAT:
        raise _Damaged(f"is of format {int(version)}; this version reads format {FORMAT}")
    if "__key__" not in arrays:
        raise _Damaged("lacks its key")
    if str(arrays.pop("__key__")) != _key_text(key):
        raise _Damaged("was written for another key")
    for name, shape in (expect or {}).items():
        if name not in arrays:
            raise _Damaged(f"lacks the array {name!r}")
        got = arrays[name].shape
        if len(got) != len(shape) or any(w is not None and w != g for w, g in zip(shape, got)):
            raise _Damaged(
                f"holds {name!r} of shape {_shape_text(got)}, expected {_shape_text(shape)}"
            )
    for name, array in arrays.items():
        if np.issubdtype(array.dtype, np.inexact) and not np.isfinite(array).all():
            raise _Damaged(f"holds non-finite values (NaN or infinity) in {name!r}")


class ResultCache:
    """A folder of .npz results. ``ResultCache.resolve(cache)`` turns a ``cache=`` argument
    (True: the per-user folder, False/None: no caching, a path: that folder) into one or None.

    Making one creates the folder and checks that it can be written; if not, a
    ``PermissionError`` says so at once (before any work that would be cached).
    """

    def __init__(self, root):
        self.root = Path(root)
        self._check_writable()

    def _check_writable(self) -> None:
        why = unwritable(self.root)
        if why is not None:
            raise PermissionError(
                f"cache folder '{self.root}' is not writable ({why}); pass cache=False or a "
                "writable folder, or set GANDISSECT_CACHE"
            )

    @classmethod
    def resolve(cls, cache) -> ResultCache | None:
        """The cache for a ``cache=`` argument, its folder checked writable (else
        ``PermissionError``); None for False/None."""
        if cache is True:
            return cls(default_dir())
        if cache is False or cache is None:
            return None
        if isinstance(cache, ResultCache):
            return cache
        if isinstance(cache, (str, os.PathLike)):
            return cls(cache)
        raise TypeError(f"cache must be True, False or a folder path; got {cache!r}")

    def path(self, key: dict) -> Path:
        digest = hashlib.sha256(_key_text(key).encode()).hexdigest()[:24]
        return self.root / f"{key.get('kind', 'result')}-{digest}.npz"

    def load(self, key: dict, expect: dict | None = None) -> dict[str, np.ndarray] | None:
        """The arrays saved under ``key``, or None when absent or unusable.

        ``expect`` maps array names to shapes (None for a free dimension), e.g.
        ``{"iou": (64, None), "thresholds": (64,)}``. A file that is truncated, of another
        format, written for another key, missing an expected array, of another shape, or
        holding NaN or infinity in a float array is warned about, removed, and None returned
        so that the caller recomputes.
        """
        path = self.path(key)
        if not path.exists():
            return None
        try:
            # our own handle: np.load leaks the one it opens when the zip is damaged
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
                arrays = {name: f[name] for name in f.files}
            _check(arrays, key, expect)
            return arrays
        except _Damaged as err:
            problem = str(err)
        except Exception as err:  # truncated, not a zip, pickled objects...: recompute
            problem = f"is unreadable ({type(err).__name__}: {err})"
        warnings.warn(f"cache file {path} {problem}; removed it to recompute", stacklevel=2)
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass  # it is overwritten by the next save
        return None

    def save(self, key: dict, arrays: dict) -> Path:
        """Store ``arrays`` (name -> array) under ``key``, atomically."""
        clash = [name for name in arrays if name in _RESERVED]
        if clash:
            raise ValueError(f"array names {clash} are reserved by the cache")
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, __key__=np.array(_key_text(key)), __format__=np.array(FORMAT), **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path
