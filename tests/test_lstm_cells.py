"""The LSTM cell's gate math in explicit vectors (graphmask/kernels/cells.py) against the
element loops it replaced: the same bits for float32 (whole vectors, ragged tails,
strided arrays), and the float64 loops against the LSTM equations in NumPy."""
import numpy as np
import pytest
from numba import njit

from graphmask.kernels import cells
from graphmask.kernels.cells import lstm_cell_backward, lstm_cell_forward
from graphmask.kernels.fastmath import lanewise

_loop_forward = njit(cache=False)(cells._forward_loop)
_loop_backward = njit(cache=False)(cells._backward_loop)


@njit(cache=False)
def _cells_forward(Z, c, h, rows, Cp, Tc, uoff, vector):
    # every row of every unit chunk of one step, as kernels/lstm.py runs them
    for q in range(uoff.size - 1):
        u0 = uoff[q]
        uq = uoff[q + 1] - u0
        Zq = Z[:, 4 * u0:4 * (u0 + uq)]
        Zq = np.ascontiguousarray(Zq)
        Cq = Cp[:, u0:u0 + uq].copy()
        Tq = Tc[:, u0:u0 + uq].copy()
        for j in range(Zq.shape[0]):
            if vector:
                lstm_cell_forward(Zq, j, c, h, rows[j], u0, Cq, Tq, uq)
            else:
                _loop_forward(Zq, j, c, h, rows[j], u0, Cq, Tq, uq)
        Z[:, 4 * u0:4 * (u0 + uq)] = Zq
        Cp[:, u0:u0 + uq] = Cq
        Tc[:, u0:u0 + uq] = Tq


@njit(cache=False)
def _cells_backward(A, Tc, Cp, rows, dh, dc, dZ, uoff, vector):
    for q in range(uoff.size - 1):
        u0 = uoff[q]
        uq = uoff[q + 1] - u0
        Aq = np.ascontiguousarray(A[:, 4 * u0:4 * (u0 + uq)])
        Tq = np.ascontiguousarray(Tc[:, u0:u0 + uq])
        Cq = np.ascontiguousarray(Cp[:, u0:u0 + uq])
        for r in range(Aq.shape[0]):
            if vector:
                lstm_cell_backward(Aq, Tq, Cq, r, dh, dc, rows[r], u0, dZ, uq)
            else:
                _loop_backward(Aq, Tq, Cq, r, dh, dc, rows[r], u0, dZ, uq)


def _uoff(H, chunk):
    return np.minimum(np.arange((H + chunk - 1) // chunk + 1) * chunk, H).astype(np.int64)


def _forward_case(H, chunk, dtype, seed=0, n=13, B=5):
    rng = np.random.default_rng(seed)
    Z = (rng.normal(scale=4.0, size=(n, 4 * H))).astype(dtype)
    Z[0, :4] = [0.0, -0.0, 90.0, -90.0]  # saturated gates
    c = rng.normal(size=(B, H)).astype(dtype)
    rows = rng.integers(0, B, size=n)
    rows[:B] = np.arange(B)  # every sample once first, then repeats (state carried)
    return Z, c, rows, _uoff(H, chunk)


def _run_forward(case, vector):
    Z, c, rows, uoff = (a.copy() for a in case)
    n, H = Z.shape[0], c.shape[1]
    h = np.zeros_like(c)
    Cp = np.zeros((n, H), Z.dtype)
    Tc = np.zeros((n, H), Z.dtype)
    _cells_forward(Z, c, h, rows, Cp, Tc, uoff, vector)
    return Z, c, h, Cp, Tc


@pytest.mark.parametrize("H,chunk", [(128, 16), (48, 16), (20, 16), (40, 8), (7, 7), (1, 1),
                                     (96, 32), (37, 37)])
def test_forward_cell_same_bits_as_element_loops(H, chunk):
    case = _forward_case(H, chunk, np.float32)
    for got, want in zip(_run_forward(case, True), _run_forward(case, False)):
        np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))


def _backward_case(H, chunk, dtype, seed=1, n=11, B=4):
    rng = np.random.default_rng(seed)
    A = rng.uniform(0.01, 0.99, size=(n, 4 * H)).astype(dtype)
    uoff = _uoff(H, chunk)
    for q in range(uoff.size - 1):  # the g block holds tanh values in (-1, 1)
        u0, uq = uoff[q], uoff[q + 1] - uoff[q]
        A[:, 4 * u0 + 2 * uq:4 * u0 + 3 * uq] = rng.uniform(-0.99, 0.99, size=(n, uq))
    Tc = rng.uniform(-0.99, 0.99, size=(n, H)).astype(dtype)
    Cp = rng.normal(size=(n, H)).astype(dtype)
    dh = rng.normal(size=(B, H)).astype(dtype)
    dc = rng.normal(size=(B, H)).astype(dtype)
    rows = rng.integers(0, B, size=n)
    return A, Tc, Cp, rows, dh, dc, uoff


