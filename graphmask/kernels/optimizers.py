"""Fused optimizer update kernels: one pass over each weight, updated in place.

All arrays are flat (1-D views of the weights and their slots) and share the weight's
dtype; scalar hyper-parameters arrive already cast to that dtype, so float32 weights
are updated with float32 arithmetic in Keras 3's operation order (bit-for-bit where the
platform's float32 sqrt/divide agree).
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import jit


@jit
def sgd(w, g, lr):
    for i in range(w.size):
        w[i] -= g[i] * lr


@jit
def sgd_momentum(w, g, m, lr, momentum, nesterov):
    for i in range(w.size):
        m[i] = m[i] * momentum - g[i] * lr
        if nesterov:
            w[i] += m[i] * momentum - g[i] * lr
        else:
            w[i] += m[i]


@jit
def adam(w, g, m, v, vhat, alpha, c1, c2, eps, amsgrad):
    # m += (g - m) * (1 - beta_1); v += (g^2 - v) * (1 - beta_2);
    # w -= m * alpha / (sqrt(v) + eps), v replaced by max(vhat, v) with amsgrad
    for i in range(w.size):
        gi = g[i]
        m[i] += (gi - m[i]) * c1
        v[i] += (gi * gi - v[i]) * c2
        vi = v[i]
        if amsgrad:
            vhat[i] = max(vhat[i], vi)
            vi = vhat[i]
        w[i] -= (m[i] * alpha) / (np.sqrt(vi) + eps)


@jit
def rmsprop(w, g, v, avg, mom, lr, rho, c_rho, eps, momentum, centered, use_momentum):
    # v = rho v + (1 - rho) g^2; centered: avg = rho avg + (1 - rho) g, den = v - avg^2 + eps;
    # increment = lr g / sqrt(den); with momentum: mom = momentum mom + increment, w -= mom
    for i in range(w.size):
        gi = g[i]
        v[i] = rho * v[i] + c_rho * (gi * gi)
        if centered:
            avg[i] = rho * avg[i] + c_rho * gi
            den = v[i] - avg[i] * avg[i] + eps
        else:
            den = v[i] + eps
        inc = (lr * gi) / np.sqrt(den)
        if use_momentum:
            mom[i] = momentum * mom[i] + inc
            w[i] -= mom[i]
        else:
            w[i] -= inc


@jit
def sum_squares(g):
    s = 0.0
    for i in range(g.size):
        s += float(g[i]) * float(g[i])
    return s
