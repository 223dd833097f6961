"""Where bilinearly upsampled maps exceed a threshold, without upsampling them.

Dissection asks, for every unit, which pixels of its map upsampled to the concept maps' size
lie above the unit's threshold; only about 1% do. An upsampled pixel is a convex combination
of the four map values around it (its *cell*), so a cell whose four corners are all at or below
the threshold has no pixel above it. :func:`pixels_above` finds the cells with a corner above
the threshold, then the output rows of those cells whose two ends can exceed it, and computes
only the pixels of those rows, in float64: a pixel counts when its bilinear value, as
``F.interpolate(acts.double(), size, mode="bilinear", align_corners=False)`` gives it, is above
the threshold, at a fraction of the work. At power-of-two scale factors (and the same size)
every weight and product is exact in float64, so a pixel exactly at its threshold falls as in
the float64 upsampling; in general the two may round a value within one float64 step of the
threshold differently.

>>> import torch, torch.nn.functional as F
>>> acts = torch.randn(2, 3, 4, 4)
>>> t = torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64)
>>> sample, unit, pixel = pixels_above(acts, (16, 16), t)
>>> up = F.interpolate(acts.double(), (16, 16), mode="bilinear", align_corners=False)
>>> bool(len(unit) == (up > t[:, None, None]).sum())
True
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = ["pixels_above", "pixels_above_in_parts", "round_down"]


@functools.lru_cache(maxsize=64)
def _axis(n_in: int, n_out: int):
    """One axis of the upsampling, as torch computes it for align_corners=False.

    Output positions are grouped by the input cell they interpolate in (a cell's run split
    into chunks of at most S, the interior run length): returns ``groups`` (n_in, K) the
    groups of each cell (-1: none), ``position`` (G, S) the output index of each slot (-1:
    padding), ``w0``, ``w1`` (G, S) float64 weights of the cell's first and second value.
    """
    out = torch.arange(n_out, dtype=torch.float64)
    real = out if n_in == n_out else ((n_in / n_out) * (out + 0.5) - 0.5).clamp_min(0)
    cell = real.long().clamp_max(n_in - 1)
    w1 = (real - cell).clamp(0, 1)
    runs = torch.bincount(cell, minlength=n_in)
    size = max(1, math.ceil(float(runs[runs > 0].double().median()))) if n_out > n_in else 1
    first = torch.cat([torch.tensor([True]), cell[1:] != cell[:-1]])
    index = torch.arange(n_out)
    offset = index - torch.cummax(torch.where(first, index, 0), 0).values
    group = torch.cumsum((first | (offset % size == 0)).long(), 0) - 1
    slot, count = offset % size, int(group[-1]) + 1
    position = torch.full((count, size), -1, dtype=torch.long)
    position[group, slot] = index
    weight1 = torch.zeros(count, size, dtype=torch.float64)
    weight1[group, slot] = w1
    weight0 = torch.where(position >= 0, 1 - weight1, 0.0)
    of_group = torch.zeros(count, dtype=torch.long)
    of_group[group] = cell
    per_cell = torch.bincount(of_group, minlength=n_in)
    groups = torch.full((n_in, int(per_cell.max())), -1, dtype=torch.long)
    start = torch.cumsum(per_cell, 0) - per_cell
    groups[of_group, torch.arange(count) - start[of_group]] = torch.arange(count)
    return groups, position, weight0, weight1


def pixels_above(acts: torch.Tensor, size, thresholds: torch.Tensor):
    """Pixels of ``acts`` (N, C, h, w) upsampled bilinearly (align_corners=False) to ``size``
    (H, W) that lie above ``thresholds`` (C,) float64, computed in float64.

    Returns int64 tensors ``(sample, unit, pixel)``, one entry per pixel above its unit's
    threshold; ``pixel`` indexes the flattened (H, W) map.
    """
    parts = list(pixels_above_in_parts(acts, size, thresholds))
    return tuple(torch.cat(found) for found in zip(*parts))


def pixels_above_in_parts(acts: torch.Tensor, size, thresholds: torch.Tensor, cells: int = 1 << 16):
    """:func:`pixels_above` as parts of at most ``cells`` candidate cells each, so that its
    memory stays bounded when most pixels are above their thresholds."""
    n, c, h, w = acts.shape
    H, W = (int(s) for s in size)
    device = acts.device
    work = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    axes = [tuple(t.to(device) for t in _axis(h, H)), tuple(t.to(device) for t in _axis(w, W))]
    x = acts.contiguous()
    corners = x.clone()  # each cell's largest corner: the maximum over (i, i+1) x (j, j+1)
    torch.maximum(x[:, :, :-1], x[:, :, 1:], out=corners[:, :, :-1])
    rows_max = corners.clone()
    torch.maximum(rows_max[..., :-1], rows_max[..., 1:], out=corners[..., :-1])
    t = thresholds.to(device=device, dtype=work)
    floor = t if t.dtype == x.dtype else round_down(t, x.dtype)  # corners > floor iff > t
    hot = (corners > floor[:, None, None]).reshape(-1).nonzero()[:, 0]  # flat (n, u, i, j)
    del corners, rows_max
    for start in range(0, len(hot), cells):
        yield _cell_pixels(x, hot[start : start + cells], t, axes, work, W)
    if not len(hot):
        empty = torch.zeros(0, dtype=torch.long, device=device)
        yield empty, empty, empty


def _cell_pixels(x, cell, t, axes, work, W):
    """(sample, unit, pixel) above ``t`` among the output pixels of cells ``cell`` (flat) of
    maps ``x``, upsampled to width ``W``."""
    n, c, h, w = x.shape
    (rows, row_at, row_w0, row_w1), (cols, col_at, col_w0, col_w1) = axes
    j, rest = cell % w, cell // w
    i, rest = rest % h, rest // h
    unit, sample = rest % c, rest // c
    flat = x.reshape(-1)
    dj, di = (j < w - 1).long(), (i < h - 1).long() * w
    v00, v01 = flat[cell].to(work), flat[cell + dj].to(work)
    v10, v11 = flat[cell + di].to(work), flat[cell + di + dj].to(work)
    # every output row of those cells: its two ends, interpolated along the column axis
    a, k = (rows[i] >= 0).nonzero().unbind(1)
    g = rows[i][a, k]
    h0, h1 = row_w0[g].to(work), row_w1[g].to(work)
    left = h0 * v00[a, None] + h1 * v10[a, None]
    right_end = h0 * v01[a, None] + h1 * v11[a, None]
    limit = t[unit[a]][:, None]
    b, r = ((torch.maximum(left, right_end) > limit) & (row_at[g] >= 0)).nonzero().unbind(1)
    cell_of = a[b]
    left, right_end, out_row, limit = left[b, r], right_end[b, r], row_at[g[b], r], limit[b, 0]
    # the pixels of the rows that can exceed the threshold
    e, k = (cols[j[cell_of]] >= 0).nonzero().unbind(1)
    gc = cols[j[cell_of]][e, k]
    value = left[e, None] * col_w0[gc].to(work) + right_end[e, None] * col_w1[gc].to(work)
    f, q = ((value > limit[e, None]) & (col_at[gc] >= 0)).nonzero().unbind(1)
    row, at = e[f], cell_of[e[f]]
    return sample[at], unit[at], out_row[row] * W + col_at[gc[f], q]


def round_down(values: torch.Tensor, dtype) -> torch.Tensor:
    """``values`` rounded down to ``dtype``: for x in dtype, ``x > result`` iff ``x > values``."""
    rounded = values.to(dtype)
    too_big = rounded.double() > values.double()
    return torch.where(too_big, torch.nextafter(rounded, rounded.new_tensor(-math.inf)), rounded)
