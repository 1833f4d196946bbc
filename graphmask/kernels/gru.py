"""numba kernels of the GRU op (forward and backward), mask-aware.

The layout and the discipline are the LSTM's (``kernels/lstm.py``): every kept (sample,
timestep) pair is one *compact row*, grouped by processing step (``offsets``, ``rows``);
masked pairs have no row, so a sample's state stays put at a step where it has none. The
input projection of all kept rows is done up front in GEMMs; each step multiplies only
its rows' ``h_{t-1}`` by the recurrent kernel, fused with the gate math; the backward
pass computes the gate gradients step by step, then the weight and input gradients as
big GEMMs over all kept rows. BLAS calls stay under ``SERIAL_MNK`` (OpenBLAS on the
calling thread), float64 runs one-thread twins, scratch comes from the LSTM's per-thread
workspaces.

Gates are z, r, h (Keras order). The units are cut into chunks of ``UNIT_CHUNK``; a
weight with 3H gate columns is *packed* (chunk q's z, r, h columns side by side), and
one step runs one task per thread over a range of chunks. The per-row gate values are
kept gate-major, each (N, H) array cut by unit chunks (chunk q is the (N, uq) block at
``N * uoff[q]``), so the activations run as long contiguous loops over a step's rows.

reset_after=True (Keras 3's default): one GEMM per step ``h_{t-1} @ U`` (3H columns).
reset_after=False: ``h_{t-1} @ U[:, :2H]`` gives z and r, then (all chunks done)
``(r * h_{t-1}) @ U[:, 2H:]`` the candidate: two fork/joins per step.
"""
from __future__ import annotations

import numba
import numpy as np

from graphmask.kernels import jit, jit_parallel, parallel_launch
from graphmask.kernels.lstm import (
    ACTIVATIONS,
    PARALLEL_MIN_WORK,
    _act_inplace,
    _add_gy,
    _dact,
    _gather_h,
    _one_thread_twin,
    _row_block,
    _span,
    _write_y,
    lstm_schedule,
    threads_for,
    unit_chunks,
    workspace,
)

__all__ = ["schedule", "forward", "backward", "pack", "permute", "unpermute"]

schedule = lstm_schedule


@jit
def permute(W, uoff, ng):
    """The ``ng`` H-wide gate blocks of ``W`` (R, ng H) in packed order: chunk q's gate
    columns side by side at columns ``ng * uoff[q]:ng * uoff[q + 1]``."""
    R = W.shape[0]
    H = uoff[-1]
    out = np.empty((R, ng * H), W.dtype)
    for q in range(uoff.size - 1):
        u0 = uoff[q]
        uq = uoff[q + 1] - u0
        for i in range(R):
            for gi in range(ng):
                for k in range(uq):
                    out[i, ng * u0 + gi * uq + k] = W[i, gi * H + u0 + k]
    return out


@jit
def unpermute(P, uoff, ng):
    """Inverse of :func:`permute`: (R, ng H) in Keras column order."""
    R = P.shape[0]
    H = uoff[-1]
    out = np.empty((R, ng * H), P.dtype)
    for q in range(uoff.size - 1):
        u0 = uoff[q]
        uq = uoff[q + 1] - u0
        for i in range(R):
            for gi in range(ng):
                for k in range(uq):
                    out[i, gi * H + u0 + k] = P[i, ng * u0 + gi * uq + k]
    return out


@jit
def pack(W, uoff, ng):
    """:func:`permute` cut into contiguous chunk blocks, flat: chunk q is the
    (R, ng uq) block at ``R * ng * uoff[q]``."""
    R = W.shape[0]
    H = uoff[-1]
    out = np.empty(R * ng * H, W.dtype)
    for q in range(uoff.size - 1):
        u0 = uoff[q]
        uq = uoff[q + 1] - u0
        blk = out[R * ng * u0:R * ng * (u0 + uq)].reshape(R, ng * uq)
        for i in range(R):
            for gi in range(ng):
                for k in range(uq):
                    blk[i, gi * uq + k] = W[i, gi * H + u0 + k]
    return out


