"""numba kernels of the LSTM op (forward and backward), mask-aware.

Layout: every kept (sample, timestep) pair is one *compact row*. Rows are grouped by
processing step: step ``t`` owns rows ``offsets[t]:offsets[t + 1]`` and ``rows[r]`` is
the sample of row ``r``. Masked pairs have no row at all, so no work is spent on them:
the per-step GEMM ``[x_t, h_{t-1}] @ [kernel; recurrent_kernel]`` (input projection and
recurrent product in one), the gate math and every weight-gradient GEMM run on kept
rows only. The state ``h, c`` of a sample simply stays put
at a step where the sample has no row (the carry of Keras's masked LSTM).

Gate blocks are in Keras order i, f, c (called g here), o. Activation codes are the
indices of :data:`ACTIVATIONS`. Derivatives are taken from activation *outputs*, so the
backward pass needs the gate activations, ``c_{t-1}`` and ``act(c_t)`` of each row.

Threads: the units are cut into chunks of at most :data:`UNIT_CHUNK`; a weight matrix
with 4H gate columns is *packed* chunk by chunk (chunk q holds the i, f, g, o columns of
its units side by side, contiguous), and so are the gate arrays. Each step then runs
one task per (unit chunk, row block) under ``prange``: a small GEMM on its own packed
slice of the weights (which stays hot in that core's cache) fused with the gate math
of its units. float64 runs one-thread twins of the drivers (cheaper to compile).
Every BLAS call is kept at M*N*K <= :data:`SERIAL_MNK`, under which OpenBLAS runs
on the calling thread: its own thread pool is never woken, since two pools (OpenBLAS's
and numba's) spinning on the same cores slow each other down several times over.
"""
from __future__ import annotations

import types as pytypes

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from graphmask.kernels import jit, jit_parallel

#: Units per chunk (one task's share of a step).
UNIT_CHUNK = 16
#: OpenBLAS computes a GEMM with M*N*K at or below this on the calling thread.
SERIAL_MNK = 65536 * 4

#: Below this many multiply-adds per step (rows x H x 4H), kernels run on one thread:
#: a fork/join per step costs more than it saves on small problems, and on a loaded
#: machine every fork may wait for a descheduled worker. (NUMBA_NUM_THREADS=1 forces
#: one thread everywhere.)
PARALLEL_MIN_WORK = 1 << 18

#: Activation names in code order (kernels receive the index).
ACTIVATIONS = ("linear", "tanh", "sigmoid", "relu", "hard_sigmoid")

# float32 constants: mixing a float32 value with a Python float would promote to float64.
_F1 = np.float32(1.0)
_FHALF = np.float32(0.5)
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # few mantissa bits: n * _LN2_HI is exact
_LN2_LO = np.float32(-2.12194440e-4)
_EXP_LO = np.float32(-87.0)
_EXP_HI = np.float32(88.0)
# Taylor coefficients 1/k! of exp on |r| <= ln2 / 2 (degree 7: error below 1e-8).
_C2 = np.float32(1.0 / 2)
_C3 = np.float32(1.0 / 6)
_C4 = np.float32(1.0 / 24)
_C5 = np.float32(1.0 / 120)
_C6 = np.float32(1.0 / 720)
_C7 = np.float32(1.0 / 5040)


@intrinsic
def _bits_to_f32(typingctx, v):
    """Reinterpret the low 32 bits of an int64 as a float32 (2**n without libm)."""
    if v != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.trunc(args[0], ir.IntType(32)), ir.FloatType())

    return types.float32(types.int64), codegen


def _exp(x):
    """exp: a branch-free, vectorizable approximation for float32, libm for float64."""
    return np.exp(x)


@overload(_exp)
def _exp_impl(x):
    if x == types.float32:
        def exp_f32(x):
            x = min(max(x, _EXP_LO), _EXP_HI)
            n = np.floor(x * _LOG2E + _FHALF)
            r = x - n * _LN2_HI - n * _LN2_LO
            p = _C6 + r * _C7
            p = _C5 + r * p
            p = _C4 + r * p
            p = _C3 + r * p
            p = _C2 + r * p
            p = _F1 + r * p
            p = _F1 + r * p
            return p * _bits_to_f32((np.int64(n) + 127) << 23)
        return exp_f32
    return lambda x: np.exp(x)


