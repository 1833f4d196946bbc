"""Mask-building ops: exact results, dtype-faithful comparisons, variadic ports, no grads."""
import numpy as np
import pytest

from graphmask.ops import OpError, Spec, get_op
from tests.ops.harness import check_shapes


def _both(name, attrs, inputs):
    op = get_op(name)
    ref, out = op.reference(attrs, inputs)[0], op.forward(attrs, inputs)[0]
    np.testing.assert_array_equal(out, ref)
    assert out.dtype == np.bool_
    check_shapes(name, attrs, inputs)
    assert op.vjp(attrs, inputs, [out], [None], []) == {}
    assert op.diff_ports == () and not op.mask_rule(attrs).takes
    return out


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint16, np.float32,
                                   np.float64])
def test_not_equal(dtype):
    ids = np.array([[1, 2, 0, 0], [0, 3, 0, 4]], dtype=dtype)
    m = _both("mask_not_equal", {"value": 0}, {"x": ids})
    np.testing.assert_array_equal(m, ids != 0)
    m = _both("mask_not_equal", {"value": 0.5}, {"x": ids})
    assert m.all() if ids.dtype.kind != "f" else np.array_equal(m, ids != 0.5)


def test_any_not_equal_in_data_dtype():
    x = np.array([[[0.1, 0.1], [0.1, 0.2], [np.nan, 0.1]]], dtype=np.float32)
    m = _both("mask_any_not_equal", {"value": 0.1}, {"x": x})
    np.testing.assert_array_equal(m, [[False, True, True]])  # float32(0.1) matches 0.1
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (4, 5, 3)).astype(np.float64)
    m = _both("mask_any_not_equal", {"value": 0.0}, {"x": x})
    np.testing.assert_array_equal(m, np.any(x != 0, axis=-1))
    with pytest.raises(OpError, match="rank >= 2"):
        get_op("mask_any_not_equal").infer({"value": 0}, {"x": Spec((None,), "float32")})


@pytest.mark.parametrize("n", [1, 2, 3])
def test_or_and(n):
    rng = np.random.default_rng(n)
    ms = {f"m{i}": rng.random((3, 5)) < 0.5 for i in range(n)}
    stack = np.stack(list(ms.values()))
    o = _both("mask_or", {"n": n}, ms)
    a = _both("mask_and", {"n": n}, ms)
    np.testing.assert_array_equal(o, stack.any(axis=0))
    np.testing.assert_array_equal(a, stack.all(axis=0))
    assert get_op("mask_or").ports({"n": n}) == tuple(f"m{i}" for i in range(n))
    np.testing.assert_array_equal(stack, np.stack(list(ms.values())))


def test_combine_errors():
    op = get_op("mask_or")
    with pytest.raises(OpError, match="attrs\\['n'\\]"):
        op.ports({})
    with pytest.raises(OpError, match="shapes differ"):
        op.infer({"n": 2}, {"m0": Spec((None, 4), "bool"), "m1": Spec((None, 5), "bool")})
    with pytest.raises(OpError, match="bool"):
        op.infer({"n": 2}, {"m0": Spec((None, 4), "bool"), "m1": Spec((None, 4), "int32")})
    assert op.infer({"n": 2}, {"m0": Spec((None, 4), "bool"), "m1": Spec((3, 4), "bool")}) \
        == [Spec((3, 4), "bool")]
