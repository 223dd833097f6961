"""Mergeable running statistics over the units (channels) of a layer.

Every statistic has ``update(batch)``, ``merge(other)`` (shards computed in other processes or
machines combine as one pass would), ``state_dict()`` / ``load_state_dict()`` and
``save(path)`` / ``load(path)`` as ``.npz``.  All work per unit, vectorised across the C units,
on the device of the batches they see.

>>> import torch
>>> from gandissect_widgets.stats import Moments
>>> a, b = Moments(), Moments()
>>> a.update(torch.ones(4, 3, 2, 2)); b.update(torch.zeros(4, 3, 2, 2))
>>> a.merge(b).mean.tolist()
[0.5, 0.5, 0.5]
"""

from __future__ import annotations

import math
import secrets

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Quantile", "TopK", "Moments", "SecondMoment", "IoU"]


def _units_major(x, units: int | None, name: str) -> torch.Tensor:
    """(N, C) or (N, C, *spatial) -> (C, samples); checks C against ``units``."""
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
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def _check_same(kind: str, what: str, mine, theirs) -> None:
    if mine != theirs:
        raise ValueError(f"cannot merge {kind} of {what} {mine} with one of {theirs}")


def _meta(value) -> np.ndarray:
    """Small metadata as a 0-d array (None as -1)."""
    return np.array(-1 if value is None else value)


def _unmeta(array) -> int | None:
    value = int(array)
    return None if value < 0 else value


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


class Moments(_Stat):
    """Per-unit count, mean and variance, merged with Chan's parallel algorithm (float64).

    ``update(x)`` takes (N, C) or (N, C, H, W); each position counts as one sample.

    >>> m = Moments(); m.update(torch.tensor([[1.0], [3.0]]))
    >>> m.mean.tolist(), m.variance.tolist()
    ([2.0], [2.0])
    """

    def __init__(self, units: int | None = None):
        self.units = units
        self.count = 0
        self._mean = self._m2 = None

    def update(self, x) -> None:
        x = _units_major(x, self.units, "Moments").double()
        self.units, n = x.shape[0], x.shape[1]
        if n:
            variance, mean = torch.var_mean(x, dim=1, correction=0)
            self._combine(n, mean, variance * n)

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


class SecondMoment(_Stat):
    """Uncentered second moment E[k k^T] over rows, (C, C) float64.

    ``update(k)`` takes rows (M, C), or (N, C, H, W) where every position is a row.

    >>> s = SecondMoment(); s.update(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    >>> s.moment.tolist()
    [[5.0, 7.0], [7.0, 10.0]]
    """

    def __init__(self, units: int | None = None):
        self.units = units
        self.count = 0
        self._sum = None

    def update(self, k) -> None:
        k = _units_major(k, self.units, "SecondMoment").double()
        self.units = k.shape[0]
        if k.shape[1]:
            self._add(k.shape[1], k @ k.T)

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