class gru_threads(threads_for):
    """:class:`~graphmask.kernels.lstm.threads_for` for 3H gate columns."""

    def __init__(self, n: int, H: int):
        self.serial = n * H * 3 * H < PARALLEL_MIN_WORK


@jit
def _ntasks(work, Q, nthreads):
    if work < PARALLEL_MIN_WORK:
        return 1
    return max(1, min(nthreads, Q))


# ---- forward ----------------------------------------------------------------------------
@jit
def _proj_task(task, ntask, Xc, kp, bp, P, uoff):
    """``x_t @ kernel + bias`` of a block of kept rows into P (chunk q: (N, 3 uq))."""
    N, D = Xc.shape
    a, e = _span(task, ntask, N)
    if e == a:
        return
    for q in range(uoff.size - 1):
        u0 = uoff[q]
        w = 3 * (uoff[q + 1] - u0)
        Pq = P[N * 3 * u0:N * 3 * u0 + N * w].reshape(N, w)
        Wq = kp[D * 3 * u0:D * 3 * u0 + D * w].reshape(D, w)
        mr = _row_block(D * w)
        for a2 in range(a, e, mr):
            e2 = min(e, a2 + mr)
            np.dot(Xc[a2:e2], Wq, Pq[a2:e2])
        for r in range(a, e):
            for k in range(w):
                Pq[r, k] += bp[3 * u0 + k]


@jit
def _fwd_after_task(task, ntask, o0, n, uoff, rows, rkp, brh, P, G, Hp, Z, R, HH, RH, h,
                    act, ract):
    """One reset_after step for a group of unit chunks: ``h_{t-1} @ U`` for the chunk's
    z, r, h columns, then the gate math of its units."""
    B, H = h.shape
    N = Hp.shape[0]
    one = P.dtype.type(1.0)
    q0, q1 = _span(task, ntask, uoff.size - 1)
    for q in range(q0, q1):
        u0 = uoff[q]
        uq = uoff[q + 1] - u0
        w = 3 * uq
        Gq = G[B * 3 * u0:B * 3 * u0 + B * w].reshape(B, w)
        Wq = rkp[H * 3 * u0:H * 3 * u0 + H * w].reshape(H, w)
        mr = _row_block(H * w)
        for a in range(0, n, mr):
            e = min(n, a + mr)
            np.dot(Hp[o0 + a:o0 + e], Wq, Gq[a:e])
        Pq = P[N * 3 * u0:N * 3 * u0 + N * w].reshape(N, w)
        s0 = N * u0 + o0 * uq
        s1 = s0 + n * uq
        Zq = Z[s0:s1].reshape(n, uq)
        Rq = R[s0:s1].reshape(n, uq)
        Hq = HH[s0:s1].reshape(n, uq)
        RHq = RH[s0:s1].reshape(n, uq)
        bq = brh[u0:u0 + uq]
        for j in range(n):
            p = Pq[o0 + j]
            g = Gq[j]
            zj = Zq[j]
            rj = Rq[j]
            rhj = RHq[j]
            for k in range(uq):
                zj[k] = p[k] + g[k]
            for k in range(uq):
                rj[k] = p[uq + k] + g[uq + k]
            for k in range(uq):
                rhj[k] = g[2 * uq + k] + bq[k]
        _act_inplace(Z[s0:s1], ract)
        _act_inplace(R[s0:s1], ract)
        for j in range(n):
            p = Pq[o0 + j]
            hj = Hq[j]
            rj = Rq[j]
            rhj = RHq[j]
            for k in range(uq):
                hj[k] = p[2 * uq + k] + rj[k] * rhj[k]
        _act_inplace(HH[s0:s1], act)
        for j in range(n):
            b = rows[o0 + j]
            hb = h[b, u0:u0 + uq]
            hp = Hp[o0 + j, u0:u0 + uq]
            zj = Zq[j]
            hj = Hq[j]
            for k in range(uq):
                hb[k] = zj[k] * hp[k] + (one - zj[k]) * hj[k]


