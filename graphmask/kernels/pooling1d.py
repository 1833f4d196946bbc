"""Windowed 1-D pooling over the steps of (B, L, C) arrays (``ops/pooling1d.py``).

Output step ``t`` reads input steps ``t * stride - pad_left + j`` for ``j < pool``.
``clamp`` False skips steps outside ``[0, L)``; ``clamp`` True reads the nearest edge step
instead (replicated edges, counted like any other step).
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import jit


@jit
def max_pool_forward(x, pool, stride, pad_left, l_out):
    """``(y, idx)``: the window maxima and the input step of each (the first maximum; a
    NaN wins). Channels run innermost, over contiguous memory."""
    b_n, length, c_n = x.shape
    y = np.empty((b_n, l_out, c_n), dtype=x.dtype)
    idx = np.empty((b_n, l_out, c_n), dtype=np.int64)
    for b in range(b_n):
        for t in range(l_out):
            lo = max(t * stride - pad_left, 0)
            hi = min(t * stride - pad_left + pool, length)
            for c in range(c_n):
                y[b, t, c] = x[b, lo, c]
                idx[b, t, c] = lo
            for s in range(lo + 1, hi):
                for c in range(c_n):
                    v = x[b, s, c]
                    best = y[b, t, c]
                    if v > best or (v != v and best == best):
                        y[b, t, c] = v
                        idx[b, t, c] = s
    return y, idx


@jit
def max_pool_backward(dy, idx, length):
    """Each window's gradient goes to its maximum's step (overlapping windows add up)."""
    b_n, l_out, c_n = dy.shape
    dx = np.zeros((b_n, length, c_n), dtype=dy.dtype)
    for b in range(b_n):
        for t in range(l_out):
            for c in range(c_n):
                dx[b, idx[b, t, c], c] += dy[b, t, c]
    return dx


@jit
def _window(t, j, stride, pad_left, length, clamp):
    s = t * stride - pad_left + j
    if clamp:
        return min(max(s, 0), length - 1)
    return s


@jit
def _count(t, pool, stride, pad_left, length, clamp):
    if clamp:
        return pool
    lo = max(t * stride - pad_left, 0)
    hi = min(t * stride - pad_left + pool, length)
    return hi - lo


@jit
def avg_pool_forward(x, pool, stride, pad_left, l_out, clamp):
    b_n, length, c_n = x.shape
    y = np.zeros((b_n, l_out, c_n), dtype=x.dtype)
    for b in range(b_n):
        for t in range(l_out):
            for j in range(pool):
                s = _window(t, j, stride, pad_left, length, clamp)
                if s < 0 or s >= length:
                    continue
                for c in range(c_n):
                    y[b, t, c] += x[b, s, c]
            inv = 1.0 / _count(t, pool, stride, pad_left, length, clamp)
            for c in range(c_n):
                y[b, t, c] *= inv
    return y


@jit
def avg_pool_backward(dy, length, pool, stride, pad_left, clamp):
    b_n, l_out, c_n = dy.shape
    dx = np.zeros((b_n, length, c_n), dtype=dy.dtype)
    for b in range(b_n):
        for t in range(l_out):
            inv = 1.0 / _count(t, pool, stride, pad_left, length, clamp)
            for j in range(pool):
                s = _window(t, j, stride, pad_left, length, clamp)
                if s < 0 or s >= length:
                    continue
                for c in range(c_n):
                    dx[b, s, c] += dy[b, t, c] * inv
    return dx