@jit
def _act_inplace(v, code):
    """Apply activation ``code`` to the 1-D array ``v`` in place, one tight loop each.

    np.divide, not ``/``: numba's ``/`` checks for a zero divisor, which blocks SIMD.
    """
    one = v.dtype.type(1.0)
    zero = v.dtype.type(0.0)
    if code == 1:  # tanh = 1 - 2 / (exp(2x) + 1): saturates cleanly at +-1
        two = v.dtype.type(2.0)
        for k in range(v.size):
            v[k] = one - np.divide(two, _exp(two * v[k]) + one)
    elif code == 2:
        for k in range(v.size):
            v[k] = np.divide(one, one + _exp(-v[k]))
    elif code == 3:
        for k in range(v.size):
            v[k] = max(v[k], zero)
    elif code == 4:  # Keras 3: relu6(x + 3) / 6
        three = v.dtype.type(3.0)
        six = v.dtype.type(6.0)
        for k in range(v.size):
            v[k] = np.divide(min(max(v[k] + three, zero), six), six)


@jit
def _dact(y, code, one, sixth):
    """Derivative of activation ``code`` through its output ``y`` (``one``, ``sixth``
    carry the float type, so float32 math stays float32)."""
    zero = one - one
    if code == 1:
        return one - y * y
    if code == 2:
        return y * (one - y)
    if code == 3:
        return one if y > zero else zero
    if code == 4:
        return sixth if (y > zero and y < one) else zero
    return one


@jit
def lstm_schedule(mask, backwards):
    """Compact rows of a (B, T) bool mask in processing order: ``(offsets, rows)``."""
    B, T = mask.shape
    offsets = np.zeros(T + 1, np.int64)
    n = 0
    for t in range(T):
        ts = T - 1 - t if backwards else t
        for b in range(B):
            if mask[b, ts]:
                n += 1
        offsets[t + 1] = n
    rows = np.empty(n, np.int64)
    r = 0
    for t in range(T):
        ts = T - 1 - t if backwards else t
        for b in range(B):
            if mask[b, ts]:
                rows[r] = b
                r += 1
    return offsets, rows


@jit
def unit_chunks(H):
    """Unit offsets of the chunks: (Q + 1,) with chunks of UNIT_CHUNK units (last ragged)."""
    Q = (H + UNIT_CHUNK - 1) // UNIT_CHUNK
    uoff = np.empty(Q + 1, np.int64)
    for q in range(Q + 1):
        uoff[q] = min(q * UNIT_CHUNK, H)
    return uoff


@jit
def pack(W, uoff):
    """Pack the 4H gate columns of ``W`` (R, 4H) chunk by chunk, flat: chunk q is the
    contiguous (R, 4 uq) block at ``R * 4 * uoff[q]`` (its i, f, g, o columns)."""
    R = W.shape[0]
    H = uoff[-1]
    out = np.empty(R * 4 * H, W.dtype)
    for q in range(uoff.size - 1):
        u0 = uoff[q]
        uq = uoff[q + 1] - u0
        blk = out[R * 4 * u0:R * 4 * (u0 + uq)].reshape(R, 4 * uq)
        for i in range(R):
            for gi in range(4):
                for k in range(uq):
                    blk[i, gi * uq + k] = W[i, gi * H + u0 + k]
    return out


@jit
def unpack(flat, R, uoff):
    """Inverse of :func:`pack`: (R, 4H) in Keras column order."""
    H = uoff[-1]
    out = np.empty((R, 4 * H), flat.dtype)
    for q in range(uoff.size - 1):
        u0 = uoff[q]
        uq = uoff[q + 1] - u0
        blk = flat[R * 4 * u0:R * 4 * (u0 + uq)].reshape(R, 4 * uq)
        for i in range(R):
            for gi in range(4):
                for k in range(uq):
                    out[i, gi * H + u0 + k] = blk[i, gi * uq + k]
    return out


