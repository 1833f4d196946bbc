"""numba kernels of the GRU op (forward and backward), mask-aware.

The layout and the discipline are the LSTM's (``kernels/lstm.py``): every kept (sample,
timestep) pair is one *compact row*, grouped by processing step (``offsets``, ``rows``);
masked pairs have no row, so a sample's state stays put at a step where it has none. The
input projection of all kept rows is done up front in GEMMs; each step multiplies only
its rows' ``h_{t-1}`` by the recurrent kernel, fused with the gate math; the backward
pass computes the gate gradients step by step, then the weight and input gradients as
big GEMMs over all kept rows. BLAS calls stay under ``SERIAL_MNK`` (OpenBLAS on the
calling thread), float64 and one-thread launches run one-thread twins, tanh/sigmoid
layers default-activation step kernels, scratch comes from the LSTM's per-thread
workspaces; the drivers call their task kernels by pointer (``lstm.TaskTable``).

Gates are z, r, h (Keras order). The units are cut into chunks of :data:`UNIT_CHUNK`; a
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
from numba import types

from graphmask.kernels import jit, jit_parallel, parallel_launch
from graphmask.kernels.blas import gemm_into
from graphmask.kernels.fastmath import sigmoid_inplace, tanh_inplace
from graphmask.kernels.launch import pick
from graphmask.kernels.lstm import (
    ACTIVATIONS,
    PARALLEL_MIN_WORK,
    TaskTable,
    _act_inplace,
    _add_gy,
    _clone,
    _dact,
    _gather_h,
    _ntasks,
    _ntasks_py,
    _one_thread_twin,
    _span,
    _step_times,
    _write_y,
    lstm_schedule,
    pack_gates,
    permute_gates,
    threads_for,
    unit_chunks,
    unpermute_gates,
    workspace,
)
from graphmask.kernels.smallgemm import matmul_into, row_block

__all__ = ["schedule", "forward", "backward", "pack", "permute", "unpermute"]

schedule = lstm_schedule


#: False in the default-activation (tanh, sigmoid) clones of the step kernels, whose
#: other-activation paths are pruned at compile time (see kernels/lstm.py).
_GENERAL = True


def permute(W, uoff, ng):
    """The ``ng`` H-wide gate blocks of ``W`` (R, ng H) in packed order: chunk q's gate
    columns side by side at columns ``ng * uoff[q]:ng * uoff[q + 1]``."""
    return permute_gates(W, uoff, ng)


def unpermute(P, uoff, ng):
    """Inverse of :func:`permute`: (R, ng H) in Keras column order."""
    return unpermute_gates(P, uoff, ng)


def pack(W, uoff, ng):
    """:func:`permute` cut into contiguous chunk blocks, flat: chunk q is the
    (R, ng uq) block at ``R * ng * uoff[q]``."""
    return pack_gates(W, uoff, ng)


#: Units per chunk: a reset_after step multiplies by 3 x 32 = 96 packed columns, a
#: multiple of the AVX-512 tiles' 32 (3 x 16 = 48 would take the 16-column tiles):
#: W1-GRU predict 4.2 -> 3.6 ms, training step 13.2-14.1 -> 12.6-12.8 ms against chunks of
#: 16 (measured on a 2-core AVX-512 machine). Every kernel reads the chunks from ``uoff``.
UNIT_CHUNK = 32


class gru_threads(threads_for):
    """:class:`~graphmask.kernels.lstm.threads_for` for 3H gate columns."""

    def __init__(self, n: int, H: int):
        self.serial = n * H * 3 * H < PARALLEL_MIN_WORK


# ---- forward ----------------------------------------------------------------------------
@jit
def _proj_task(task, ntask, Xc, kp, bp, P, uoff):
    """``x_t @ kernel + bias`` of a block of kept rows into P (chunk q: (N, 3 uq))."""
    N, D = Xc.shape
    for q in range(uoff.size - 1):
        u0 = uoff[q]
        w = 3 * (uoff[q + 1] - u0)
        Pq = P[N * 3 * u0:N * 3 * u0 + N * w].reshape(N, w)
        Wq = kp[D * 3 * u0:D * 3 * u0 + D * w].reshape(D, w)
        # the tasks share out whole row blocks of one fixed grid, so every GEMM call
        # (and its rounding) is the same whatever the number of tasks
        mr = row_block(D * w)
        b0, b1 = _span(task, ntask, (N + mr - 1) // mr)
        for blk in range(b0, b1):
            a2 = blk * mr
            e2 = min(N, a2 + mr)
            gemm_into(Xc[a2:e2], Wq, Pq[a2:e2])
            bq = bp[3 * u0:3 * u0 + w]
            for r in range(a2, e2):  # row views: this loop vectorises, Pq[r, k] did not
                row = Pq[r]
                for k in range(w):
                    row[k] += bq[k]


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
        matmul_into(Hp[o0:o0 + n], Wq, Gq[:n])
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
        if _GENERAL:
            _act_inplace(Z[s0:s1], ract)
            _act_inplace(R[s0:s1], ract)
        else:  # the default-activation clone: ract is sigmoid
            sigmoid_inplace(Z[s0:s1])
            sigmoid_inplace(R[s0:s1])
        for j in range(n):
            p = Pq[o0 + j]
            hj = Hq[j]
            rj = Rq[j]
            rhj = RHq[j]
            for k in range(uq):
                hj[k] = p[2 * uq + k] + rj[k] * rhj[k]
        if _GENERAL:
            _act_inplace(HH[s0:s1], act)
        else:  # the default-activation clone: act is tanh
            tanh_inplace(HH[s0:s1])
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
        matmul_into(Hp[o0:o0 + n], Wq, Gq[:n])
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
        if _GENERAL:
            _act_inplace(Z[s0:s1], ract)
            _act_inplace(R[s0:s1], ract)
        else:  # the default-activation clone: ract is sigmoid
            sigmoid_inplace(Z[s0:s1])
            sigmoid_inplace(R[s0:s1])
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
        matmul_into(RH[o0:o0 + n], Wq, Gq[:n])
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
        if _GENERAL:
            _act_inplace(HH[s0:s1], act)
        else:  # the default-activation clone: act is tanh
            tanh_inplace(HH[s0:s1])
        for j in range(n):
            b = rows[o0 + j]
            hb = h[b, u0:u0 + uq]
            hp = Hp[o0 + j, u0:u0 + uq]
            zj = Zq[j]
            hj = Hq[j]
            for k in range(uq):
                hb[k] = zj[k] * hp[k] + (one - zj[k]) * hj[k]


def _fwd_setup(x, offsets, rows, backwards, H, ws):
    """Xc (N, D), P (N 3H, chunked), Hp (N, H), Z, R, HH (N H, chunked), RH (N H), G
    scratch (B 3H): carved from ``ws`` when it is not empty (inference), else fresh.
    NumPy (copies only)."""
    N = rows.size
    B, T, D = x.shape
    dt = x.dtype
    sizes = (N * D, N * 3 * H, N * H, N * H, N * H, N * H, N * H, B * 3 * H)
    if ws.size > 0:
        out, at = [], 0
        for i, n in enumerate(sizes):
            out.append(ws[at:at + n])
            at += n + 16 * (i + 1)  # regions apart by more than a cache line each
    else:
        out = [np.empty(n, dt) for n in sizes]
    Xc, P, Hp, Z, R, HH, RH, G = out
    Xc = Xc.reshape(N, D)
    Hp = Hp.reshape(N, H)
    if N:
        np.take(x.reshape(B * T, D), rows * T + _step_times(offsets, backwards, T), axis=0,
                out=Xc)
    return Xc, P, Hp, Z, R, HH, RH, G


def forward_workspace_size(N: int, B: int, D: int, H: int) -> int:
    """Elements of the ``ws`` an inference-only :func:`gru_forward` takes."""
    return N * (D + 8 * H) + B * 3 * H + 16 * 36


# Drivers: loops over the steps that launch their tasks through function pointers (see
# kernels/lstm.py: each task compiles once, a driver compiles as the loop it is).
@jit_parallel
def _forward_after_loop(proj, step, kp, bp, rkp, brh, uoff, offsets, rows, mask, backwards,
                        act, ract, ret_seq, zero_masked, y, h, Xc, P, Hp, Z, R, HH, RH, G,
                        nthreads):
    """reset_after=True steps: one task launch per step."""
    H = h.shape[1]
    N, D = Xc.shape
    Q = uoff.size - 1
    T = offsets.size - 1
    npj = _ntasks(N * D * 3 * H, 1 << 30, nthreads)
    for task in numba.prange(npj):
        proj(np.int64(task), npj, Xc, kp, bp, P, uoff)
    for t in range(T):
        o0 = offsets[t]
        n = offsets[t + 1] - o0
        _gather_h(Hp, h, rows, o0, n)
        nt = _ntasks(n * H * 3 * H, Q, nthreads)
        for task in numba.prange(nt):
            step(np.int64(task), nt, o0, n, uoff, rows, rkp, brh, P, G, Hp, Z, R, HH, RH, h,
                 act, ract)
        if ret_seq:
            _write_y(y, h, mask, t, backwards, zero_masked)


@jit_parallel
def _forward_before_loop(proj, zr, hstep, kp, bp, rkp, rkhp, uoff, offsets, rows, mask,
                         backwards, act, ract, ret_seq, zero_masked, y, h, Xc, P, Hp, Z, R,
                         HH, RH2, G, nthreads):
    """reset_after=False steps: z and r of all chunks, then the candidate."""
    H = h.shape[1]
    N, D = Xc.shape
    Q = uoff.size - 1
    T = offsets.size - 1
    npj = _ntasks(N * D * 3 * H, 1 << 30, nthreads)
    for task in numba.prange(npj):
        proj(np.int64(task), npj, Xc, kp, bp, P, uoff)
    for t in range(T):
        o0 = offsets[t]
        n = offsets[t + 1] - o0
        _gather_h(Hp, h, rows, o0, n)
        nt = _ntasks(n * H * 3 * H, Q, nthreads)
        for task in numba.prange(nt):
            zr(np.int64(task), nt, o0, n, uoff, rkp, P, G, Hp, Z, R, RH2, ract)
        for task in numba.prange(nt):
            hstep(np.int64(task), nt, o0, n, uoff, rows, rkhp, P, G, Hp, Z, HH, RH2, h, act)
        if ret_seq:
            _write_y(y, h, mask, t, backwards, zero_masked)


def gru_forward(x, kp, bp, rkp, rkhp, brh, uoff, offsets, rows, mask, backwards, act, ract,
                after, ret_seq, zero_masked, y, h, ws, nthreads, *, threaded=True, default=None):
    """Forward over kept rows. ``kp, bp``: :func:`pack` (3 gates) of the kernel and the
    input bias (plus, with ``after``, the recurrent z and r biases); ``rkp``: the packed
    recurrent kernel (3 gates with ``after``, else its z, r columns) and ``rkhp`` its h
    columns (1 gate; empty with ``after``); ``brh`` (H,) the recurrent h bias (``after``).
    ``h`` (B, H) enters as the initial state and ends as the final state; ``y`` (B, T, H)
    is written when ``ret_seq`` (the carried ``h`` at masked steps). Returns the
    residuals Xc, Hp (N, D), (N, H) and Z, R, HH, RH (N H, see the module docstring; RH
    is ``h_{t-1} U_h + b'_h`` chunked with ``after``, else ``r * h_{t-1}`` (N, H)).
    ``threaded``: the tasks of a step on numba's threads (False: one after another, same
    tasks, same results); ``default``: the default-activation (tanh, sigmoid) step
    kernels (None: when ``act, ract`` are those)."""
    H = h.shape[1]
    Xc, P, Hp, Z, R, HH, RH, G = _fwd_setup(x, offsets, rows, backwards, H, ws)
    dt = x.dtype
    d = "_dflt" if (act == 1 and ract == 2 if default is None else default) else ""
    if after:
        args = (_task("proj", dt), _task("after" + d, dt), kp, bp, rkp, brh, uoff, offsets,
                rows, mask, backwards, act, ract, ret_seq, zero_masked, y, h, Xc, P, Hp, Z, R,
                HH, RH, G, nthreads)
        pick(_forward_after_loop, _forward_after_loop_1t, threaded, args)(*args)
    else:
        args = (_task("proj", dt), _task("zr" + d, dt), _task("h" + d, dt), kp, bp, rkp, rkhp,
                uoff, offsets, rows, mask, backwards, act, ract, ret_seq, zero_masked, y, h,
                Xc, P, Hp, Z, R, HH, RH.reshape(Xc.shape[0], H), G, nthreads)
        pick(_forward_before_loop, _forward_before_loop_1t, threaded, args)(*args)
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
                elif _GENERAL:
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
    matmul_into(A[o0 + a0:o0 + e0], WT, OUT[a0:e0])


@jit
def _dh_task(task, ntask, o0, n, rows, dZ, rkT, DH, DD, dh):
    """dh_{t-1} = DD + dZ_t @ U.T for a block of this step's rows."""
    H = dh.shape[1]
    a0, e0 = _span(task, ntask, n)
    matmul_into(dZ[o0 + a0:o0 + e0], rkT, DH[a0:e0])
    for j in range(a0, e0):
        b = rows[o0 + j]
        for k in range(H):
            dh[b, k] = DH[j, k] + DD[j, k]


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
def _backward_after_loop(bstep, dhstep, Z, R, HH, RH, Hp, rkT, uoff, offsets, rows, mask,
                         backwards, act, ract, ret_seq, zero_masked, gy, dh, dZx, dZh, dAh,
                         DD, DH, nthreads):
    """reset_after=True steps of :func:`gru_backward`."""
    H = dh.shape[1]
    T = offsets.size - 1
    Q = uoff.size - 1
    for t in range(T - 1, -1, -1):
        if ret_seq:
            _add_gy(dh, gy, mask, t, backwards, zero_masked)
        o0 = offsets[t]
        n = offsets[t + 1] - o0
        nt = _ntasks(n * H * 3 * H, Q, nthreads)
        for task in numba.prange(nt):
            bstep(np.int64(task), nt, o0, n, uoff, rows, Z, R, HH, RH, Hp, dZx, dZh, dAh, DD,
                  dh, act, ract, True)
        for task in numba.prange(nt):
            dhstep(np.int64(task), nt, o0, n, rows, dZh, rkT, DH, DD, dh)


