"""Global pooling: harness with masks, all-masked rows give 0, NaN blocked, max pooling."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphmask.ops import MaskRule, OpError, Spec, get_op
from tests.ops.harness import check_op, random_mask

GAP, GMP = "global_average_pooling_1d", "global_max_pooling_1d"


@pytest.mark.parametrize("kind", ["right", "left", "holes", "any"])
@pytest.mark.parametrize("shape", [(4, 6, 3), (3, 1, 2), (5, 7, 1)])
def test_gap_harness_masked(kind, shape):
    rng = np.random.default_rng(shape[1] + len(kind))
    x = rng.standard_normal(shape)
    m = random_mask(rng, shape[0], shape[1], kind)
    check_op(GAP, {}, {"x": x, "mask": m}, data_port="x")
    check_op(GAP, {}, {"x": x.astype(np.float32), "mask": m}, fd=False, data_port="x")


def test_gap_unmasked_is_mean():
    x = np.random.default_rng(0).standard_normal((3, 4, 2))
    check_op(GAP, {}, {"x": x})
    np.testing.assert_allclose(get_op(GAP).forward({}, {"x": x})[0], x.mean(axis=1))


def test_gap_exact_all_masked_and_nan():
    x = np.array([[[1.0, 2.0], [3.0, 4.0], [np.nan, 9.0]],
                  [[np.nan, 1.0], [5.0, 5.0], [7.0, 7.0]]], dtype=np.float32)
    m = np.array([[True, True, False], [False, False, False]])
    op = get_op(GAP)
    for y in (op.forward({}, {"x": x, "mask": m})[0], op.reference({}, {"x": x, "mask": m})[0]):
        np.testing.assert_array_equal(y, [[2.0, 3.0], [0.0, 0.0]])
        assert y.dtype == np.float32
    dx = op.vjp({}, {"x": x, "mask": m}, [None], [np.ones((2, 2), np.float32)], ["x"])["x"]
    np.testing.assert_array_equal(dx[0], [[0.5, 0.5], [0.5, 0.5], [0, 0]])
    np.testing.assert_array_equal(dx[1], 0)
    assert op.mask_rule({}) == MaskRule(takes=True, uses=True, out="none")


@pytest.mark.parametrize("shape", [(4, 6, 3), (3, 1, 2)])
def test_gmp_harness(shape):
    x = np.random.default_rng(1).standard_normal(shape)
    check_op(GMP, {}, {"x": x})
    check_op(GMP, {}, {"x": x.astype(np.float32)}, fd=False)
    np.testing.assert_array_equal(get_op(GMP).forward({}, {"x": x})[0], x.max(axis=1))
    assert not get_op(GMP).mask_rule({}).takes


def test_gmp_ties_and_nan():
    x = np.array([[[1.0, np.nan], [3.0, 2.0], [3.0, np.nan]]])
    op = get_op(GMP)
    y = op.forward({}, {"x": x})[0]
    np.testing.assert_array_equal(y, [[3.0, np.nan]])
    dx = op.vjp({}, {"x": x}, [y], [np.array([[1.0, 2.0]])], ["x"])["x"]
    np.testing.assert_array_equal(dx[0], [[0, 2], [1, 0], [0, 0]])  # first maximum only


def test_infer_errors():
    with pytest.raises(OpError, match="timesteps"):
        get_op(GAP).infer({}, {"x": Spec((None, 3), "float32")})
    with pytest.raises(OpError, match="does not fit"):
        get_op(GAP).infer({}, {"x": Spec((None, 3, 2), "float32"),
                               "mask": Spec((None, 4), "bool")})
    with pytest.raises(OpError, match="at least one"):
        get_op(GMP).infer({}, {"x": Spec((None, 0, 2), "float32")})
    assert get_op(GAP).infer({}, {"x": Spec((None, None, 2), "float64")}) == [
        Spec((None, 2), "float64")]


@settings(deadline=None)
@given(b=st.integers(1, 4), t=st.integers(1, 6), f=st.integers(1, 3),
       seed=st.integers(0, 2**16), kind=st.sampled_from(["right", "left", "holes"]))
def test_gap_property_matches_mean_of_kept_steps(b, t, f, seed, kind):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, t, f)).astype(np.float32)
    m = random_mask(rng, b, t, kind)
    x[~m] = np.nan  # padding content must never matter
    y = get_op(GAP).forward({}, {"x": x, "mask": m})[0]
    for i in range(b):
        want = x[i, m[i]].mean(axis=0) if m[i].any() else np.zeros(f, np.float32)
        np.testing.assert_allclose(y[i], want, rtol=1e-5, atol=1e-6)
