"""Tests for the mergeable running statistics: shards merge to one pass, sketch accuracy, I/O."""

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gandissect_widgets.stats import (
    IoU,
    Moments,
    Quantile,
    SecondMoment,
    TailQuantile,
    TopK,
    merge_tree,
)


def _shards(x, parts=3):
    """Split a batch into uneven shards along N."""
    n = x.shape[0]
    cuts = [0, n // 5, n // 2, n][: parts + 1] if parts == 3 else [0, n // 3, n]
    return [x[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _rank_error(sorted_data: np.ndarray, estimate: np.ndarray, q: float) -> np.ndarray:
    """Distance of q from the interval of ranks the estimate has in each unit's data."""
    n = sorted_data.shape[1]
    errors = []
    for row, value in zip(sorted_data, estimate, strict=True):
        lo = np.searchsorted(row, value, "left") / n
        hi = np.searchsorted(row, value, "right") / n
        errors.append(0.0 if lo <= q <= hi else min(abs(lo - q), abs(hi - q)))
    return np.array(errors)


def _roundtrip(stat, tmp_path):
    path = tmp_path / "stat.npz"
    stat.save(path)
    return type(stat).load(path)


# ---------------------------------------------------------------------------------- Moments
def test_moments_match_torch_and_merge():
    x = torch.randn(12, 5, 3, 4, dtype=torch.float64) * 3 + 2
    flat = x.transpose(0, 1).reshape(5, -1)
    whole = Moments()
    whole.update(x)
    merged = Moments()
    shards = []
    for part in _shards(x):
        shard = Moments()
        shard.update(part)
        shards.append(shard)
    for shard in shards:
        merged.merge(shard)
    for stat in (whole, merged):
        assert stat.count == flat.shape[1]
        torch.testing.assert_close(stat.mean, flat.mean(dim=1))
        torch.testing.assert_close(stat.variance, flat.var(dim=1))
        torch.testing.assert_close(stat.std, flat.std(dim=1))


def test_moments_float32_batches_far_from_zero():
    # mean 10^4, std 1: E[x^2] - mean^2 in float32 would lose every digit of the variance
    x = (torch.randn(16, 4, 8, 8, generator=torch.Generator().manual_seed(0)) + 1e4).float()
    m = Moments()
    for part in _shards(x):
        m.update(part)
    flat = x.transpose(0, 1).reshape(4, -1).double()  # the float32 values, summed in float64
    torch.testing.assert_close(m.mean, flat.mean(dim=1), rtol=1e-10, atol=0)
    torch.testing.assert_close(m.variance, flat.var(dim=1), rtol=1e-6, atol=0)
    naive = (flat.float() ** 2).mean(1) - flat.float().mean(1) ** 2  # what a one-pass sum gives
    assert ((naive.double() - flat.var(dim=1, correction=0)).abs() > 0.1).any()


def test_moments_2d_batches_and_empty_merge():
    x = torch.randn(40, 3)
    m = Moments()
    m.update(x[:25])
    m.update(x[25:])
    m.merge(Moments())
    torch.testing.assert_close(m.mean, x.double().mean(dim=0))
    fresh = Moments().merge(m)
    torch.testing.assert_close(fresh.variance, x.double().var(dim=0))


@pytest.mark.parametrize(
    "shift", [0.0, 2.0, 1e3], ids=["centred", "one-pass limit", "far: summed again"]
)
@pytest.mark.parametrize("layout", ["maps", "channels-last", "rows"])
def test_moments_float32_paths_and_layouts_agree_with_float64(shift, layout):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 6, 9, 7, generator=g) * 0.5 + shift
    x[:, 0] = 0.0  # a dead unit
    x[:, 1] = torch.relu(x[:, 1] - shift)  # sparse, ReLU-like
    flat = x.transpose(0, 1).reshape(6, -1).double()
    batch = {
        "maps": x,
        "channels-last": x.contiguous(memory_format=torch.channels_last),
        "rows": x.permute(0, 2, 3, 1).reshape(-1, 6),
    }[layout]
    m = Moments()
    m.update(batch[:7])
    m.update(batch[7:])
    spread = flat.std(dim=1).clamp_min(1e-12)
    assert ((m.mean - flat.mean(dim=1)).abs() / spread).max() < 1e-6
    torch.testing.assert_close(m.variance, flat.var(dim=1), rtol=2e-6, atol=1e-12)


# ----------------------------------------------------------------------------- SecondMoment
@pytest.mark.parametrize("units", [4, 96])  # 96: the blocked / syrk products
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_second_moment_rows_and_maps_merge(units, dtype):
    x = torch.randn(6, units, 5, 5, dtype=dtype)
    rows = x.transpose(0, 1).reshape(units, -1).T.double()
    whole = SecondMoment()
    whole.update(x)
    merged = SecondMoment()
    for part in _shards(x):
        shard = SecondMoment()
        shard.update(part.permute(0, 2, 3, 1).reshape(-1, units))  # same rows as (M, C)
        merged.merge(shard)
    expected = rows.T @ rows / rows.shape[0]
    # float32 batches are summed in float32 (150 products per entry), float64 ones in float64
    tol = {} if dtype == torch.float64 else {"rtol": 1e-6, "atol": 1e-6}
    for stat in (whole, merged):
        assert stat.count == rows.shape[0]
        assert stat.moment.dtype == torch.float64
        assert torch.equal(stat.moment, stat.moment.T)
        torch.testing.assert_close(stat.moment, expected, **tol)


def test_second_moment_same_bits_on_one_and_two_threads():
    """Large batches are two halves of rows, run side by side on two threads: same bits."""
    x = torch.randn(40, 70, 16, 16)  # 10,240 rows: split
    rows = x.transpose(0, 1).reshape(70, -1).T.double()
    found = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            stat = SecondMoment()
            stat.update(x)
            found.append(stat.moment)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(found[0], found[1])
    assert torch.equal(found[0], found[0].T)
    torch.testing.assert_close(found[0], rows.T @ rows / rows.shape[0], rtol=1e-5, atol=1e-5)


def test_second_moment_of_no_units_counts_rows():
    for batch in (torch.zeros(5, 0), torch.zeros(2, 0, 3, 3)):
        stat = SecondMoment()
        stat.update(batch)
        assert stat.count == batch.shape[0] * (9 if batch.dim() == 4 else 1)
        assert stat.moment.shape == (0, 0)


def test_blas_thread_count_comes_back_after_threads_hammer_second_moment():
    from gandissect_widgets.stats import _openblas

    blas = _openblas()
    if blas is None:
        pytest.skip("numpy's BLAS thread count cannot be read here")
    set_threads, get_threads = blas
    before = get_threads()
    set_threads(2)
    try:
        x = torch.randn(4096, 16)

        def work():
            for _ in range(40):
                SecondMoment().update(x)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert get_threads() == 2
    finally:
        set_threads(before)


# ------------------------------------------------------------------------------------- TopK
def test_topk_values_ids_and_exact_merge():
    values = torch.randn(50, 7, 4, 4)
    ids = torch.arange(1000, 1050)
    whole = TopK(k=5)
    whole.update(values, ids)
    merged = TopK(k=5)
    for v, i in zip(_shards(values), _shards(ids), strict=True):
        shard = TopK(k=5)
        shard.update(v, i)
        merged.merge(shard)
    peak = values.flatten(2).amax(dim=2).double()  # (N, C)
    best, order = peak.sort(dim=0, descending=True)
    expected_values, expected_ids = best[:5].T, ids[order[:5]].T
    for stat in (whole, merged):
        got_values, got_ids = stat.result()
        assert torch.equal(got_values, expected_values)
        assert torch.equal(got_ids, expected_ids)


def test_topk_ties_go_to_smaller_id_in_any_order():
    values = torch.ones(6, 2)
    a, b = TopK(k=3), TopK(k=3)
    a.update(values[:3], torch.tensor([9, 4, 7]))
    b.update(values[3:], torch.tensor([1, 8, 2]))
    assert b.merge(a).result()[1].tolist() == [[1, 2, 4], [1, 2, 4]]


def _topk_reference(values, ids, k):
    """Best k of each unit by (value descending, id ascending), by Python sorting."""
    out_v, out_i = [], []
    for column in values.T.tolist():
        best = sorted(zip(column, ids.tolist()), key=lambda p: (-p[0], p[1]))[:k]
        out_v.append([v for v, _ in best])
        out_i.append([i for _, i in best])
    return torch.tensor(out_v, dtype=torch.float64), torch.tensor(out_i)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("big_ids", [False, True], ids=["ids<2^32", "ids>=2^32"])
def test_topk_packed_and_sorted_paths_match_a_reference(dtype, big_ids):
    g = torch.Generator().manual_seed(3)
    # few distinct values: many ties, and both zeros (-0.0 ties with 0.0)
    values = torch.randint(-3, 4, (3000, 5), generator=g).to(dtype) / 2
    values[values == 0] *= (
        torch.tensor([-1.0, 1.0]).to(dtype).repeat(3000 * 5)[: int((values == 0).sum())]
    )
    ids = torch.randperm(3000, generator=g) + (2**40 if big_ids else 7)
    stat = TopK(k=50)
    for i in range(0, 3000, 100):  # 30 updates: the queue is reduced several times
        stat.update(values[i : i + 100], ids[i : i + 100])
    got_values, got_ids = stat.result()
    want_values, want_ids = _topk_reference(values.double(), ids, 50)
    assert torch.equal(got_ids, want_ids)
    assert torch.equal(got_values, want_values)


def test_topk_nan_ranks_first_once_k_are_kept():
    # past 1024 queued samples the queue is reduced; later ones enter only at or above the
    # k-th best, and NaN, which the packed keys rank above everything, still enters
    values = torch.arange(3000.0).reshape(-1, 1).flip(0)
    values[2500] = float("nan")
    stat = TopK(k=3)
    for i in range(0, 3000, 100):
        stat.update(values[i : i + 100], torch.arange(i, i + 100))
    got_values, got_ids = stat.result()
    assert got_ids.tolist() == [[2500, 0, 1]]
    assert got_values[0, 0].isnan() and got_values[0, 1:].tolist() == [2999.0, 2998.0]


def test_topk_kept_ids_beyond_2_32_are_never_packed():
    big = TopK(k=2)
    big.update(torch.tensor([[5.0], [1.0]]), torch.tensor([2**40, 2**40 + 1]))
    small = TopK(k=2)
    small.update(torch.tensor([[3.0]]), torch.tensor([7]))
    small.merge(big)  # kept: float32 values with ids >= 2**32
    small.update(torch.tensor([[4.0], [0.0]]), torch.tensor([8, 9]))
    assert small.result()[1].tolist() == [[2**40, 8]]


def test_topk_keeps_its_own_copy_of_2d_batches():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    stat = TopK(k=1)
    stat.update(values, torch.tensor([0, 1]))
    values.fill_(100.0)  # the caller reuses its buffer before the queue is reduced
    assert stat.result()[0].tolist() == [[3.0], [4.0]]


def test_topk_fewer_samples_than_k():
    t = TopK(k=10)
    t.update(torch.tensor([[2.0, 1.0], [3.0, 0.0]]), torch.tensor([5, 6]))
    values, ids = t.result()
    assert values.tolist() == [[3.0, 2.0], [1.0, 0.0]]
    assert ids.tolist() == [[6, 5], [5, 6]]


# --------------------------------------------------------------------------------- Quantile
def _distributions(n, units, generator):
    normal = torch.randn(n, units, generator=generator)
    heavy = torch.distributions.Cauchy(0.0, 1.0).sample((n, units))
    relu = torch.relu(torch.randn(n, units, generator=generator) - 0.5).round(decimals=1)
    return {"normal": normal, "heavy-tailed": heavy, "relu-ties": relu}


def test_quantile_rank_error_on_a_million_values():
    torch.manual_seed(0)
    n, units, levels = 10**6, 3, [0.99, 0.5]
    for name, x in _distributions(n, units, torch.Generator().manual_seed(1)).items():
        exact = np.sort(x.T.numpy(), axis=1)
        single = Quantile(seed=0)
        for i in range(0, n, 16384):  # realistic batch sizes: 64 images x 16 x 16
            single.update(x[i : i + 16384])
        shards = [Quantile(seed=s) for s in (1, 2, 3)]
        for j, i in enumerate(range(0, n, 30000)):  # another batching, round-robin shards
            shards[j % 3].update(x[i : i + 30000])
        merged = shards[0].merge(shards[1]).merge(shards[2])
        for stat in (single, merged):
            assert stat.count == n
            estimates = stat.quantile(levels).numpy()
            for column, q in enumerate(levels):
                error = _rank_error(exact, estimates[:, column], q)
                assert error.max() <= 5e-4, (name, q, error)
                assert error.max() <= stat.rank_error(), (name, q)  # within the worst case


def test_quantile_is_exact_and_says_so_until_it_compacts():
    x = torch.randn(1000, 2)
    q = Quantile(seed=0)
    q.update(x)
    assert q.rank_error() == 0.0
    q.update(torch.randn(100_000, 2))
    assert 0 < q.rank_error() < 0.01


def test_quantile_same_seed_and_updates_same_bits():
    x = torch.randn(50_000, 3)
    a, b = Quantile(seed=5), Quantile(seed=5)
    for part in (x[:20_000], x[20_000:]):
        a.update(part)
        b.update(part.clone())
    assert all(torch.equal(u, v) for u, v in zip(a._levels, b._levels, strict=True))
    assert torch.equal(a.quantile([0.5, 0.99]), b.quantile([0.5, 0.99]))


def test_quantile_sorts_its_own_copy():
    x = torch.randn(1, 2, 64, 64)  # (C, samples) is a view of x: must not be sorted in place
    before = x.clone()
    Quantile(capacity=64, seed=0).update(x)
    assert torch.equal(x, before)


def test_quantile_agrees_with_numpy_on_small_data_and_vector_q():
    x = torch.randn(500, 4, 2, 2)
    stat = Quantile()
    stat.update(x)  # 2000 values per unit: below capacity, so exact
    levels = [0.0, 0.1, 0.5, 0.99, 1.0]
    got = stat.quantile(levels)
    expected = np.quantile(x.transpose(0, 1).reshape(4, -1).numpy(), levels, axis=1).T
    assert got.shape == (4, 5)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert stat.quantile(0.5).shape == (4,)


def test_quantile_memory_bounded():
    torch.manual_seed(0)
    stat = Quantile(capacity=256, seed=0)
    sizes = {}
    for step in range(1, 101):
        stat.update(torch.randn(10**4, 2))
        if step in (10, 100):
            sizes[step] = (stat.size, sum(a.nbytes for a in stat.state_dict().values()))
    # 10x the samples: at most a few more minimum-size levels (8 values each), no growth
    assert sizes[100][0] <= 3 * 256 + 8 * 8
    assert sizes[100][0] - sizes[10][0] <= 4 * 8
    assert sizes[100][1] <= sizes[10][1] + 4 * 8 * 2 * 4 + 4 * 200


def test_quantile_merge_promotes_dtype_and_keeps_extremes():
    a, b = Quantile(), Quantile()
    a.update(torch.tensor([[1.0], [2.0]]))
    b.update(torch.tensor([[-5.0], [9.0]], dtype=torch.float64))
    a.merge(b)
    assert a.count == 4
    assert a.quantile([0.0, 1.0]).tolist() == [[-5.0, 9.0]]
    assert a.quantile(0.0).dtype == torch.float64


# ----------------------------------------------------------------------------- TailQuantile
@pytest.mark.parametrize("q", [0.99, 0.5, 0.0, 1.0, 0.995])
def test_tail_quantile_is_numpy_quantile_in_any_shards_and_order(q):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, 6, 7, generator=g).round(decimals=1)  # ties too
    total = 40 * 6 * 7
    expected = np.quantile(x.transpose(0, 1).reshape(3, -1).double().numpy(), q, axis=1)
    whole = TailQuantile(q, total)
    whole.update(x)
    shards = []
    for part in _shards(x):
        shard = TailQuantile(q, total)
        for i in range(0, part.shape[0], 3):
            shard.update(part[i : i + 3])
        shards.append(shard)
    backwards = shards[2].merge(shards[1]).merge(shards[0])
    for stat in (whole, backwards):
        got = stat.quantile()
        assert got.dtype == torch.float32
        assert torch.equal(got, torch.from_numpy(expected).float()), (q, got, expected)
        assert stat.rank_error() == 0.0


def test_tail_quantile_when_one_shard_holds_every_large_value():
    # keeping (1 - q) of each shard's own values would lose the overall tail here
    small, large = torch.zeros(1000, 1), torch.arange(1000.0).reshape(-1, 1) + 10
    a, b = TailQuantile(0.99, 2000), TailQuantile(0.99, 2000)
    a.update(small)
    b.update(large)
    expected = np.quantile(np.concatenate([small.numpy(), large.numpy()])[:, 0], 0.99)
    assert a.keep == 2000 - int(0.99 * 1999) == 21
    assert a.merge(b).quantile().item() == pytest.approx(expected, abs=0)


def test_tail_quantile_counts_and_bad_input(tmp_path):
    t = TailQuantile(0.9, total=20)
    t.update(torch.arange(10.0).reshape(-1, 1))
    with pytest.raises(ValueError, match="has seen 10 of its 20 values"):
        t.quantile()
    with pytest.raises(ValueError, match="expects 20 values per unit; this batch brings 30"):
        t.update(torch.zeros(20, 1))
    eleven = TailQuantile(0.9, 20)
    eleven.update(torch.zeros(11, 1))
    with pytest.raises(ValueError, match="would see 21 values per unit; total is 20"):
        t.merge(eleven)
    with pytest.raises(ValueError, match="NaN"):
        TailQuantile(0.5, 4).update(torch.tensor([[float("nan")], [1.0]]))
    with pytest.raises(ValueError, match="cannot merge TailQuantile of q 0.9 with one of 0.5"):
        t.merge(TailQuantile(0.5, 20))
    t.update(torch.arange(10.0, 20.0).reshape(-1, 1))
    loaded = _roundtrip(t, tmp_path)
    assert torch.equal(loaded.quantile(), t.quantile())
    assert t.quantile().item() == pytest.approx(np.quantile(np.arange(20.0), 0.9))
    assert TailQuantile.nbytes(0.99, 10**6, 512) == 2 * 10_000 * 512 * 4 + 2 * 512 * 4 * 1


def test_merge_tree_order_is_fixed():
    x = torch.randn(9, 2, 40, 40)

    def shards():
        out = []
        for i in range(9):
            s = Quantile(capacity=64, seed=i)
            s.update(x[i : i + 1])
            out.append(s)
        return out

    a, b = merge_tree(shards()), merge_tree(shards())
    assert torch.equal(a.quantile([0.1, 0.9]), b.quantile([0.1, 0.9]))
    assert a.count == 9 * 1600


# -------------------------------------------------------------------------------------- IoU
def _iou_reference(acts, concepts, thresholds, k):
    up = F.interpolate(acts, size=concepts.shape[1:], mode="bilinear", align_corners=False)
    above = up > thresholds[:, None, None]
    onehot = F.one_hot(concepts, k).bool()  # (N, H, W, K)
    inter = (above[..., None] & onehot[:, None]).sum(dim=(0, 2, 3))
    return above.sum(dim=(0, 2, 3)), onehot.sum(dim=(0, 1, 2)), inter


def test_iou_counts_match_brute_force_and_merge_exactly():
    torch.manual_seed(0)
    acts = torch.randn(9, 6, 4, 4)
    concepts = torch.randint(0, 5, (9, 16, 16))
    thresholds = torch.linspace(-0.5, 1.0, 6)
    active, area, inter = _iou_reference(acts, concepts, thresholds, 5)
    whole = IoU(thresholds, n_concepts=5)
    whole.update(acts, concepts, chunk_elements=3000)  # forces several chunks
    merged = IoU(thresholds, n_concepts=5)
    for a, c in zip(_shards(acts), _shards(concepts), strict=True):
        shard = IoU(thresholds, n_concepts=5)
        shard.update(a, c)
        merged.merge(shard)
    for stat in (whole, merged):
        assert torch.equal(stat.active, active)
        assert torch.equal(stat.concept_area, area)
        assert torch.equal(stat.intersection, inter)
        assert stat.intersection.dtype == torch.int64
        union = active[:, None] + area[None] - inter
        torch.testing.assert_close(stat.iou(), (inter / union).double())


def test_iou_float32_acts_compare_exactly_with_float64_thresholds():
    value = torch.tensor(0.1, dtype=torch.float32)  # 0.10000000149... > 0.1
    thresholds = torch.tensor([0.1, value.item(), 0.1000000015], dtype=torch.float64)
    stat = IoU(thresholds, n_concepts=1)
    stat.update(value.expand(1, 3, 1, 1), torch.zeros(1, 1, 1, dtype=torch.int64))
    assert stat.active.tolist() == [1, 0, 0]


def test_iou_is_zero_where_union_is_empty():
    stat = IoU(torch.tensor([10.0]), n_concepts=3)
    stat.update(torch.zeros(1, 1, 2, 2), torch.zeros(1, 4, 4, dtype=torch.int64))
    assert stat.iou().tolist() == [[0.0, 0.0, 0.0]]


# ------------------------------------------------------------------------------ save / load
def _filled():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4)
    stats = [Moments(), SecondMoment(), Quantile(capacity=16, seed=0), TopK(k=4)]
    for stat in stats[:3]:
        stat.update(x)
    stats[3].update(x, torch.arange(8))
    iou = IoU(torch.zeros(3), n_concepts=4)
    iou.update(x, torch.randint(0, 4, (8, 8, 8)))
    return stats + [iou], x