@jit
def pack_transposed(rk, uoff):
    """``rk.T`` (4H, H) with its rows in packed gate order, cut by unit chunks of its
    columns: chunk q is the contiguous (4H, uq) block at ``4H * uoff[q]``."""
    H = rk.shape[0]
    out = np.empty(4 * H * H, rk.dtype)
    for q2 in range(uoff.size - 1):
        v0 = uoff[q2]
        vq = uoff[q2 + 1] - v0
        blk = out[4 * H * v0:4 * H * (v0 + vq)].reshape(4 * H, vq)
        for q in range(uoff.size - 1):
            u0 = uoff[q]
            uq = uoff[q + 1] - u0
            for gi in range(4):
                for k in range(uq):
                    p = 4 * u0 + gi * uq + k
                    for k2 in range(vq):
                        blk[p, k2] = rk[v0 + k2, gi * H + u0 + k]
    return out


class threads_for:
    """Context manager: numba's (thread-local) thread count for a problem whose largest
    step has ``n`` rows: one thread below :data:`PARALLEL_MIN_WORK`."""

    def __init__(self, n: int, H: int):
        self.serial = n * H * 4 * H < PARALLEL_MIN_WORK

    def __enter__(self):
        self.saved = numba.get_num_threads()
        if self.serial:
            numba.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        numba.set_num_threads(self.saved)
        return False


# Each prange body below is a plain @jit task function: parfor analysis of big loop
# bodies is what makes parallel kernels slow to compile.
@jit
def _fwd_task(task, nr, mr, o0, n, uoff, rows, wf, bf, A, G, XH, Cp, Tc, h, c, act, ract):
    """One step for one (unit chunk, row block): ``[x_t, h_{t-1}] @ [kernel; recurrent]``
    in one GEMM, fused with the gate math."""
    B, H = h.shape
    N, DH = XH.shape
    q = task // nr
    a = (task % nr) * mr
    e = min(n, a + mr)
    u0 = uoff[q]
    uq = uoff[q + 1] - u0
    w = 4 * uq
    Aq = A[N * 4 * u0:N * 4 * u0 + N * w].reshape(N, w)
    Gq = G[B * 4 * u0:B * 4 * u0 + B * w].reshape(B, w)
    np.dot(XH[o0 + a:o0 + e], wf[DH * 4 * u0:DH * 4 * u0 + DH * w].reshape(DH, w), Gq[a:e])
    bq = bf[4 * u0:4 * u0 + w]
    fast = act == 1 and ract == 2
    one = A.dtype.type(1.0)
    two = A.dtype.type(2.0)
    for j in range(a, e):
        r = o0 + j
        b = rows[r]
        z = Aq[r]
        g = Gq[j]
        if fast:  # the Keras default: all four gates in one vectorizable loop
            for k in range(uq):
                z[k] = np.divide(one, one + _exp(-(g[k] + bq[k])))
                z[uq + k] = np.divide(one, one + _exp(-(g[uq + k] + bq[uq + k])))
                z[2 * uq + k] = one - np.divide(
                    two, _exp(two * (g[2 * uq + k] + bq[2 * uq + k])) + one)
                z[3 * uq + k] = np.divide(one, one + _exp(-(g[3 * uq + k] + bq[3 * uq + k])))
        else:
            for k in range(w):
                z[k] = g[k] + bq[k]
            _act_inplace(z[:2 * uq], ract)
            _act_inplace(z[2 * uq:3 * uq], act)
            _act_inplace(z[3 * uq:], ract)
        tc = Tc[r, u0:u0 + uq]
        for k in range(uq):
            cold = c[b, u0 + k]
            Cp[r, u0 + k] = cold
            cn = z[uq + k] * cold + z[k] * z[2 * uq + k]
            c[b, u0 + k] = cn
            tc[k] = cn
        _act_inplace(tc, act)
        for k in range(uq):
            h[b, u0 + k] = z[3 * uq + k] * tc[k]


@jit
def _fwd_setup(x, offsets, rows, backwards, H):
    """XH (N, D + H): per kept row its input x_t and (filled per step) h_{t-1}."""
    N = rows.size
    B, T, D = x.shape
    dt = x.dtype
    XH = np.empty((N, D + H), dt)
    for t in range(T):
        ts = T - 1 - t if backwards else t
        for r in range(offsets[t], offsets[t + 1]):
            XH[r, :D] = x[rows[r], ts, :]
    return (XH, np.empty(N * 4 * H, dt), np.empty((N, H), dt), np.empty((N, H), dt),
            np.empty(B * 4 * H, dt))


