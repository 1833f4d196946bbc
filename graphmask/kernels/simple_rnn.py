"""numba kernels of the SimpleRNN op (forward and backward), mask-aware.

The compact-row layout of the LSTM and GRU kernels (``kernels/lstm.py``): every kept
(sample, timestep) pair is one row, grouped by processing step, and a sample's state
stays put at a step where it has no row. The input projection ``x @ kernel + bias`` of
all kept rows is one GEMM up front; each step multiplies its rows' ``h_{t-1}`` by the
recurrent kernel and applies the activation; the backward pass gets the pre-activation
gradients step by step (``dh_{t-1} = dA_t @ U.T``), then the weight and input gradients
as GEMMs over all kept rows. One thread (a SimpleRNN step is a single H x H product);
BLAS calls stay under ``SERIAL_MNK`` so OpenBLAS runs on the calling thread.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import jit
from graphmask.kernels.blas import gemm_into
from graphmask.kernels.lstm import (
    ACTIVATIONS,
    _act_inplace,
    _add_gy,
    _dact,
    _step_times,
    _write_y,
    lstm_schedule,
)
from graphmask.kernels.smallgemm import blocked_dot, matmul_into

__all__ = ["ACTIVATIONS", "schedule", "simple_rnn_forward", "simple_rnn_backward"]

schedule = lstm_schedule


@jit
def _forward_steps(Xc, k, b, rk, offsets, rows, mask, backwards, act, ret_seq, zero_masked, y,
                   h, Hp, Y, G):
    B, H = h.shape
    T = offsets.size - 1
    N = Xc.shape[0]
    if N > 0:
        blocked_dot(Xc, k, Y)
    for t in range(T):
        o0 = offsets[t]
        n = offsets[t + 1] - o0
        for j in range(n):  # explicit loops: numba's array assignments compile shape checks
            hb = h[rows[o0 + j]]  # that format their error messages (slow to compile)
            hp = Hp[o0 + j]
            for u in range(H):
                hp[u] = hb[u]
        if n > 0:
            matmul_into(Hp[o0:o0 + n], rk, G[:n])
        for j in range(n):
            yr = Y[o0 + j]
            g = G[j]
            for u in range(H):
                yr[u] += g[u] + b[u]
        _act_inplace(Y[o0:o0 + n].reshape(n * H), act)
        for j in range(n):
            hb = h[rows[o0 + j]]
            yr = Y[o0 + j]
            for u in range(H):
                hb[u] = yr[u]
        if ret_seq:
            _write_y(y, h, mask, t, backwards, zero_masked)


def simple_rnn_forward(x, k, b, rk, offsets, rows, mask, backwards, act, ret_seq,
                       zero_masked, y, h):
    """Forward over kept rows; ``h`` (B, H) enters as the initial state and ends as the
    final one, ``y`` (B, T, H) is written when ``ret_seq`` (the carried ``h`` at masked
    steps). Returns the residuals Xc (N, D), Hp (N, H) (``h_{t-1}`` of each row) and Y
    (N, H) (each row's new state)."""
    B, T, D = x.shape
    H = h.shape[1]
    N = rows.size
    Xc = np.empty((N, D), x.dtype)
    if N:
        np.take(x.reshape(B * T, D), rows * T + _step_times(offsets, backwards, T), axis=0,
                out=Xc)
    Y = np.empty((N, H), x.dtype)
    Hp = np.empty((N, H), x.dtype)
    G = np.empty((B, H), x.dtype)
    _forward_steps(Xc, k, b, rk, offsets, rows, mask, backwards, act, ret_seq, zero_masked, y,
                   h, Hp, Y, G)
    return Xc, Hp, Y


@jit
def _backward_steps(Xc, Hp, Y, kT, rkT, offsets, rows, mask, backwards, act, ret_seq,
                    zero_masked, gy, dh, dA, DH, dK, dR, dXc, db):
    N, D = Xc.shape
    H = Hp.shape[1]
    T = offsets.size - 1
    one = Y.dtype.type(1.0)
    sixth = one / Y.dtype.type(6.0)
    for t in range(T - 1, -1, -1):
        if ret_seq:
            _add_gy(dh, gy, mask, t, backwards, zero_masked)
        o0 = offsets[t]
        n = offsets[t + 1] - o0
        for j in range(n):
            b = rows[o0 + j]
            yr = Y[o0 + j]
            da = dA[o0 + j]
            for u in range(H):
                da[u] = dh[b, u] * _dact(yr[u], act, one, sixth)
        if n > 0:
            matmul_into(dA[o0:o0 + n], rkT, DH[:n])
        for j in range(n):
            hb = dh[rows[o0 + j]]
            d = DH[j]
            for u in range(H):
                hb[u] = d[u]
    if N > 0:
        gemm_into(Xc.T, dA, dK)
        gemm_into(Hp.T, dA, dR)
        blocked_dot(dA, kT, dXc)
    for r in range(N):
        for u in range(H):
            db[u] += dA[r, u]


def simple_rnn_backward(Xc, Hp, Y, k, rk, offsets, rows, mask, backwards, act, ret_seq,
                        zero_masked, gy, dh, B):
    """Backpropagation through time over kept rows. ``dh`` (B, H) enters as the
    gradient w.r.t. the final state and leaves as the one w.r.t. the initial state.
    Returns dx (B, T, D), d kernel, d recurrent kernel, d bias."""
    N, D = Xc.shape
    H = Hp.shape[1]
    T = offsets.size - 1
    dt = Y.dtype
    dA = np.empty((N, H), dt)
    DH = np.empty((B, H), dt)
    dK = np.zeros((D, H), dt)
    dR = np.zeros((H, H), dt)
    dXc = np.empty((N, D), dt)
    db = np.zeros(H, dt)
    _backward_steps(Xc, Hp, Y, np.ascontiguousarray(k.T), np.ascontiguousarray(rk.T), offsets,
                    rows, mask, backwards, act, ret_seq, zero_masked, gy, dh, dA, DH, dK, dR,
                    dXc, db)
    dx = np.zeros((B, T, D), dt)
    if N:
        dx.reshape(B * T, D)[rows * T + _step_times(offsets, backwards, T)] = dXc
    return dx, dK, dR, db
