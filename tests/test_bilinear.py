"""pixels_above: the same pixels as upsampling everything in float64 and comparing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from gandissect_widgets.bilinear import pixels_above, pixels_above_in_parts
from gandissect_widgets.stats import IoU


def _reference(acts, size, thresholds):
    """Sorted (sample, unit, pixel) of every upsampled value above its unit's threshold."""
    up = F.interpolate(acts.double(), size=size, mode="bilinear", align_corners=False)
    sample, unit, row, col = (up > thresholds[:, None, None]).nonzero().unbind(1)
    return sorted(zip(sample.tolist(), unit.tolist(), (row * size[1] + col).tolist()))


def _found(acts, size, thresholds):
    return sorted(zip(*(t.tolist() for t in pixels_above(acts, size, thresholds))))


@pytest.mark.parametrize(
    "shape, size",
    [
        ((9, 6, 4, 4), (16, 16)),  # integer scale
        ((3, 8, 16, 16), (64, 64)),
        ((2, 16, 8, 8), (64, 64)),
        ((3, 5, 7, 7), (64, 64)),  # non-integer scale: uneven runs
        ((3, 5, 13, 11), (50, 37)),  # different scales per axis
        ((2, 4, 32, 32), (16, 16)),  # downsampling
        ((2, 4, 8, 8), (8, 8)),  # same size
        ((2, 3, 1, 5), (4, 20)),  # a single row
    ],
)
def test_same_pixels_as_upsampling_in_float64(shape, size):
    torch.manual_seed(0)
    acts = torch.randn(shape)
    thresholds = torch.linspace(-0.5, 2.0, shape[1], dtype=torch.float64)
    found = _found(acts, size, thresholds)
    assert found == _reference(acts, size, thresholds)
    assert found  # the thresholds leave pixels above them


# maps (n, c, h, w) and the seed of their values, for the hypothesis tests below
_MAPS = {
    "n": st.integers(1, 3),
    "c": st.integers(1, 4),
    "h": st.integers(1, 9),
    "w": st.integers(1, 9),
    "seed": st.integers(0, 2**16),
}


@settings(max_examples=60, deadline=None)
@given(**_MAPS, H=st.integers(1, 40), W=st.integers(1, 40))
def test_any_sizes(n, c, h, w, H, W, seed):
    g = torch.Generator().manual_seed(seed)
    acts = torch.randn(n, c, h, w, generator=g)
    thresholds = torch.rand(c, generator=g, dtype=torch.float64) * 1.5 - 0.2
    assert _found(acts, (H, W), thresholds) == _reference(acts, (H, W), thresholds)


@settings(max_examples=60, deadline=None)
@given(**_MAPS, up=st.tuples(st.integers(0, 3), st.integers(0, 3)))
def test_ties_at_power_of_two_scales(n, c, h, w, up, seed):
    """Values and thresholds on a 0.1 grid: many pixels exactly at a threshold. At power-of-two
    scales every weight and product is exact in float64, so ties fall the same way."""
    g = torch.Generator().manual_seed(seed)
    acts = torch.randn(n, c, h, w, generator=g).relu().round(decimals=1)
    thresholds = (torch.rand(c, generator=g, dtype=torch.float64) * 1.5 - 0.2).round(decimals=1)
    size = (h << up[0], w << up[1])
    assert _found(acts, size, thresholds) == _reference(acts, size, thresholds)


def test_values_one_float32_step_above_the_threshold_count():
    """Compared in float64 against float64 thresholds: no rounding to the maps' dtype."""
    value = torch.tensor(0.1, dtype=torch.float32)  # 0.10000000149... > 0.1
    thresholds = torch.tensor([0.1, value.item()], dtype=torch.float64)
    sample, unit, pixel = pixels_above(value.expand(1, 2, 2, 2), (4, 4), thresholds)
    assert unit.tolist() == [0] * 16


def test_iou_counts_agree_with_the_dense_float64_count():
    torch.manual_seed(1)
    acts, concepts = torch.randn(6, 12, 8, 8), torch.randint(0, 7, (6, 32, 32))
    thresholds = torch.linspace(0.3, 1.8, 12, dtype=torch.float64)
    stat = IoU(thresholds, n_concepts=7)
    stat.update(acts, concepts, chunk_elements=5000)  # several chunks
    up = F.interpolate(acts.double(), size=(32, 32), mode="bilinear", align_corners=False)
    above = up > thresholds[:, None, None]
    onehot = F.one_hot(concepts, 7).bool()
    assert torch.equal(stat.active, above.sum(dim=(0, 2, 3)))
    assert torch.equal(stat.intersection, (above[..., None] & onehot[:, None]).sum(dim=(0, 2, 3)))


def test_parts_bound_the_cells_and_add_up_to_the_whole():
    """Most pixels above their thresholds: many small parts, the same pixels in all."""
    torch.manual_seed(2)
    acts = torch.randn(2, 3, 5, 6)
    thresholds = torch.full((3,), -10.0, dtype=torch.float64)  # every pixel is above
    parts = list(pixels_above_in_parts(acts, (20, 24), thresholds, cells=7))
    assert len(parts) == -(-2 * 3 * 5 * 6 // 7)
    found = sorted(zip(*(torch.cat(p).tolist() for p in zip(*parts))))
    assert found == _reference(acts, (20, 24), thresholds)
    assert len(found) == 2 * 3 * 20 * 24
