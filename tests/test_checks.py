"""Bad inputs for gandissect_widgets.checks: each is refused with the exact exception type
(TypeError for a wrong type, ValueError for a wrong value) and a message that names the argument,
shows the value and says what is valid."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gandissect_widgets import checks

nan, inf = math.nan, math.inf


def refused(exc, call, *fragments, value=None, shows=True):
    """Run ``call``; it must raise exactly ``exc`` whose message holds every fragment and,
    when ``shows``, the start of ``repr(value)``."""
    with pytest.raises(exc) as info:
        call()
    assert type(info.value) is exc, f"{type(info.value).__name__}: {info.value}"
    msg = str(info.value)
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    if shows:
        assert "; got " in msg and " ".join(repr(value).split())[:12] in " ".join(msg.split()), msg
    assert len(msg) < 400 and "\n" not in msg, msg
    return msg


# Not one real number: TypeError everywhere a number is expected.
NOT_NUMBERS = [
    True,
    False,
    np.bool_(True),
    "0.5",
    "",
    "nan",
    b"1",
    None,
    1 + 2j,
    np.complex64(1),
    np.complex128(0.5j),
    torch.tensor(1 + 1j),
    torch.tensor(True),
    np.array(True),
    np.array("a"),
    np.array(1 + 0j),
    np.datetime64("2020-01-01"),
    Decimal("0.5"),
    object(),
    {},
    {"a": 1},
    slice(1),
    math.sqrt,
]
ARRAYS = [  # more than one number, or none: "a single number"
    np.array([0.1, 0.2]),
    np.zeros((2, 2)),
    np.array([]),
    np.ones((3, 1)),
    torch.zeros(3),
    torch.zeros(0),
    torch.ones(2, 2, dtype=torch.int64),
    torch.randn(50, 50),
]
NON_FINITE = [
    nan,
    inf,
    -inf,
    np.float32(nan),
    np.float64(inf),
    np.float16(-inf),
    np.array(nan),
    torch.tensor(nan),
    torch.tensor(inf, dtype=torch.float16),
    torch.tensor(-inf, dtype=torch.bfloat16),
    10**400,
    -(10**400),
    Fraction(10**400, 3),
]
NOT_INTEGERS = [3.0, 0.5, -1.0, np.float32(3), np.float64(1), torch.tensor(3.0), np.array(2.0)]
NOT_INTEGERS += [Fraction(3, 1), nan, inf]

REAL_CHECKS = {  # name -> (call, the words that say what is valid)
    "number": (lambda v: checks.number(v, "scale"), "scale must be a finite number"),
    "bounded": (
        lambda v: checks.number(v, "gain", 0, 10, hi_open=True),
        "gain must be a number in [0, 10)",
    ),
    "fraction": (lambda v: checks.fraction(v, "strength"), "strength must be a number in [0, 1]"),
    "learning_rate": (checks.learning_rate, "lr must be a number in (0, 10]"),
    "quantile": (checks.quantile, "quantile must be a number in (0, 1)"),
    "unit_value": (
        lambda v: checks.unit_value(v, 4),
        "value must be 'mean', 'high', a finite number",
    ),
}
INT_CHECKS = {
    "seed": (checks.seed, "seed must be a non-negative integer below 2**63"),
    "count": (lambda v: checks.count(v, "batch_size"), "batch_size must be a positive integer"),
    "unit": (lambda v: checks.units(v, 8), "unit must be an integer index from 0 to 7"),
    "seeds": (checks.seeds, "seeds must be a non-negative integer below 2**63"),
}


def _pairs(table, values, skip=lambda name, value: False):
    return [(name, v) for name in sorted(table) for v in values if not skip(name, v)]


def _word_or_vector(name, value):  # unit_value reads these as "mean"/"high" or one per unit
    return name == "unit_value" and (isinstance(value, str) or getattr(value, "ndim", 0) > 0)


@pytest.mark.parametrize(
    ("name", "value"), _pairs(REAL_CHECKS, NOT_NUMBERS + ARRAYS, _word_or_vector)
)
def test_reals_refuse_wrong_types(name, value):
    call, valid = REAL_CHECKS[name]
    msg = refused(TypeError, lambda: call(value), valid, value=value)
    if any(value is a for a in ARRAYS):
        assert f"(a single number, not an array of shape {tuple(value.shape)})" in msg


@pytest.mark.parametrize("name", sorted(REAL_CHECKS))
@pytest.mark.parametrize("value", NON_FINITE)
def test_reals_refuse_nan_and_inf(name, value):
    call, valid = REAL_CHECKS[name]
    refused(ValueError, lambda: call(value), valid, value=value)


def _iterable(name, value):  # seeds and units take these as collections
    return name in ("seeds", "unit") and isinstance(value, (str, bytes, dict))


@pytest.mark.parametrize(
    ("name", "value"), _pairs(INT_CHECKS, NOT_NUMBERS + NOT_INTEGERS + ARRAYS[-2:], _iterable)
)
def test_integers_refuse_wrong_types(name, value):
    call, valid = INT_CHECKS[name]
    if name in ("seeds", "unit") and getattr(value, "ndim", 0) > 1:
        valid = f"must be a {'seed' if name == 'seeds' else 'unit index'} or a list"
    refused(TypeError, lambda: call(value), valid, value=value)


@pytest.mark.parametrize(
    ("call", "value", "valid"),
    [
        (lambda v: checks.fraction(v, "strength"), v, "strength must be a number in [0, 1]")
        for v in [-0.1, 1.0001, 2, -1, np.float32(1.5), torch.tensor(-0.5), np.array(7), -1e-300]
    ]
    + [
        (checks.learning_rate, v, "lr must be a number in (0, 10]")
        for v in [0, 0.0, -1e-3, 1e30, 10.000001, np.float32(11), torch.tensor(0.0), np.int64(-2)]
    ]
    + [
        (checks.quantile, v, "quantile must be a number in (0, 1)")
        for v in [0, 1, 1.0, -0.5, 1.5, np.float64(1.0), torch.tensor(0, dtype=torch.uint8)]
    ]
    + [(lambda v: checks.number(v, "x", lo=2), v, "x must be a number >= 2") for v in [1.99, -5]]
    + [
        (lambda v: checks.number(v, "x", lo=2, lo_open=True), v, "x must be a number > 2")
        for v in [2, 1]
    ]
    + [(lambda v: checks.number(v, "x", hi=0.5), v, "x must be a number <= 0.5") for v in [0.51, 9]]
    + [
        (lambda v: checks.number(v, "x", hi=-1, hi_open=True), v, "x must be a number < -1")
        for v in [-1, 0]
    ]
    + [
        (lambda v: checks.number(v, "x", 1e-3, 1e3), v, "x must be a number in [0.001, 1000]")
        for v in [0, 1e4]
    ]
    + [
        (checks.seed, v, "seed must be a non-negative integer below 2**63")
        for v in [-1, 2**63, 2**64, -(2**70), np.uint64(2**63), np.int8(-3), torch.tensor(-1)]
    ]
    + [
        (lambda v: checks.count(v, "batch_size"), v, "batch_size must be a positive integer")
        for v in [0, -1, np.int64(0), np.uint8(0), torch.tensor(-4), np.array(0), -(2**80)]
    ],
)
def test_out_of_range(call, value, valid):
    refused(ValueError, lambda: call(value), valid, value=value)


def test_messages_from_the_brief():
    assert refused(ValueError, lambda: checks.fraction(nan, "strength"), value=nan) == (
        "strength must be a number in [0, 1]; got nan"
    )
    assert refused(ValueError, lambda: checks.count(0, "batch_size"), value=0) == (
        "batch_size must be a positive integer; got 0"
    )
    assert "(0, 10]" in refused(ValueError, lambda: checks.learning_rate(1e30), value=1e30)
    msg = refused(ValueError, lambda: checks.units(999, 128, "layer4"), shows=False)
    assert msg == "unit 999 is out of range: layer 'layer4' has 128 units (0-127)"
    msg = refused(ValueError, lambda: checks.mask(np.zeros((32, 32)), (64, 64)), shows=False)
    assert msg == "mask shape (32, 32) does not match the image size (64, 64)"
    big = "x" * 10_000
    assert len(refused(ValueError, lambda: checks.layer_name(big + " "), value=big)) < 200


# Accepted forms: numpy scalars and 0-d arrays and tensors wherever numbers are allowed.
FLOATS = [np.float16(0.5), np.float32(0.5), np.float64(0.5), np.array(0.5), np.array([0.5])]
FLOATS += [
    torch.tensor(0.5, dtype=d)
    for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
]
FLOATS += [torch.tensor([[0.5]]), Fraction(1, 2), 0.5]
INTS = [np.int8(1), np.int16(1), np.int32(1), np.int64(1), np.uint8(1), np.uint64(1), np.array(1)]
INTS += [
    torch.tensor(1, dtype=d)
    for d in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
]
INTS += [np.array([1], dtype=np.int32), 1]


@pytest.mark.parametrize("value", FLOATS + INTS)
def test_numbers_accept_numpy_scalars_and_0d_tensors(value):
    want = 0.5 if any(value is f for f in FLOATS) else 1.0
    for got in [
        checks.number(value, "x"),
        checks.number(value, "x", 0, 1),
        checks.fraction(value, "strength"),
        checks.learning_rate(value),
        checks.unit_value(value, 3) if np.ndim(value) == 0 else want,
    ]:
        assert type(got) is float and got == want
    if want == 0.5:
        assert checks.quantile(value) == 0.5


@pytest.mark.parametrize("value", INTS)
def test_integers_accept_numpy_scalars_and_0d_tensors(value):
    assert type(checks.seed(value)) is int and checks.seed(value) == 1
    assert type(checks.count(value, "n")) is int and checks.count(value, "n") == 1
    assert checks.units(value, 4) == [1]
    assert checks.seeds(value) == [1]


@given(
    st.one_of(
        st.floats(),
        st.integers(min_value=-(10**400), max_value=10**400),
        st.fractions(),
        st.floats(width=32).map(np.float32),
        st.floats(width=16).map(np.float16),
        st.floats().map(torch.tensor),
        st.floats(width=32).map(lambda f: torch.tensor(f, dtype=torch.float32)),
        st.floats().map(np.array),
        st.booleans(),
        st.text(max_size=5),
        st.none(),
        st.complex_numbers(),
    ),
    st.one_of(st.none(), st.floats(-10, 10)),
    st.one_of(st.none(), st.floats(-10, 10)),
    st.booleans(),
    st.booleans(),
)
@settings(max_examples=400, deadline=None)
def test_number_never_returns_a_non_finite_float(value, lo, hi, lo_open, hi_open):
    try:
        x = checks.number(value, "x", lo, hi, lo_open=lo_open, hi_open=hi_open)
    except (TypeError, ValueError) as e:
        assert str(e).startswith("x must be ")
        return
    assert type(x) is float and math.isfinite(x)
    assert lo is None or (x > lo if lo_open else x >= lo)
    assert hi is None or (x < hi if hi_open else x <= hi)


@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_seed_and_count_over_all_integers(n):
    if 0 <= n < 2**63:
        assert checks.seed(n) == n and checks.seeds([n, n]) == [n, n]
    else:
        refused(ValueError, lambda: checks.seed(n), "2**63", value=n)
        refused(ValueError, lambda: checks.seeds([0, n]), "seeds[1] must be", value=n)
    if n >= 1:
        assert checks.count(n, "k") == n
    else:
        refused(ValueError, lambda: checks.count(n, "k"), "k must be a positive integer", value=n)


@pytest.mark.parametrize(
    ("value", "want"),
    [([], []), ((), []), (range(0), []), (range(3), [0, 1, 2]), ((4, 5), [4, 5]), (7, [7])]
    + [(np.array([1, 2], dtype=d), [1, 2]) for d in (np.int8, np.int32, np.int64, np.uint16)]
    + [(torch.tensor([3, 1]), [3, 1]), (torch.tensor(9), [9]), ((i for i in [2, 2]), [2, 2])],
)
def test_seeds_accepted(value, want):
    assert checks.seeds(value) == want


@pytest.mark.parametrize(
    ("value", "exc", "fragment"),
    [
        ("abc", TypeError, "seeds must be a seed or a list of seeds"),
        (b"12", TypeError, "seeds must"),
    ]
    + [
        (np.zeros((2, 2), int), TypeError, "1-d, not shape (2, 2)"),
        ([1, "2"], TypeError, "seeds[1] must"),
    ]
    + [([0, 1.0], TypeError, "seeds[1] must"), (np.array([1.0, 2.0]), TypeError, "seeds[0] must")]
    + [
        ([True], TypeError, "seeds[0] must"),
        ([None], TypeError, "seeds[0] must"),
        ([[1]], TypeError, "seeds[0]"),
    ]
    + [
        ([1, -2], ValueError, "seeds[1] must be a non-negative"),
        ([2**63], ValueError, "below 2**63"),
    ]
    + [(torch.tensor([5, -5]), ValueError, "seeds[1]"), (np.array([-1]), ValueError, "seeds[0]")],
)
def test_seeds_refused(value, exc, fragment):
    refused(exc, lambda: checks.seeds(value), fragment, shows=False)


@pytest.mark.parametrize(
    ("value", "want"),
    [(3, [3]), (np.int64(3), [3]), (torch.tensor(3), [3]), ([5, 1, 5, 1, 0], [5, 1, 0])]
    + [((1, 2), [1, 2]), (range(2, 5), [2, 3, 4]), (np.array([7, 7, 6]), [7, 6])]
    + [
        (torch.tensor([0, 127], dtype=torch.int16), [0, 127]),
        ([np.int8(4), torch.tensor(2)], [4, 2]),
    ],
)
def test_units_accepted(value, want):
    assert checks.units(value, 128, "layer4") == want


@pytest.mark.parametrize(
    ("value", "exc", "fragment"),
    [
        (v, TypeError, "unit must be an integer index from 0 to 127")
        for v in [1.0, 2.5, True, None, np.float32(3), torch.tensor(1.0), [1, 2.0], [np.bool_(1)]]
    ]
    + [
        (v, TypeError, "units must be a unit index or a list")
        for v in ["3", b"3", np.zeros((2, 2), int)]
    ]
    + [
        (v, ValueError, "units must not be empty: layer 'layer4' has 128 units (0-127)")
        for v in [[], (), range(0), np.array([], dtype=int), torch.zeros(0, dtype=torch.int64)]
    ]
    + [
        (v, ValueError, "is out of range: layer 'layer4' has 128 units (0-127)")
        for v in [128, -1, [0, 128], np.int64(999), torch.tensor([1, -5]), 2**70]
    ],
)
def test_units_refused(value, exc, fragment):
    refused(exc, lambda: checks.units(value, 128, "layer4"), fragment, shows=False)


def test_units_default_layer_wording():
    msg = refused(ValueError, lambda: checks.units([2, 12], 10), shows=False)
    assert msg == "unit 12 is out of range: the layer has 10 units (0-9)"


@given(st.lists(st.integers(-3, 12), max_size=8))
def test_units_property(items):
    if not items:
        refused(ValueError, lambda: checks.units(items, 10), "must not be empty", value=items)
    elif all(0 <= i < 10 for i in items):
        assert checks.units(items, 10) == list(dict.fromkeys(items))
    else:
        refused(ValueError, lambda: checks.units(items, 10), "is out of range", shows=False)


@pytest.mark.parametrize("value", ["mean", "high"])
def test_unit_value_words(value):
    assert checks.unit_value(value, 5) == value


@pytest.mark.parametrize(
    "value",
    [[1, 2, 3], (0.5, -1.0, 2.0), range(3), np.array([1, 2, 3], np.int16), np.ones(3, np.float64)]
    + [torch.ones(3, dtype=torch.float16), torch.arange(3), torch.ones(3, requires_grad=True)],
)
def test_unit_value_vectors(value):
    t = checks.unit_value(value, 3)
    assert t.dtype == torch.float32 and t.shape == (3,) and t.device.type == "cpu"
    assert not t.requires_grad
    before = t.clone()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        with torch.no_grad():
            value[0] = 42  # a copy: the caller's array may change afterwards
        assert torch.equal(t, before)


@pytest.mark.parametrize(
    ("value", "exc", "fragment"),
    [(v, ValueError, "value must be 'mean', 'high'") for v in ["", "Mean", "low", "high ", "max"]]
    + [
        (v, ValueError, "not shape")
        for v in [[1, 2], [], np.ones(4), torch.ones(3, 1), [[1, 2, 3]]]
    ]
    + [
        (v, ValueError, "one per unit")
        for v in [[1, nan, 3], (inf, 0, 0), torch.tensor([0, 0, -inf])]
    ]
    + [([1e300, 0, 0], ValueError, "finite")]
    + [
        (v, TypeError, "not dtype")
        for v in [[True, False, True], np.ones(3, bool), torch.ones(3) * 1j]
    ]
    + [(v, TypeError, "value must be") for v in [["a", "b", "c"], [1, [2], 3], [None, 1, 2]]],
)
def test_unit_value_refused(value, exc, fragment):
    refused(exc, lambda: checks.unit_value(value, 3), fragment, value=value)


@pytest.mark.parametrize("value", ["layer4", "features.10", "a b", "x"])
def test_layer_name_accepted(value):
    assert checks.layer_name(value) == value


@pytest.mark.parametrize(
    ("value", "exc"),
    [(v, TypeError) for v in [None, 4, 4.0, b"layer4", ["layer4"], ("a",), torch.nn.ReLU()]]
    + [(v, ValueError) for v in ["", " ", "  ", "\t", "\n", " layer4", "layer4 ", "\tx\n"]],
)
def test_layer_name_refused(value, exc):
    refused(
        exc, lambda: checks.layer_name(value), "layer name must be a non-empty string", value=value
    )


@given(st.text(max_size=6))
def test_layer_name_property(text):
    if text and text == text.strip():
        assert checks.layer_name(text) == text
    else:
        refused(ValueError, lambda: checks.layer_name(text), "layer name", value=text)


MASKS = [
    (np.array([[0, 1], [1, 0]], dtype=bool), [[0, 1], [1, 0]]),
    (torch.tensor([[False, True], [True, True]]), [[0, 1], [1, 1]]),
    (np.array([[0, 1], [1, 0]], dtype=np.uint8), [[0, 1], [1, 0]]),
    (np.array([[0, 255], [51, 0]], dtype=np.uint8), [[0, 1], [0.2, 0]]),
    (torch.tensor([[0, 255], [0, 0]], dtype=torch.uint8), [[0, 1], [0, 0]]),
    (np.array([[0.0, 0.25], [1.0, 0.5]], dtype=np.float64), [[0, 0.25], [1, 0.5]]),
    (np.array([[0.0, 0.25], [1.0, 0.5]], dtype=np.float16), [[0, 0.25], [1, 0.5]]),
    (torch.tensor([[0.0, 0.25], [1.0, 0.5]], dtype=torch.bfloat16), [[0, 0.25], [1, 0.5]]),
    (torch.full((2, 2), 0.5, requires_grad=True), [[0.5, 0.5], [0.5, 0.5]]),
    (np.array([[0.0, 1.0], [0.0, 0.0]], dtype=">f4"), [[0, 1], [0, 0]]),
]


@pytest.mark.parametrize(("value", "want"), MASKS)
def test_mask_accepted(value, want):
    t = checks.mask(value, (2, 2), allow_empty=False)
    assert t.dtype == torch.float32 and t.device.type == "cpu" and not t.requires_grad
    assert torch.allclose(t, torch.tensor(want, dtype=torch.float32))
    t.zero_()  # a copy: the caller's mask is untouched
    assert value.any()


def test_mask_none_and_empty():
    assert checks.mask(None, (4, 4)) is None
    assert checks.mask(None, (4, 4), allow_empty=False) is None
    assert checks.mask(np.zeros((4, 4)), (4, 4)).sum() == 0


@pytest.mark.parametrize(
    "value", [np.zeros((3, 3)), np.zeros((3, 3), bool), torch.zeros(3, 3, dtype=torch.uint8)]
)
def test_mask_all_zero_refused_when_not_allowed(value):
    msg = refused(
        ValueError,
        lambda: checks.mask(value, (3, 3), what="region", allow_empty=False),
        shows=False,
    )
    assert msg == "region is empty (all zero); paint a region first"


@pytest.mark.parametrize(
    ("value", "exc", "fragment"),
    [
        (v, TypeError, "(convert a list with np.asarray)")
        for v in [[[0, 1], [1, 0]], ((0, 0), (0, 0))]
    ]
    + [
        (v, TypeError, "mask must be None or a numpy array or torch tensor of shape (2, 2)")
        for v in [1, 0.5, "mask", object(), {"mask": 1}]
    ]
    + [
        (
            np.zeros((2, 2), d),
            TypeError,
            f"mask has dtype {np.dtype(d).name}; valid dtypes are bool, uint8",
        )
        for d in (np.int64, np.int32, np.int8, np.uint16, np.complex64, object, "U1", "m8[s]")
    ]
    + [
        (
            torch.zeros(2, 2, dtype=d),
            TypeError,
            f"mask has dtype {str(d)[6:]}; valid dtypes are bool",
        )
        for d in (torch.int64, torch.int32, torch.int16, torch.complex64)
    ]
    + [
        (v, ValueError, "does not match the image size (2, 2)")
        for v in [
            np.zeros((3, 3)),
            np.zeros((2, 3)),
            np.zeros((1, 2, 2)),
            np.zeros(4),
            torch.zeros(2, 2, 1),
        ]
    ]
    + [
        (np.array([[0, v], [0, 0]]), ValueError, "mask values must be finite and in [0, 1]")
        for v in [-0.1, 1.5, nan, inf, -inf, 255.0]
    ]
    + [
        (torch.tensor([[0, v], [0, 0]]), ValueError, "mask values must be finite and in [0, 1]")
        for v in [-1e-6, 1.0001, nan]
    ],
)
def test_mask_refused(value, exc, fragment):
    refused(exc, lambda: checks.mask(value, (2, 2)), fragment, shows=False)


@given(hnp.arrays(st.sampled_from([np.float32, np.float64]), (3, 3)), st.booleans())
def test_mask_property(array, allow_empty):
    try:
        t = checks.mask(array, (3, 3), allow_empty=allow_empty)
    except ValueError as e:
        bad = ~((array >= 0) & (array <= 1))
        assert bad.any() or "paint a region first" in str(e), str(e)
        return
    assert t.shape == (3, 3) and bool(((t >= 0) & (t <= 1)).all())
    assert allow_empty or t.any()


def test_device():
    assert checks.device("cpu") == torch.device("cpu")
    assert checks.device("cuda:1") == torch.device("cuda", 1)  # parsed, not opened
    assert checks.device(torch.device("cpu")) == torch.device("cpu")
    assert checks.device("auto").type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        assert checks.device("auto").type in ("mps", "cpu")


@pytest.mark.parametrize(
    ("value", "exc"),
    [(v, ValueError) for v in ["gpu", "", "CUDA", "cuda:x", "cpu:-1", "auto ", "cuda:1:2", -1]]
    + [(v, TypeError) for v in [None, 1.5, True, ["cpu"], b"cpu", np.float32(0)]],
)
def test_device_refused(value, exc):
    refused(
        exc,
        lambda: checks.device(value),
        "device must be a device such as 'cpu', 'cuda', 'cuda:1', 'mps' or 'auto'",
        value=value,
    )
