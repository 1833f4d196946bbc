"""numba kernels of the LSTM op (forward and backward), mask-aware.

Layout: every kept (sample, timestep) pair is one *compact row*. Rows are grouped by
processing step: step ``t`` owns rows ``offsets[t]:offsets[t + 1]`` and ``rows[r]`` is
the sample of row ``r``. Masked pairs have no row at all, so no work is spent on them:
the input projection, the per-step recurrent GEMM, the gate math and every weight
gradient GEMM run on kept rows only. The state ``h, c`` of a sample simply stays put
at a step where the sample has no row (the carry of Keras's masked LSTM).

Gate blocks are in Keras order i, f, c (called g here), o. Activation codes are the
indices of :data:`ACTIVATIONS`. Derivatives are taken from activation *outputs*, so the
backward pass needs the gate activations, ``c_{t-1}`` and ``act(c_t)`` of each row.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from graphmask.kernels import jit

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
def gather_steps(x, offsets, rows, backwards):
    """The kept rows of ``x`` (B, T, D) as a compact (N, D) array."""
    T = offsets.size - 1
    out = np.empty((rows.size, x.shape[2]), x.dtype)
    for t in range(T):
        ts = T - 1 - t if backwards else t
        for r in range(offsets[t], offsets[t + 1]):
            out[r, :] = x[rows[r], ts, :]
    return out


@jit
def input_projection(x, kernel, bias, offsets, rows, backwards):
    """``x @ kernel + bias`` for the kept rows only: one GEMM, (N, 4H).

    Every LSTM GEMM goes through numba's np.dot (SciPy's BLAS): mixing it with NumPy's
    own BLAS copy makes two spinning thread pools fight over the cores.
    """
    Z = np.dot(gather_steps(x, offsets, rows, backwards), kernel)
    if bias.size:
        for r in range(Z.shape[0]):
            Z[r] += bias
    return Z


@jit
def weight_grads(dZ, x, kernel, Hp, offsets, rows, backwards):
    """Gradients of x, kernel, recurrent_kernel and bias from the gate gradients dZ:
    GEMMs over all kept rows at once (masked steps contribute nothing)."""
    B, T, D = x.shape
    dk = np.dot(gather_steps(x, offsets, rows, backwards).T, dZ)
    drk = np.dot(Hp.T, dZ)
    db = np.zeros(dZ.shape[1], dZ.dtype)
    for r in range(dZ.shape[0]):
        db += dZ[r]
    dxc = np.dot(dZ, np.ascontiguousarray(kernel.T))
    dx = np.zeros((B, T, D), dZ.dtype)
    for t in range(T):
        ts = T - 1 - t if backwards else t
        for r in range(offsets[t], offsets[t + 1]):
            dx[rows[r], ts, :] = dxc[r]
    return dx, dk, drk, db


@jit
def lstm_forward_steps(Z, rk, offsets, rows, mask, backwards, act, ract, ret_seq,
                       zero_masked, y, h, c, Hp, Cp, Tc):
    """The time loop. ``Z`` (N, 4H) holds ``x @ kernel + bias`` and is overwritten by
    the gate activations. ``h, c`` (B, H) start at zero and end as the final state.
    Writes ``y`` (B, T, H) when ``ret_seq``; fills residuals ``Hp`` (h_{t-1}), ``Cp``
    (c_{t-1}) and ``Tc`` (act(c_t)), each (N, H)."""
    B, H = h.shape
    T = offsets.size - 1
    G = np.empty((B, 4 * H), Z.dtype)  # recurrent product of one step (kept rows)
    for t in range(T):
        o0 = offsets[t]
        n = offsets[t + 1] - o0
        if n > 0:
            for j in range(n):
                Hp[o0 + j, :] = h[rows[o0 + j]]
            np.dot(Hp[o0:o0 + n], rk, G[:n])
            for j in range(n):
                r = o0 + j
                b = rows[r]
                z = Z[r]
                g = G[j]
                for k in range(4 * H):
                    z[k] += g[k]
                _act_inplace(z[:2 * H], ract)
                _act_inplace(z[2 * H:3 * H], act)
                _act_inplace(z[3 * H:], ract)
                cb = c[b]
                cp = Cp[r]
                tc = Tc[r]
                for k in range(H):
                    cp[k] = cb[k]
                    cn = z[H + k] * cb[k] + z[k] * z[2 * H + k]
                    cb[k] = cn
                    tc[k] = cn
                _act_inplace(tc, act)
                hb = h[b]
                for k in range(H):
                    hb[k] = z[3 * H + k] * tc[k]
        if ret_seq:
            # kept step: the new h; masked step: the carried h (= previous output).
            ts = T - 1 - t if backwards else t
            for b in range(B):
                if zero_masked and not mask[b, ts]:
                    y[b, t, :] = 0
                else:
                    y[b, t, :] = h[b]


@jit
def lstm_backward_steps(A, Cp, Tc, rkT, offsets, rows, mask, backwards, act, ract,
                        ret_seq, zero_masked, gy, dh, dc):
    """Backpropagation through time over compact rows.

    ``dh, dc`` (B, H) enter as the gradients w.r.t. the final state and are updated in
    place (they leave as gradients w.r.t. the zero initial state). ``gy`` is the
    gradient of the (B, T, H) sequence output when ``ret_seq`` (ignored otherwise).
    Returns the gate pre-activation gradients dZ (N, 4H).
    """
    B, H = dh.shape
    T = offsets.size - 1
    dZ = np.empty(A.shape, A.dtype)
    one = A.dtype.type(1.0)
    sixth = one / A.dtype.type(6.0)
    DH = np.empty((B, H), A.dtype)
    for t in range(T - 1, -1, -1):
        if ret_seq:
            # y[:, t] is h_t at kept and carried steps alike, so its gradient joins dh.
            ts = T - 1 - t if backwards else t
            for b in range(B):
                if not (zero_masked and not mask[b, ts]):
                    dhb = dh[b]
                    gyb = gy[b, t]
                    for k in range(H):
                        dhb[k] += gyb[k]
        o0 = offsets[t]
        n = offsets[t + 1] - o0
        if n == 0:
            continue
        for j in range(n):
            r = o0 + j
            b = rows[r]
            a = A[r]
            dz = dZ[r]
            tc = Tc[r]
            cp = Cp[r]
            dhb = dh[b]
            dcb = dc[b]
            for k in range(H):
                gi = a[k]
                gf = a[H + k]
                gg = a[2 * H + k]
                go = a[3 * H + k]
                dct = dcb[k] + dhb[k] * go * _dact(tc[k], act, one, sixth)
                dz[k] = dct * gg * _dact(gi, ract, one, sixth)
                dz[H + k] = dct * cp[k] * _dact(gf, ract, one, sixth)
                dz[2 * H + k] = dct * gi * _dact(gg, act, one, sixth)
                dz[3 * H + k] = dhb[k] * tc[k] * _dact(go, ract, one, sixth)
                dcb[k] = dct * gf
        np.dot(dZ[o0:o0 + n], rkT, DH[:n])
        for j in range(n):
            dh[rows[o0 + j], :] = DH[j]
    return dZ
