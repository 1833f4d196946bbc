"""activation op: harness on every activation, exact semantic checks, config errors."""
import numpy as np
import pytest

from graphmask.errors import ConfigError
from graphmask.ops import OpError, Spec, get_op
from graphmask.ops.activation import ACTIVATIONS, check_activation
from tests.ops.harness import check_op

OP = "activation"


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4), (2, 1, 3, 2)])
def test_harness(name, shape):
    rng = np.random.default_rng(hash((name, shape)) % 2**32)
    x = rng.standard_normal(shape) * 2
    if name == "relu":  # keep finite differences away from the kink at 0
        x = np.where(np.abs(x) < 1e-3, 0.5, x)
    check_op(OP, {"activation": name}, {"x": x})
    check_op(OP, {"activation": name}, {"x": x.astype(np.float32)}, fd=False)


def test_softmax_rows_sum_to_one_and_are_stable():
    x = np.array([[1000.0, 1000.0, -1000.0], [0.0, 1.0, 2.0]], dtype=np.float32)
    y = get_op(OP).forward({"activation": "softmax"}, {"x": x})[0]
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(y[0], [0.5, 0.5, 0.0])
    assert y.dtype == np.float32 and np.all(np.isfinite(y))


def test_exact_values():
    x = np.array([[-4.0, -3.0, -1.0, 0.0, 1.0, 3.0, 4.0]])
    def f(name):
        return get_op(OP).forward({"activation": name}, {"x": x})[0][0]
    np.testing.assert_allclose(f("relu"), [0, 0, 0, 0, 1, 3, 4])
    np.testing.assert_allclose(f("hard_sigmoid"), [0, 0, 1 / 3, 0.5, 2 / 3, 1, 1])
    np.testing.assert_allclose(f("elu"), np.where(x[0] > 0, x[0], np.exp(x[0]) - 1))
    np.testing.assert_allclose(f("silu"), f("swish"))
    np.testing.assert_allclose(f("gelu")[4], 0.8413447460685429, rtol=1e-12)  # exact erf
    np.testing.assert_allclose(f("softplus"), np.log1p(np.exp(x[0])))
    np.testing.assert_allclose(f("exponential"), np.exp(x[0]))
    np.testing.assert_array_equal(f("linear"), x[0])


def test_extreme_inputs_stay_finite():
    x = np.array([[-800.0, -50.0, 50.0, 700.0]])
    for name in ("sigmoid", "softplus", "swish", "elu", "tanh", "gelu"):
        y = get_op(OP).forward({"activation": name}, {"x": x})[0]
        assert np.all(np.isfinite(y)), name


def test_check_activation_suggests_closest():
    assert check_activation(None) == "linear"
    assert check_activation("gelu") == "gelu"
    with pytest.raises(ConfigError, match="did you mean 'sigmoid'"):
        check_activation("sigmod")
    with pytest.raises(ConfigError, match="did you mean 'relu'"):
        check_activation("Relu")


def test_infer_errors():
    op = get_op(OP)
    with pytest.raises(OpError, match="float"):
        op.infer({"activation": "relu"}, {"x": Spec((None, 3), "int32")})
    with pytest.raises(ConfigError):
        op.infer({"activation": "nope"}, {"x": Spec((None, 3), "float32")})
    assert op.mask_rule({"activation": "relu"}).out == "pass"


def test_no_gradient_gives_zeros():
    x = np.ones((2, 3))
    op = get_op(OP)
    out = op.forward({"activation": "tanh"}, {"x": x})
    g = op.vjp({"activation": "tanh"}, {"x": x}, out, [None], ["x"])["x"]
    np.testing.assert_array_equal(g, 0)