@jit_parallel
def _backward_before_loop(bstep, gemm, drstep, dhstep, Z, R, HH, RH, Hp, rkT, rkhT, uoff,
                          offsets, rows, mask, backwards, act, ract, ret_seq, zero_masked, gy,
                          dh, dZx, dZh, dAh, DD, DH, DR, nthreads):
    """reset_after=False steps of :func:`gru_backward`."""
    H = dh.shape[1]
    T = offsets.size - 1
    Q = uoff.size - 1
    for t in range(T - 1, -1, -1):
        if ret_seq:
            _add_gy(dh, gy, mask, t, backwards, zero_masked)
        o0 = offsets[t]
        n = offsets[t + 1] - o0
        nt = _ntasks(n * H * 3 * H, Q, nthreads)
        for task in numba.prange(nt):
            bstep(np.int64(task), nt, o0, n, uoff, rows, Z, R, HH, RH, Hp, dZx, dZh, dAh, DD,
                  dh, act, ract, False)
        for task in numba.prange(nt):
            gemm(np.int64(task), nt, o0, n, dAh, rkhT, DR)
        for task in numba.prange(nt):
            drstep(np.int64(task), nt, o0, n, uoff, R, Hp, DR, dZx, DD, ract)
        for task in numba.prange(nt):
            dhstep(np.int64(task), nt, o0, n, rows, dZx, rkT, DH, DD, dh)