@jit
def _fwd_zr_task(task, ntask, o0, n, uoff, rkp, P, G, Hp, Z, R, RH, ract):
    """reset_after=False, first half of a step: z and r of a group of chunks, and their
    columns of ``r * h_{t-1}`` (RH, (N, H) row-major)."""
    B = G.size // (3 * uoff[-1])
    H = Hp.shape[1]
    N = Hp.shape[0]
    q0, q1 = _span(task, ntask, uoff.size - 1)
    for q in range(q0, q1):
        u0 = uoff[q]
        uq = uoff[q + 1] - u0
        w = 2 * uq
        Gq = G[B * 2 * u0:B * 2 * u0 + B * w].reshape(B, w)
        Wq = rkp[H * 2 * u0:H * 2 * u0 + H * w].reshape(H, w)
        mr = _row_block(H * w)
        for a in range(0, n, mr):
            e = min(n, a + mr)
            np.dot(Hp[o0 + a:o0 + e], Wq, Gq[a:e])
        Pq = P[N * 3 * u0:N * 3 * u0 + N * 3 * uq].reshape(N, 3 * uq)
        s0 = N * u0 + o0 * uq
        s1 = s0 + n * uq
        Zq = Z[s0:s1].reshape(n, uq)
        Rq = R[s0:s1].reshape(n, uq)
        for j in range(n):
            p = Pq[o0 + j]
            g = Gq[j]
            zj = Zq[j]
            rj = Rq[j]
            for k in range(uq):
                zj[k] = p[k] + g[k]
            for k in range(uq):
                rj[k] = p[uq + k] + g[uq + k]
        _act_inplace(Z[s0:s1], ract)
        _act_inplace(R[s0:s1], ract)
        for j in range(n):
            rj = Rq[j]
            hp = Hp[o0 + j, u0:u0 + uq]
            rh = RH[o0 + j, u0:u0 + uq]
            for k in range(uq):
                rh[k] = rj[k] * hp[k]


@jit
def _fwd_h_task(task, ntask, o0, n, uoff, rows, rkhp, P, G, Hp, Z, HH, RH, h, act):
    """reset_after=False, second half: the candidate ``act(x Wh + bh + (r h) Uh)`` and
    the new state of a group of chunks."""
    B, H = h.shape
    N = Hp.shape[0]
    one = P.dtype.type(1.0)
    q0, q1 = _span(task, ntask, uoff.size - 1)
    for q in range(q0, q1):
        u0 = uoff[q]
        uq = uoff[q + 1] - u0
        Gq = G[B * u0:B * u0 + B * uq].reshape(B, uq)
        Wq = rkhp[H * u0:H * (u0 + uq)].reshape(H, uq)
        mr = _row_block(H * uq)
        for a in range(0, n, mr):
            e = min(n, a + mr)
            np.dot(RH[o0 + a:o0 + e], Wq, Gq[a:e])
        Pq = P[N * 3 * u0:N * 3 * u0 + N * 3 * uq].reshape(N, 3 * uq)
        s0 = N * u0 + o0 * uq
        s1 = s0 + n * uq
        Zq = Z[s0:s1].reshape(n, uq)
        Hq = HH[s0:s1].reshape(n, uq)
        for j in range(n):
            p = Pq[o0 + j]
            g = Gq[j]
            hj = Hq[j]
            for k in range(uq):
                hj[k] = p[2 * uq + k] + g[k]
        _act_inplace(HH[s0:s1], act)
        for j in range(n):
            b = rows[o0 + j]
            hb = h[b, u0:u0 + uq]
            hp = Hp[o0 + j, u0:u0 + uq]
            zj = Zq[j]
            hj = Hq[j]
            for k in range(uq):
                hb[k] = zj[k] * hp[k] + (one - zj[k]) * hj[k]


