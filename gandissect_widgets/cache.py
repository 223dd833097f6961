"""Results cached on disk as .npz, keyed by what produced them (model fingerprint, layer, ...).

The folder is checked when the cache is made: one that cannot be created or written is an
error at once, before any work. A damaged file (truncated, of another format, missing an
array, of the wrong shape, holding NaN or infinity, whose arrays no longer match the digest
written with them, or refused by the caller's ``check`` of what the request implies) is
reported with one warning, removed and recomputed, never a crash. Files are written
atomically, so an interrupted write leaves nothing behind; a save that fails warns and the
caller keeps its result in memory.

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

# The layout ``save`` writes: the arrays plus ``__key__`` (the key as JSON), ``__format__`` and
# ``__digest__`` (a SHA-256 of the arrays: names, dtypes, shapes and bytes). Files of any other
# format (or none: written before the field existed) are recomputed.
FORMAT = 3
_RESERVED = ("__key__", "__format__", "__digest__")


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


def _digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


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
    digest = str(arrays.pop("__digest__", ""))
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
    if digest != _digest(arrays):
        raise _Damaged("holds arrays that do not match their digest (changed after saving)")


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

    def load(
        self, key: dict, expect: dict | None = None, check=None
    ) -> dict[str, np.ndarray] | None:
        """The arrays saved under ``key``, or None when absent or unusable.

        ``expect`` maps array names to shapes (None for a free dimension), e.g.
        ``{"iou": (64, None), "thresholds": (64,)}``. A file that is truncated, of another
        format, written for another key, missing an expected array, of another shape, or
        holding NaN or infinity in a float array, or refused by ``check(arrays)`` (which
        raises ValueError saying what is wrong, e.g. "holds IoU values outside [0, 1]") is
        warned about, removed, and None returned so that the caller recomputes.
        """
        path = self.path(key)
        if not path.exists():
            return None
        try:
            # our own handle: np.load leaks the one it opens when the zip is damaged
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
                arrays = {name: f[name] for name in f.files}
            _check(arrays, key, expect)
            if check is not None:
                try:
                    check(arrays)
                except (ValueError, KeyError, TypeError) as err:
                    raise _Damaged(str(err).strip("'\"")) from None
            return arrays
        except _Damaged as err:
            problem = str(err)
        except Exception as err:  # truncated, not a zip, pickled objects...: recompute
            problem = f"is unreadable ({type(err).__name__}: {err})"
        try:
            path.unlink(missing_ok=True)
            done = "removed it to recompute"
        except OSError as err:  # e.g. a folder: the save then says it could not write
            done = f"could not remove it ({err.strerror or type(err).__name__}); recomputing"
        warnings.warn(f"cache file {path} {problem}; {done}", stacklevel=2)
        return None

    def save(self, key: dict, arrays: dict) -> Path | None:
        """Store ``arrays`` (name -> array) under ``key``, atomically; returns the file.

        A save that fails (the disk is full, a folder stands at the file's place, ...) warns
        saying why and returns None: the caller keeps its result in memory.
        """
        clash = [name for name in arrays if name in _RESERVED]
        if clash:
            raise ValueError(f"array names {clash} are reserved by the cache")
        path = self.path(key)
        tmp = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                fields = {"__key__": np.array(_key_text(key)), "__format__": np.array(FORMAT)}
                digest = np.array(_digest({k: np.asarray(v) for k, v in arrays.items()}))
                np.savez(f, **fields, __digest__=digest, **arrays)
            os.replace(tmp, path)
        except OSError as err:
            why = err.strerror or type(err).__name__
            warnings.warn(
                f"could not save to cache file {path} ({why}); the result is kept in memory only",
                stacklevel=2,
            )
            return None
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
        return path
