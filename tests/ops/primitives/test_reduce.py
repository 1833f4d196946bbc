"""Reductions, softmax and one_hot: harness over axes, tie gradients, dtypes, errors."""
import numpy as np
import pytest

from graphmask.ops import OpError, Spec, get_op
from tests.ops.harness import check_op

FLOAT_REDUCE = ["sum", "mean", "max", "min", "logsumexp"]
AXES = [None, 0, -1, 1, [0, 2], [1, 2], [], [2, 0, 1]]


@pytest.mark.parametrize("name", FLOAT_REDUCE)
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_harness(name, axis, keepdims):
    x = np.random.default_rng(3).standard_normal((2, 3, 4))  # no ties
    attrs = {"axis": axis, "keepdims": keepdims}
    check_op(f"prim.{name}", attrs, {"x": x})
    check_op(f"prim.{name}", attrs, {"x": x.astype(np.float32)}, fd=False)


@pytest.mark.parametrize("name", ["sum", "mean", "logsumexp", "max"])
def test_harness_rank_0_and_1(name):
    check_op(f"prim.{name}", {}, {"x": np.array(0.7)})
    check_op(f"prim.{name}", {"axis": 0}, {"x": np.array([0.3, -1.2, 2.0])})


def _vjp(name, x, attrs, g=None):
    op = get_op(f"prim.{name}")
    x = np.asarray(x, np.float32)
    out = op.forward(attrs, {"x": x})
    g = np.ones_like(out[0]) if g is None else np.asarray(g, np.float32)
    got = op.vjp(attrs, {"x": x}, out, [g], ["x"])["x"]
    np.testing.assert_allclose(got, op.reference_vjp(attrs, {"x": x}, [g], ["x"])["x"],
                               rtol=1e-6)
    return out[0], got


TIES = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])


def test_max_min_ties_share_the_gradient_evenly():
    y, g = _vjp("max", TIES, {"axis": 1}, g=[3.0, 6.0])
    np.testing.assert_array_equal(y, [3, 2])
    np.testing.assert_array_equal(g, [[0, 1.5, 1.5], [2, 2, 2]])
    y, g = _vjp("max", TIES, {"axis": None})
    np.testing.assert_array_equal(g, [[0, 0.5, 0.5], [0, 0, 0]])
    y, g = _vjp("min", TIES, {"axis": 0, "keepdims": True})
    np.testing.assert_array_equal(y, [[1, 2, 2]])
    np.testing.assert_array_equal(g, [[1, 0, 0], [0, 1, 1]])


def test_max_nan_propagates():
    x = np.array([[1.0, np.nan, 3.0], [1.0, 2.0, np.nan]], np.float32)
    y = get_op("prim.max").forward({"axis": 1}, {"x": x})[0]
    assert np.isnan(y).all()


def test_logsumexp_is_stable_and_handles_infinities():
    x = np.array([[1000.0, 1000.0], [-np.inf, -np.inf], [-np.inf, 0.0]], np.float32)
    y, g = _vjp("logsumexp", x, {"axis": 1})
    np.testing.assert_allclose(y, [1000 + np.log(2), -np.inf, 0], rtol=1e-6)
    np.testing.assert_allclose(g[0], [0.5, 0.5], rtol=1e-4)  # float32 rounding of y
    assert np.isnan(g[1]).all()  # as torch
    np.testing.assert_array_equal(g[2], [0, 1])


def test_sum_and_mean_values_and_dtypes():
    op = get_op("prim.sum")
    for dt, exp in [("bool", "int32"), ("int8", "int32"), ("uint16", "int32"),
                    ("int64", "int64"), ("float16", "float32"), ("float64", "float64")]:
        assert op.infer({"axis": 0}, {"x": Spec((None, 2), dt)}) == [Spec((2,), exp)]
        assert op.forward({"axis": 0}, {"x": np.ones((3, 2), dt)})[0].dtype == exp
    ints = np.array([[100, 100], [100, 100]], np.int8)
    np.testing.assert_array_equal(op.forward({"axis": 0}, {"x": ints})[0], [200, 200])
    mean = get_op("prim.mean")
    assert mean.infer({}, {"x": Spec((None, 2), "int32")}) == [Spec((), "float32")]
    np.testing.assert_array_equal(mean.forward({"axis": 1}, {"x": np.array([[1, 2]])})[0],
                                  [1.5])
    # mean over nothing is NaN (as Keras), silently
    y = mean.forward({"axis": 0}, {"x": np.zeros((0, 3), np.float32)})[0]
    assert y.shape == (3,) and np.isnan(y).all()


def test_float32_sums_accumulate_in_float64():
    x = np.full((1, 10**6), 0.1, np.float32)
    y = get_op("prim.sum").forward({"axis": 1}, {"x": x})[0]
    assert y.dtype == np.float32 and y[0] == np.float32(np.float64(np.float32(0.1)) * 10**6)


@pytest.mark.parametrize("name", ["any", "all"])
def test_any_all(name):
    x = np.array([[0.0, 1.0], [0.0, 0.0], [2.0, -1.0]])
    op = get_op(f"prim.{name}")
    exp = {"any": [True, False, True], "all": [False, False, True]}[name]
    check_op(f"prim.{name}", {"axis": 1}, {"x": x})
    np.testing.assert_array_equal(op.forward({"axis": 1}, {"x": x})[0], exp)
    assert op.infer({"axis": [0, 1], "keepdims": True}, {"x": Spec((None, 2), "int32")}) == [
        Spec((1, 1), "bool")]
    assert op.diff_ports == ()


