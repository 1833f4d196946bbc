"""Batch normalisation over the rows of ``x`` (N, C), channel by channel.

``keep`` (N,) says which rows count in the batch moments (all of them without a mask);
rows not kept are skipped, never multiplied, so NaN there cannot leak into the moments.
The caller passes the divisor ``denom`` (a 1-element array of x's dtype): ``count +
1e-7`` with a mask (Keras 3's masked moments), N without.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import jit


@jit
def moments(x, keep, denom):
    """Per channel ``(mean, var)`` of the kept rows, both sums divided by ``denom[0]``."""
    n, c = x.shape
    mean = np.zeros(c, dtype=x.dtype)
    var = np.zeros(c, dtype=x.dtype)
    for i in range(n):
        if keep[i]:
            for j in range(c):
                mean[j] += x[i, j]
    for j in range(c):
        mean[j] /= denom[0]
    for i in range(n):
        if keep[i]:
            for j in range(c):
                d = x[i, j] - mean[j]
                var[j] += d * d
    for j in range(c):
        var[j] /= denom[0]
    return mean, var


@jit
def normalize(x, mean, inv, gamma, beta):
    """``(x - mean) * (inv * gamma) + beta`` (Keras's order of operations)."""
    n, c = x.shape
    scale = inv * gamma
    y = np.empty_like(x)
    for i in range(n):
        for j in range(c):
            y[i, j] = (x[i, j] - mean[j]) * scale[j] + beta[j]
    return y


@jit
def backward(x, keep, dy, mean, inv, gamma, denom, training):
    """``(dx, dgamma, dbeta)``; in training the moments' own gradients are included:
    ``mean = sum_kept x / denom`` and ``var = sum_kept (x - mean)^2 / denom``."""
    n, c = x.shape
    dgamma = np.zeros(c, dtype=x.dtype)
    dbeta = np.zeros(c, dtype=x.dtype)
    sum_g = np.zeros(c, dtype=x.dtype)     # sum over all rows of dy * gamma
    sum_gd = np.zeros(c, dtype=x.dtype)    # sum over all rows of dy * gamma * (x - mean)
    sum_d = np.zeros(c, dtype=x.dtype)     # sum over kept rows of (x - mean)
    for i in range(n):
        for j in range(c):
            d = x[i, j] - mean[j]
            dbeta[j] += dy[i, j]
            dgamma[j] += dy[i, j] * d * inv[j]
            sum_g[j] += dy[i, j] * gamma[j]
            sum_gd[j] += dy[i, j] * gamma[j] * d
            if keep[i]:
                sum_d[j] += d
    dx = np.empty_like(x)
    if not training:
        for i in range(n):
            for j in range(c):
                dx[i, j] = dy[i, j] * gamma[j] * inv[j]
        return dx, dgamma, dbeta
    dvar = -0.5 * inv * inv * inv * sum_gd
    dmean = -inv * sum_g - 2.0 * dvar * sum_d / denom[0]
    for i in range(n):
        for j in range(c):
            g = dy[i, j] * gamma[j] * inv[j]
            if keep[i]:
                g += (dmean[j] + 2.0 * dvar[j] * (x[i, j] - mean[j])) / denom[0]
            dx[i, j] = g
    return dx, dgamma, dbeta
