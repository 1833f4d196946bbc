"""prim.masked_softmax: harness (kernel vs reference, VJP vs finite differences) on masks
with right/left padding, holes and empty rows, causal and windowed; Keras's three fills."""
import numpy as np
import pytest

from graphmask.ops import OpError, Spec, get_op
from tests.ops.harness import check_forward, check_op, check_vjp, random_mask

OP = "prim.masked_softmax"


def _inputs(seed, b=4, n=2, t=5, s=5, allow_empty=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, n, t, s)) * 2
    keep = random_mask(rng, b, s, allow_empty=allow_empty)[:, None, None, :]
    return x, keep


@pytest.mark.parametrize("attrs", [{}, {"causal": True}, {"window": 2},
                                   {"causal": True, "window": 3}, {"empty": "shift"}])
def test_harness_with_keep(attrs):
    x, keep = _inputs(len(attrs))
    # "shift" computes x - 1e9 on an empty row: finite differences of 1e-6 drown in its
    # rounding (1.2e-7 in float64), so they run on a mask without empty rows there
    shift = attrs.get("empty") == "shift"
    check_op(OP, attrs, {"x": x, "keep": keep}, fd=not shift)
    if shift:
        check_op(OP, attrs, {"x": x, "keep": _inputs(0, allow_empty=False)[1]})
    check_op(OP, attrs, {"x": x.astype(np.float32), "keep": keep}, fd=False)


@pytest.mark.parametrize("attrs", [{}, {"causal": True}, {"empty": "uniform"}])
def test_harness_without_keep_and_full_keep_shapes(attrs):
    x, _ = _inputs(7)
    check_op(OP, attrs, {"x": x})
    # a (B, T, S) mask of the same rank as the scores, query and key masks combined
    rng = np.random.default_rng(3)
    q = random_mask(rng, 4, 5)
    k = random_mask(rng, 4, 5, allow_empty=False)
    keep = (q[:, :, None] & k[:, None, :])[:, None]
    check_op(OP, attrs, {"x": x, "keep": keep}, fd=attrs.get("empty") != "uniform")


def test_uniform_empty_rows_kernel_and_vjp():
    """An empty row of the "uniform" fill is 1/S (rounding in Keras's formula); the
    finite differences of that rounding are 0, so only kernel vs reference is checked."""
    x, keep = _inputs(11)
    check_forward(OP, {"empty": "uniform"}, {"x": x, "keep": keep})
    check_vjp(OP, {"empty": "uniform"}, {"x": x, "keep": keep})
    y = get_op(OP).forward({"empty": "uniform"}, {"x": x.astype(np.float32), "keep": keep})[0]
    np.testing.assert_array_equal(y[0], np.full((2, 5, 5), 0.2, np.float32))


def test_values_exact():
    op = get_op(OP)
    x = np.array([[[0.0, np.log(3.0), 5.0], [1.0, 2.0, 3.0]]], np.float32)
    keep = np.array([[True, True, False]])
    y = op.forward({}, {"x": x, "keep": keep})[0]
    np.testing.assert_allclose(y[0], [[0.25, 0.75, 0], [1 / (1 + np.e), np.e / (1 + np.e), 0]],
                               rtol=1e-6)
    # causal: query 0 keeps key 0 only; query 1 keys 0 and 1
    yc = op.forward({"causal": True}, {"x": x})[0]
    np.testing.assert_allclose(yc[0, 0], [1, 0, 0])
    np.testing.assert_allclose(yc[0, 1], [1 / (1 + np.e), np.e / (1 + np.e), 0], rtol=1e-6)
    # window 1: each query keeps only its own position
    np.testing.assert_array_equal(op.forward({"window": 1}, {"x": x})[0][0],
                                  [[1, 0, 0], [0, 1, 0]])
    # the three fills of an empty row
    none = np.zeros((1, 3), bool)
    big = np.array([[[0.0, 20.0, 100.0]]], np.float32)  # 1e9 - x rounds to steps of 64
    assert not op.forward({}, {"x": big, "keep": none})[0].any()
    np.testing.assert_array_equal(op.forward({"empty": "uniform"}, {"x": big, "keep": none})[0],
                                  np.full((1, 1, 3), 1 / 3, np.float32))
    shift = op.forward({"empty": "shift"}, {"x": big, "keep": none})[0]
    z = (big - np.float32(1e9)).astype(np.float32)
    assert z[0, 0, 0] == z[0, 0, 1] != z[0, 0, 2]
    np.testing.assert_allclose(shift, np.exp(z - z.max()) / np.exp(z - z.max()).sum(),
                               rtol=1e-6)


def test_vjp_zero_into_dropped_keys_and_empty_rows():
    op = get_op(OP)
    x, keep = _inputs(5)
    x = x.astype(np.float32)
    y = op.forward({}, {"x": x, "keep": keep})
    g = np.ones_like(x) + np.arange(x.shape[-1], dtype=np.float32)
    dx = op.vjp({}, {"x": x, "keep": keep}, y, [g], ["x"])["x"]
    assert not dx[np.broadcast_to(~keep, x.shape)].any()
    assert not dx[0].any()  # row 0 of the batch keeps no key


def test_infer_and_errors():
    op = get_op(OP)
    assert op.infer({}, {"x": Spec((None, 4, None, None), "float32"),
                         "keep": Spec((None, 1, None, None), "bool")}) == [
        Spec((None, 4, None, None), "float32")]
    with pytest.raises(OpError, match=r"^prim.masked_softmax: input keep \(2, 3, 3\) must "
                                      r"broadcast to the scores x \(2, 3, 4\) without growing "
                                      r"them$"):
        op.infer({}, {"x": Spec((2, 3, 4), "float32"), "keep": Spec((2, 3, 3), "bool")})
    with pytest.raises(OpError, match="input keep must be bool, got float32"):
        op.infer({}, {"x": Spec((2, 3), "float32"), "keep": Spec((2, 3), "float32")})
    with pytest.raises(OpError, match="input x must hold float scores, got int32"):
        op.infer({}, {"x": Spec((2, 3), "int32")})
    with pytest.raises(OpError, match=r"input x must have rank >= 2 \(queries, keys\), got "
                                      r"shape \(3,\)"):
        op.infer({}, {"x": Spec((3,), "float32")})
    with pytest.raises(OpError, match=r"attrs\['empty'\] must be one of \['zero', 'uniform', "
                                      r"'shift'\], got 'nan'"):
        op.infer({"empty": "nan"}, {"x": Spec((2, 3), "float32")})
    with pytest.raises(OpError, match=r"attrs\['window'\] must be an int >= 0, got -1"):
        op.infer({"window": -1}, {"x": Spec((2, 3), "float32")})
    with pytest.raises(OpError, match=r"attrs\['causal'\] must be True or False, got 1"):
        op.infer({"causal": 1}, {"x": Spec((2, 3), "float32")})
