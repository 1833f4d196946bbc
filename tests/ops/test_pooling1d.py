"""MaxPooling1D / AveragePooling1D ops: the harness over pool sizes, strides and paddings;
Keras 3's exact padding rules and gradients; errors."""
import numpy as np
import pytest

from graphmask.ops import OpError, Spec, get_op
from graphmask.ops.base import NO_MASK
from tests.ops.harness import check_op

MAX, AVG = "max_pooling_1d", "average_pooling_1d"


@pytest.mark.parametrize("op", [MAX, AVG])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("pool,strides,length", [(2, 2, 7), (3, 1, 5), (3, 2, 6), (4, 3, 9),
                                                 (1, 1, 3), (2, 1, 2)])
def test_harness(op, padding, pool, strides, length):
    rng = np.random.default_rng(pool * 7 + strides + length)
    x = rng.standard_normal((2, length, 3))
    attrs = {"pool_size": pool, "strides": strides, "padding": padding}
    check_op(op, attrs, {"x": x})
    check_op(op, attrs, {"x": x.astype(np.float32)}, fd=False)


def _run(op, attrs, x, dy=None):
    o = get_op(op)
    outs = o.forward(attrs, {"x": x})
    np.testing.assert_array_equal(outs[0], o.reference(attrs, {"x": x})[0])
    if dy is None:
        return outs[0]
    got = o.vjp(attrs, {"x": x}, outs, [dy], ["x"])["x"]
    np.testing.assert_array_equal(got, o.reference_vjp(attrs, {"x": x}, [dy], ["x"])["x"])
    return outs[0], got


def test_average_same_even_padding_counts_only_real_steps():
    # L=4, pool 3, stride 1: total padding 2 -> 1 each side, the mean of the real steps
    x = np.array([1.0, 2.0, 3.0, 7.0]).reshape(1, 4, 1)
    y = _run(AVG, {"pool_size": 3, "strides": 1, "padding": "same"}, x)
    np.testing.assert_allclose(y[0, :, 0], [1.5, 2.0, 4.0, 5.0])


def test_average_same_odd_padding_repeats_the_edges():
    # L=4, pool 2, stride 1: total 1 -> 0 left, 1 right, Keras (torch) repeats x[3]
    x = np.array([1.0, 2.0, 3.0, 7.0]).reshape(1, 4, 1)
    y, dx = _run(AVG, {"pool_size": 2, "strides": 1, "padding": "same"}, x,
                 np.ones((1, 4, 1)))
    np.testing.assert_allclose(y[0, :, 0], [1.5, 2.5, 5.0, 7.0])
    np.testing.assert_allclose(dx[0, :, 0], [0.5, 1.0, 1.0, 1.5])


def test_max_gradient_goes_to_the_first_maximum_and_windows_add_up():
    x = np.array([3.0, 3.0, 1.0, 5.0, 5.0]).reshape(1, 5, 1)
    y, dx = _run(MAX, {"pool_size": 2, "strides": 1, "padding": "valid"}, x,
                 np.array([1.0, 2.0, 4.0, 8.0]).reshape(1, 4, 1))
    np.testing.assert_array_equal(y[0, :, 0], [3.0, 3.0, 5.0, 5.0])
    np.testing.assert_array_equal(dx[0, :, 0], [1.0, 2.0, 0.0, 12.0, 0.0])


def test_max_same_padding_never_wins_over_negative_values():
    x = -np.arange(1.0, 6.0).reshape(1, 5, 1)
    y = _run(MAX, {"pool_size": 3, "strides": 2, "padding": "same"}, x)
    np.testing.assert_array_equal(y[0, :, 0], [-1.0, -2.0, -4.0])


def test_shape_rule_and_mask_rule():
    spec = {"x": Spec((None, 9, 4), "float64")}
    assert get_op(MAX).infer({"pool_size": 2, "strides": 2}, spec) == \
        [Spec((None, 4, 4), "float64")]
    assert get_op(AVG).infer({"pool_size": 2, "strides": 2, "padding": "same"}, spec) == \
        [Spec((None, 5, 4), "float64")]
    assert get_op(AVG).infer({"pool_size": 2, "strides": 1},
                             {"x": Spec((None, None, 4), "float32")})[0].shape == (None, None, 4)
    assert get_op(MAX).mask_rule({}) == get_op(AVG).mask_rule({}) == NO_MASK


@pytest.mark.parametrize("attrs,shape,dtype,message", [
    ({"pool_size": 0, "strides": 1}, (None, 5, 2), "float32", "pool_size must be a positive"),
    ({"pool_size": 2, "strides": 2, "padding": "causal"}, (None, 5, 2), "float32",
     "padding must be 'valid' or 'same'"),
    ({"pool_size": 6, "strides": 1}, (None, 5, 2), "float32", "shorter than pool_size=6"),
    ({"pool_size": 2, "strides": 1}, (None, 5), "float32", "batch, steps, channels"),
    ({"pool_size": 2, "strides": 1}, (None, 5, 2), "int32", "float data"),
])
def test_errors(attrs, shape, dtype, message):
    for op in (MAX, AVG):
        with pytest.raises(OpError, match=message.replace("(", r"\(")):
            get_op(op).infer(attrs, {"x": Spec(shape, dtype)})


def test_max_a_nan_wins_its_window_and_takes_the_gradient():
    x = np.array([1.0, np.nan, 3.0, 2.0]).reshape(1, 4, 1)
    y, dx = _run(MAX, {"pool_size": 2, "strides": 1, "padding": "valid"}, x,
                 np.array([1.0, 2.0, 4.0]).reshape(1, 3, 1))
    assert np.isnan(y[0, :2, 0]).all() and y[0, 2, 0] == 3.0
    np.testing.assert_array_equal(dx[0, :, 0], [0.0, 3.0, 4.0, 0.0])