def test_argmax_first_of_ties_int32():
    op = get_op("prim.argmax")
    np.testing.assert_array_equal(op.forward({"axis": 1}, {"x": TIES})[0], [1, 0])
    y = op.forward({}, {"x": TIES})[0]
    assert y.dtype == np.int32 and y.shape == () and y == 1
    y = op.forward({"keepdims": True}, {"x": TIES})[0]
    assert y.shape == (1, 1) and y[0, 0] == 1
    assert op.forward({"axis": 0, "keepdims": True}, {"x": TIES})[0].tolist() == [[1, 0, 0]]
    assert op.infer({"axis": -1}, {"x": Spec((None, 5, 3), "float32")}) == [
        Spec((None, 5), "int32")]
    check_op("prim.argmax", {"axis": 0}, {"x": np.random.default_rng(0).random((4, 3))})
    with pytest.raises(OpError, match=r"^prim.argmax: axis must be an int, got \[0, 1\]$"):
        op.infer({"axis": [0, 1]}, {"x": Spec((2, 3), "float32")})


def test_infer_with_unknown_dims():
    op = get_op("prim.max")
    x = Spec((None, 4, None), "float32")
    assert op.infer({"axis": 1}, {"x": x}) == [Spec((None, None), "float32")]
    assert op.infer({"axis": [0, -1], "keepdims": True}, {"x": x}) == [Spec((1, 4, 1),
                                                                             "float32")]
    assert op.infer({}, {"x": x}) == [Spec((), "float32")]


def test_reduction_errors():
    op = get_op("prim.sum")
    x = Spec((None, 3), "float32")
    with pytest.raises(OpError, match="^prim.sum: axis=2 is out of range for rank 2$"):
        op.infer({"axis": 2}, {"x": x})
    with pytest.raises(OpError, match=r"^prim.sum: axis=\[1, -1\] repeats an axis$"):
        op.infer({"axis": [1, -1]}, {"x": x})
    with pytest.raises(OpError, match="^prim.sum: axis must be an int, got 'a'$"):
        op.infer({"axis": "a"}, {"x": x})
    with pytest.raises(OpError, match=r"^prim.sum: attrs\['keepdims'\] must be a bool, got 1$"):
        op.infer({"keepdims": 1}, {"x": x})
    with pytest.raises(OpError, match=r"^prim.max: cannot reduce an empty selection "
                                      r"\(input shape \(0, 3\)\)$"):
        get_op("prim.max").forward({"axis": 0}, {"x": np.zeros((0, 3))})
    with pytest.raises(OpError, match="^prim.min: cannot reduce an empty selection"):
        get_op("prim.min").infer({}, {"x": Spec((None, 0), "float32")})
    # rows of three values, zero of them: fine
    assert get_op("prim.max").forward({"axis": 1}, {"x": np.zeros((0, 3))})[0].shape == (0,)


def test_no_gradient_gives_zeros():
    for name in FLOAT_REDUCE:
        op = get_op(f"prim.{name}")
        x = np.arange(6.0).reshape(2, 3)
        out = op.forward({"axis": 1}, {"x": x})
        np.testing.assert_array_equal(op.vjp({"axis": 1}, {"x": x}, out, [None], ["x"])["x"],
                                      np.zeros((2, 3)))


@pytest.mark.parametrize("n", [5, 300])  # row kernels, and NumPy from LONG_ROW values on
@pytest.mark.parametrize("name", FLOAT_REDUCE + ["softmax", "log_softmax"])
def test_short_and_long_rows(name, n):
    x = np.random.default_rng(n).standard_normal((3, n)).astype(np.float32)
    check_op(f"prim.{name}", {"axis": -1}, {"x": x}, fd=False)
    check_op(f"prim.{name}", {"axis": 0}, {"x": x.T.copy()}, fd=False)


@pytest.mark.parametrize("n", [4, 300])
def test_infinities_and_nan_as_torch(n):
    x = np.zeros((4, n), np.float32)
    x[0, :2] = np.inf          # logsumexp inf; softmax NaN
    x[1, :] = -np.inf          # logsumexp -inf; softmax NaN (0 / 0)
    x[2, 1] = np.nan           # NaN everywhere
    x[3, 0] = 1000.0           # stable: softmax one-hot, logsumexp 1000
    lse = get_op("prim.logsumexp").forward({"axis": 1}, {"x": x})[0]
    np.testing.assert_array_equal(lse, [np.inf, -np.inf, np.nan, 1000])
    sm = get_op("prim.softmax").forward({}, {"x": x})[0]
    assert np.isnan(sm[:3]).all()
    assert np.isnan(get_op("prim.log_softmax").forward({}, {"x": x})[0][:3]).all()
    assert sm[3, 0] == 1 and (sm[3, 1:] == 0).all()
    mx = get_op("prim.max").forward({"axis": 1}, {"x": x})[0]
    np.testing.assert_array_equal(mx, [np.inf, -np.inf, np.nan, 1000])
