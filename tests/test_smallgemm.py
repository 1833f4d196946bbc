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



# --- the wide tiles (AVX-512: 8 rows x 32 columns) --------------------------------------
# matmul_into takes them on AVX-512 hosts only; these tests call them directly, so
# they run (and must hold) on every host numba compiles AVX-512 code for.

from graphmask.kernels import smallgemm  # noqa: E402


@njit(cache=False)
def _wide(a, w, out):  # out = a @ w by the wide tiles (they add to their output)
    out[:] = 0
    smallgemm._wide_tiles_add(a, w, out)


@njit(cache=False)
def _narrow(a, w, out):
    out[:] = 0
    smallgemm._narrow_tiles_add(a, w, out)


def _host_has_avx512():
    from llvmlite import binding
    return bool(binding.get_host_cpu_features().get("avx512f", False))


def test_matmul_into_takes_the_wide_tiles_exactly_on_avx512_hosts():
    assert smallgemm.WIDE == _host_has_avx512()


wide_only = pytest.mark.skipif(not _host_has_avx512(),
                               reason="16-lane vectors need an AVX-512 CPU")


@wide_only
@pytest.mark.parametrize("n", range(0, 21))  # 8-row tiles and every 4/2/1-row tail
@pytest.mark.parametrize("K,N", [(128, 64), (128, 32), (512, 128), (3, 96)])
def test_wide_tiles_equal_the_narrow_tiles_bit_for_bit(n, K, N):
    """Both sum every element in the same order (blocks of KBLOCK fused multiply-adds),
    so the AVX-512 path changes no result of the AVX2 path."""
    a, w, wide = _problem(n, K, N, np.float32, seed=n)
    narrow = np.full_like(wide, np.nan)
    _wide(a, w, wide)
    _narrow(a, w, narrow)
    np.testing.assert_array_equal(wide, narrow)
    truth = a.astype(np.float64) @ w.astype(np.float64)
    bound = K * np.finfo(np.float32).eps * (np.abs(a).astype(np.float64) @ np.abs(w))
    assert np.all(np.abs(wide - truth) <= bound + 1e-30)


@wide_only
def test_wide_tiles_rows_do_not_depend_on_the_other_rows():
    a, w, _ = _problem(19, 128, 64, np.float32, seed=5)
    full = np.empty((19, 64), np.float32)
    _wide(a, w, full)
    for lo in range(19):
        for hi in range(lo + 1, 20):
            part = np.empty((hi - lo, 64), np.float32)
            _wide(a[lo:hi], w, part)
            np.testing.assert_array_equal(part, full[lo:hi], err_msg=f"rows {lo}:{hi}")


@pytest.mark.parametrize("N", [48, 16, 80])  # multiples of 16, not of 32
def test_widths_off_the_wide_grid_still_use_tiles_and_agree(N):
    a, w, out = _problem(13, 64, N, np.float32, seed=N)
    _mm(a, w, out)
    ref = np.empty_like(out)
    _narrow(a, w, ref)
    np.testing.assert_array_equal(out, ref)


def test_blocked_dot_keeps_each_call_under_the_serial_size():
    """np.dot in row blocks: same values as one np.dot to float32 accuracy, and every
    block is at most row_block rows (a multiple of 8 when it can be)."""
    assert smallgemm.SERIAL_MNK == 262144
    assert smallgemm.row_block(128 * 64) == 32
    assert smallgemm.row_block(100 * 100) == 24  # 26 rows fit; cut to a multiple of 8
    assert smallgemm.row_block(128 * 512) == 4  # fewer than 8 fit: as many as fit
    assert smallgemm.row_block(10 ** 9) == 1
    a, w, out = _problem(100, 128, 40, np.float64, seed=2)
    _mm(a, w, out)
    np.testing.assert_allclose(out, a @ w, rtol=1e-12, atol=1e-12)


# ---- out += a @ w (the LSTM step adds h_{t-1} @ recurrent_kernel to the projection) ---------
@njit(cache=False)
def _mm_add(a, w, out, scratch):
    smallgemm.matmul_add_into(a, w, out, scratch)


@njit(cache=False)
def _narrow_add(a, w, out):
    smallgemm._narrow_tiles_add(a, w, out)


@pytest.mark.parametrize("n", [0, 1, 3, 7, 8, 9, 13, 20])
@pytest.mark.parametrize("K,N,dtype", [(128, 64, np.float32), (128, 32, np.float32),
                                       (64, 48, np.float32), (512, 128, np.float32),
                                       (64, 40, np.float32), (128, 64, np.float64)])
def test_matmul_add_into_has_the_bits_of_a_product_then_a_sum(n, K, N, dtype):
    """The product is summed in full, then added: exactly ``matmul_into`` into a scratch
    and ``+=``. Tiled arrays leave the scratch alone (NaN stays); the others (float64, a
    width off the 16-column grid) go through it."""
    a, w, _ = _problem(n, K, N, dtype, seed=n + K)
    base = np.random.default_rng(n).normal(size=(n, N)).astype(dtype)
    expected = np.full((n, N), np.nan, dtype)
    _mm(a, w, expected)
    expected += base
    out = base.copy()
    scratch = np.full((n, N), np.nan, dtype)
    _mm_add(a, w, out, scratch)
    np.testing.assert_array_equal(out, expected)
    tiled = dtype == np.float32 and N % 16 == 0
    if n > 0:
        assert np.isnan(scratch).all() == tiled
    if tiled:  # the AVX2 tiles too, on any host
        narrow = base.copy()
        _narrow_add(a, w, narrow)
        np.testing.assert_array_equal(narrow, expected)