@jit
def _fwd_setup(x, offsets, rows, backwards, H, ws):
    """Xc (N, D), P (N 3H, chunked), Hp (N, H), Z, R, HH (N H, chunked), RH (N H), G
    scratch (B 3H): carved from ``ws`` when it is not empty (inference), else fresh."""
    N = rows.size
    B, T, D = x.shape
    dt = x.dtype
    if ws.size > 0:
        o = np.empty(8, np.int64)
        sizes = (N * D, N * 3 * H, N * H, N * H, N * H, N * H, N * H, B * 3 * H)
        at = 0
        for i in range(8):
            o[i] = at
            at += sizes[i] + 16 * (i + 1)  # regions apart by more than a cache line each
        Xc = ws[o[0]:o[0] + N * D].reshape(N, D)
        P = ws[o[1]:o[1] + N * 3 * H]
        Hp = ws[o[2]:o[2] + N * H].reshape(N, H)
        Z = ws[o[3]:o[3] + N * H]
        R = ws[o[4]:o[4] + N * H]
        HH = ws[o[5]:o[5] + N * H]
        RH = ws[o[6]:o[6] + N * H]
        G = ws[o[7]:o[7] + B * 3 * H]
    else:
        Xc = np.empty((N, D), dt)
        P = np.empty(N * 3 * H, dt)
        Hp = np.empty((N, H), dt)
        Z = np.empty(N * H, dt)
        R = np.empty(N * H, dt)
        HH = np.empty(N * H, dt)
        RH = np.empty(N * H, dt)
        G = np.empty(B * 3 * H, dt)
    for t in range(T):
        ts = T - 1 - t if backwards else t
        for r in range(offsets[t], offsets[t + 1]):
            Xc[r] = x[rows[r], ts, :]
    return Xc, P, Hp, Z, R, HH, RH, G


def forward_workspace_size(N: int, B: int, D: int, H: int) -> int:
    """Elements of the ``ws`` an inference-only :func:`gru_forward` takes."""
    return N * (D + 8 * H) + B * 3 * H + 16 * 36


@jit_parallel
def gru_forward(x, kp, bp, rkp, rkhp, brh, uoff, offsets, rows, mask, backwards, act, ract,
                after, ret_seq, zero_masked, y, h, ws, nthreads):
    """Forward over kept rows. ``kp, bp``: :func:`pack` (3 gates) of the kernel and the
    input bias (plus, with ``after``, the recurrent z and r biases); ``rkp``: the packed
    recurrent kernel (3 gates with ``after``, else its z, r columns) and ``rkhp`` its h
    columns (1 gate; empty with ``after``); ``brh`` (H,) the recurrent h bias (``after``).
    ``h`` (B, H) enters as the initial state and ends as the final state; ``y`` (B, T, H)
    is written when ``ret_seq`` (the carried ``h`` at masked steps). Returns the
    residuals Xc, Hp (N, D), (N, H) and Z, R, HH, RH (N H, see the module docstring; RH
    is ``h_{t-1} U_h + b'_h`` chunked with ``after``, else ``r * h_{t-1}`` (N, H))."""
    H = h.shape[1]
    D = x.shape[2]
    Q = uoff.size - 1
    T = offsets.size - 1
    Xc, P, Hp, Z, R, HH, RH, G = _fwd_setup(x, offsets, rows, backwards, H, ws)
    N = Xc.shape[0]
    RH2 = RH.reshape(N, H)
    npj = _ntasks(N * D * 3 * H, 1 << 30, nthreads)
    for task in numba.prange(npj):
        _proj_task(task, npj, Xc, kp, bp, P, uoff)
    for t in range(T):
        o0 = offsets[t]
        n = offsets[t + 1] - o0
        _gather_h(Hp, h, rows, o0, n)
        nt = _ntasks(n * H * 3 * H, Q, nthreads)
        if after:
            for task in numba.prange(nt):
                _fwd_after_task(task, nt, o0, n, uoff, rows, rkp, brh, P, G, Hp, Z, R, HH,
                                RH, h, act, ract)
        else:
            for task in numba.prange(nt):
                _fwd_zr_task(task, nt, o0, n, uoff, rkp, P, G, Hp, Z, R, RH2, ract)
            for task in numba.prange(nt):
                _fwd_h_task(task, nt, o0, n, uoff, rows, rkhp, P, G, Hp, Z, HH, RH2, h, act)
        if ret_seq:
            _write_y(y, h, mask, t, backwards, zero_masked)
    return Xc, Hp, Z, R, HH, RH


