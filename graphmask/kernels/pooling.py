"""Global pooling over the time axis of (B, T, F) arrays, with a (B, T) bool mask."""
from __future__ import annotations

import numpy as np

from graphmask.kernels import jit


@jit
def gap_forward(x, mask):
    """``sum_t x*m / sum_t m`` per sample; 0 for a sample with no kept step.

    Masked steps are skipped, never multiplied, so NaN/inf there cannot leak.
    """
    b, t, f = x.shape
    out = np.zeros((b, f), dtype=x.dtype)
    for i in range(b):
        count = 0
        for s in range(t):
            if mask[i, s]:
                count += 1
                for j in range(f):
                    out[i, j] += x[i, s, j]
        if count > 0:
            inv = 1.0 / count
            for j in range(f):
                out[i, j] *= inv
    return out


@jit
def gap_backward(dy, mask):
    """``dx[b, t] = m[b, t] * dy[b] / sum_t m[b]`` (zero for all-masked samples)."""
    b, t = mask.shape
    f = dy.shape[1]
    dx = np.zeros((b, t, f), dtype=dy.dtype)
    for i in range(b):
        count = 0
        for s in range(t):
            if mask[i, s]:
                count += 1
        if count == 0:
            continue
        inv = 1.0 / count
        for s in range(t):
            if mask[i, s]:
                for j in range(f):
                    dx[i, s, j] = dy[i, j] * inv
    return dx


@jit
def gmp_argmax(x):
    """Index over time of the first maximum of each (sample, feature); NaN wins."""
    b, t, f = x.shape
    idx = np.zeros((b, f), dtype=np.int64)
    for i in range(b):
        for j in range(f):
            best = x[i, 0, j]
            for s in range(1, t):
                v = x[i, s, j]
                if v > best or (np.isnan(v) and not np.isnan(best)):
                    best = v
                    idx[i, j] = s
    return idx


@jit
def gmp_forward(x):
    b, _, f = x.shape
    idx = gmp_argmax(x)
    out = np.empty((b, f), dtype=x.dtype)
    for i in range(b):
        for j in range(f):
            out[i, j] = x[i, idx[i, j], j]
    return out


@jit
def gmp_backward(x, dy):
    """Split each ``dy[b, f]`` evenly among the time steps holding the maximum.

    As ``torch.amax`` and ``jax.numpy.max`` (so Keras 3's ``ops.max``) do: with ``n`` steps
    equal to the maximum, each gets ``dy / n``. A NaN maximum gives a NaN gradient at
    every step of that (sample, feature), as those backends give.
    """
    b, t, f = x.shape
    idx = gmp_argmax(x)
    dx = np.zeros_like(x)
    for i in range(b):
        for j in range(f):
            best = x[i, idx[i, j], j]
            if np.isnan(best):
                for s in range(t):
                    dx[i, s, j] = np.nan
                continue
            n = 0
            for s in range(t):
                if x[i, s, j] == best:
                    n += 1
            share = dy[i, j] / n
            for s in range(t):
                if x[i, s, j] == best:
                    dx[i, s, j] = share
    return dx
