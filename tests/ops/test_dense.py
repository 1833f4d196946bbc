"""dense op: harness over ranks 2-4, with/without bias, fused activations; shape errors."""
import numpy as np
import pytest

from graphmask.ops import OpError, Spec, get_op
from tests.ops.harness import check_op

OP = "dense"


def _inputs(rng, shape, units, bias=True):
    d = shape[-1]
    inp = {"x": rng.standard_normal(shape), "kernel": rng.standard_normal((d, units)) * 0.5}
    if bias:
        inp["bias"] = rng.standard_normal(units)
    return inp


@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 6), (2, 3, 2, 5)])
@pytest.mark.parametrize("activation", ["linear", "relu", "tanh", "softmax", "gelu", "swish"])
def test_harness(shape, activation):
    rng = np.random.default_rng(len(shape) * 7 + len(activation))
    inp = _inputs(rng, shape, 3)
    attrs = {"units": 3, "activation": activation}
    check_op(OP, attrs, inp)
    check_op(OP, attrs, {k: v.astype(np.float32) for k, v in inp.items()}, fd=False,
             rtol=1e-4, atol=1e-5)


def test_no_bias():
    rng = np.random.default_rng(1)
    check_op(OP, {"units": 2, "activation": "sigmoid"}, _inputs(rng, (3, 4, 5), 2, bias=False))


def test_matches_plain_numpy():
    rng = np.random.default_rng(2)
    inp = _inputs(rng, (2, 3, 4), 5)
    inp = {k: v.astype(np.float32) for k, v in inp.items()}
    y = get_op(OP).forward({"units": 5, "activation": "relu"}, inp)
    assert len(y) == 1 and y[0].dtype == np.float32 and y[0].shape == (2, 3, 5)
    want = np.maximum(inp["x"] @ inp["kernel"] + inp["bias"], 0)
    np.testing.assert_allclose(y[0], want, rtol=1e-5, atol=1e-6)


def test_residual_only_for_input_dependent_activations():
    op = get_op(OP)
    assert op.n_residuals({"units": 2, "activation": "gelu"}) == 1
    assert op.n_residuals({"units": 2, "activation": "tanh"}) == 0
    assert op.mask_rule({"units": 2, "activation": None}).out == "pass"


def test_mixed_dtypes_promote():
    rng = np.random.default_rng(3)
    inp = _inputs(rng, (2, 3), 2)
    inp["x"] = inp["x"].astype(np.float32)
    y = get_op(OP).forward({"units": 2, "activation": None}, inp)[0]
    assert y.dtype == np.float64


def test_infer_errors():
    op = get_op(OP)
    a = {"units": 3, "activation": None}
    ok = {"x": Spec((None, 7, 4), "float32"), "kernel": Spec((4, 3), "float32"),
          "bias": Spec((3,), "float32")}
    assert op.infer(a, ok) == [Spec((None, 7, 3), "float32")]
    with pytest.raises(OpError, match="rank >= 2"):
        op.infer(a, {**ok, "x": Spec((4,), "float32")})
    with pytest.raises(OpError, match="5 features.*expects 4"):
        op.infer(a, {**ok, "x": Spec((None, 7, 5), "float32")})
    with pytest.raises(OpError, match="kernel"):
        op.infer(a, {**ok, "kernel": Spec((4, 2), "float32")})
    with pytest.raises(OpError, match="bias"):
        op.infer(a, {**ok, "bias": Spec((2,), "float32")})
    with pytest.raises(OpError, match="units"):
        op.infer({"units": 0, "activation": None}, ok)


def test_vjp_subsets_and_none_grad():
    rng = np.random.default_rng(4)
    inp = _inputs(rng, (3, 4), 2)
    op = get_op(OP)
    a = {"units": 2, "activation": "tanh"}
    out = op.forward(a, inp)
    g = op.vjp(a, inp, out, [None], ["kernel"])
    assert list(g) == ["kernel"]
    np.testing.assert_array_equal(g["kernel"], 0)


def test_empty_batch():
    rng = np.random.default_rng(5)
    inp = _inputs(rng, (0, 4), 2)
    op = get_op(OP)
    a = {"units": 2, "activation": "softmax"}
    out = op.forward(a, inp)
    assert out[0].shape == (0, 2)
    g = op.vjp(a, inp, out, [np.zeros((0, 2))], ["x", "kernel", "bias"])
    assert g["x"].shape == (0, 4)
    np.testing.assert_array_equal(g["kernel"], 0)