def _readout(stat):
    return {
        Moments: lambda s: (s.mean, s.variance),
        SecondMoment: lambda s: (s.moment,),
        Quantile: lambda s: (s.quantile([0.1, 0.5, 0.9]),),
        TopK: lambda s: s.result(),
        IoU: lambda s: (s.intersection, s.active, s.concept_area),
    }[type(stat)](stat)


@pytest.mark.parametrize("index", range(5))
def test_save_load_round_trip_and_continue(tmp_path, index):
    stats, x = _filled()
    stat = stats[index]
    loaded = _roundtrip(stat, tmp_path)
    assert loaded.count == stat.count and loaded.units == stat.units
    for a, b in zip(_readout(stat), _readout(loaded), strict=True):
        assert torch.equal(a, b)
    # both keep going the same way (the sketch's random state is saved too)
    for s in (stat, loaded):
        if isinstance(s, TopK):
            s.update(x, torch.arange(8, 16))
        elif isinstance(s, IoU):
            s.update(x, torch.ones(8, 8, 8, dtype=torch.int64))
        else:
            s.update(x * 2)
    for a, b in zip(_readout(stat), _readout(loaded), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("cls", [Moments, SecondMoment, Quantile, TopK])
def test_empty_round_trip(tmp_path, cls):
    loaded = _roundtrip(cls(), tmp_path)
    assert loaded.count == 0 and loaded.units is None


def test_load_refuses_other_kind(tmp_path):
    path = tmp_path / "m.npz"
    Moments().save(path)
    with pytest.raises(ValueError, match="holds a Moments, not a TopK"):
        TopK.load(path)


# ------------------------------------------------------------------------------- bad input
def test_merge_mismatches_raise():
    a, b = Quantile(units=64), Quantile(units=128)
    a.update(torch.zeros(2, 64))
    b.update(torch.zeros(2, 128))
    with pytest.raises(ValueError, match="cannot merge Quantile of units 64 with one of 128"):
        a.merge(b)
    with pytest.raises(ValueError, match="capacity"):
        Quantile(capacity=64).merge(Quantile(capacity=128))
    with pytest.raises(ValueError, match="k 3 with one of 4"):
        TopK(k=3).merge(TopK(k=4))
    with pytest.raises(TypeError, match="cannot merge Moments with TopK"):
        Moments().merge(TopK())
    with pytest.raises(ValueError, match="thresholds"):
        IoU(torch.zeros(2), 3).merge(IoU(torch.ones(2), 3))
    with pytest.raises(ValueError, match="n_concepts"):
        IoU(torch.zeros(2), 3).merge(IoU(torch.zeros(2), 4))


@pytest.mark.parametrize("cls", [Moments, SecondMoment, Quantile])
def test_wrong_update_shapes_raise(cls):
    stat = cls()
    with pytest.raises(ValueError, match=r"\(N, C\) or \(N, C, H, W\)"):
        stat.update(torch.zeros(5))
    stat.update(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"3 units.*\(N, 3\)"):
        stat.update(torch.zeros(2, 4))


def test_bad_topk_iou_quantile_inputs_raise():
    with pytest.raises(ValueError, match="ids must be an integer tensor of shape \\(4,\\)"):
        TopK().update(torch.zeros(4, 2), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="positive integer k"):
        TopK(k=0)
    iou = IoU(torch.zeros(2), n_concepts=3)
    with pytest.raises(ValueError, match=r"acts must be \(N, 2, h, w\)"):
        iou.update(torch.zeros(1, 3, 2, 2), torch.zeros(1, 4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        iou.update(torch.zeros(1, 2, 2, 2), torch.full((1, 4, 4), 3))
    with pytest.raises(TypeError, match="integer labels"):
        iou.update(torch.zeros(1, 2, 2, 2), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="no data yet"):
        Quantile().quantile(0.5)
    q = Quantile()
    q.update(torch.zeros(3, 1))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        q.quantile(1.5)
    with pytest.raises(ValueError, match="NaN"):
        q.update(torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="capacity must be an integer"):
        Quantile(capacity=2)