def gru_backward(Z, R, HH, RH, Hp, rkT, rkhT, uoff, offsets, rows, mask, backwards, act,
                 ract, after, ret_seq, zero_masked, gy, dh, ws, nthreads, *, threaded=True,
                 default=None):
    """Backpropagation through time over kept rows (residuals as left by the forward).

    ``dh`` (B, H) enters as the gradient w.r.t. the final state and leaves as the one
    w.r.t. the initial state. ``rkT``: :func:`permute` of U (3 gates; with ``after``
    false its h columns zeroed), transposed (3H, H); ``rkhT``: ``U[:, 2H:].T`` (not
    ``after``). Returns dZx, dZh, dAh (views of ``ws``, see :func:`_bwd_setup`).
    ``threaded``, ``default``: as :func:`gru_forward`."""
    B, H = dh.shape
    N = Hp.shape[0]
    dZx, dZh, dAh, DD, DH, DR = _bwd_setup(ws, N, B, H, after)
    dt = Z.dtype
    if default is None:
        default = act == 1 and ract == 2
    b = _task("bwd_dflt" if default else "bwd", dt)
    if after:
        args = (b, _task("dh", dt), Z, R, HH, RH, Hp, rkT, uoff, offsets, rows, mask,
                backwards, act, ract, ret_seq, zero_masked, gy, dh, dZx, dZh, dAh, DD, DH,
                nthreads)
        pick(_backward_after_loop, _backward_after_loop_1t, threaded, args)(*args)
    else:
        args = (b, _task("gemm", dt), _task("dr", dt), _task("dh", dt), Z, R, HH, RH, Hp, rkT,
                rkhT, uoff, offsets, rows, mask, backwards, act, ract, ret_seq, zero_masked,
                gy, dh, dZx, dZh, dAh, DD, DH, DR, nthreads)
        pick(_backward_before_loop, _backward_before_loop_1t, threaded, args)(*args)
    return dZx, dZh, dAh