class TopK(_Stat):
    """Per-unit k largest values and the ids (e.g. seeds) of the samples that gave them.

    ``update(values, ids)`` takes values (N, C), or (N, C, H, W) reduced by a spatial max, and
    ids (N,) int64.  Ties go to the smaller id, so merged shards equal one pass exactly.

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

    def update(self, values, ids) -> None:
        values = torch.as_tensor(values)
        if values.dim() > 2:
            values = values.flatten(2).amax(dim=2)
        values = _units_major(values, self.units, "TopK").double()
        ids = torch.as_tensor(ids, device=values.device)
        if ids.shape != (values.shape[1],) or ids.is_floating_point():
            raise ValueError(
                f"TopK ids must be an integer tensor of shape ({values.shape[1]},), one per "
                f"sample; got {ids.dtype} {tuple(ids.shape)}"
            )
        self.units = values.shape[0]
        if values.shape[1]:
            self._keep(values, ids.long().expand(values.shape[0], -1), values.shape[1])

    def _keep(self, values: torch.Tensor, ids: torch.Tensor, n: int) -> None:
        if self._values is not None:
            values = torch.cat([self._values.to(values.device), values], dim=1)
            ids = torch.cat([self._ids.to(values.device), ids], dim=1)
        order = ids.argsort(dim=1, stable=True)
        values, ids = values.gather(1, order), ids.gather(1, order)
        order = values.argsort(dim=1, descending=True, stable=True)[:, : self.k]
        self._values, self._ids = values.gather(1, order), ids.gather(1, order)
        self.count += n

    def merge(self, other: TopK) -> TopK:
        """Fold ``other`` into this one; returns self."""
        self._check_merge(other)
        _check_same("TopK", "k", self.k, other.k)
        if other.count:
            self.units = other.units
            self._keep(other._values, other._ids, other.count)
        return self

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(values (C, k'), ids (C, k')) sorted descending, k' = min(k, count); float64, int64."""
        if not self.count:
            raise ValueError("TopK has seen no data yet; call update(values, ids) first")
        return self._values, self._ids

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {"k": _meta(self.k), "units": _meta(self.units), "count": _meta(self.count)}
        if self.count:
            state |= {"values": self._values.cpu().numpy(), "ids": self._ids.cpu().numpy()}
        return state

    def load_state_dict(self, state) -> TopK:
        self.k, self.units = int(state["k"]), _unmeta(state["units"])
        self.count = int(state["count"])
        self._values = torch.from_numpy(np.array(state["values"])) if self.count else None
        self._ids = torch.from_numpy(np.array(state["ids"])) if self.count else None
        return self


_GROWTH = 2 / 3  # KLL: each level below the top holds 2/3 of the one above
_MIN_LEVEL = 8  # smallest level capacity


