"""Unary primitives: harness on every op, values and gradients at the kinks, dtypes, errors."""
import warnings

import numpy as np
import pytest

from graphmask.ops import OpError, Spec, get_op
from graphmask.ops.base import IGNORES_MASK
from tests.ops.harness import check_op

UNARY = ["negative", "abs", "square", "sqrt", "exp", "log", "log1p", "tanh", "sigmoid",
         "softplus", "relu"]
# inputs inside each op's domain, away from kinks (finite differences need smoothness)
DOMAIN = {"sqrt": (0.2, 3.0), "log": (0.2, 3.0), "log1p": (-0.8, 3.0)}


def _x(name, shape, seed=0):
    rng = np.random.default_rng(seed)
    lo, hi = DOMAIN.get(name, (-3.0, 3.0))
    x = rng.uniform(lo, hi, shape)
    return np.where(np.abs(x) < 0.05, 0.5, x)


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("shape", [(), (7,), (2, 5), (2, 3, 4)])
def test_harness(name, shape):
    x = _x(name, shape)
    check_op(f"prim.{name}", {}, {"x": x})
    check_op(f"prim.{name}", {}, {"x": x.astype(np.float32)}, fd=False)


@pytest.mark.parametrize("name", UNARY + ["clip", "cast", "stop_gradient"])
def test_mask_rule_ignores_masks(name):
    assert get_op(f"prim.{name}").mask_rule({}) == IGNORES_MASK


def _grad(name, x, attrs=None):
    op = get_op(f"prim.{name}")
    x = np.asarray(x, np.float32)
    out = op.forward(attrs or {}, {"x": x})
    g = op.vjp(attrs or {}, {"x": x}, out, [np.ones_like(out[0])], ["x"])["x"]
    r = op.reference_vjp(attrs or {}, {"x": x}, [np.ones_like(out[0])], ["x"])["x"]
    np.testing.assert_array_equal(g, r)
    return out[0], g


def test_values_and_gradients_at_the_kinks():
    # relu and abs: derivative 0 at 0 (Keras 3 with torch)
    np.testing.assert_array_equal(_grad("relu", [-1, 0, 2])[1], [0, 0, 1])
    np.testing.assert_array_equal(_grad("abs", [-1, 0, 2])[1], [-1, 0, 1])
    # sqrt: inf at 0, NaN value and gradient below 0
    y, g = _grad("sqrt", [0, 4, -1])
    np.testing.assert_array_equal(y, [0, 2, np.nan])
    np.testing.assert_array_equal(g, [np.inf, 0.25, np.nan])
    # log: -inf at 0, gradient +inf
    y, g = _grad("log", [0, 1])
    np.testing.assert_array_equal(y, [-np.inf, 0])
    np.testing.assert_array_equal(g, [np.inf, 1])
    # softplus(0) = log 2 with slope 1/2; sigmoid(0) = 1/2 with slope 1/4
    y, g = _grad("softplus", [0])
    np.testing.assert_allclose(y, [np.log(2)], rtol=1e-7)
    np.testing.assert_array_equal(g, [0.5])
    np.testing.assert_array_equal(_grad("sigmoid", [0]), [[0.5], [0.25]])


def test_clip_gradient_passes_at_the_bounds():
    y, g = _grad("clip", [-2, -1, 0, 1, 3], {"min": -1.0, "max": 1.0})
    np.testing.assert_array_equal(y, [-1, -1, 0, 1, 1])
    np.testing.assert_array_equal(g, [0, 1, 1, 1, 0])


def test_clip_harness_away_from_bounds():
    x = _x("clip", (3, 4), seed=3)
    x = np.where(np.abs(np.abs(x) - 1) < 0.05, 0.3, x)
    check_op("prim.clip", {"min": -1.0, "max": 1.0}, {"x": x})