@jit
def _wgrad_task(task, ntask, dZx, dZr, Xc, Hp, kp, dK, dR, dbx, dbr, dXc):
    """Partial sums over a block of kept rows: ``Xc.T @ dZx``, ``Hp.T @ dZr``, the bias
    sums, and the block's rows of ``dZx @ kernel.T``."""
    a, e = _span(task, ntask, dZx.shape[0])
    if e == a:  # no rows: no sums (np.dot would not write); explicit loops (a slice
        # assignment compiles a shape check that formats its error message)
        zero = dK.dtype.type(0.0)
        for i in range(dK.shape[1]):
            for k in range(dK.shape[2]):
                dK[task, i, k] = zero
        for i in range(dR.shape[1]):
            for k in range(dR.shape[2]):
                dR[task, i, k] = zero
        return
    gemm_into(Xc[a:e].T, dZx[a:e], dK[task])
    gemm_into(Hp[a:e].T, dZr[a:e], dR[task])
    gemm_into(dZx[a:e], kp.T, dXc[a:e])
    bx = dbx[task]
    br = dbr[task]
    for r in range(a, e):
        zx = dZx[r]
        zr = dZr[r]
        for k in range(zx.size):
            bx[k] += zx[k]
            br[k] += zr[k]


@jit_parallel
def _weight_grads_loop(wstep, nt, dZx, dZr, Xc, Hp, kp, dK, dR, dbx, dbr, dXc):
    """The tasks of :func:`gru_weight_grads`."""
    for task in numba.prange(nt):
        wstep(np.int64(task), nt, dZx, dZr, Xc, Hp, kp, dK, dR, dbx, dbr, dXc)


