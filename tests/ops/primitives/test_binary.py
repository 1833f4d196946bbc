"""Binary arithmetic primitives: broadcasting harness, ties, torch's power rules, dtypes."""
import numpy as np
import pytest

from graphmask.ops import OpError, Spec, get_op
from graphmask.ops.primitives.binary import collapse
from tests.ops.harness import check_op

ARITH = ["add", "subtract", "multiply", "divide", "power", "maximum", "minimum"]
SHAPES = [((2, 3), (2, 3)), ((2, 3), (3,)), ((2, 3), ()), ((), (4,)), ((4, 1, 3), (2, 1)),
          ((2, 1), (1, 3)), ((3,), (2, 4, 3)), ((5, 1), (5, 4)),
          ((2, 1, 3, 1), (2, 4, 1, 5))]  # the last: four broadcast runs (no 2-D layout)


def _inputs(name, xs, ys, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-2, 2, xs), rng.uniform(-2, 2, ys)
    if name == "divide":
        y = np.where(np.abs(y) < 0.3, 1.1, y)
    if name == "power":
        x = rng.uniform(0.3, 2, xs)
    return {"x": np.asarray(x), "y": np.asarray(y)}


@pytest.mark.parametrize("name", ARITH)
@pytest.mark.parametrize("xs,ys", SHAPES)
def test_harness(name, xs, ys):
    inp = _inputs(name, xs, ys, seed=len(xs) * 7 + len(ys))
    check_op(f"prim.{name}", {}, inp)
    check_op(f"prim.{name}", {}, {k: v.astype(np.float32) for k, v in inp.items()}, fd=False)


@pytest.mark.parametrize("name", ARITH)
def test_only_one_side_and_mixed_dtypes(name):
    inp = _inputs(name, (3, 4), (4,), seed=5)
    inp32 = {"x": inp["x"].astype(np.float32), "y": inp["y"]}  # float32 with float64
    op = get_op(f"prim.{name}")
    out = op.forward({}, inp32)
    assert out[0].dtype == np.float64
    g = np.random.default_rng(1).standard_normal((3, 4))
    for wrt in (["x"], ["y"]):
        got = op.vjp({}, inp32, out, [g], wrt)
        exp = op.reference_vjp({}, inp32, [g], wrt)
        assert list(got) == wrt
        assert got[wrt[0]].dtype == inp32[wrt[0]].dtype
        np.testing.assert_allclose(got[wrt[0]], exp[wrt[0]], rtol=1e-6, atol=1e-6)


def _vjp(name, x, y, g=None):
    op = get_op(f"prim.{name}")
    inp = {"x": np.asarray(x, np.float32), "y": np.asarray(y, np.float32)}
    out = op.forward({}, inp)
    g = np.ones_like(out[0]) if g is None else np.asarray(g, np.float32)
    got = op.vjp({}, inp, out, [g], ["x", "y"])
    ref = op.reference_vjp({}, inp, [g], ["x", "y"])
    for p in "xy":
        np.testing.assert_array_equal(got[p], ref[p])
    return out[0], got["x"], got["y"]


def test_maximum_and_minimum_split_ties_evenly():
    y, gx, gy = _vjp("maximum", [1, 2, 2, 0], [1, 1, 2, 3])
    np.testing.assert_array_equal(y, [1, 2, 2, 3])
    np.testing.assert_array_equal(gx, [0.5, 1, 0.5, 0])
    np.testing.assert_array_equal(gy, [0.5, 0, 0.5, 1])
    y, gx, gy = _vjp("minimum", [1, 2, 2, 0], [1, 1, 2, 3])
    np.testing.assert_array_equal(y, [1, 1, 2, 0])
    np.testing.assert_array_equal(gx, [0.5, 0, 0.5, 1])
    np.testing.assert_array_equal(gy, [0.5, 1, 0.5, 0])


