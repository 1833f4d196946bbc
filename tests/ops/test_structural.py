"""add_n and identity: harness, dtype promotion, variadic ports, shape errors."""
import numpy as np
import pytest

from graphmask.ops import OpError, Spec, get_op
from tests.ops.harness import check_op, check_vjp


@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("shape", [(3,), (2, 5), (2, 3, 4)])
def test_add_n_harness(n, shape):
    rng = np.random.default_rng(n)
    inp = {f"x{i}": rng.standard_normal(shape) for i in range(n)}
    check_op("add_n", {"n": n}, inp)
    check_op("add_n", {"n": n}, {k: v.astype(np.float32) for k, v in inp.items()}, fd=False)
    y = get_op("add_n").forward({"n": n}, inp)[0]
    np.testing.assert_allclose(y, sum(inp.values()))


def test_add_n_does_not_write_into_inputs_and_promotes():
    a, b = np.ones(3, np.float32), np.full(3, 2.0)
    y = get_op("add_n").forward({"n": 2}, {"x0": a, "x1": b})[0]
    assert y.dtype == np.float64 and a[0] == 1
    np.testing.assert_array_equal(y, 3)


def test_add_n_errors():
    op = get_op("add_n")
    with pytest.raises(OpError, match="same shape"):
        op.infer({"n": 2}, {"x0": Spec((None, 3), "float32"), "x1": Spec((None, 4), "float32")})
    with pytest.raises(OpError, match="same shape"):
        op.forward({"n": 2}, {"x0": np.zeros((2, 3)), "x1": np.zeros((3, 3))})
    with pytest.raises(OpError, match="attrs\\['n'\\]"):
        op.ports({"n": 0})
    assert op.ports({"n": 3}) == ("x0", "x1", "x2")


def test_identity():
    x = np.random.default_rng(0).standard_normal((2, 3))
    check_op("identity", {}, {"x": x})
    assert get_op("identity").infer({}, {"x": Spec((None, 3), "int32")}) == [
        Spec((None, 3), "int32")]
    assert get_op("identity").mask_rule({}).out == "pass"


def _broken_vjp(attrs, inputs, outputs, grads, wrt):
    return {p: 2 * grads[0] for p in wrt}  # a wrong kernel gradient


@pytest.mark.parametrize("name, attrs, ports", [("add_n", {"n": 2}, ("x0", "x1")),
                                                ("identity", {}, ("x",))])
def test_reference_vjp_is_independent_of_the_kernel_vjp(monkeypatch, name, attrs, ports):
    """The harness compares ``vjp`` with ``reference_vjp``: that only means something if
    the reference does not call the kernel path, so a wrong ``vjp`` must be caught."""
    rng = np.random.default_rng(0)
    inp = {p: rng.standard_normal((2, 3)) for p in ports}
    op = get_op(name)
    monkeypatch.setattr(op, "vjp", _broken_vjp)
    with pytest.raises(AssertionError, match=rf"{name} d{ports[0]}: kernel vs reference"):
        check_vjp(name, attrs, inp)


def test_add_n_reference_vjp_values():
    op = get_op("add_n")
    x0, x1 = np.ones((2, 3), np.float32), np.ones((2, 3))
    g = np.arange(6.0).reshape(2, 3)
    d = op.reference_vjp({"n": 2}, {"x0": x0, "x1": x1}, [g], ["x0", "x1"])
    np.testing.assert_array_equal(d["x0"], g)
    np.testing.assert_array_equal(d["x1"], g)
    assert d["x0"].dtype == np.float32 and d["x1"].dtype == np.float64
    assert d["x1"] is not g  # a fresh array, never the cotangent itself
    d = op.reference_vjp({"n": 2}, {"x0": x0, "x1": x1}, [None], ["x1"])
    assert list(d) == ["x1"] and d["x1"].shape == (2, 3) and not d["x1"].any()


def test_identity_reference_vjp_values():
    op = get_op("identity")
    x = np.zeros((2, 2), np.float32)
    g = np.array([[1.5, -2.0], [0.25, 4.0]])
    d = op.reference_vjp({}, {"x": x}, [g], ["x"])["x"]
    assert d.dtype == np.float32
    np.testing.assert_array_equal(d, g)
    assert not op.reference_vjp({}, {"x": x}, [None], ["x"])["x"].any()
    assert op.reference_vjp({}, {"x": x}, [g], []) == {}