def gru_weight_grads(dZx, dZr, Xc, Hp, kp, offsets, rows, backwards, B, dXc, nthreads, *,
                     threaded=True):
    """Gradients of x (B, T, D), of the kernel and recurrent kernel and of the two biases
    (packed order) from the gate gradients: sums over all kept rows, each task's share
    added in task order."""
    N, D = Xc.shape
    H = Hp.shape[1]
    T = offsets.size - 1
    dt = dZx.dtype
    nt = _ntasks_py(N * (D + H) * 3 * H, 1 << 30, nthreads)
    dK = np.empty((nt, D, 3 * H), dt)
    dR = np.empty((nt, H, 3 * H), dt)
    dbx = np.zeros((nt, 3 * H), dt)
    dbr = np.zeros((nt, 3 * H), dt)
    args = (_task("wgrad", dt), nt, dZx, dZr, Xc, Hp, kp, dK, dR, dbx, dbr, dXc)
    pick(_weight_grads_loop, _weight_grads_loop_1t, threaded, args)(*args)
    dx = np.zeros((B, T, D), dt)
    if N:
        dx.reshape(B * T, D)[rows * T + _step_times(offsets, backwards, T)] = dXc
    for p in range(1, nt):  # in place, in task order
        for a in (dK, dR, dbx, dbr):
            np.add(a[0], a[p], out=a[0])
    return dx, dK[0], dR[0], dbx[0:1], dbr[0:1]


