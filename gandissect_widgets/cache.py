"""Results cached on disk as .npz, keyed by what produced them (model fingerprint, layer, ...).

A corrupt or truncated file is reported with a warning, removed and recomputed, never a crash.
Files are written atomically, so an interrupted write leaves nothing behind.

>>> c = ResultCache.resolve("/tmp/gw-cache")
>>> key = {"kind": "demo", "layer": "layer4", "n": 10}
>>> c.save(key, {"x": np.arange(3)})
>>> c.load(key)["x"].tolist()
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

__all__ = ["ResultCache", "default_dir", "weights_fingerprint"]


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


def _key_text(key: dict) -> str:
    return json.dumps(key, sort_keys=True, default=str)


class ResultCache:
    """A folder of .npz results. ``ResultCache.resolve(cache)`` turns a ``cache=`` argument
    (True: the per-user folder, False/None: no caching, a path: that folder) into one or None."""

    def __init__(self, root):
        self.root = Path(root)

    @classmethod
    def resolve(cls, cache) -> ResultCache | None:
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

    def load(self, key: dict) -> dict[str, np.ndarray] | None:
        """The arrays saved under ``key``, or None when absent or unreadable (then warned)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {name: f[name] for name in f.files}
            if str(arrays.pop("__key__")) != _key_text(key):
                raise ValueError("the file was written for another key")
            return arrays
        except Exception as err:  # any damage means: recompute
            warnings.warn(f"cache file {path} is unreadable ({err}); recomputing", stacklevel=2)
            path.unlink(missing_ok=True)
            return None

    def save(self, key: dict, arrays: dict) -> Path:
        """Store ``arrays`` (name -> array) under ``key``, atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, __key__=np.array(_key_text(key)), **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path
