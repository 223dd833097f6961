"""Mergeable running statistics over the units (channels) of a layer.

Every statistic has ``update(batch)``, ``merge(other)`` (shards computed in other processes or
machines combine as one pass would), ``state_dict()`` / ``load_state_dict()`` and
``save(path)`` / ``load(path)`` as ``.npz``.  All work per unit, vectorised across the C units,
on the device of the batches they see (no host copies on a GPU).

Each update is the bare torch (or, on the CPU, numpy) operation the statistic needs and little
else: one sort per unit for :class:`Quantile` (numpy's vectorised sort on the CPU), one
partition for :class:`TailQuantile`, a spatial max for :class:`TopK` (candidates reduced in
bulk, only those that can still enter), two reads of the batch for :class:`Moments` (its sums
and its sums of squares) and one one-triangle matrix product for :class:`SecondMoment`.
Batches are summed in float32 and batch results combined in float64; float64 input is
computed in float64 throughout.

>>> import torch
>>> from gandissect_widgets.stats import Moments
>>> a, b = Moments(), Moments()
>>> a.update(torch.ones(4, 3, 2, 2)); b.update(torch.zeros(4, 3, 2, 2))
>>> a.merge(b).mean.tolist()
[0.5, 0.5, 0.5]
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import glob
import math
import os
import secrets

import numpy as np
import torch
import torch.nn.functional as F

from .bilinear import pixels_above_in_parts, round_down
from .jobs import one_thread

__all__ = [
    "Quantile",
    "TailQuantile",
    "TopK",
    "Moments",
    "SecondMoment",
    "IoU",
    "merge_tree",
    "upsample",
]

# dtypes numpy sorts and partitions (with its vectorised x86-simd-sort where the CPU has it)
_NUMPY = {torch.float16, torch.float32, torch.float64, torch.int16, torch.int32, torch.int64}


def _check_batch(x, units: int | None, name: str) -> torch.Tensor:
    """``x`` as a tensor of shape (N, C) or (N, C, *spatial); checks C against ``units``."""
    x = torch.as_tensor(x)
    if x.dim() < 2:
        raise ValueError(
            f"{name} expects a batch of shape (N, C) or (N, C, H, W); got {tuple(x.shape)}"
        )
    if units is not None and x.shape[1] != units:
        raise ValueError(
            f"{name} has {units} units, so a batch must be (N, {units}) or (N, {units}, H, W); "
            f"got {tuple(x.shape)}"
        )
    return x


def _units_major(x, units: int | None, name: str) -> torch.Tensor:
    """(N, C) or (N, C, *spatial) -> (C, samples); checks C against ``units``."""
    x = _check_batch(x, units, name)
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def _owned(rows: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``rows`` as a tensor that shares no memory with ``source`` (safe to sort in place)."""
    if rows.untyped_storage().data_ptr() == source.untyped_storage().data_ptr():
        return rows.clone()
    return rows


