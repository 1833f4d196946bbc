"""Conv1D op: the shared harness over paddings, strides, dilations, groups and
activations; exact small cases; geometry and errors."""
import numpy as np
import pytest

from graphmask.ops import OpError, Spec, get_op
from graphmask.ops.base import NO_MASK
from graphmask.ops.conv import conv_geometry
from tests.ops.harness import check_op

OP = "conv1d"


def _inputs(rng, b, length, c, k, f, groups=1, bias=True):
    inp = {"x": rng.standard_normal((b, length, c)),
           "kernel": rng.standard_normal((k, c // groups, f))}
    if bias:
        inp["bias"] = rng.standard_normal(f)
    return inp


@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
@pytest.mark.parametrize("strides,dilation", [(1, 1), (2, 1), (3, 1), (1, 2), (1, 3)])
def test_harness_paddings_strides_dilations(padding, strides, dilation):
    rng = np.random.default_rng(strides * 10 + dilation)
    attrs = {"strides": strides, "dilation_rate": dilation, "padding": padding}
    inp = _inputs(rng, 2, 8, 3, 3, 4)
    check_op(OP, attrs, inp)
    check_op(OP, attrs, {p: a.astype(np.float32) for p, a in inp.items()}, fd=False,
             rtol=1e-5, atol=1e-5)  # float32: sums of 9 products of N(0,1) values


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu", "swish"])
@pytest.mark.parametrize("groups", [1, 2])
def test_harness_activations_groups_no_bias(activation, groups):
    rng = np.random.default_rng(groups)
    attrs = {"padding": "same", "groups": groups, "activation": activation}
    check_op(OP, attrs, _inputs(rng, 2, 5, 4, 2, 6, groups, bias=False))
    check_op(OP, {**attrs, "strides": 2}, _inputs(rng, 3, 6, 4, 3, 2, groups))


def test_exact_causal_dilated_values():
    # y[t] = x[t] * 1 + x[t - 2] * 10 (kernel_size 2, dilation 2, causal): never the future
    x = np.arange(1.0, 6.0).reshape(1, 5, 1)
    w = np.array([[[10.0]], [[1.0]]])
    op = get_op(OP)
    attrs = {"padding": "causal", "dilation_rate": 2}
    for y in (op.forward(attrs, {"x": x, "kernel": w})[0],
              op.reference(attrs, {"x": x, "kernel": w})[0]):
        np.testing.assert_array_equal(y[0, :, 0], [1.0, 2.0, 13.0, 24.0, 35.0])


def test_exact_same_padding_stride_2_puts_the_extra_step_right():
    # L=6, K=4, s=2: ceil(6/2)=3 steps, total padding (3-1)*2+4-6 = 2 -> 1 left, 1 right
    assert conv_geometry(6, 4, 2, "same") == (3, 1, 1)
    # L=5, K=4, s=1: total 3 -> 1 left, 2 right (Keras 3 on every backend)
    assert conv_geometry(5, 4, 1, "same") == (5, 1, 2)
    assert conv_geometry(7, 3, 2, "valid") == (3, 0, 0)
    assert conv_geometry(7, 5, 3, "causal") == (3, 4, 0)
    assert conv_geometry(None, 3, 1, "same") == (None, None, None)
    x = np.ones((1, 5, 1))
    y = get_op(OP).forward({"padding": "same"}, {"x": x, "kernel": np.ones((4, 1, 1))})[0]
    np.testing.assert_array_equal(y[0, :, 0], [3.0, 4.0, 4.0, 3.0, 2.0])


def test_dtype_and_shape_rule():
    op = get_op(OP)
    specs = {"x": Spec((None, None, 4), "float32"), "kernel": Spec((3, 2, 6), "float32")}
    assert op.infer({"groups": 2, "padding": "same"}, specs) == [Spec((None, None, 6),
                                                                      "float32")]
    specs = {"x": Spec((None, 9, 4), "float64"), "kernel": Spec((3, 4, 5), "float32")}
    assert op.infer({"strides": 2}, specs) == [Spec((None, 4, 5), "float64")]
    assert op.mask_rule({}) == NO_MASK


@pytest.mark.parametrize("attrs,specs,message", [
    ({"padding": "full"}, None, "padding must be one of"),
    ({"strides": 0}, None, "strides must be a positive int, got 0"),
    ({"strides": 2, "dilation_rate": 2}, None, "strides > 1 is not supported"),
    ({"groups": 3}, None, "4 channels, not divisible by groups=3"),
    ({}, {"kernel": Spec((3, 2, 2), "float32")}, "needs 4 input channels per group"),
    ({}, {"x": Spec((None, 2, 4), "float32")}, "shorter than the kernel's span 3"),
    ({}, {"x": Spec((None, 6, 4), "int32")}, "float data"),
    ({}, {"x": Spec((None, 6), "float32")}, "(batch, steps, channels)"),
])
def test_errors(attrs, specs, message):
    base = {"x": Spec((None, 6, 4), "float32"), "kernel": Spec((3, 4, 2), "float32")}
    with pytest.raises(OpError, match=message.replace("(", r"\(").replace(")", r"\)")):
        get_op(OP).infer(attrs, {**base, **(specs or {})})