class Quantile(_Stat):
    """Per-unit streaming quantiles: a mergeable KLL-style compactor sketch.

    Level h holds values standing for 2**h samples each; a level that overflows is sorted and
    every other value (random offset per unit) moves up a level.  Memory is about
    ``3 * capacity`` values per unit plus 8 per level (at most 63 levels for any int64 count),
    whatever the number of samples.  The default capacity keeps the rank error near the 0.99
    quantile well under 0.1% on 10**6 samples, merged or not.  Give shards different seeds (the
    default seed is random).

    ``update(x)`` takes (N, C) or (N, C, H, W); each position counts as one sample.

    >>> q = Quantile(); q.update(torch.arange(1000.0).reshape(-1, 1))
    >>> q.quantile(0.5).tolist()
    [499.5]
    """

    def __init__(self, units: int | None = None, capacity: int = 4096, seed: int | None = None):
        if not isinstance(capacity, int) or capacity < _MIN_LEVEL:
            raise ValueError(
                f"Quantile capacity must be an integer >= {_MIN_LEVEL}; got {capacity!r}"
            )
        self.units, self.capacity, self.count = units, capacity, 0
        self._levels: list[torch.Tensor] = []
        self._min = self._max = None
        self._rng = torch.Generator().manual_seed(secrets.randbits(63) if seed is None else seed)

    # -- building ---------------------------------------------------------------------------
    def update(self, x) -> None:
        x = _units_major(x, self.units, "Quantile")
        if x.shape[1] == 0:
            self.units = x.shape[0]
            return
        if not x.is_floating_point():
            x = x.double()
        if torch.isnan(x).any():
            raise ValueError("Quantile got NaN values; remove them before update")
        dtype = x.dtype if self._dtype() is None else torch.promote_types(self._dtype(), x.dtype)
        self._adopt(x.shape[0], dtype, x.device)
        x = x.to(dtype)
        self._extremes(x.amin(dim=1), x.amax(dim=1))
        n = x.shape[1]
        level = 0
        while (n >> level) > self._level_capacity(level, max(len(self._levels), level + 1)):
            level += 1
        if level == 0:
            self._append(0, x)
        else:  # sample every 2**level-th sorted value directly: like `level` compactions in one
            width, rest = 1 << level, n % (1 << level)
            x = x.sort(dim=1).values
            self._append(0, x[:, n - rest :])
            offset = self._randint(width, x.device)
            self._append(level, x.gather(1, offset + width * self._arange(n // width, x)))
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
            values = self._levels[level].sort(dim=1).values
            odd = values.shape[1] % 2
            self._levels[level] = values[:, values.shape[1] - odd :]
            pairs = values[:, : values.shape[1] - odd]
            offset = self._randint(2, values.device)
            self._append(
                level + 1, pairs.gather(1, offset + 2 * self._arange(pairs.shape[1] // 2, pairs))
            )

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
            "rng": self._rng.get_state().numpy(),
        }
        if self.count:
            state |= {"min": self._min.cpu().numpy(), "max": self._max.cpu().numpy()}
            state |= {f"level{h}": v.cpu().numpy() for h, v in enumerate(self._levels)}
        return state

    def load_state_dict(self, state) -> Quantile:
        self.units, self.capacity = _unmeta(state["units"]), int(state["capacity"])
        self.count = int(state["count"])
        self._rng = torch.Generator()
        self._rng.set_state(torch.from_numpy(np.array(state["rng"])))
        self._min = torch.from_numpy(np.array(state["min"])) if self.count else None
        self._max = torch.from_numpy(np.array(state["max"])) if self.count else None
        depth = sum(1 for key in state if str(key).startswith("level"))
        self._levels = [torch.from_numpy(np.array(state[f"level{h}"])) for h in range(depth)]
        return self


def _round_down(values: torch.Tensor, dtype) -> torch.Tensor:
    """``values`` rounded down to ``dtype``: for x in dtype, ``x > result`` iff ``x > values``."""
    rounded = values.to(dtype)
    too_big = rounded.double() > values.double()
    return torch.where(too_big, torch.nextafter(rounded, rounded.new_tensor(-math.inf)), rounded)


class IoU(_Stat):
    """Counts between "unit activation above its threshold" and each concept of a label map.

    ``update(acts, concepts)``: acts (N, C, h, w) are upsampled bilinearly (align_corners=False)
    to the concept maps' (N, H, W) size, an int64 map of labels in [0, n_concepts).  Accumulates
    int64 counts: ``active`` |A| (C,), ``concept_area`` |C_k| (K,), ``intersection`` (C, K).

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

    def update(self, acts, concepts, chunk_elements: int = 1 << 22) -> None:
        acts = torch.as_tensor(acts)
        concepts = torch.as_tensor(concepts, device=acts.device)
        n, c = self._check(acts, concepts)
        self._to(acts.device)
        size, k = concepts.shape[1:], self.n_concepts
        step = max(1, chunk_elements // max(1, c * size.numel()))
        thresholds = _round_down(self.thresholds.to(acts.device), acts.dtype)
        acts = acts.contiguous(memory_format=torch.channels_last)  # ~5x faster upsampling on CPU
        for i in range(0, n, step):
            up = F.interpolate(acts[i : i + step], size=size, mode="bilinear", align_corners=False)
            # (n, H, W, C) in memory: flat index = pixel * C + unit; few pixels are above
            where = (up.permute(0, 2, 3, 1) > thresholds).reshape(-1).nonzero()[:, 0]
            unit, labels = where % c, concepts[i : i + step].reshape(-1)
            self.active += torch.bincount(unit, minlength=c)
            pairs = torch.bincount(unit * k + labels[where // c], minlength=c * k)
            self.intersection += pairs.view(c, k)
            self.concept_area += torch.bincount(labels, minlength=k)
        self.count += n

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
        return self

    def iou(self) -> torch.Tensor:
        """(C, K) float64 intersection over union; 0 where the union is empty."""
        union = self.active[:, None] + self.concept_area[None, :] - self.intersection
        return torch.where(union > 0, self.intersection / union.clamp_min(1), 0.0).double()

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            "thresholds": self.thresholds.cpu().numpy(),
            "n_concepts": _meta(self.n_concepts),
            "count": _meta(self.count),
            "active": self.active.cpu().numpy(),
            "concept_area": self.concept_area.cpu().numpy(),
            "intersection": self.intersection.cpu().numpy(),
        }

    def load_state_dict(self, state) -> IoU:
        self.thresholds = torch.from_numpy(np.array(state["thresholds"]))
        self.n_concepts, self.count = int(state["n_concepts"]), int(state["count"])
        self.units = self.thresholds.shape[0]
        for name in ("active", "concept_area", "intersection"):
            setattr(self, name, torch.from_numpy(np.array(state[name])))
        return self
