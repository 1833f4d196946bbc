"""``gemm_into`` (graphmask/kernels/blas.py): the BLAS calls of numba's np.dot(a, b, out)
without its wrapper: the same bits for every layout and shape the kernels use, and it
compiles in kernels built without numba's runtime."""
import numba
import numpy as np
import pytest

from graphmask.kernels.blas import gemm_into


@numba.njit(cache=False)
def _ours(a, b, out):
    gemm_into(a, b, out)


@numba.njit(cache=False)
def _numbas(a, b, out):
    np.dot(a, b, out)


@numba.njit(cache=False, _nrt=False)
def _rows_without_runtime(a, b, out, step):
    # row blocks and transposed views, as the task kernels make them
    for i in range(0, a.shape[0], step):
        e = min(a.shape[0], i + step)
        gemm_into(a[i:e], b, out[i:e])


def _operand(rng, shape, layout, dtype):
    x = rng.normal(size=shape).astype(dtype)
    return x if layout == "C" else np.asfortranarray(x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("la,lb", [("C", "C"), ("F", "C"), ("C", "F"), ("F", "F")])
@pytest.mark.parametrize("m,k,n", [(37, 64, 96), (1, 64, 96), (37, 64, 1), (1, 5, 1),
                                   (8, 1, 16), (0, 4, 3), (3, 0, 4), (3, 4, 0)])
def test_same_bits_as_numba_np_dot(dtype, la, lb, m, k, n):
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    a = _operand(rng, (m, k), la, dtype)
    b = _operand(rng, (k, n), lb, dtype)
    got = np.full((m, n), np.nan, dtype)
    want = np.full((m, n), np.nan, dtype)
    _ours(a, b, got)
    _numbas(a, b, want)
    np.testing.assert_array_equal(got, want)
    if m and n:
        np.testing.assert_allclose(got, a.astype(np.float64) @ b.astype(np.float64),
                                   rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-4)


def test_works_in_kernels_without_numbas_runtime():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 32)).astype(np.float32)
    b = rng.normal(size=(32, 24)).astype(np.float32)
    got = np.zeros((50, 24), np.float32)
    _rows_without_runtime(a, b, got, 16)
    want = np.zeros_like(got)
    for i in range(0, 50, 16):
        _numbas(a[i:i + 16], b, want[i:i + 16])
    np.testing.assert_array_equal(got, want)


@pytest.mark.filterwarnings("ignore::numba.NumbaPerformanceWarning")  # the point of the test
def test_other_layouts_go_to_np_dot():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(12, 10)).astype(np.float32)[:, ::2]  # neither C nor F
    b = rng.normal(size=(5, 7)).astype(np.float32)
    got = np.zeros((12, 7), np.float32)
    _ours(a, b, got)
    want = np.zeros_like(got)
    _numbas(a, b, want)
    np.testing.assert_array_equal(got, want)