# ---- backward ---------------------------------------------------------------------------
@jit
def _bwd_task(task, ntask, o0, n, uoff, rows, Z, R, HH, RH, Hp, dZx, dZh, dAh, DD, dh,
              act, ract, after):
    """Gate gradients of one step for a group of unit chunks: dZx (the input side, packed
    3H), with ``after`` dZh (the recurrent side), else dAh (N, H) (the candidate's
    pre-activation gradient, for ``r * h`` and Uh); DD (n, H): ``dh * z``, the direct
    path to ``h_{t-1}``."""
    N = Hp.shape[0]
    one = Z.dtype.type(1.0)
    sixth = one / Z.dtype.type(6.0)
    q0, q1 = _span(task, ntask, uoff.size - 1)
    fast = act == 1 and ract == 2
    for q in range(q0, q1):
        u0 = uoff[q]
        uq = uoff[q + 1] - u0
        s0 = N * u0
        Zq = Z[s0:s0 + N * uq].reshape(N, uq)
        Rq = R[s0:s0 + N * uq].reshape(N, uq)
        Hq = HH[s0:s0 + N * uq].reshape(N, uq)
        for j in range(n):
            r_ = o0 + j
            b = rows[r_]
            zj = Zq[r_]
            hj = Hq[r_]
            rj = Rq[r_]
            hp = Hp[r_, u0:u0 + uq]
            dhb = dh[b, u0:u0 + uq]
            dx = dZx[r_, 3 * u0:3 * u0 + 3 * uq]
            dd = DD[j, u0:u0 + uq]
            if after:
                RHq = RH[s0:s0 + N * uq].reshape(N, uq)
                rh = RHq[r_]
                dzh = dZh[r_, 3 * u0:3 * u0 + 3 * uq]
                if fast:
                    for k in range(uq):
                        g = dhb[k]
                        z = zj[k]
                        hh = hj[k]
                        r = rj[k]
                        dz = g * (hp[k] - hh) * z * (one - z)
                        dah = g * (one - z) * (one - hh * hh)
                        dr = dah * rh[k] * r * (one - r)
                        dx[k] = dz
                        dx[uq + k] = dr
                        dx[2 * uq + k] = dah
                        dzh[k] = dz
                        dzh[uq + k] = dr
                        dzh[2 * uq + k] = dah * r
                        dd[k] = g * z
                else:
                    for k in range(uq):
                        g = dhb[k]
                        z = zj[k]
                        hh = hj[k]
                        r = rj[k]
                        dz = g * (hp[k] - hh) * _dact(z, ract, one, sixth)
                        dah = g * (one - z) * _dact(hh, act, one, sixth)
                        dr = dah * rh[k] * _dact(r, ract, one, sixth)
                        dx[k] = dz
                        dx[uq + k] = dr
                        dx[2 * uq + k] = dah
                        dzh[k] = dz
                        dzh[uq + k] = dr
                        dzh[2 * uq + k] = dah * r
                        dd[k] = g * z
            else:
                da = dAh[r_, u0:u0 + uq]
                for k in range(uq):
                    g = dhb[k]
                    z = zj[k]
                    hh = hj[k]
                    dz = g * (hp[k] - hh) * _dact(z, ract, one, sixth)
                    dah = g * (one - z) * _dact(hh, act, one, sixth)
                    dx[k] = dz
                    dx[2 * uq + k] = dah
                    da[k] = dah
                    dd[k] = g * z


