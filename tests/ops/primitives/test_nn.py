"""softmax, log_softmax and one_hot: harness on every axis, stability, one_hot edge cases."""
import numpy as np
import pytest

from graphmask.ops import OpError, Spec, get_op
from tests.ops.harness import check_op


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,axis", [((5,), -1), ((2, 3), -1), ((2, 3), 0), ((2, 3, 4), 1),
                                        ((2, 3, 4), -3), ((3, 1), -1)])
def test_harness(name, shape, axis):
    x = np.random.default_rng(len(shape) + axis).standard_normal(shape) * 2
    check_op(f"prim.{name}", {"axis": axis}, {"x": x})
    check_op(f"prim.{name}", {"axis": axis}, {"x": x.astype(np.float32)}, fd=False)


def test_softmax_values_and_stability():
    x = np.array([[1000.0, 1000.0, -1000.0], [0.0, np.log(2.0), np.log(5.0)]], np.float32)
    y = get_op("prim.softmax").forward({}, {"x": x})[0]
    np.testing.assert_allclose(y, [[0.5, 0.5, 0], [0.125, 0.25, 0.625]], rtol=1e-6)
    ly = get_op("prim.log_softmax").forward({}, {"x": x})[0]
    np.testing.assert_allclose(ly[0], [-np.log(2), -np.log(2), -2000 - np.log(2)], rtol=1e-6)
    assert y.dtype == np.float32
    # the default axis is the last; int input gives float32
    op = get_op("prim.softmax")
    assert op.infer({}, {"x": Spec((None, 4), "int32")}) == [Spec((None, 4), "float32")]
    np.testing.assert_allclose(op.forward({}, {"x": np.array([0, 0])})[0], [0.5, 0.5])


def test_softmax_errors():
    op = get_op("prim.softmax")
    with pytest.raises(OpError, match="^prim.softmax: input x must have rank >= 1, got a "
                                      "scalar$"):
        op.infer({}, {"x": Spec((), "float32")})
    with pytest.raises(OpError, match="^prim.log_softmax: axis=2 is out of range for rank 2$"):
        get_op("prim.log_softmax").infer({"axis": 2}, {"x": Spec((None, 3), "float32")})


def test_one_hot():
    op = get_op("prim.one_hot")
    x = np.array([[0, 2], [-1, 1]], np.int32)
    y = op.forward({"num_classes": 3}, {"x": x})[0]
    assert y.dtype == np.float32 and y.shape == (2, 2, 3)
    np.testing.assert_array_equal(y, [[[1, 0, 0], [0, 0, 1]], [[0, 0, 0], [0, 1, 0]]])
    y0 = op.forward({"num_classes": 3, "axis": 0}, {"x": x})[0]
    np.testing.assert_array_equal(y0, np.moveaxis(y, -1, 0))
    y1 = op.forward({"num_classes": 3, "axis": -2}, {"x": x})[0]
    np.testing.assert_array_equal(y1, np.moveaxis(y, -1, 1))
    check_op("prim.one_hot", {"num_classes": 4, "axis": 1}, {"x": x})
    assert op.infer({"num_classes": 5}, {"x": Spec((None, 7), "int64")}) == [
        Spec((None, 7, 5), "float32")]
    assert op.infer({"num_classes": 5, "axis": 0}, {"x": Spec((None, 7), "uint8")}) == [
        Spec((5, None, 7), "float32")]
    assert op.diff_ports == ()


def test_one_hot_errors():
    op = get_op("prim.one_hot")
    with pytest.raises(OpError, match=r"^prim.one_hot: input x holds the class id 3, out of "
                                      r"range for num_classes=3$"):
        op.forward({"num_classes": 3}, {"x": np.array([0, 3])})
    with pytest.raises(OpError, match="^prim.one_hot: input x must hold int class ids, got "
                                      "float32$"):
        op.infer({"num_classes": 3}, {"x": Spec((2,), "float32")})
    with pytest.raises(OpError, match=r"^prim.one_hot: attrs\['num_classes'\] must be a "
                                      r"positive int, got 0$"):
        op.infer({"num_classes": 0}, {"x": Spec((2,), "int32")})
    with pytest.raises(OpError, match="^prim.one_hot: axis=2 is out of range for rank 2$"):
        op.infer({"num_classes": 3, "axis": 2}, {"x": Spec((2,), "int32")})
