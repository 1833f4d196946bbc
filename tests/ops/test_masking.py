"""masking op: harness with random masks, NaN blocking, mask rule, shape errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphmask.ops import MaskRule, OpError, Spec, get_op
from tests.ops.harness import check_op, random_mask

OP = "masking"


@pytest.mark.parametrize("kind", ["right", "left", "holes", "any"])
@pytest.mark.parametrize("shape", [(4, 6, 3), (3, 1, 2), (5, 7, 1)])
def test_harness(kind, shape):
    rng = np.random.default_rng(shape[1] * 10 + len(kind))
    x = rng.standard_normal(shape)
    m = random_mask(rng, shape[0], shape[1], kind)
    check_op(OP, {"mask_value": 0.0}, {"x": x, "mask": m}, data_port="x")
    check_op(OP, {"mask_value": 0.0}, {"x": x.astype(np.float32), "mask": m}, fd=False,
             data_port="x")


def test_zeroes_masked_steps_and_blocks_nan():
    x = np.array([[[1.0, 2.0], [np.nan, np.inf], [3.0, -1.0]]], dtype=np.float32)
    m = np.array([[True, False, True]])
    op = get_op(OP)
    for y in (op.forward({}, {"x": x, "mask": m})[0], op.reference({}, {"x": x, "mask": m})[0]):
        np.testing.assert_array_equal(y, [[[1, 2], [0, 0], [3, -1]]])
        assert y.dtype == np.float32
    dx = op.vjp({}, {"x": x, "mask": m}, [None], [np.full((1, 3, 2), 5.0, np.float32)],
                ["x"])["x"]
    np.testing.assert_array_equal(dx, [[[5, 5], [0, 0], [5, 5]]])


def test_mask_built_by_the_created_mask_op_matches_keras_rule():
    x = np.array([[[0.0, 0.0], [0.0, 1.0], [0.5, 0.5]]])
    rule = get_op(OP).mask_rule({"mask_value": 0.5})
    assert rule == MaskRule(takes=True, uses=True, out="create",
                            create=("mask_any_not_equal", {"value": 0.5}, "x"))
    op_name, attrs, port = rule.create
    m = get_op(op_name).forward(attrs, {port: x})[0]
    np.testing.assert_array_equal(m, [[True, True, False]])


def test_infer_errors():
    op = get_op(OP)
    ok = {"x": Spec((None, 5, 3), "float32"), "mask": Spec((None, 5), "bool")}
    assert op.infer({}, ok) == [Spec((None, 5, 3), "float32")]
    with pytest.raises(OpError, match="does not fit"):
        op.infer({}, {**ok, "mask": Spec((None, 4), "bool")})
    with pytest.raises(OpError, match="float"):
        op.infer({}, {**ok, "x": Spec((None, 5, 3), "int64")})
    with pytest.raises(OpError, match="does not fit"):
        op.forward({}, {"x": np.zeros((2, 5, 3)), "mask": np.ones((2, 4), bool)})


def test_infer_before_the_mask_port_is_connected():
    # the shape pass runs before the mask pass inserts the mask edge
    assert get_op(OP).infer({}, {"x": Spec((None, 5, 3), "float32")}) == [
        Spec((None, 5, 3), "float32")]


def test_without_mask_port_computes_the_mask_from_x():
    x = np.array([[[0.0, 0.0], [np.nan, 1.0], [2.0, 0.0]]])
    rng = np.random.default_rng(0)
    y = get_op(OP).forward({"mask_value": 0.0}, {"x": x})[0]
    np.testing.assert_array_equal(y, np.where([[[False], [True], [True]]], x, 0))
    x = rng.standard_normal((3, 4, 2))
    x[0, 1] = 0.0
    # no finite differences: the mask itself jumps when x[0, 1] leaves mask_value
    check_op(OP, {"mask_value": 0.0}, {"x": x}, fd=False)


@settings(deadline=None)
@given(b=st.integers(1, 4), t=st.integers(1, 6), f=st.integers(1, 3),
       seed=st.integers(0, 2**16), value=st.sampled_from([0.0, -1.0, 0.1]))
def test_property_created_mask_and_output(b, t, f, seed, value):
    rng = np.random.default_rng(seed)
    x = rng.choice(np.array([value, 1.0, np.nan], dtype=np.float32), (b, t, f), p=[.7, .2, .1])
    op_name, attrs, port = get_op(OP).mask_rule({"mask_value": value}).create
    m = get_op(op_name).forward(attrs, {port: x})[0]
    np.testing.assert_array_equal(m, np.any(x != np.float32(value), axis=-1))
    y = get_op(OP).forward({"mask_value": value}, {"x": x, "mask": m})[0]
    assert np.all(y[~m] == 0)
    np.testing.assert_array_equal(y[m], x[m])