_forward_after_loop_1t = _one_thread_twin(_forward_after_loop)
_forward_before_loop_1t = _one_thread_twin(_forward_before_loop)
_backward_after_loop_1t = _one_thread_twin(_backward_after_loop)
_backward_before_loop_1t = _one_thread_twin(_backward_before_loop)
_weight_grads_loop_1t = _one_thread_twin(_weight_grads_loop)


def _task_signatures(f):
    """The signature of each task kernel for float type ``f``."""
    i = types.int64
    iv = types.Array(i, 1, "C")
    v, m, a3 = (types.Array(f, nd, "C") for nd in (1, 2, 3))
    return {
        "proj": types.void(i, i, m, v, v, v, iv),
        "after": types.void(i, i, i, i, iv, iv, v, v, v, v, m, v, v, v, v, m, i, i),
        "zr": types.void(i, i, i, i, iv, v, v, v, m, v, v, m, i),
        "h": types.void(i, i, i, i, iv, iv, v, v, v, m, v, v, m, m, i),
        "bwd": types.void(i, i, i, i, iv, iv, v, v, v, v, m, m, m, m, m, m, i, i,
                          types.boolean),
        "gemm": types.void(i, i, i, i, m, m, m),
        "dr": types.void(i, i, i, i, iv, v, m, m, m, m, i),
        "dh": types.void(i, i, i, i, iv, m, m, m, m, m),
        "wgrad": types.void(i, i, m, m, m, m, m, a3, a3, m, m, m),
    }


_task = TaskTable({
    "proj": _proj_task, "after": _fwd_after_task, "zr": _fwd_zr_task, "h": _fwd_h_task,
    "bwd": _bwd_task, "gemm": _gemm_rows_task, "dr": _dr_task, "dh": _dh_task,
    "wgrad": _wgrad_task,
    # default activations (tanh, sigmoid): without the other activations' code
    "after_dflt": _clone(_fwd_after_task, "_dflt", _GENERAL=False),
    "zr_dflt": _clone(_fwd_zr_task, "_dflt", _GENERAL=False),
    "h_dflt": _clone(_fwd_h_task, "_dflt", _GENERAL=False),
    "bwd_dflt": _clone(_bwd_task, "_dflt", _GENERAL=False)}, _task_signatures)


def drivers(dtype):
    """(forward, backward, weight_grads), each a callable with the arguments of
    :func:`gru_forward`, :func:`gru_backward`, :func:`gru_weight_grads`: the tasks of a
    step on numba's threads for float32 launches with ``nthreads > 1``, one after another
    otherwise (float64, one thread: same tasks, same results, far cheaper to compile)."""
    threadable = np.dtype(dtype) == np.float32

    def forward(*args):
        return gru_forward(*args, threaded=threadable and args[-1] > 1)

    def backward(*args):
        return gru_backward(*args, threaded=threadable and args[-1] > 1)

    def weight_grads(*args):
        return gru_weight_grads(*args, threaded=threadable and args[-1] > 1)

    return forward, backward, weight_grads


def _widest_step(offsets) -> int:
    return int(np.diff(offsets).max()) if offsets.size > 1 else 0


# ---- op-facing wrappers -----------------------------------------------------------------
def forward(x, k, rk, b_in, b_rec, offsets, rows, mask, c, y, h, keep):
    """Run the forward driver for the GRU op (``ops/gru.py``); returns its residuals."""
    B, T, D = x.shape
    H = h.shape[1]
    after = c["reset_after"]
    uoff = unit_chunks(H, UNIT_CHUNK)
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
    uoff = unit_chunks(H, UNIT_CHUNK)
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
