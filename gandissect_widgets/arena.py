"""Results kept in memory inside one preallocated buffer, so memory follows the bound exactly.

Many small cached tensors, allocated and freed by the thousand, fragment the heap: the process
grows far past what the cache holds. :class:`Arena` copies each result into one byte buffer
of ``limit`` bytes written as a ring: new results go at the head and overwrite the oldest.
A result read while it sits in the older half is copied to the head again, so often-used
results stay (least-recently-used in effect). Reads return copies.

>>> a = Arena(1024)
>>> a.put("x", torch.arange(4.0))
>>> a.get("x").tolist()
[0.0, 1.0, 2.0, 3.0]
>>> a.get("y") is None
True
"""

from __future__ import annotations

from collections import OrderedDict

import torch

__all__ = ["Arena"]

_ALIGN = 64


class Arena:
    """Tensors by key in a ring buffer of ``limit`` bytes (CPU). Not thread-safe on its own."""

    def __init__(self, limit: int):
        self.limit = max(0, int(limit))
        self._buf: torch.Tensor | None = None  # allocated on first put (pages touched lazily)
        self._head = 0
        self._served = 0  # bytes ever written: tells an entry's age
        self._d: OrderedDict = OrderedDict()  # key -> (offset, nbytes, dtype, shape, written)

    @property
    def bytes(self) -> int:
        """Bytes held by live entries."""
        return sum(e[1] for e in self._d.values())

    def __len__(self) -> int:
        return len(self._d)

    def clear(self) -> None:
        self._d.clear()
        self._head = 0

    def get(self, key) -> torch.Tensor | None:
        entry = self._d.get(key)
        if entry is None:
            return None
        offset, n, dtype, shape, written = entry
        raw = self._buf[offset : offset + n]
        value = raw.view(dtype).reshape(shape).clone()
        if self._served - written > self.limit // 2:  # old: move it to the head
            self.put(key, value)
        return value

    def put(self, key, value: torch.Tensor) -> None:
        value = value.detach().to("cpu").contiguous()
        n = value.element_size() * value.nelement()
        size = -(-max(n, 1) // _ALIGN) * _ALIGN
        self._d.pop(key, None)
        if size > self.limit:
            return
        if self._buf is None:
            self._buf = torch.empty(self.limit, dtype=torch.uint8)
        if self._head + size > self.limit:  # wrap: everything after the head is the oldest
            self._evict_before(self.limit)
            self._head = 0
        self._evict_before(self._head + size)
        if n:
            self._buf[self._head : self._head + n] = value.reshape(-1).view(torch.uint8)
        self._d[key] = (self._head, n, value.dtype, tuple(value.shape), self._served)
        self._head += size
        self._served += size

    def _evict_before(self, end: int) -> None:
        """Drop the oldest entries that lie in [head, end)."""
        while self._d:
            key, (offset, *_rest) = next(iter(self._d.items()))
            if not self._head <= offset < end:
                return
            del self._d[key]
