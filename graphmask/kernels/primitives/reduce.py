"""Row kernels of the primitive reductions and softmax (``graphmask/ops/primitives/``).

Every kernel reduces (or normalises) each row of a C-contiguous 2-D float32/float64
array of shape (rows, n); callers move the reduced axes to the end first (free for the
last axis, one copy otherwise). Sums accumulate in float64.

Measured (2M float32 values): on rows shorter than :data:`LONG_ROW` values, NumPy's
per-row reductions are 2-10x slower than these loops; on longer rows its SIMD wins, so
the ops call NumPy there. Exponentials are NumPy's (SIMD, ~10x faster than numba's
scalar ``math.exp``): softmax is ``row_shift`` (max and subtract, one pass), ``np.exp``
in place, then ``row_normalize``.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels.primitives import jit

#: Rows at least this long are reduced by NumPy (its SIMD beats a scalar loop there).
LONG_ROW = 256


@jit
def row_sum(x, out):
    """``out[i] = sum(x[i])`` (float64 accumulator)."""
    for i in range(x.shape[0]):
        s = 0.0
        xr = x[i]
        for j in range(x.shape[1]):
            s += xr[j]
        out[i] = s


@jit
def row_max(x, out, sign):
    """``out[i] = max(x[i])`` (``sign`` 1) or ``min`` (``sign`` -1); NaN propagates; n >= 1."""
    for i in range(x.shape[0]):
        xr = x[i]
        m = xr[0]
        for j in range(1, x.shape[1]):
            v = xr[j]
            if v != v:
                m = v
                break
            if (v > m) if sign > 0 else (v < m):
                m = v
        out[i] = m


@jit
def row_max_grad(x, y, g, dx):
    """``dx[i, j] = g[i] / count`` where ``x[i, j] == y[i]`` (ties share evenly), else 0."""
    zero = np.zeros(1, dx.dtype)[0]
    for i in range(x.shape[0]):
        xr, dr, yi = x[i], dx[i], y[i]
        count = 0
        for j in range(x.shape[1]):
            if xr[j] == yi:
                count += 1
        share = g[i] / count if count else 0.0
        for j in range(x.shape[1]):
            dr[j] = share if xr[j] == yi else zero


@jit
def row_shift(x, out, shift, finite):
    """``shift[i]`` = max of row i (NaN if the row holds one) and ``out = x - shift`` row
    by row: the exponent of a stable softmax/logsumexp.

    With ``finite`` an infinite max shifts by 0, so that exp(out) gives torch's
    logsumexp (+-inf); without, softmax gets torch's all-NaN row.
    """
    for i in range(x.shape[0]):
        xr, o = x[i], out[i]
        m = -np.inf
        for j in range(x.shape[1]):
            v = xr[j]
            if v > m or v != v:
                m = v
                if v != v:
                    break
        if finite and (m == np.inf or m == -np.inf):
            m = 0.0
        shift[i] = m
        for j in range(x.shape[1]):
            o[j] = xr[j] - m


@jit
def row_normalize(e):
    """``e[i] /= sum(e[i])`` in place (softmax from exponentials; float64 sums)."""
    for i in range(e.shape[0]):
        er = e[i]
        s = 0.0
        for j in range(e.shape[1]):
            s += er[j]
        inv = 1.0 / s
        for j in range(e.shape[1]):
            er[j] *= inv


@jit
def row_softmax_grad(y, g, dx, log):
    """Softmax VJP ``y (g - sum(g y))`` from the output ``y``; with ``log``, the
    log-softmax VJP ``g - exp(y) sum(g)`` where ``dx`` holds ``exp(y)`` on entry."""
    for i in range(y.shape[0]):
        yr, gr, d = y[i], g[i], dx[i]
        s = 0.0
        if log:
            for j in range(y.shape[1]):
                s += gr[j]
            for j in range(y.shape[1]):
                d[j] = gr[j] - d[j] * s
        else:
            for j in range(y.shape[1]):
                s += gr[j] * yr[j]
            for j in range(y.shape[1]):
                d[j] = yr[j] * (gr[j] - s)