@jit
def _gather_h(XH, h, rows, o0, n):
    D = XH.shape[1] - h.shape[1]
    for j in range(n):
        XH[o0 + j, D:] = h[rows[o0 + j]]


@jit
def _write_y(y, h, mask, t, backwards, zero_masked):
    # kept step: the new h; masked step: the carried h (= the previous output).
    B, T = y.shape[0], y.shape[1]
    ts = T - 1 - t if backwards else t
    for b in range(B):
        if zero_masked and not mask[b, ts]:
            y[b, t, :] = 0
        else:
            y[b, t, :] = h[b]


# The parallel drivers hold nothing but scalar code, prange loops and calls: numba turns
# any array expression in a parallel function into one more parfor to compile.
@jit_parallel
def lstm_forward(x, wf, bf, uoff, offsets, rows, mask, backwards, act, ract, ret_seq,
                 zero_masked, y, h, c):
    """Forward over kept rows. ``wf``: :func:`pack` of ``[kernel; recurrent_kernel]``
    stacked (D + H, 4H); ``bf``: packed bias (zeros without bias). ``h, c`` (B, H) start
    at zero and end as the final state; ``y`` (B, T, H) is written when ``ret_seq``.
    Returns the residuals: XH (N, D + H) rows ``[x_t, h_{t-1}]``, packed gate
    activations A (flat, chunk q is (N, 4 uq)), and (N, H) arrays c_{t-1}, act(c_t)."""
    H = h.shape[1]
    Q = uoff.size - 1
    T = offsets.size - 1
    XH, A, Cp, Tc, G = _fwd_setup(x, offsets, rows, backwards, H)
    mr = max(1, SERIAL_MNK // (XH.shape[1] * 4 * UNIT_CHUNK))
    for t in range(T):
        o0 = offsets[t]
        n = offsets[t + 1] - o0
        _gather_h(XH, h, rows, o0, n)
        nr = (n + mr - 1) // mr
        for task in numba.prange(Q * nr):
            _fwd_task(task, nr, mr, o0, n, uoff, rows, wf, bf, A, G, XH, Cp, Tc, h, c, act,
                      ract)
        if ret_seq:
            _write_y(y, h, mask, t, backwards, zero_masked)
    return XH, A, Cp, Tc


@jit
def _bwd_task(task, nr, mr, o0, n, uoff, rows, A, Cp, Tc, dZ, S, dh, dc, act, ract):
    """Gate gradients of one step for one (unit chunk, row block)."""
    N = Cp.shape[0]
    one = A.dtype.type(1.0)
    sixth = one / A.dtype.type(6.0)
    q = task // nr
    a = (task % nr) * mr
    e = min(n, a + mr)
    u0 = uoff[q]
    uq = uoff[q + 1] - u0
    w = 4 * uq
    Aq = A[N * 4 * u0:N * 4 * u0 + N * w].reshape(N, w)
    dZq = dZ[N * 4 * u0:N * 4 * u0 + N * w].reshape(N, w)
    fast = act == 1 and ract == 2  # the Keras default: a branch-free loop
    for j in range(a, e):
        r = o0 + j
        b = rows[r]
        z = Aq[r]
        dz = dZq[r]
        if fast:
            for k in range(uq):
                gi = z[k]
                gf = z[uq + k]
                gg = z[2 * uq + k]
                go = z[3 * uq + k]
                tc = Tc[r, u0 + k]
                dhk = dh[b, u0 + k]
                dct = dc[b, u0 + k] + dhk * go * (one - tc * tc)
                dz[k] = dct * gg * gi * (one - gi)
                dz[uq + k] = dct * Cp[r, u0 + k] * gf * (one - gf)
                dz[2 * uq + k] = dct * gi * (one - gg * gg)
                dz[3 * uq + k] = dhk * tc * go * (one - go)
                dc[b, u0 + k] = dct * gf
        else:
            for k in range(uq):
                gi = z[k]
                gf = z[uq + k]
                gg = z[2 * uq + k]
                go = z[3 * uq + k]
                tc = Tc[r, u0 + k]
                dhk = dh[b, u0 + k]
                dct = dc[b, u0 + k] + dhk * go * _dact(tc, act, one, sixth)
                dz[k] = dct * gg * _dact(gi, ract, one, sixth)
                dz[uq + k] = dct * Cp[r, u0 + k] * _dact(gf, ract, one, sixth)
                dz[2 * uq + k] = dct * gi * _dact(gg, act, one, sixth)
                dz[3 * uq + k] = dhk * tc * _dact(go, ract, one, sixth)
                dc[b, u0 + k] = dct * gf
        for k in range(w):
            S[j, 4 * u0 + k] = dz[k]


@jit
def _dh_task(task, nr, mr, o0, n, uoff, rows, S, rkTf, DH, dh):
    """dh_{t-1} = dZ_t @ rk.T for one (output unit chunk, row block)."""
    B, H = dh.shape
    q = task // nr
    a = (task % nr) * mr
    e = min(n, a + mr)
    v0 = uoff[q]
    vq = uoff[q + 1] - v0
    DHq = DH[B * v0:B * v0 + B * vq].reshape(B, vq)
    np.dot(S[a:e], rkTf[4 * H * v0:4 * H * v0 + 4 * H * vq].reshape(4 * H, vq), DHq[a:e])
    for j in range(a, e):
        b = rows[o0 + j]
        for k in range(vq):
            dh[b, v0 + k] = DHq[j, k]


@jit
def _add_gy(dh, gy, mask, t, backwards, zero_masked):
    # y[:, t] is h_t at kept and carried steps alike, so its gradient joins dh.
    B, T, H = gy.shape
    ts = T - 1 - t if backwards else t
    for b in range(B):
        if not (zero_masked and not mask[b, ts]):
            for k in range(H):
                dh[b, k] += gy[b, t, k]


@jit
def _bwd_setup(A, B, H, N):
    return (np.empty(N * 4 * H, A.dtype), np.empty((B, 4 * H), A.dtype),
            np.empty(B * H, A.dtype))


@jit_parallel
def lstm_backward(A, Cp, Tc, rkTf, uoff, offsets, rows, mask, backwards, act, ract,
                  ret_seq, zero_masked, gy, dh, dc):
    """Backpropagation through time over kept rows.

    ``dh, dc`` (B, H) enter as the gradients w.r.t. the final state and are updated in
    place. ``gy`` is the gradient of the (B, T, H) sequence output when ``ret_seq``.
    ``rkTf`` is :func:`pack_transposed` of the recurrent kernel. Returns the gate
    pre-activation gradients dZ, packed like A.
    """
    B, H = dh.shape
    T = offsets.size - 1
    Q = uoff.size - 1
    N = Cp.shape[0]
    # S: dZ of one step, row-major, packed columns; DH: dh_{t-1} by unit chunk
    dZ, S, DH = _bwd_setup(A, B, H, N)
    mr = max(1, SERIAL_MNK // (4 * H * UNIT_CHUNK))
    for t in range(T - 1, -1, -1):
        if ret_seq:
            _add_gy(dh, gy, mask, t, backwards, zero_masked)
        o0 = offsets[t]
        n = offsets[t + 1] - o0
        nr = (n + mr - 1) // mr
        for task in numba.prange(Q * nr):
            _bwd_task(task, nr, mr, o0, n, uoff, rows, A, Cp, Tc, dZ, S, dh, dc, act, ract)
        for task in numba.prange(Q * nr):
            _dh_task(task, nr, mr, o0, n, uoff, rows, S, rkTf, DH, dh)
    return dZ


@jit
def _wgrad_task(q, dZ, XH, uoff, dwf, dbf):
    """Gradient of ``[kernel; recurrent_kernel]`` (packed chunk q) and bias over all
    kept rows: ``XH.T @ dZ_q`` by row blocks."""
    N, DH = XH.shape
    u0 = uoff[q]
    w = 4 * (uoff[q + 1] - u0)
    dZq = dZ[N * 4 * u0:N * 4 * u0 + N * w].reshape(N, w)
    dwq = dwf[DH * 4 * u0:DH * 4 * u0 + DH * w].reshape(DH, w)
    tmp = np.empty((DH, w), dZ.dtype)
    m = max(1, SERIAL_MNK // (DH * w))
    for a in range(0, N, m):
        e = min(N, a + m)
        np.dot(XH[a:e].T, dZq[a:e], tmp)
        for i in range(DH):
            for k in range(w):
                dwq[i, k] += tmp[i, k]
        for r in range(a, e):
            for k in range(w):
                dbf[4 * u0 + k] += dZq[r, k]


@jit
def _dx_task(task, m, dZ, wf, uoff, dXc):
    """Input gradient of row block ``task``: the sum over chunks of dZ_q @ kernel_q.T."""
    N, D = dXc.shape
    DH = wf.size // (4 * uoff[-1])
    a = task * m
    e = min(N, a + m)
    tmp = np.empty((e - a, D), dZ.dtype)
    for q in range(uoff.size - 1):
        u0 = uoff[q]
        w = 4 * (uoff[q + 1] - u0)
        dZq = dZ[N * 4 * u0:N * 4 * u0 + N * w].reshape(N, w)
        kq = wf[DH * 4 * u0:DH * 4 * u0 + DH * w].reshape(DH, w)[:D]
        np.dot(dZq[a:e], kq.T, tmp)
        for r in range(e - a):
            for i in range(D):
                dXc[a + r, i] += tmp[r, i]


@jit
def _wg_setup(dZ, XH, H):
    DH = XH.shape[1]
    return (np.zeros(DH * 4 * H, dZ.dtype), np.zeros(4 * H, dZ.dtype),
            np.zeros((XH.shape[0], DH - H), dZ.dtype))


@jit
def _scatter_dx(dXc, offsets, rows, backwards, B):
    T = offsets.size - 1
    dx = np.zeros((B, T, dXc.shape[1]), dXc.dtype)
    for t in range(T):
        ts = T - 1 - t if backwards else t
        for r in range(offsets[t], offsets[t + 1]):
            dx[rows[r], ts, :] = dXc[r]
    return dx


@jit_parallel
def lstm_weight_grads(dZ, XH, wf, uoff, offsets, rows, backwards, B):
    """Gradients of x (B, T, D), of ``[kernel; recurrent_kernel]`` (packed, flat) and of
    the bias (packed) from the packed gate gradients: sums over all kept rows."""
    N, DH = XH.shape
    H = uoff[-1]
    D = DH - H
    Q = uoff.size - 1
    dwf, dbf, dXc = _wg_setup(dZ, XH, H)
    for q in numba.prange(Q):
        _wgrad_task(q, dZ, XH, uoff, dwf, dbf)
    m = max(1, SERIAL_MNK // (max(D, 1) * 4 * UNIT_CHUNK))
    for task in numba.prange((N + m - 1) // m):
        _dx_task(task, m, dZ, wf, uoff, dXc)
    return _scatter_dx(dXc, offsets, rows, backwards, B), dwf, dbf


def _one_thread_twin(parallel_kernel):
    """The same driver compiled without ``parallel`` (prange runs as range).

    float64 (gradient checks) runs these: compiling a parallel kernel costs several
    seconds per signature, and float64 speed matters little. A distinct qualname keeps
    the two in separate on-disk cache entries.
    """
    f = parallel_kernel.py_func
    g = pytypes.FunctionType(f.__code__, f.__globals__, f.__name__ + "_1t", f.__defaults__,
                             f.__closure__)
    g.__qualname__ = f.__qualname__ + "_1t"
    g.__doc__ = f.__doc__
    return jit(g)


lstm_forward_1t = _one_thread_twin(lstm_forward)
lstm_backward_1t = _one_thread_twin(lstm_backward)
lstm_weight_grads_1t = _one_thread_twin(lstm_weight_grads)


def drivers(dtype):
    """(forward, backward, weight_grads) kernels for a float dtype: multi-threaded for
    float32, one-thread twins for float64."""
    if np.dtype(dtype) == np.float32:
        return lstm_forward, lstm_backward, lstm_weight_grads
    return lstm_forward_1t, lstm_backward_1t, lstm_weight_grads_1t