@jit
def _dr_task(task, ntask, o0, n, uoff, R, Hp, DR, dZx, DD, ract):
    """reset_after=False: r's gradient from ``d(r h) = dAh @ Uh.T`` (DR), and its share
    of the direct path ``d(r h) * r``."""
    N = Hp.shape[0]
    one = R.dtype.type(1.0)
    sixth = one / R.dtype.type(6.0)
    q0, q1 = _span(task, ntask, uoff.size - 1)
    for q in range(q0, q1):
        u0 = uoff[q]
        uq = uoff[q + 1] - u0
        Rq = R[N * u0:N * (u0 + uq)].reshape(N, uq)
        for j in range(n):
            r_ = o0 + j
            rj = Rq[r_]
            hp = Hp[r_, u0:u0 + uq]
            drh = DR[j, u0:u0 + uq]
            dx = dZx[r_, 3 * u0:3 * u0 + 3 * uq]
            dd = DD[j, u0:u0 + uq]
            for k in range(uq):
                dx[uq + k] = drh[k] * hp[k] * _dact(rj[k], ract, one, sixth)
                dd[k] += drh[k] * rj[k]


@jit
def _gemm_rows_task(task, ntask, o0, n, A, WT, OUT):
    """OUT[j] = A[o0 + j] @ WT for a block of this step's rows."""
    a0, e0 = _span(task, ntask, n)
    mr = _row_block(WT.shape[0] * WT.shape[1])
    for a in range(a0, e0, mr):
        e = min(e0, a + mr)
        np.dot(A[o0 + a:o0 + e], WT, OUT[a:e])


@jit
def _dh_task(task, ntask, o0, n, rows, dZ, rkT, DH, DD, dh):
    """dh_{t-1} = DD + dZ_t @ U.T for a block of this step's rows."""
    H = dh.shape[1]
    a0, e0 = _span(task, ntask, n)
    mr = _row_block(rkT.shape[0] * H)
    for a in range(a0, e0, mr):
        e = min(e0, a + mr)
        np.dot(dZ[o0 + a:o0 + e], rkT, DH[a:e])
    for j in range(a0, e0):
        b = rows[o0 + j]
        for k in range(H):
            dh[b, k] = DH[j, k] + DD[j, k]


@jit
def _bwd_setup(ws, N, B, H, after):
    """dZx (N, 3H), dZh (N, 3H) (``after``) or dAh (N, H), and three (B, H) scratches,
    carved from ``ws``."""
    dZx = ws[:N * 3 * H].reshape(N, 3 * H)
    at = N * 3 * H
    if after:
        dZh = ws[at:at + N * 3 * H].reshape(N, 3 * H)
        dAh = ws[at:at].reshape(0, H)
        at += N * 3 * H
    else:
        dZh = ws[at:at].reshape(0, 3 * H)
        dAh = ws[at:at + N * H].reshape(N, H)
        at += N * H
    DD = ws[at:at + B * H].reshape(B, H)
    DH = ws[at + B * H:at + 2 * B * H].reshape(B, H)
    DR = ws[at + 2 * B * H:at + 3 * B * H].reshape(B, H)
    return dZx, dZh, dAh, DD, DH, DR


def backward_workspace_size(N: int, B: int, D: int, H: int, after: bool) -> int:
    return N * (3 * H + (3 * H if after else H) + D) + 3 * B * H


@jit_parallel
def gru_backward(Z, R, HH, RH, Hp, rkT, rkhT, uoff, offsets, rows, mask, backwards, act,
                 ract, after, ret_seq, zero_masked, gy, dh, ws, nthreads):
    """Backpropagation through time over kept rows (residuals as left by the forward).

    ``dh`` (B, H) enters as the gradient w.r.t. the final state and leaves as the one
    w.r.t. the initial state. ``rkT``: :func:`permute` of U (3 gates; with ``after``
    false its h columns zeroed), transposed (3H, H); ``rkhT``: ``U[:, 2H:].T`` (not
    ``after``). Returns dZx, dZh, dAh (views of ``ws``, see :func:`_bwd_setup`)."""
    B, H = dh.shape
    N = Hp.shape[0]
    T = offsets.size - 1
    Q = uoff.size - 1
    dZx, dZh, dAh, DD, DH, DR = _bwd_setup(ws, N, B, H, after)
    dZr = dZh if after else dZx
    for t in range(T - 1, -1, -1):
        if ret_seq:
            _add_gy(dh, gy, mask, t, backwards, zero_masked)
        o0 = offsets[t]
        n = offsets[t + 1] - o0
        nt = _ntasks(n * H * 3 * H, Q, nthreads)
        for task in numba.prange(nt):
            _bwd_task(task, nt, o0, n, uoff, rows, Z, R, HH, RH, Hp, dZx, dZh, dAh, DD, dh,
                      act, ract, after)
        if not after:
            for task in numba.prange(nt):
                _gemm_rows_task(task, nt, o0, n, dAh, rkhT, DR)
            for task in numba.prange(nt):
                _dr_task(task, nt, o0, n, uoff, R, Hp, DR, dZx, DD, ract)
        for task in numba.prange(nt):
            _dh_task(task, nt, o0, n, rows, dZr, rkT, DH, DD, dh)
    return dZx, dZh, dAh


