"""The recurrent layers' per-step product (graphmask/kernels/smallgemm.py): ``out = a @ w``
in register tiles for float32, ``np.dot`` otherwise."""
import numpy as np
import pytest
from numba import njit

from graphmask.kernels.smallgemm import matmul_into


@njit(cache=False)
def _mm(a, w, out):
    matmul_into(a, w, out)


def _problem(n, K, N, dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, K)).astype(dtype)
    w = rng.normal(size=(K, N)).astype(dtype)
    return a, w, np.full((n, N), np.nan, dtype)  # NaN: an element left unwritten shows


# every row count up to three full tiles and the 2- and 1-row tails; widths of one and
# several 16-column tiles, and widths the tiles do not cover (np.dot)
@pytest.mark.parametrize("n", range(0, 13))
@pytest.mark.parametrize("K,N", [(128, 64), (128, 512), (7, 16), (1, 32), (64, 40), (33, 8)])
def test_float32_product_matches_the_float64_truth(n, K, N):
    a, w, out = _problem(n, K, N, np.float32)
    _mm(a, w, out)
    truth = a.astype(np.float64) @ w.astype(np.float64)
    # float32 sums of K products: within K ulps of the largest partial sum
    bound = K * np.finfo(np.float32).eps * (np.abs(a).astype(np.float64) @ np.abs(w))
    assert np.all(np.abs(out - truth) <= bound + 1e-30)


def test_an_empty_inner_dimension_writes_zeros():
    a, w, out = _problem(6, 0, 32, np.float32)
    _mm(a, w, out)
    np.testing.assert_array_equal(out, np.zeros((6, 32), np.float32))


def test_a_rows_result_does_not_depend_on_the_other_rows():
    """Bit for bit: a row multiplied alone, in a full tile or in a tail gives the same
    result, so a step's rows may be cut into groups in any way (thread counts)."""
    a, w, _ = _problem(11, 128, 64, np.float32)
    full = np.empty((11, 64), np.float32)
    _mm(a, w, full)
    for lo in range(11):
        for hi in range(lo + 1, 12):
            part = np.empty((hi - lo, 64), np.float32)
            _mm(a[lo:hi], w, part)
            np.testing.assert_array_equal(part, full[lo:hi], err_msg=f"rows {lo}:{hi}")


def test_the_tiles_agree_with_blas_to_float32_accuracy():
    """The tiles sum in their own order (not np.dot's rounding), within float32's."""
    a, w, out = _problem(9, 128, 512, np.float32, seed=3)
    _mm(a, w, out)
    np.testing.assert_allclose(out, a @ w, rtol=2e-5, atol=2e-5)


def test_float64_goes_to_blas_unchanged():
    a, w, out = _problem(9, 128, 64, np.float64)
    _mm(a, w, out)
    np.testing.assert_array_equal(out, a @ w)


def test_arrays_that_are_not_c_contiguous_go_to_blas():
    a, w, _ = _problem(32, 9, 16, np.float32)
    at = np.asfortranarray(a[:, :8].copy().T.T)  # F order
    out = np.full((32, 16), np.nan, np.float32)
    _mm(at, w[:8], out)
    np.testing.assert_allclose(out, at @ w[:8], rtol=1e-6)

