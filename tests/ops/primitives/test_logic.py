"""Comparisons, logical ops and where: values, bool outputs, no gradients, where's VJP."""
import numpy as np
import pytest

from graphmask.ops import OpError, Spec, get_op
from graphmask.ops.base import IGNORES_MASK
from tests.ops.harness import check_op

X = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
Y = np.array([2.0, 2.0, 2.0])
EXPECTED = {
    "equal": [[0, 1, 0], [0, 1, 0]], "not_equal": [[1, 0, 1], [1, 0, 1]],
    "greater": [[0, 0, 1], [1, 0, 0]], "greater_equal": [[0, 1, 1], [1, 1, 0]],
    "less": [[1, 0, 0], [0, 0, 1]], "less_equal": [[1, 1, 0], [0, 1, 1]],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_comparisons(name):
    op = get_op(f"prim.{name}")
    check_op(f"prim.{name}", {}, {"x": X, "y": Y})
    out = op.forward({}, {"x": X, "y": Y})[0]
    assert out.dtype == bool
    np.testing.assert_array_equal(out, np.array(EXPECTED[name], bool))
    assert op.diff_ports == ()
    assert op.mask_rule({}) == IGNORES_MASK
    assert op.infer({}, {"x": Spec((None, 3), "float32"), "y": Spec((3,), "int32")}) == [
        Spec((None, 3), "bool")]


def test_logical_ops_read_nonzero():
    a = np.array([0.0, 0.5, -2.0, 0.0])
    b = np.array([0, 0, 3, 1], np.int32)
    cases = {"logical_and": [0, 0, 1, 0], "logical_or": [0, 1, 1, 1]}
    for name, exp in cases.items():
        check_op(f"prim.{name}", {}, {"x": a, "y": b})
        np.testing.assert_array_equal(get_op(f"prim.{name}").forward({}, {"x": a, "y": b})[0],
                                      np.array(exp, bool))
    check_op("prim.logical_not", {}, {"x": a})
    np.testing.assert_array_equal(get_op("prim.logical_not").forward({}, {"x": a})[0],
                                  [True, False, False, True])
    assert get_op("prim.logical_not").infer({}, {"x": Spec((None,), "int8")}) == [
        Spec((None,), "bool")]


def test_comparison_errors_and_no_gradient():
    op = get_op("prim.less")
    with pytest.raises(OpError, match=r"^prim.less: cannot broadcast the shapes of "
                                      r"x \(None, 3\), y \(2,\)$"):
        op.infer({}, {"x": Spec((None, 3), "float32"), "y": Spec((2,), "float32")})
    inp = {"x": X, "y": Y}
    got = op.vjp({}, inp, op.forward({}, inp), [None], ["x"])
    np.testing.assert_array_equal(got["x"], np.zeros_like(X))


@pytest.mark.parametrize("cs,xs,ys", [((2, 3), (2, 3), (2, 3)), ((2, 3), (3,), ()),
                                      ((2, 1), (1, 3), (2, 3)), ((3,), (2, 3), (2, 1))])
def test_where_harness(cs, xs, ys):
    rng = np.random.default_rng(len(cs) + len(xs))
    inp = {"condition": rng.random(cs) < 0.5, "x": rng.standard_normal(xs),
           "y": rng.standard_normal(ys)}
    check_op("prim.where", {}, inp)
    check_op("prim.where", {}, {**inp, "x": inp["x"].astype(np.float32),
                                "y": inp["y"].astype(np.float32)}, fd=False)


def test_where_values_gradients_and_dtypes():
    op = get_op("prim.where")
    inp = {"condition": np.array([1, 0, 2], np.int32), "x": np.array([1.0, 2.0, 3.0]),
           "y": np.array(-1.0)}
    out = op.forward({}, inp)
    np.testing.assert_array_equal(out[0], [1, -1, 3])
    got = op.vjp({}, inp, out, [np.array([10.0, 20.0, 30.0])], ["x", "y"])
    np.testing.assert_array_equal(got["x"], [10, 0, 30])
    np.testing.assert_array_equal(got["y"], 20)
    assert got["y"].shape == ()
    spec = op.infer({}, {"condition": Spec((None, 1), "bool"), "x": Spec((3,), "int32"),
                         "y": Spec((None, 3), "float32")})
    assert spec == [Spec((None, 3), "float32")]
    ints = {"condition": np.array([True, False]), "x": np.array([1, 2], np.int8),
            "y": np.array([3, 4], np.int16)}
    assert op.forward({}, ints)[0].dtype == np.int16
    assert op.forward({}, ints)[0].tolist() == [1, 4]
    with pytest.raises(OpError, match=r"^prim.where: cannot broadcast the shapes of "
                                      r"condition \(2,\), x \(3,\), y \(\)$"):
        op.infer({}, {"condition": Spec((2,), "bool"), "x": Spec((3,), "float32"),
                      "y": Spec((), "float32")})