@jit
def _wgrad_task(task, ntask, dZx, dZr, Xc, Hp, kp, dK, dR, dbx, dbr, dXc):
    """Partial sums over a block of kept rows: ``Xc.T @ dZx``, ``Hp.T @ dZr``, the bias
    sums, and the block's rows of ``dZx @ kernel.T``."""
    a, e = _span(task, ntask, dZx.shape[0])
    if e == a:
        dK[task][:] = 0
        dR[task][:] = 0
        return
    np.dot(Xc[a:e].T, dZx[a:e], dK[task])
    np.dot(Hp[a:e].T, dZr[a:e], dR[task])
    np.dot(dZx[a:e], kp.T, dXc[a:e])
    bx = dbx[task]
    br = dbr[task]
    for r in range(a, e):
        zx = dZx[r]
        zr = dZr[r]
        for k in range(zx.size):
            bx[k] += zx[k]
            br[k] += zr[k]


@jit
def _wg_setup(dZx, Xc, H, ntask):
    D = Xc.shape[1]
    dt = dZx.dtype
    return (np.empty((ntask, D, 3 * H), dt), np.empty((ntask, H, 3 * H), dt),
            np.zeros((ntask, 3 * H), dt), np.zeros((ntask, 3 * H), dt))


@jit
def _wg_finish(dK, dR, dbx, dbr, dXc, offsets, rows, backwards, B):
    T = offsets.size - 1
    dx = np.zeros((B, T, dXc.shape[1]), dXc.dtype)
    for t in range(T):
        ts = T - 1 - t if backwards else t
        for r in range(offsets[t], offsets[t + 1]):
            dx[rows[r], ts, :] = dXc[r]
    for p in range(1, dK.shape[0]):
        dK[0] += dK[p]
        dR[0] += dR[p]
        dbx[0] += dbx[p]
        dbr[0] += dbr[p]
    return dx, dK[0], dR[0], dbx[0:1], dbr[0:1]


@jit_parallel
def gru_weight_grads(dZx, dZr, Xc, Hp, kp, offsets, rows, backwards, B, dXc, nthreads):
    """Gradients of x (B, T, D), of the kernel and recurrent kernel and of the two biases
    (packed order) from the gate gradients: sums over all kept rows."""
    N, D = Xc.shape
    H = Hp.shape[1]
    nt = _ntasks(N * (D + H) * 3 * H, 1 << 30, nthreads)
    dK, dR, dbx, dbr = _wg_setup(dZx, Xc, H, nt)
    for task in numba.prange(nt):
        _wgrad_task(task, nt, dZx, dZr, Xc, Hp, kp, dK, dR, dbx, dbr, dXc)
    return _wg_finish(dK, dR, dbx, dbr, dXc, offsets, rows, backwards, B)


gru_forward_1t = _one_thread_twin(gru_forward)
gru_backward_1t = _one_thread_twin(gru_backward)
gru_weight_grads_1t = _one_thread_twin(gru_weight_grads)


def drivers(dtype):
    """(forward, backward, weight_grads): multi-threaded for float32, one-thread twins for
    float64."""
    if np.dtype(dtype) == np.float32:
        return gru_forward, gru_backward, gru_weight_grads
    return gru_forward_1t, gru_backward_1t, gru_weight_grads_1t