def test_extreme_inputs_are_finite_and_silent():
    x = np.array([-1000.0, -50.0, 50.0, 1000.0], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = get_op("prim.sigmoid").forward({}, {"x": x})[0]
        sp = get_op("prim.softplus").forward({}, {"x": x})[0]
    np.testing.assert_array_equal(s, [0, np.float32(1 / (1 + np.exp(50.0))), 1, 1])
    np.testing.assert_allclose(sp, [0, np.exp(-50.0), 50, 1000], rtol=1e-6)


@pytest.mark.parametrize("name,dtype,expected", [
    ("sqrt", "int32", "float32"), ("exp", "int64", "float32"), ("tanh", "bool", "float32"),
    ("sigmoid", "float64", "float64"), ("log", "float16", "float32"),
    ("negative", "int32", "int32"), ("abs", "int8", "int8"), ("abs", "bool", "bool"),
    ("square", "bool", "int32"), ("relu", "int64", "int64"), ("relu", "float16", "float32"),
])
def test_dtypes(name, dtype, expected):
    op = get_op(f"prim.{name}")
    assert op.infer({}, {"x": Spec((None, 2), dtype)}) == [Spec((None, 2), expected)]
    x = np.array([[1, 0], [1, 1]], dtype=dtype)
    assert op.forward({}, {"x": x})[0].dtype == expected
    assert op.reference({}, {"x": x})[0].dtype == expected


def test_int_inputs_keep_their_values():
    x = np.array([-3, 0, 2], np.int32)
    np.testing.assert_array_equal(get_op("prim.relu").forward({}, {"x": x})[0], [0, 0, 2])
    np.testing.assert_array_equal(get_op("prim.square").forward({}, {"x": x})[0], [9, 0, 4])
    np.testing.assert_allclose(get_op("prim.sqrt").forward({}, {"x": x})[0],
                               [np.nan, 0, np.sqrt(2)], rtol=1e-7)


@pytest.mark.parametrize("name", ["negative", "relu"])
def test_bool_refused(name):
    with pytest.raises(OpError, match=f"^prim.{name}: input x is bool, which prim.{name} "
                                      "does not take$"):
        get_op(f"prim.{name}").infer({}, {"x": Spec((2,), "bool")})


def test_unsupported_dtype():
    with pytest.raises(OpError, match=r"^prim.exp: input x has unsupported dtype 'complex64'"):
        get_op("prim.exp").infer({}, {"x": Spec((2,), "complex64")})


def test_clip_dtypes_and_errors():
    op = get_op("prim.clip")
    assert op.infer({"min": 0, "max": 5}, {"x": Spec((2,), "int32")})[0].dtype == "int32"
    assert op.infer({"min": 0, "max": 5}, {"x": Spec((2,), "bool")})[0].dtype == "int32"
    assert op.infer({"min": 0.0, "max": 5}, {"x": Spec((2,), "int32")})[0].dtype == "float32"
    assert op.infer({"min": 0, "max": 1}, {"x": Spec((2,), "float64")})[0].dtype == "float64"
    y = op.forward({"min": 0, "max": 5}, {"x": np.array([-3, 9], np.int32)})[0]
    assert y.dtype == np.int32 and y.tolist() == [0, 5]
    with pytest.raises(OpError, match=r"^prim.clip: attrs\['min'\]=2.0 is greater than "
                                      r"attrs\['max'\]=1.0$"):
        op.infer({"min": 2.0, "max": 1.0}, {"x": Spec((2,), "float32")})
    with pytest.raises(OpError, match=r"^prim.clip: attrs\['max'\] must be a number, got None"):
        op.infer({"min": 2.0}, {"x": Spec((2,), "float32")})
    with pytest.raises(OpError, match=r"attrs\['min'\] must be a number, got True"):
        op.infer({"min": True, "max": 2}, {"x": Spec((2,), "float32")})


def test_cast():
    op = get_op("prim.cast")
    x = np.array([1.7, -1.7, 0.0, 0.25])
    np.testing.assert_array_equal(op.forward({"dtype": "int32"}, {"x": x})[0], [1, -1, 0, 0])
    np.testing.assert_array_equal(op.forward({"dtype": "bool"}, {"x": x})[0],
                                  [True, True, False, True])
    assert op.infer({"dtype": "float64"}, {"x": Spec((None,), "int32")}) == [
        Spec((None,), "float64")]
    check_op("prim.cast", {"dtype": "float64"}, {"x": x.astype(np.float32)})
    # float -> float passes the gradient (in the input's dtype); float -> int gives none
    out = op.forward({"dtype": "float32"}, {"x": x})
    g = op.vjp({"dtype": "float32"}, {"x": x}, out, [np.ones(4, np.float32)], ["x"])["x"]
    assert g.dtype == np.float64 and g.tolist() == [1, 1, 1, 1]
    out = op.forward({"dtype": "int32"}, {"x": x})
    g = op.vjp({"dtype": "int32"}, {"x": x}, out, [None], ["x"])["x"]
    assert g.dtype == np.float64 and g.tolist() == [0, 0, 0, 0]
    assert op.reference_vjp({"dtype": "int32"}, {"x": x}, [None], ["x"])["x"].tolist() == [0] * 4
    with pytest.raises(OpError, match=r"^prim.cast: attrs\['dtype'\] must be one of bool, "
                                      r".*got 'float8'$"):
        op.infer({"dtype": "float8"}, {"x": Spec((2,), "float32")})


def test_stop_gradient():
    op = get_op("prim.stop_gradient")
    x = np.arange(6.0).reshape(2, 3)
    assert op.diff_ports == ()
    assert op.forward({}, {"x": x})[0] is x
    np.testing.assert_array_equal(op.reference({}, {"x": x})[0], x)
    assert op.infer({}, {"x": Spec((None, 3), "float32")}) == [Spec((None, 3), "float32")]


@pytest.mark.parametrize("name", ["tanh", "relu", "softplus", "exp"])
def test_no_gradient_gives_zeros(name):
    op = get_op(f"prim.{name}")
    x = np.linspace(-1, 1, 6).reshape(2, 3)
    out = op.forward({}, {"x": x})
    np.testing.assert_array_equal(op.vjp({}, {"x": x}, out, [None], ["x"])["x"], 0)
    np.testing.assert_array_equal(op.reference_vjp({}, {"x": x}, [None], ["x"])["x"], 0)
    assert op.vjp({}, {"x": x}, out, [None], []) == {}


def test_float32_gradients_stay_float32_and_noncontiguous_inputs_work():
    x = np.linspace(-2, 2, 24, dtype=np.float32).reshape(4, 6)[:, ::2]
    for name in ("tanh", "sigmoid", "relu", "square"):
        op = get_op(f"prim.{name}")
        out = op.forward({}, {"x": x})
        np.testing.assert_allclose(out[0], op.reference({}, {"x": x})[0], rtol=1e-6)
        g = op.vjp({}, {"x": x}, out, [np.ones((4, 3), np.float32)], ["x"])["x"]
        assert g.dtype == np.float32 and g.shape == (4, 3)