def test_maximum_with_a_broadcast_scalar_sums_its_halves():
    # relu written as maximum(x, 0): the scalar collects g where it wins, g/2 at ties
    _, gx, gy = _vjp("maximum", [[-1, 0, 2], [0, -3, 0]], 0.0, g=[[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(gx, [[0, 1, 3], [2, 0, 3]])
    np.testing.assert_array_equal(gy, 1 + 1 + 2 + 5 + 3)
    _, gx, gy = _vjp("minimum", [[1.0, 2.0]], [[1.0], [3.0]], g=[[1, 1], [1, 1]])
    np.testing.assert_array_equal(gx, [[0.5 + 1, 0 + 1]])
    np.testing.assert_array_equal(gy, [[0.5 + 1], [0 + 0]])


def test_maximum_propagates_nan_and_passes_its_gradient_both_ways():
    y, gx, gy = _vjp("maximum", [np.nan, 1], [0, np.nan])
    assert np.isnan(y).all()
    np.testing.assert_array_equal(gx, [1, 1])
    np.testing.assert_array_equal(gy, [1, 1])


def test_power_gradients_follow_torch_at_zero():
    y, gx, gy = _vjp("power", [0, 2, -1, 0, 0], [2, 0.5, 2, 0, 1])
    np.testing.assert_allclose(y, [0, np.sqrt(2), 1, 1, 0], rtol=1e-7)
    np.testing.assert_allclose(gx, [0, 0.5 / np.sqrt(2), -2, 0, 1], rtol=1e-6)
    np.testing.assert_allclose(gy, [0, np.sqrt(2) * np.log(2), np.nan, 0, 0], rtol=1e-6)


def test_divide_by_zero_gives_inf_silently():
    y, gx, gy = _vjp("divide", [1, -1, 0], [0, 0, 2])
    np.testing.assert_array_equal(y, [np.inf, -np.inf, 0])
    np.testing.assert_array_equal(gx, [np.inf, np.inf, 0.5])


@pytest.mark.parametrize("name,dx,dy,expected", [
    ("add", "int32", "float32", "float32"), ("add", "int8", "uint8", "int16"),
    ("multiply", "int32", "int64", "int64"), ("add", "bool", "bool", "bool"),
    ("add", "bool", "int32", "int32"), ("maximum", "float16", "float16", "float32"),
    ("subtract", "float32", "float64", "float64"), ("divide", "int32", "int32", "float32"),
    ("divide", "int64", "int32", "float32"), ("divide", "bool", "bool", "float32"),
    ("power", "int32", "int32", "int32"), ("power", "bool", "float64", "float64"),
])
def test_dtypes(name, dx, dy, expected):
    op = get_op(f"prim.{name}")
    assert op.infer({}, {"x": Spec((None, 2), dx), "y": Spec((2,), dy)}) == [
        Spec((None, 2), expected)]
    inp = {"x": np.array([[1, 2], [3, 1]], dtype=dx), "y": np.array([1, 1], dtype=dy)}
    assert op.forward({}, inp)[0].dtype == expected
    assert op.reference({}, inp)[0].dtype == expected


def test_int_values():
    inp = {"x": np.array([7, -7], np.int32), "y": np.array([2, 2], np.int32)}
    np.testing.assert_array_equal(get_op("prim.divide").forward({}, inp)[0], [3.5, -3.5])
    np.testing.assert_array_equal(get_op("prim.power").forward({}, inp)[0], [49, 49])
    np.testing.assert_array_equal(get_op("prim.subtract").forward({}, inp)[0], [5, -9])


@pytest.mark.parametrize("xs,ys,expected", [
    ((None, 3), (1, 3), (None, 3)), ((None, 3), (4, 3), (4, 3)), ((None, 1), (None, 5),
                                                                   (None, 5)),
    ((None,), (None,), (None,)), ((None, 1), (1,), (None, 1)), ((2, None, 3), (None, 1, 1),
                                                                 (2, None, 3)),
    ((), (None, 2), (None, 2)), ((0, 3), (1, 3), (0, 3)),
])
def test_infer_broadcasting_with_unknown_dims(xs, ys, expected):
    op = get_op("prim.add")
    assert op.infer({}, {"x": Spec(xs, "float32"), "y": Spec(ys, "float32")}) == [
        Spec(expected, "float32")]


def test_errors():
    op = get_op("prim.multiply")
    with pytest.raises(OpError, match=r"^prim.multiply: cannot broadcast the shapes of "
                                      r"x \(2, 3\), y \(4, 3\)$"):
        op.infer({}, {"x": Spec((2, 3), "float32"), "y": Spec((4, 3), "float32")})
    with pytest.raises(OpError, match=r"^prim.multiply: cannot broadcast the shapes of "
                                      r"x \(2, 3\), y \(2,\)$"):
        op.forward({}, {"x": np.zeros((2, 3)), "y": np.zeros(2)})
    with pytest.raises(OpError, match="^prim.subtract: inputs x and y are both bool, which "
                                      "prim.subtract does not take$"):
        get_op("prim.subtract").infer({}, {"x": Spec((2,), "bool"), "y": Spec((2,), "bool")})
    with pytest.raises(OpError, match="^prim.power: inputs x and y are both bool"):
        get_op("prim.power").infer({}, {"x": Spec((2,), "bool"), "y": Spec((2,), "bool")})
    with pytest.raises(OpError, match=r"^prim.power: integer x to the negative integer power "
                                      r"y=-1 \(cast x to float first\)$"):
        get_op("prim.power").forward({}, {"x": np.array([2, 3]), "y": np.array([1, -1])})
    with pytest.raises(OpError, match="^prim.add: input y has unsupported dtype 'str32'"):
        get_op("prim.add").infer({}, {"x": Spec((2,), "float32"), "y": Spec((2,), "str32")})


def test_collapse_layouts():
    assert collapse((2, 3), (2, 3), (2, 3)) == ((1, 6), (1, 6), (1, 6))
    assert collapse((4, 5, 6), (6,), (4, 5, 6)) == ((20, 6), (20, 6), (1, 6))
    assert collapse((4, 5, 6), (4, 5, 1), (4, 5, 6)) == ((20, 6), (20, 6), (20, 1))
    assert collapse((4, 5), (), (4, 5)) == ((1, 20), (1, 20), (1, 1))
    assert collapse((2, 1), (1, 3), (2, 3)) == ((2, 3), (2, 1), (1, 3))
    assert collapse((2, 1, 3), (1, 4, 1), (2, 4, 3)) is None


def test_no_gradient_gives_zeros():
    op = get_op("prim.maximum")
    inp = {"x": np.ones((2, 3)), "y": np.zeros(3)}
    out = op.forward({}, inp)
    got = op.vjp({}, inp, out, [None], ["x", "y"])
    np.testing.assert_array_equal(got["x"], np.zeros((2, 3)))
    np.testing.assert_array_equal(got["y"], np.zeros(3))
    assert op.vjp({}, inp, out, [None], []) == {}
