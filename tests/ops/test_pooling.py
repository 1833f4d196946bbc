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


def _gmp_grads(x, dy):
    op = get_op(GMP)
    y = op.forward({}, {"x": x})[0]
    got = op.vjp({}, {"x": x}, [y], [dy], ["x"])["x"]
    ref = op.reference_vjp({}, {"x": x}, [dy], ["x"])["x"]
    assert got.dtype == ref.dtype == x.dtype
    np.testing.assert_array_equal(got, ref)
    return y, got


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gmp_ties_split_the_gradient_evenly(dtype):
    # Keras 3's ops.max (torch amax, JAX, TF): n tied maxima get dy / n each
    x = np.array([[[1.0, 5.0, -2.0], [3.0, 2.0, -2.0], [3.0, 5.0, -2.0], [3.0, 1.0, -2.0]]],
                 dtype=dtype)
    y, dx = _gmp_grads(x, np.array([[3.0, 2.0, 8.0]], dtype))
    np.testing.assert_array_equal(y, [[3.0, 5.0, -2.0]])
    np.testing.assert_array_equal(dx[0], [[0, 1, 2], [1, 0, 2], [1, 1, 2], [1, 0, 2]])


@pytest.mark.parametrize("kind", ["right", "left", "holes", "empty"])
def test_gmp_all_zero_padded_rows_tie(kind):
    # padded steps are all-zero rows: where no kept value is above 0, every step ties
    kept = {"right": [1, 1, 0, 0], "left": [0, 0, 1, 1], "holes": [1, 0, 1, 0],
            "empty": [0, 0, 0, 0]}[kind]
    m = np.array(kept, bool)
    x = np.zeros((1, 4, 2), np.float32)
    x[0, m, 0] = [-1.0, -3.0][: m.sum()]   # feature 0: kept values below the zero rows
    x[0, m, 1] = [2.0, 0.5][: m.sum()]     # feature 1: the first kept step is the maximum
    y, dx = _gmp_grads(x, np.array([[1.0, 4.0]], np.float32))
    n_pad = 4 - int(m.sum())
    np.testing.assert_array_equal(y, [[0.0, 2.0 if m.any() else 0.0]])
    want0 = np.where(m, 0.0, 1.0 / n_pad)
    want1 = np.zeros(4) if m.any() else np.full(4, 1.0)
    if m.any():
        want1[np.argmax(m)] = 4.0
    np.testing.assert_array_equal(dx[0, :, 0], want0.astype(np.float32))
    np.testing.assert_array_equal(dx[0, :, 1], want1)


def test_gmp_signed_zeros_and_infinities_tie():
    x = np.array([[[-0.0, np.inf], [0.0, np.inf], [-1.0, 1.0]],
                  [[-np.inf, -np.inf], [-np.inf, -np.inf], [-np.inf, -np.inf]]])
    y, dx = _gmp_grads(x, np.ones((2, 2)))
    np.testing.assert_array_equal(y, [[0.0, np.inf], [-np.inf, -np.inf]])
    np.testing.assert_array_equal(dx[0], [[0.5, 0.5], [0.5, 0.5], [0, 0]])
    np.testing.assert_array_equal(dx[1], np.full((3, 2), 1 / 3))


def test_gmp_nan_maximum_gives_nan_gradient_in_its_column():
    # as torch amax and JAX: the NaN wins the max, and its whole column's gradient is NaN
    x = np.array([[[1.0, np.nan], [3.0, 2.0], [3.0, np.nan]]])
    y, dx = _gmp_grads(x, np.array([[1.0, 2.0]]))
    np.testing.assert_array_equal(y, [[3.0, np.nan]])
    np.testing.assert_array_equal(dx[0], [[0, np.nan], [0.5, np.nan], [0.5, np.nan]])


def test_gmp_ties_match_a_sum_of_shares_under_finite_differences():
    # one-sided differences at a tie: raising one tied step moves the max by the full step,
    # lowering it moves nothing; the even split is their mean (the central difference)
    x = np.array([[[2.0], [2.0], [1.0]]])
    op = get_op(GMP)
    _, dx = _gmp_grads(x, np.ones((1, 1)))
    eps = 1e-3
    for s in range(3):
        up, down = x.copy(), x.copy()
        up[0, s, 0] += eps
        down[0, s, 0] -= eps
        fd = (op.reference({}, {"x": up})[0] - op.reference({}, {"x": down})[0]) / (2 * eps)
        np.testing.assert_allclose(dx[0, s, 0], fd[0, 0], rtol=1e-9)


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
