"""flatten op: harness over ranks, batch kept, no mask allowed."""
import numpy as np
import pytest

from graphmask.ops import Spec, get_op
from tests.ops.harness import check_op, check_vjp


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4), (2, 1, 3, 2), (0, 2, 3)])
def test_harness(shape):
    x = np.random.default_rng(0).standard_normal(shape)
    check_op("flatten", {}, {"x": x})
    y = get_op("flatten").forward({}, {"x": x})[0]
    np.testing.assert_array_equal(y, x.reshape(shape[0], int(np.prod(shape[1:]))))


def test_infer_and_mask_rule():
    op = get_op("flatten")
    assert op.infer({}, {"x": Spec((None, 3, 4), "float32")}) == [Spec((None, 12), "float32")]
    assert op.infer({}, {"x": Spec((None, None, 4), "float32")}) == [Spec((None, None),
                                                                          "float32")]
    assert not op.mask_rule({}).takes


def test_reference_vjp_routes_each_column_back(monkeypatch):
    """The reference VJP is written from the C-order layout of the output, not by calling
    the kernel's reshape, so the harness catches a wrong ``vjp``."""
    op = get_op("flatten")
    x = np.zeros((2, 2, 3), np.float32)
    g = np.arange(12.0).reshape(2, 6)
    d = op.reference_vjp({}, {"x": x}, [g], ["x"])["x"]
    assert d.dtype == np.float32
    np.testing.assert_array_equal(d[1], [[6, 7, 8], [9, 10, 11]])
    np.testing.assert_array_equal(d[0, 1], [3, 4, 5])
    assert not op.reference_vjp({}, {"x": x}, [None], ["x"])["x"].any()
    np.testing.assert_array_equal(
        op.reference_vjp({}, {"x": np.zeros(3)}, [np.array([[1.0], [2.0], [3.0]])], ["x"])["x"],
        [1, 2, 3])

    def transposed(attrs, inputs, outputs, grads, wrt):  # a wrong layout
        x = inputs["x"]
        return {"x": grads[0].reshape(x.shape[0], *x.shape[:0:-1]).swapaxes(1, -1)}
    monkeypatch.setattr(op, "vjp", transposed)
    with pytest.raises(AssertionError, match="flatten dx: kernel vs reference"):
        check_vjp("flatten", {}, {"x": np.random.default_rng(0).standard_normal((2, 3, 4))})