def _run_backward(case, vector):
    A, Tc, Cp, rows, dh, dc, uoff = (a.copy() for a in case)
    dZ = np.full((A.shape[0], A.shape[1]), np.nan, A.dtype)
    _cells_backward(A, Tc, Cp, rows, dh, dc, dZ, uoff, vector)
    return dZ, dc


@pytest.mark.parametrize("H,chunk", [(128, 16), (48, 16), (20, 16), (40, 8), (7, 7), (1, 1),
                                     (96, 32)])
def test_backward_cell_same_bits_as_element_loop(H, chunk):
    case = _backward_case(H, chunk, np.float32)
    for got, want in zip(_run_backward(case, True), _run_backward(case, False)):
        assert not np.isnan(got).any()
        np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_float64_forward_is_the_lstm_cell():
    Z, c, rows, uoff = _forward_case(24, 16, np.float64, n=4, B=4)
    rows = np.arange(4)  # one row per sample: no carried state to replay
    Z0, c0 = Z.copy(), c.copy()
    Zo, co, h, Cp, Tc = _run_forward((Z, c, rows, uoff), True)
    for q in range(uoff.size - 1):
        u0, uq = uoff[q], uoff[q + 1] - uoff[q]
        z = Z0[:, 4 * u0:4 * (u0 + uq)]
        i, f = _sig(z[:, :uq]), _sig(z[:, uq:2 * uq])
        g = np.tanh(z[:, 2 * uq:3 * uq] / 2)  # the weights' g columns come times 2
        o = _sig(z[:, 3 * uq:])
        cn = f * c0[:, u0:u0 + uq] + i * g
        np.testing.assert_allclose(co[:, u0:u0 + uq], cn, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(Cp[:, u0:u0 + uq], c0[:, u0:u0 + uq], rtol=0, atol=0)
        np.testing.assert_allclose(Tc[:, u0:u0 + uq], np.tanh(cn), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(h[:, u0:u0 + uq], o * np.tanh(cn), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(Zo[:, 4 * u0:4 * (u0 + uq)],
                                   np.concatenate([i, f, g, o], axis=1), rtol=1e-12,
                                   atol=1e-12)


def test_float64_backward_is_the_lstm_cell_gradient():
    A, Tc, Cp, rows, dh, dc, uoff = _backward_case(24, 16, np.float64, n=4, B=4)
    rows = np.arange(4)
    dZ, dcn = _run_backward((A, Tc, Cp, rows, dh, dc, uoff), True)
    for q in range(uoff.size - 1):
        u0, uq = uoff[q], uoff[q + 1] - uoff[q]
        a = A[:, 4 * u0:4 * (u0 + uq)]
        i, f, g, o = (a[:, k * uq:(k + 1) * uq] for k in range(4))
        tc, cp = Tc[:, u0:u0 + uq], Cp[:, u0:u0 + uq]
        d_h, d_c = dh[:, u0:u0 + uq], dc[:, u0:u0 + uq]
        dct = d_c + d_h * o * (1 - tc ** 2)
        want = np.concatenate([dct * g * i * (1 - i), dct * cp * f * (1 - f),
                               dct * i * (1 - g ** 2), d_h * tc * o * (1 - o)], axis=1)
        np.testing.assert_allclose(dZ[:, 4 * u0:4 * (u0 + uq)], want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dcn[:, u0:u0 + uq], dct * f, rtol=1e-12, atol=1e-12)


_axpy = lanewise(3, lambda vm, v: {2: vm.builder.fadd(vm.builder.fmul(v[0], v[1]), v[2])})


@njit(cache=False)
def _axpy_rows(n, a, ia, b, ib, c, ic):
    _axpy(n, a, ia, b, ib, c, ic)


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 40])
def test_lanewise_operands_are_arrays_and_start_indices(n):
    # operands in one 2-D array, a strided view and a 1-D array: c[k] += a[k] * b[k]
    rng = np.random.default_rng(n)
    M = rng.normal(size=(3, 64)).astype(np.float32)
    S = rng.normal(size=(64, 6)).astype(np.float32)[:, ::2]  # not contiguous
    v = rng.normal(size=80).astype(np.float32)
    want = v.copy()
    want[5:5 + n] += M[1, 3:3 + n] * S[2:2 + n, 1]
    _axpy_rows(n, M, (1, 3), np.ascontiguousarray(S[:, 1]), (2,), v, (5,))
    np.testing.assert_array_equal(v, want)
    # an operand of any layout goes through the stack, with the same bits
    v2 = want.copy()
    v3 = want.copy()
    _axpy_rows(n, M, (2, 0), S.T, (1, 4), v2, (9,))
    v3[9:9 + n] += M[2, :n] * S.T[1, 4:4 + n]
    np.testing.assert_array_equal(v2, v3)


def test_lanewise_rejects_non_float32_operands():
    with pytest.raises(Exception, match="(?s)_axpy.*float64|No implementation"):
        _axpy_rows(4, np.zeros((2, 8)), (0, 0), np.zeros(8, np.float32), (0,),
                   np.zeros(8, np.float32), (0,))