def _on_numpy(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype in _NUMPY and not x.requires_grad


def _sort_rows_(x: torch.Tensor) -> torch.Tensor:
    """Sort each row of ``x`` (C, n), in place where it can; ``x`` must be owned by the caller.

    On the CPU numpy's sort is used: about 20x torch's there (AVX-512 / AVX2 sorting networks).
    """
    if _on_numpy(x):
        x = x.contiguous()
        x.numpy().sort(axis=1)
        return x
    return x.sort(dim=1).values


def _top_rows(x: torch.Tensor, m: int) -> torch.Tensor:
    """The ``m`` largest values of each row of ``x`` (C, n), in no particular order."""
    n = x.shape[1]
    if m >= n:
        return x
    if _on_numpy(x):
        return torch.from_numpy(np.partition(x.numpy(), n - m, axis=1)[:, n - m :].copy())
    return x.topk(m, dim=1, sorted=False).values


def _check_same(kind: str, what: str, mine, theirs) -> None:
    if mine != theirs:
        raise ValueError(f"cannot merge {kind} of {what} {mine} with one of {theirs}")


def _meta(value) -> np.ndarray:
    """Small metadata as a 0-d array (None as -1)."""
    return np.array(-1 if value is None else value)


def _unmeta(array) -> int | None:
    value = int(array)
    return None if value < 0 else value


def merge_tree(parts: list):
    """Merge statistics pairwise in a fixed tree order: ((0 1) (2 3)) ((4 5) ...).

    The order depends only on the number of parts, so the same shards give the same bits
    wherever they were computed.  Merges into the left operand of each pair; returns the root.
    """
    if not parts:
        raise ValueError("merge_tree needs at least one statistic")
    parts = list(parts)
    while len(parts) > 1:
        pairs = [parts[i].merge(parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        parts = pairs + (parts[-1:] if len(parts) % 2 else [])
    return parts[0]


class _Stat:
    """Common base: save/load through ``state_dict`` and merge argument checks."""

    def state_dict(self) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def load_state_dict(self, state) -> _Stat:  # pragma: no cover - abstract
        raise NotImplementedError

    def save(self, path) -> None:
        """Write the state to an ``.npz`` file (no pickles)."""
        np.savez(path, kind=np.array(type(self).__name__), **self.state_dict())

    @classmethod
    def load(cls, path):
        """Read a statistic written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as f:
            state = {key: f[key] for key in f.files}
        kind = str(state.pop("kind", cls.__name__))
        if kind != cls.__name__:
            raise ValueError(f"{path} holds a {kind}, not a {cls.__name__}")
        return cls.__new__(cls).load_state_dict(state)

    def _check_merge(self, other) -> None:
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(self).__name__} with {type(other).__name__}")
        mine, theirs = getattr(self, "units", None), getattr(other, "units", None)
        if mine is not None and theirs is not None:
            _check_same(type(self).__name__, "units", mine, theirs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(units={self.units}, count={self.count})"


def _sum_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 for float64 input, float32 for everything else."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


_BLOCK = 256  # rows summed together before float64 takes over (column-wise sums)
_CONDITION = 4.0  # one pass when every unit's sum of squares is at most this x its centred one


def _row_squares(rows: torch.Tensor) -> torch.Tensor:
    """Each row's sum of squares, float32 (float64) partial sums, no copy of ``rows``: numpy's
    ``einsum`` on the CPU (one read, exact products), a squared ``vector_norm`` elsewhere."""
    if _on_numpy(rows) and rows.is_contiguous():
        a = rows.numpy()
        return torch.from_numpy(np.einsum("ij,ij->i", a, a)).double()
    return torch.linalg.vector_norm(rows, dim=1).double().square()


def _unit_sums(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-unit (sum, sum of squares) of x (N, C, *spatial), float64, from float32 partial sums
    (float64 for float64 input) of at most a few thousand values each: one sum and one sum of
    squares over an NCHW batch as it lies in memory, no temporary copy of it."""
    c = x.shape[1]
    if x.dim() == 2 or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)):
        rows = x if x.dim() == 2 else x.permute(0, 2, 3, 1).reshape(-1, c)  # (M, C): a view
        m = rows.shape[0] - rows.shape[0] % _BLOCK
        parts = [rows[:m].view(-1, _BLOCK, c), rows[m:].unsqueeze(0)] if m else [rows[None]]
        parts = [p for p in parts if p.numel()]
        s1 = sum(p.sum(1).double().sum(0) for p in parts)
        s2 = sum((p * p).sum(1).double().sum(0) for p in parts)
        return s1, s2
    rows = x.reshape(x.shape[0] * c, -1)  # (N C, H W): a view of an NCHW batch
    s1 = rows.sum(1).double().view(-1, c).sum(0)
    return s1, _row_squares(rows).view(-1, c).sum(0)


class Moments(_Stat):
    """Per-unit count, mean and variance, merged with Chan's parallel algorithm.

    ``update(x)`` takes (N, C) or (N, C, H, W); each position counts as one sample.  A batch is
    read once for its sums and once for its sums of squares (float32 partial sums of each map,
    float64 for float64 input, combined in float64), which gives the variance to about 1e-6
    of itself while each unit's mean is small beside its spread (sum of squares at most 4x the
    centred one, as in ReLU features).  Otherwise the batch is summed again about those means
    (shifted sums), so batches far from zero keep full accuracy.  Batches and shards combine in
    float64.

    >>> m = Moments(); m.update(torch.tensor([[1.0], [3.0]]))
    >>> m.mean.tolist(), m.variance.tolist()
    ([2.0], [2.0])
    """

    def __init__(self, units: int | None = None):
        self.units = units
        self.count = 0
        self._mean = self._m2 = None

    def update(self, x) -> None:
        x = _check_batch(x, self.units, "Moments")
        self.units = x.shape[1]
        n = x.numel() // max(1, x.shape[1])
        if not n:
            return
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        s1, s2 = _unit_sums(x)
        mean = s1 / n
        m2 = s2 - s1 * mean
        if not bool((s2 <= _CONDITION * m2).all()):
            # mean far from zero beside the spread: sum the deviations from this first mean,
            # which hold the digits the squares above lost
            shift = mean.to(x.dtype)
            view = (-1,) + (1,) * (x.dim() - 2)
            d1, d2 = _unit_sums(x - shift.view(view))
            mean = shift.double() + d1 / n
            m2 = d2 - d1 * (d1 / n)
        self._combine(n, mean, m2.clamp_min(0))

    def _combine(self, n: int, mean: torch.Tensor, m2: torch.Tensor) -> None:
        if self._mean is None:
            self.count, self._mean, self._m2 = n, mean.clone(), m2.clone()
            return
        self._mean, self._m2 = self._mean.to(mean.device), self._m2.to(mean.device)
        total = self.count + n
        delta = mean - self._mean
        self._mean = self._mean + delta * (n / total)
        self._m2 = self._m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def merge(self, other: Moments) -> Moments:
        """Fold ``other`` into this one; returns self."""
        self._check_merge(other)
        if other.count:
            self.units = other.units
            device = other._mean.device if self._mean is None else self._mean.device
            self._combine(other.count, other._mean.to(device), other._m2.to(device))
        return self

    @property
    def mean(self) -> torch.Tensor:
        """(C,) float64 per-unit mean."""
        self._require_data()
        return self._mean

    @property
    def variance(self) -> torch.Tensor:
        """(C,) float64 unbiased variance (divides by count - 1, like ``torch.var``)."""
        self._require_data()
        return (
            self._m2 / (self.count - 1) if self.count > 1 else torch.full_like(self._m2, math.nan)
        )

    @property
    def std(self) -> torch.Tensor:
        """(C,) float64 unbiased standard deviation."""
        return self.variance.sqrt()

    def _require_data(self) -> None:
        if not self.count:
            raise ValueError("Moments has seen no data yet; call update(x) first")

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {"units": _meta(self.units), "count": _meta(self.count)}
        if self.count:
            state |= {"mean": self._mean.cpu().numpy(), "m2": self._m2.cpu().numpy()}
        return state

    def load_state_dict(self, state) -> Moments:
        self.units, self.count = _unmeta(state["units"]), int(state["count"])
        self._mean = torch.from_numpy(np.array(state["mean"])) if self.count else None
        self._m2 = torch.from_numpy(np.array(state["m2"])) if self.count else None
        return self


@functools.cache
def _one_blas_thread():
    """A context manager running numpy's bundled OpenBLAS on one thread (restoring its count
    once the last overlapping block ends), or None where that BLAS cannot be found."""
    blas = _openblas()
    return None if blas is None else one_thread(blas[1], blas[0])


@functools.cache
def _openblas():
    """(set_num_threads, get_num_threads) of numpy's bundled OpenBLAS, or None elsewhere."""
    for path in sorted(glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*"))):
        if "openblas" not in os.path.basename(path):
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_{}_num_threads64_", "openblas_{}_num_threads"):
            setter = getattr(lib, name.format("set"), None)
            getter = getattr(lib, name.format("get"), None)
            if setter is not None and getter is not None:
                setter.argtypes, getter.restype = [ctypes.c_int], ctypes.c_int
                return setter, getter
    return None


def _gram(parts: list[torch.Tensor]) -> torch.Tensor:
    """``u @ u.T`` summed over ``parts``, each (C, ...) (flattened to (C, M_i)), exactly
    symmetric.

    On the CPU, numpy's ``a @ a.T`` runs BLAS ``syrk`` (one triangle: half the products of a
    general matrix product) with OpenBLAS on one thread: its own threads spin while they wait
    for each other, and beside other work a 2-thread product took up to 14x its 1-thread time.
    With two or more torch threads the parts run side by side, each on one thread that also
    makes its part's units-major copy (numpy: no torch thread pool spinning after it); the sum
    is in the parts' order, so the bits are the same on any number of threads.  Elsewhere, and
    where numpy's BLAS threads cannot be set, torch computes the blocks on and above the
    diagonal (about 5/8 of the products for C >= 64) and mirrors them.
    """
    c = parts[0].shape[0]
    on_numpy = all(_on_numpy(p) for p in parts) and parts[0].dtype in (torch.float32, torch.float64)
    one_blas_thread = _one_blas_thread() if on_numpy else None
    if one_blas_thread is not None:

        def one(part: torch.Tensor) -> np.ndarray:
            a = part.numpy()  # (C, M) views of rows go to BLAS as they are
            a = a if a.ndim == 2 else np.ascontiguousarray(a).reshape(c, -1)
            return a @ a.T

        with one_blas_thread():
            if len(parts) > 1 and torch.get_num_threads() > 1:
                grams = list(_side_by_side().map(one, parts))
            else:
                grams = [one(p) for p in parts]
        return torch.from_numpy(functools.reduce(np.add, grams))
    return functools.reduce(torch.add, [_blocked_gram(p.reshape(c, -1)) for p in parts])


def _blocked_gram(u: torch.Tensor) -> torch.Tensor:
    """``u @ u.T`` from the blocks on and above the diagonal, mirrored."""
    c = u.shape[0]
    if c < 64:
        return u @ u.T
    step = -(-c // 4)
    out = u.new_empty(c, c)
    for i in range(0, c, step):
        block = u[i : i + step] @ u[i:].T
        out[i : i + step, i:] = block
        out[i + step :, i : i + step] = block[:, step:].T
    return out


_SPLIT_GRAM = 4096  # rows from which a Gram matrix is summed from two halves


@functools.lru_cache(maxsize=1)
def _side_by_side() -> concurrent.futures.ThreadPoolExecutor:
    """Two threads for the two halves of a Gram matrix (numpy and BLAS release the GIL)."""
    return concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="gw-gram")


class SecondMoment(_Stat):
    """Uncentered second moment E[k k^T] over rows, (C, C) float64.

    ``update(k)`` takes rows (M, C), or (N, C, H, W) where every position is a row.  Each batch
    is one float32 matrix product (float64 for float64 input; BLAS ``syrk`` on the CPU: only one
    triangle) summed into a float64 total.

    >>> s = SecondMoment(); s.update(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    >>> s.moment.tolist()
    [[5.0, 7.0], [7.0, 10.0]]
    """

    def __init__(self, units: int | None = None):
        self.units = units
        self.count = 0
        self._sum = None

    def update(self, k) -> None:
        k = _check_batch(k, self.units, "SecondMoment")
        self.units = k.shape[1]
        if k.dim() == 4 and k.is_contiguous(memory_format=torch.channels_last):
            k = k.permute(0, 2, 3, 1).reshape(-1, k.shape[1])  # rows (M, C): a view
        # rows: halves of u = k.T (views); maps (N, C, ...): halves of the samples, each given
        # units-major (a view; its copy is made where its product runs)
        k = k.to(_sum_dtype(k))
        rows = k.shape[0] * math.prod(k.shape[2:])
        cut = k.shape[0] // 2 if rows >= _SPLIT_GRAM else k.shape[0]
        parts = [p.transpose(0, 1) for p in (k[:cut], k[cut:]) if p.shape[0]]
        if rows:
            units = k.shape[1]
            total = _gram(parts) if units else k.new_zeros(0, 0)
            self._add(rows, total.double())

    def _add(self, n: int, total: torch.Tensor) -> None:
        self._sum = total.clone() if self._sum is None else self._sum.to(total.device) + total
        self.count += n

    def merge(self, other: SecondMoment) -> SecondMoment:
        """Fold ``other`` into this one; returns self."""
        self._check_merge(other)
        if other.count:
            self.units = other.units
            device = other._sum.device if self._sum is None else self._sum.device
            self._add(other.count, other._sum.to(device))
        return self

    @property
    def moment(self) -> torch.Tensor:
        """(C, C) float64: the sum of k k^T over rows divided by ``count``."""
        if not self.count:
            raise ValueError("SecondMoment has seen no data yet; call update(k) first")
        return self._sum / self.count

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {"units": _meta(self.units), "count": _meta(self.count)}
        if self.count:
            state["sum"] = self._sum.cpu().numpy()
        return state

    def load_state_dict(self, state) -> SecondMoment:
        self.units, self.count = _unmeta(state["units"]), int(state["count"])
        self._sum = torch.from_numpy(np.array(state["sum"])) if self.count else None
        return self


_ID_LIMIT = 1 << 32  # ids below this (and not negative) take the packed-key path


def _flip(bits: torch.Tensor) -> torch.Tensor:
    """float32 bits (as int32) <-> int32 keys that order like the floats (an involution)."""
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


def _packable(values: torch.Tensor, ids: torch.Tensor) -> bool:
    return values.dtype == torch.float32 and bool(ids.min() >= 0) and bool(ids.max() < _ID_LIMIT)


def _pack(values: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """int64 keys that order like (value, then smaller id): float32 ``values``, ``ids`` in
    [0, 2**32) (broadcast against ``values``)."""
    bits = _flip((values + 0.0).view(torch.int32))  # + 0.0: -0.0 ties with 0.0
    return (bits.long() << 32) | (_ID_LIMIT - 1 - ids)


def _unpack(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ids = (_ID_LIMIT - 1) - (keys & (_ID_LIMIT - 1))
    return _flip((keys >> 32).int()).view(torch.float32), ids


def _best(values: torch.Tensor, ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best entries of each row, best first: larger value, then smaller id.

    float32 values with ids in [0, 2**32) are packed into one int64 key per entry (the value's
    order-preserving bits above, the complemented id below), so one ``topk`` with no ties does
    it; anything else takes two stable sorts.  Both give the same answer.
    """
    k = min(k, values.shape[1])
    if _packable(values, ids):
        return _unpack(_pack(values, ids).topk(k, dim=1).values)
    order = ids.argsort(dim=1, stable=True)
    values, ids = values.gather(1, order), ids.gather(1, order)
    order = values.argsort(dim=1, descending=True, stable=True)[:, :k]
    return values.gather(1, order), ids.gather(1, order)


class TopK(_Stat):
    """Per-unit k largest values and the ids (e.g. seeds) of the samples that gave them.

    ``update(values, ids)`` takes values (N, C), or (N, C, H, W) reduced by a spatial max, and
    ids (N,) int64.  Ties go to the smaller id, so merged shards equal one pass exactly.
    Updates only take the spatial max and queue the batch; the queue is reduced to the k best
    in bulk (one ``topk`` over packed keys) when it grows past ``max(4 k, 1024)`` samples.

    >>> t = TopK(k=2); t.update(torch.tensor([[1.0], [5.0], [3.0]]), torch.tensor([7, 8, 9]))
    >>> [v.tolist() for v in t.result()]
    [[[5.0, 3.0]], [[8, 9]]]
    """

    def __init__(self, k: int = 64, units: int | None = None):
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"TopK needs a positive integer k; got {k!r}")
        self.k, self.units = k, units
        self.count = 0
        self._values = self._ids = None
        self._queue: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._queued = 0

    def update(self, values, ids) -> None:
        values = torch.as_tensor(values)
        fresh = values.dim() > 2
        if fresh:
            values = values.flatten(2).amax(dim=2)
        values = _check_batch(values, self.units, "TopK")
        if values.dtype not in (torch.float32, torch.float64):
            values, fresh = (
                values.double() if not values.is_floating_point() else values.float(),
                True,
            )
        ids = torch.as_tensor(ids, device=values.device)
        if ids.shape != (values.shape[0],) or ids.is_floating_point() or ids.dtype == torch.bool:
            raise ValueError(
                f"TopK ids must be an integer tensor of shape ({values.shape[0]},), one per "
                f"sample; got {ids.dtype} {tuple(ids.shape)}"
            )
        self.units = values.shape[1]
        if not values.shape[0]:
            return
        # the queue keeps copies: the caller may reuse its tensors
        self._queue.append((values if fresh else values.clone(), ids.to(torch.int64, copy=True)))
        self._queued += values.shape[0]
        self.count += values.shape[0]
        if self._queued >= max(4 * self.k, 1024):
            self._reduce()

    def _reduce(self) -> None:
        """Fold the queued batches into the k best."""
        if not self._queue:
            return
        values = torch.cat([v for v, _ in self._queue])  # (B, C)
        ids = torch.cat([i for _, i in self._queue])  # (B,)
        self._queue, self._queued = [], 0
        kept = self._values is None or _packable(self._values, self._ids)
        if kept and _packable(values, ids):
            self._values, self._ids = self._best_packed(values, ids)
            return
        self._keep(values.T, ids.expand(values.shape[1], -1))

    def _best_packed(self, values: torch.Tensor, ids: torch.Tensor):
        """The k best of the kept entries and float32 ``values`` (B, C) of samples ``ids``
        (B,) in [0, 2**32), by one ``topk`` over packed keys.  Once k are kept, only values at
        or above a unit's k-th best can enter (NaN ranks above all): just those are packed,
        beside the kept keys, so a reduction costs a comparison over the queue and little more.
        """
        c, device = values.shape[1], values.device
        if self._values is None:
            keys = _pack(values, ids[:, None]).T
        elif self._values.shape[1] < self.k:
            kept = _pack(self._values, self._ids).to(device)
            keys = torch.cat([kept, _pack(values, ids[:, None]).T], dim=1)
        else:
            kept = _pack(self._values, self._ids).to(device)
            floor = self._values[:, -1].to(device)
            rows, cols = ((values >= floor) | values.isnan()).nonzero(as_tuple=True)
            if not cols.numel():
                return self._values, self._ids
            order = cols.argsort(stable=True)  # by unit, rows (samples) in order within each
            rows, cols = rows[order], cols[order]
            counts = torch.bincount(cols, minlength=c)
            slot = torch.arange(cols.numel(), device=device) - (counts.cumsum(0) - counts)[cols]
            keys = kept.new_full((c, self.k + int(counts.max())), torch.iinfo(torch.int64).min)
            keys[:, : self.k] = kept
            keys[cols, self.k + slot] = _pack(values[rows, cols], ids[rows])
        return _unpack(keys.contiguous().topk(min(self.k, keys.shape[1]), dim=1).values)

    def _keep(self, values: torch.Tensor, ids: torch.Tensor) -> None:
        if self._values is not None:
            values = torch.cat([self._values.to(values.device), values], dim=1)
            ids = torch.cat([self._ids.to(values.device), ids], dim=1)
        self._values, self._ids = _best(values.contiguous(), ids.contiguous(), self.k)

    def merge(self, other: TopK) -> TopK:
        """Fold ``other`` into this one; returns self."""
        self._check_merge(other)
        _check_same("TopK", "k", self.k, other.k)
        if other.count:
            self.units = other.units
            self._reduce()
            other._reduce()
            self._keep(other._values, other._ids)
            self.count += other.count
        return self

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(values (C, k'), ids (C, k')) sorted descending, k' = min(k, count); float64, int64."""
        if not self.count:
            raise ValueError("TopK has seen no data yet; call update(values, ids) first")
        self._reduce()
        return self._values.double(), self._ids

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {"k": _meta(self.k), "units": _meta(self.units), "count": _meta(self.count)}
        if self.count:
            self._reduce()
            state |= {"values": self._values.cpu().numpy(), "ids": self._ids.cpu().numpy()}
        return state

    def load_state_dict(self, state) -> TopK:
        self.k, self.units = int(state["k"]), _unmeta(state["units"])
        self.count = int(state["count"])
        self._values = torch.from_numpy(np.array(state["values"])) if self.count else None
        self._ids = torch.from_numpy(np.array(state["ids"])) if self.count else None
        self._queue, self._queued = [], 0
        return self


_GROWTH = 2 / 3  # KLL: each level below the top holds 2/3 of the one above
_MIN_LEVEL = 8  # smallest level capacity


class Quantile(_Stat):
    """Per-unit streaming quantiles: a mergeable KLL-style compactor sketch.

    Level h holds values standing for 2**h samples each; a level that overflows is sorted and
    every other value (random offset per unit) moves up a level.  Memory is about
    ``3 * capacity`` values per unit plus 8 per level (at most 63 levels for any int64 count),
    whatever the number of samples.  The default capacity keeps the rank error near the 0.99
    quantile under 0.05% on 10**6 samples, merged or not.  Give shards different seeds (the
    default seed is random); a sketch is a deterministic function of its seed and its updates.

    The sketch counts the worst case its compactions allow: :meth:`rank_error` (0 while it
    holds every value, when :meth:`quantile` is exact).

    ``update(x)`` takes (N, C) or (N, C, H, W); each position counts as one sample.

    >>> q = Quantile(); q.update(torch.arange(1000.0).reshape(-1, 1))
    >>> q.quantile(0.5).tolist(), q.rank_error()
    ([499.5], 0.0)
    """

    def __init__(self, units: int | None = None, capacity: int = 4096, seed: int | None = None):
        if not isinstance(capacity, int) or capacity < _MIN_LEVEL:
            raise ValueError(
                f"Quantile capacity must be an integer >= {_MIN_LEVEL}; got {capacity!r}"
            )
        self.units, self.capacity, self.count = units, capacity, 0
        self._levels: list[torch.Tensor] = []
        self._min = self._max = None
        self._error = 0  # sum over compactions of their worst-case rank error, in samples
        self._rng = torch.Generator().manual_seed(secrets.randbits(63) if seed is None else seed)

    # -- building ---------------------------------------------------------------------------
    def update(self, x) -> None:
        x = _check_batch(x, self.units, "Quantile")
        rows = x.transpose(0, 1).reshape(x.shape[1], -1)
        if rows.shape[1] == 0:
            self.units = rows.shape[0]
            return
        if not rows.is_floating_point():
            rows = rows.double()
        dtype = (
            rows.dtype if self._dtype() is None else torch.promote_types(self._dtype(), rows.dtype)
        )
        n = rows.shape[1]
        level = 0
        while (n >> level) > self._level_capacity(level, max(len(self._levels), level + 1)):
            level += 1
        if level == 0:
            if torch.isnan(rows).any():
                raise ValueError("Quantile got NaN values; remove them before update")
            self._adopt(rows.shape[0], dtype, rows.device)
            self._extremes(rows.amin(dim=1), rows.amax(dim=1))
            self._append(0, rows)
        else:  # sample every 2**level-th sorted value directly: like `level` compactions in one
            rows = _sort_rows_(_owned(rows.to(dtype), x))
            if torch.isnan(rows[:, -1]).any():  # NaN sorts last
                raise ValueError("Quantile got NaN values; remove them before update")
            self._adopt(rows.shape[0], dtype, rows.device)
            self._extremes(rows[:, 0].clone(), rows[:, -1].clone())
            width, rest = 1 << level, n % (1 << level)
            self._append(0, rows[:, n - rest :])
            offset = self._randint(width, rows.device)
            self._append(level, rows.gather(1, offset + width * self._arange(n // width, rows)))
            self._error += width - 1  # taking every width-th sorted value: rank off by < width
        self.count += n
        self._compress()

    def merge(self, other: Quantile) -> Quantile:
        """Fold ``other`` into this one; returns self."""
        self._check_merge(other)
        _check_same("Quantile", "capacity", self.capacity, other.capacity)
        if not other.count:
            return self
        dtype = other._levels[0].dtype if self._dtype() is None else self._dtype()
        device = other._levels[0].device if self._dtype() is None else self._levels[0].device
        self._adopt(other.units, torch.promote_types(dtype, other._levels[0].dtype), device)
        self._extremes(other._min, other._max)
        for level, values in enumerate(other._levels):
            self._append(level, values)
        self.count += other.count
        self._error += other._error
        self._compress()
        return self

    def _dtype(self):
        return self._levels[0].dtype if self._levels else None

    def _adopt(self, units: int, dtype, device) -> None:
        """Set units; move the state to ``dtype`` and ``device``."""
        self.units = units
        self._levels = [v.to(device, dtype) for v in self._levels]
        if self._min is not None:
            self._min, self._max = self._min.to(device, dtype), self._max.to(device, dtype)

    def _extremes(self, low: torch.Tensor, high: torch.Tensor) -> None:
        if self._min is None:
            self._min, self._max = low, high
        else:
            dtype, device = self._min.dtype, self._min.device
            self._min = torch.minimum(self._min, low.to(device, dtype))
            self._max = torch.maximum(self._max, high.to(device, dtype))

    def _append(self, level: int, values: torch.Tensor) -> None:
        dtype, device = self._min.dtype, self._min.device
        while len(self._levels) <= level:
            self._levels.append(torch.empty(self.units, 0, dtype=dtype, device=device))
        self._levels[level] = torch.cat([self._levels[level], values.to(device, dtype)], dim=1)

    def _level_capacity(self, level: int, depth: int) -> int:
        return max(_MIN_LEVEL, int(self.capacity * _GROWTH ** (depth - 1 - level)))

    def _compress(self) -> None:
        """Compact the lowest overfull level until every level fits."""
        while True:
            depth = len(self._levels)
            full = [
                h for h, v in enumerate(self._levels) if v.shape[1] > self._level_capacity(h, depth)
            ]
            if not full:
                return
            level = full[0]
            values = _sort_rows_(self._levels[level])  # levels are the sketch's own tensors
            odd = values.shape[1] % 2
            self._levels[level] = values[:, values.shape[1] - odd :].clone()
            pairs = values[:, : values.shape[1] - odd]
            offset = self._randint(2, values.device)
            self._append(
                level + 1, pairs.gather(1, offset + 2 * self._arange(pairs.shape[1] // 2, pairs))
            )
            self._error += (
                1 << level
            )  # one of each sorted pair, weight doubled: rank off by <= 2**h

    def _randint(self, high: int, device) -> torch.Tensor:
        return torch.randint(0, high, (self.units, 1), generator=self._rng).to(device)

    @staticmethod
    def _arange(n: int, like: torch.Tensor) -> torch.Tensor:
        return torch.arange(n, device=like.device).expand(like.shape[0], -1)

    # -- reading ----------------------------------------------------------------------------
    def quantile(self, q) -> torch.Tensor:
        """Per-unit quantiles: (C,) for a scalar q, (C, len(q)) for a sequence; q in [0, 1].

        Interpolates linearly between the sketch's values like ``numpy.quantile``.
        """
        if not self.count:
            raise ValueError("Quantile has seen no data yet; call update(x) first")
        scalar = torch.as_tensor(q).dim() == 0
        q = torch.as_tensor(q, dtype=torch.float64).reshape(-1).to(self._min.device)
        if q.numel() == 0 or torch.isnan(q).any() or q.min() < 0 or q.max() > 1:
            raise ValueError(f"quantile levels must lie in [0, 1]; got {q.tolist()}")
        values, positions = self._sorted_with_positions()
        q = q.expand(values.shape[0], -1).contiguous()
        hi = torch.searchsorted(positions, q).clamp(1, positions.shape[1] - 1)
        lo = hi - 1
        p_lo, p_hi = positions.gather(1, lo), positions.gather(1, hi)
        v_lo, v_hi = values.gather(1, lo).double(), values.gather(1, hi).double()
        t = ((q - p_lo) / (p_hi - p_lo).clamp_min(1e-300)).clamp(0, 1)
        result = (v_lo + t * (v_hi - v_lo)).to(values.dtype)
        return result[:, 0] if scalar else result

    def rank_error(self) -> float:
        """Worst-case rank error of :meth:`quantile`, as a share of ``count``.

        Every compaction of a sorted level h shifts any rank by at most 2**h (a batch sampled
        at stride w: by less than w); the bound sums them over updates and merges and adds half
        the heaviest value's weight for the interpolation.  0 while every value is held.  The
        offsets are random, so typical errors are far smaller (they add like a random walk).
        """
        if not self.count:
            raise ValueError("Quantile has seen no data yet; call update(x) first")
        if not self._error:
            return 0.0
        return (self._error + 2 ** (len(self._levels) - 1) / 2) / self.count

    def _sorted_with_positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Values sorted per unit with exact min and max at the ends, and their ranks in [0, 1]."""
        device = self._min.device
        weights = torch.cat(
            [
                torch.full((v.shape[1],), 2.0**h, dtype=torch.float64)
                for h, v in enumerate(self._levels)
            ]
        ).to(device)
        values, order = torch.cat(self._levels, dim=1).sort(dim=1)
        weights = weights[order]
        # 0-based middle rank of the samples each value stands for, over count - 1: for unit
        # weights this is numpy's linear interpolation exactly
        ranks = (weights.cumsum(dim=1) - (weights + 1) / 2) / max(self.count - 1, 1)
        ends = torch.ones(values.shape[0], 1, dtype=torch.float64, device=device)
        values = torch.cat([self._min[:, None], values, self._max[:, None]], dim=1)
        return values, torch.cat([ends * 0, ranks, ends], dim=1)

    @property
    def size(self) -> int:
        """Values held per unit (the memory bound's measure)."""
        return sum(v.shape[1] for v in self._levels)

    # -- persistence ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        state = {
            "units": _meta(self.units),
            "capacity": _meta(self.capacity),
            "count": _meta(self.count),
            "error": _meta(self._error),
            "rng": self._rng.get_state().numpy(),
        }
        if self.count:
            state |= {"min": self._min.cpu().numpy(), "max": self._max.cpu().numpy()}
            state |= {f"level{h}": v.cpu().numpy() for h, v in enumerate(self._levels)}
        return state

    def load_state_dict(self, state) -> Quantile:
        self.units, self.capacity = _unmeta(state["units"]), int(state["capacity"])
        self.count = int(state["count"])
        # files from before the bound was kept: unknown, so no claim of exactness
        self._error = int(state["error"]) if "error" in state else (self.count or 0)
        self._rng = torch.Generator()
        self._rng.set_state(torch.from_numpy(np.array(state["rng"])))
        self._min = torch.from_numpy(np.array(state["min"])) if self.count else None
        self._max = torch.from_numpy(np.array(state["max"])) if self.count else None
        depth = sum(1 for key in state if str(key).startswith("level"))
        self._levels = [torch.from_numpy(np.array(state[f"level{h}"])) for h in range(depth)]
        return self


class TailQuantile(_Stat):
    """Exact per-unit quantile at one level ``q`` over a known number ``total`` of values per
    unit, from each unit's largest values only.

    ``numpy.quantile`` (linear) at q reads the sorted values at rank ``floor(q (total - 1))``
    and the next, so only the ``keep = total - floor(q (total - 1))`` largest values matter:
    updates keep at most that many per unit (a partition per batch, numpy's on the CPU) and
    merges keep the largest ``keep`` of both, which is exact in any order.  Every shard keeps
    up to ``keep`` values, not (1 - q) of its own count: one shard may hold all the largest.
    Memory: :meth:`nbytes`.  ``update(x)`` takes (N, C) or (N, C, H, W) like :class:`Quantile`.

    >>> t = TailQuantile(0.9, total=101); t.update(torch.arange(101.0).reshape(-1, 1))
    >>> t.keep, t.quantile().tolist()
    (11, [90.0])
    """

    def __init__(self, q: float, total: int, units: int | None = None):
        q = float(q)
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"TailQuantile needs q in [0, 1]; got {q!r}")
        if not isinstance(total, int) or total < 1:
            raise ValueError(f"TailQuantile needs a positive integer total; got {total!r}")
        self.q, self.total, self.units, self.count = q, total, units, 0
        self._held: list[torch.Tensor] = []
        self._size = 0

    @property
    def keep(self) -> int:
        """Values kept per unit."""
        return self.total - math.floor(self.q * (self.total - 1))

    @staticmethod
    def nbytes(q: float, total: int, units: int, itemsize: int = 4) -> int:
        """Peak memory: the kept values plus as many waiting to be reduced."""
        return 2 * (total - math.floor(float(q) * (total - 1))) * units * itemsize

    def update(self, x) -> None:
        x = _check_batch(x, self.units, "TailQuantile")
        self.units = x.shape[1]
        rows = x.transpose(0, 1).reshape(x.shape[1], -1)
        if not rows.is_floating_point():
            rows = rows.double()
        n = rows.shape[1]
        if self.count + n > self.total:
            raise ValueError(
                f"TailQuantile expects {self.total} values per unit; this batch brings "
                f"{self.count + n}"
            )
        top = _top_rows(rows, self.keep)
        if torch.isnan(top).any():  # NaN counts as the largest, so it would be kept
            raise ValueError("TailQuantile got NaN values; remove them before update")
        self._hold(_owned(top, x) if top is rows else top, n)

    def _hold(self, values: torch.Tensor, n: int) -> None:
        self._held.append(values)
        self._size += values.shape[1]
        self.count += n
        if self._size > 2 * self.keep:
            self._reduce()

    def _reduce(self) -> None:
        if len(self._held) > 1 or self._size > self.keep:
            device = self._held[0].device
            top = _top_rows(torch.cat([v.to(device) for v in self._held], dim=1), self.keep)
            self._held, self._size = [top], top.shape[1]

    def merge(self, other: TailQuantile) -> TailQuantile:
        """Fold ``other`` into this one; returns self."""
        self._check_merge(other)
        _check_same("TailQuantile", "q", self.q, other.q)
        _check_same("TailQuantile", "total", self.total, other.total)
        if self.count + other.count > self.total:
            raise ValueError(
                f"TailQuantile merge would see {self.count + other.count} values per unit; "
                f"total is {self.total}"
            )
        if other.count:
            self.units = other.units
            for values in other._held:  # never changed in place: safe to share
                self._hold(values, 0)
            self.count += other.count
        return self

    def quantile(self) -> torch.Tensor:
        """(C,) the exact q-quantile of each unit (``numpy.quantile``, linear interpolation)."""
        if self.count != self.total:
            raise ValueError(
                f"TailQuantile has seen {self.count} of its {self.total} values per unit"
            )
        self._reduce()
        tail = _sort_rows_(self._held[0].clone())  # the keep largest, ascending
        position = self.q * (self.total - 1)
        frac = position - math.floor(position)
        low, high = tail[:, 0].double(), tail[:, min(1, tail.shape[1] - 1)].double()
        return torch.lerp(low, high, frac).to(tail.dtype)

    def rank_error(self) -> float:
        """0: the quantile is exact."""
        return 0.0

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {
            "q": np.array(self.q),
            "total": _meta(self.total),
            "units": _meta(self.units),
            "count": _meta(self.count),
        }
        if self.count:
            self._reduce()
            state["values"] = self._held[0].cpu().numpy()
        return state

    def load_state_dict(self, state) -> TailQuantile:
        self.q, self.total = float(state["q"]), int(state["total"])
        self.units, self.count = _unmeta(state["units"]), int(state["count"])
        self._held = [torch.from_numpy(np.array(state["values"]))] if self.count else []
        self._size = self._held[0].shape[1] if self._held else 0
        return self


def upsample(acts: torch.Tensor, size) -> torch.Tensor:
    """Activation maps (N, C, h, w) upsampled bilinearly (align_corners=False) to ``size``, the
    concept maps' (H, W), as ``threshold_on="upsampled"`` takes their quantile (IoU counts
    compare the same values in float64, without making them).  Computed channels-last (about
    5x faster on the CPU; the values equal the default layout's at integer scale factors and
    may differ in the last bit elsewhere); the result is channels-last too."""
    acts = acts.contiguous(memory_format=torch.channels_last)
    return F.interpolate(acts, size=tuple(size), mode="bilinear", align_corners=False)


class IoU(_Stat):
    """Counts between "unit activation above its threshold" and each concept of a label map.

    ``update(acts, concepts)``: acts (N, C, h, w) are upsampled bilinearly (align_corners=False)
    to the concept maps' (N, H, W) size, an int64 map of labels in [0, n_concepts).  Accumulates
    int64 counts: ``active`` |A| (C,), ``concept_area`` |C_k| (K,), ``intersection`` (C, K).
    A pixel is active when its upsampled value, computed in float64, is above its unit's
    threshold; only the pixels that can be are computed (:mod:`~gandissect_widgets.bilinear`).

    >>> s = IoU(torch.zeros(1), n_concepts=2)
    >>> s.update(torch.tensor([[[[1.0, -1.0]]]]), torch.tensor([[[1, 0]]]))
    >>> s.iou().tolist()
    [[0.0, 1.0]]
    """

    def __init__(self, thresholds, n_concepts: int):
        thresholds = torch.as_tensor(thresholds, dtype=torch.float64)
        if thresholds.dim() != 1:
            raise ValueError(
                f"IoU thresholds must be (C,), one per unit; got {tuple(thresholds.shape)}"
            )
        if not isinstance(n_concepts, int) or n_concepts < 1:
            raise ValueError(f"IoU needs a positive integer n_concepts; got {n_concepts!r}")
        self.thresholds, self.n_concepts = thresholds, n_concepts
        self.units, self.count = thresholds.shape[0], 0
        self.active = torch.zeros(self.units, dtype=torch.int64)
        self.concept_area = torch.zeros(n_concepts, dtype=torch.int64)
        self.intersection = torch.zeros(self.units, n_concepts, dtype=torch.int64)
        self.image_level = False  # counts of images (update_presence), not of pixels

    def update(self, acts, concepts, chunk_elements: int = 1 << 24) -> None:
        acts = torch.as_tensor(acts)
        concepts = torch.as_tensor(concepts, device=acts.device)
        n, c = self._check(acts, concepts)
        self._to(acts.device)
        size, k = concepts.shape[1:], self.n_concepts
        step = max(1, chunk_elements // max(1, c * size.numel()))
        thresholds = self.thresholds.to(acts.device)
        for i in range(0, n, step):
            labels = concepts[i : i + step].flatten(1)
            for sample, unit, pixel in pixels_above_in_parts(acts[i : i + step], size, thresholds):
                self.active += torch.bincount(unit, minlength=c)
                pairs = torch.bincount(unit * k + labels[sample, pixel], minlength=c * k)
                self.intersection += pairs.view(c, k)
            self.concept_area += torch.bincount(labels.reshape(-1), minlength=k)
        self.count += n

    def update_presence(self, acts, present) -> None:
        """Image-level counts for a vector layer: ``acts`` (N, C) or (N, C, 1, 1), one value per
        unit and image, against ``present`` (N, K) bool, the concepts each image contains.

        >>> s = IoU(torch.zeros(2), n_concepts=2)
        >>> acts = torch.tensor([[1.0, -1.0], [-1.0, -1.0]])
        >>> s.update_presence(acts, torch.tensor([[True, False], [False, True]]))
        >>> s.iou().tolist()
        [[1.0, 0.0], [0.0, 0.0]]
        """
        acts = torch.as_tensor(acts)
        acts = acts.reshape(acts.shape[0], -1) if acts.dim() == 4 else acts
        present = torch.as_tensor(present, device=acts.device)
        if acts.dim() != 2 or acts.shape[1] != self.units:
            raise ValueError(f"IoU acts must be (N, {self.units}); got {tuple(acts.shape)}")
        if present.shape != (acts.shape[0], self.n_concepts) or present.dtype != torch.bool:
            raise ValueError(
                f"IoU presence must be bool (N={acts.shape[0]}, {self.n_concepts}); "
                f"got {present.dtype} {tuple(present.shape)}"
            )
        self._to(acts.device)
        above = (acts > round_down(self.thresholds.to(acts.device), acts.dtype)).long()
        self.active += above.sum(0)
        self.concept_area += present.long().sum(0)
        self.intersection += above.T @ present.long()
        self.count += acts.shape[0]
        self.image_level = True

    def _check(self, acts: torch.Tensor, concepts: torch.Tensor) -> tuple[int, int]:
        if acts.dim() != 4 or acts.shape[1] != self.units:
            raise ValueError(f"IoU acts must be (N, {self.units}, h, w); got {tuple(acts.shape)}")
        if concepts.dim() != 3 or concepts.shape[0] != acts.shape[0]:
            raise ValueError(
                f"IoU concepts must be label maps (N={acts.shape[0]}, H, W); "
                f"got {tuple(concepts.shape)}"
            )
        if concepts.is_floating_point() or concepts.dtype == torch.bool:
            raise TypeError(f"IoU concepts must be integer labels; got {concepts.dtype}")
        if concepts.numel() and (concepts.min() < 0 or concepts.max() >= self.n_concepts):
            raise ValueError(
                f"IoU concept labels must lie in [0, {self.n_concepts}); "
                f"got [{int(concepts.min())}, {int(concepts.max())}]"
            )
        if not acts.is_floating_point():
            raise TypeError(f"IoU acts must be floating point; got {acts.dtype}")
        return acts.shape[0], acts.shape[1]

    def _to(self, device) -> None:
        self.active = self.active.to(device)
        self.concept_area = self.concept_area.to(device)
        self.intersection = self.intersection.to(device)

    def merge(self, other: IoU) -> IoU:
        """Fold ``other`` into this one; returns self."""
        self._check_merge(other)
        _check_same("IoU", "n_concepts", self.n_concepts, other.n_concepts)
        if not torch.equal(self.thresholds, other.thresholds.to(self.thresholds.device)):
            raise ValueError("cannot merge IoU counts made with different thresholds")
        device = self.active.device
        self.active += other.active.to(device)
        self.concept_area += other.concept_area.to(device)
        self.intersection += other.intersection.to(device)
        self.count += other.count
        self.image_level = self.image_level or other.image_level
        return self

    def iou(self) -> torch.Tensor:
        """(C, K) float64 intersection over union; 0 where the union is empty.

        Image-level counts give the IoU above chance instead, ``(iou - chance) / (1 - chance)``
        (at least 0), where chance is the IoU of as many images drawn at random: a concept in
        nearly every image otherwise matches every unit.
        """
        union = self.active[:, None] + self.concept_area[None, :] - self.intersection
        iou = torch.where(union > 0, self.intersection / union.clamp_min(1), 0.0).double()
        if not self.image_level or not self.count:
            return iou
        a, c = self.active[:, None].double(), self.concept_area[None, :].double()
        inter = a * c / self.count
        chance = torch.where(a + c - inter > 0, inter / (a + c - inter).clamp_min(1e-12), 0.0)
        return ((iou - chance) / (1 - chance).clamp_min(1e-12)).clamp_min(0.0)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            "thresholds": self.thresholds.cpu().numpy(),
            "n_concepts": _meta(self.n_concepts),
            "count": _meta(self.count),
            "active": self.active.cpu().numpy(),
            "concept_area": self.concept_area.cpu().numpy(),
            "intersection": self.intersection.cpu().numpy(),
            "image_level": _meta(int(self.image_level)),
        }

    def load_state_dict(self, state) -> IoU:
        self.thresholds = torch.from_numpy(np.array(state["thresholds"]))
        self.n_concepts, self.count = int(state["n_concepts"]), int(state["count"])
        self.units = self.thresholds.shape[0]
        self.image_level = bool(int(state["image_level"])) if "image_level" in state else False
        for name in ("active", "concept_area", "intersection"):
            setattr(self, name, torch.from_numpy(np.array(state[name])))
        return self