def _widest_step(offsets) -> int:
    return int(np.diff(offsets).max()) if offsets.size > 1 else 0


# ---- op-facing wrappers -----------------------------------------------------------------
def forward(x, k, rk, b_in, b_rec, offsets, rows, mask, c, y, h, keep):
    """Run the forward driver for the GRU op (``ops/gru.py``); returns its residuals."""
    B, T, D = x.shape
    H = h.shape[1]
    after = c["reset_after"]
    uoff = unit_chunks(H)
    dt = x.dtype
    if after:
        bp = b_in + np.concatenate([b_rec[:2 * H], np.zeros(H, dt)])
        rkp, rkhp, brh = pack(rk, uoff, 3), np.empty(0, dt), np.ascontiguousarray(b_rec[2 * H:])
    else:
        bp = b_in
        rkp = pack(np.ascontiguousarray(rk[:, :2 * H]), uoff, 2)
        rkhp = pack(np.ascontiguousarray(rk[:, 2 * H:]), uoff, 1)
        brh = np.empty(0, dt)
    N = rows.size
    ws = np.empty(0, dt) if keep else workspace(forward_workspace_size(N, B, D, H), dt)
    with parallel_launch(), gru_threads(_widest_step(offsets), H) as th:
        return drivers(dt)[0](
            x, pack(k, uoff, 3), pack(np.ascontiguousarray(bp)[None], uoff, 3), rkp, rkhp,
            brh, uoff, offsets, rows, mask, c["go_backwards"],
            ACTIVATIONS.index(c["activation"]), ACTIVATIONS.index(c["recurrent_activation"]),
            after, c["return_sequences"], c["zero_output_for_mask"], y, h, ws, th.threads)


def backward(x, k, rk, offsets, rows, mask, c, res, seq, gy, dh):
    """Run the backward drivers; ``dh`` is updated in place into the initial state's
    gradient. Returns dx, d kernel, d recurrent kernel, d input bias, d recurrent bias
    (Keras column order)."""
    Xc, Hp, Z, R, HH, RH = res
    B = x.shape[0]
    H = dh.shape[1]
    N, D = Xc.shape
    after = c["reset_after"]
    dt = x.dtype
    uoff = unit_chunks(H)
    if after:
        rkT = np.ascontiguousarray(permute(rk, uoff, 3).T)
        rkhT = np.empty((0, 0), dt)
    else:
        rk0 = rk.copy()
        rk0[:, 2 * H:] = 0
        rkT = np.ascontiguousarray(permute(rk0, uoff, 3).T)
        rkhT = np.ascontiguousarray(rk[:, 2 * H:].T)
    with parallel_launch(), gru_threads(_widest_step(offsets), H) as th:
        _, bwd, wgrads = drivers(dt)
        ws = workspace(backward_workspace_size(N, B, D, H, after), dt)
        dZx, dZh, dAh = bwd(Z, R, HH, RH, Hp, rkT, rkhT, uoff, offsets, rows, mask,
                            c["go_backwards"], ACTIVATIONS.index(c["activation"]),
                            ACTIVATIONS.index(c["recurrent_activation"]), after, seq,
                            c["zero_output_for_mask"], gy, dh, ws, th.threads)
        at = N * 3 * H + (N * 3 * H if after else N * H)
        dXc = ws[at + 3 * B * H:at + 3 * B * H + N * D].reshape(N, D)
        dx, dk, drk, dbx, dbr = wgrads(dZx, dZh if after else dZx, Xc, Hp, permute(k, uoff, 3),
                                       offsets, rows, c["go_backwards"], B, dXc, th.threads)
    dk, drk = unpermute(dk, uoff, 3), unpermute(drk, uoff, 3)
    dbx, dbr = unpermute(dbx, uoff, 3)[0], unpermute(dbr, uoff, 3)[0]
    if not after:
        drk[:, 2 * H:] = RH.reshape(N, H).T @ dAh
    return dx, dk, drk, dbx, dbr
