"""Activation functions as numba kernels, shared by every op that fuses one (Dense, ...).

An activation is chosen by an integer code (see :data:`CODES`); the kernels work on 2-D
C-contiguous float32/float64 arrays (callers reshape to ``(N, D)``), which keeps the
number of compiled signatures at two per kernel. ``softmax`` acts on the last axis.

Gradients are computed from the output ``y`` wherever the activation is invertible
enough for that (relu, tanh, sigmoid, softmax, elu, softplus, hard_sigmoid,
exponential); only swish/silu and gelu need the pre-activation input ``x``
(see :data:`NEEDS_INPUT`). Kernels that do not need ``x`` ignore it, so callers may
pass ``y`` in its place.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from graphmask.kernels import jit
from graphmask.kernels.fastmath import _exp

LINEAR, RELU, TANH, SIGMOID, SOFTMAX, ELU = 0, 1, 2, 3, 4, 5
SOFTPLUS, SWISH, GELU, HARD_SIGMOID, EXPONENTIAL = 6, 7, 8, 9, 10

#: activation name -> kernel code ("silu" is Keras's other name for "swish").
CODES = {
    "linear": LINEAR, "relu": RELU, "tanh": TANH, "sigmoid": SIGMOID,
    "softmax": SOFTMAX, "elu": ELU, "softplus": SOFTPLUS, "swish": SWISH,
    "silu": SWISH, "gelu": GELU, "hard_sigmoid": HARD_SIGMOID,
    "exponential": EXPONENTIAL,
}

#: codes whose gradient needs the pre-activation input, not only the output.
NEEDS_INPUT = (SWISH, GELU)

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@jit
def _sigmoid(x):
    # two branches so exp never overflows
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@jit
def act_scalar(x, code):
    """The activation ``code`` at one point (softmax excluded: it is not elementwise)."""
    if code == RELU:
        return x if x > 0 else 0.0
    if code == TANH:
        return math.tanh(x)
    if code == SIGMOID:
        return _sigmoid(x)
    if code == ELU:
        return x if x > 0 else math.expm1(x)
    if code == SOFTPLUS:
        return max(x, 0.0) + math.log1p(math.exp(-abs(x)))
    if code == SWISH:
        return x * _sigmoid(x)
    if code == GELU:
        return 0.5 * x * (1.0 + math.erf(x * _INV_SQRT2))
    if code == HARD_SIGMOID:
        return min(max(x / 6.0 + 0.5, 0.0), 1.0)
    if code == EXPONENTIAL:
        return math.exp(x)
    return x + 0.0


@jit
def act_grad_scalar(dy, y, x, code):
    """``dy * f'(x)`` at one point, from the output ``y`` (and ``x`` for swish/gelu)."""
    if code == RELU:
        return dy if y > 0 else 0.0
    if code == TANH:
        return dy * (1.0 - y * y)
    if code == SIGMOID:
        return dy * y * (1.0 - y)
    if code == ELU:
        # y > 0 iff x > 0; below, f' = exp(x) = y + 1
        return dy if y > 0 else dy * (y + 1.0)
    if code == SOFTPLUS:
        # f' = sigmoid(x) = 1 - exp(-y), written to stay accurate for tiny y
        return dy * -math.expm1(-y)
    if code == SWISH:
        s = _sigmoid(x)
        return dy * s * (1.0 + x * (1.0 - s))
    if code == GELU:
        cdf = 0.5 * (1.0 + math.erf(x * _INV_SQRT2))
        return dy * (cdf + x * _INV_SQRT_2PI * math.exp(-0.5 * x * x))
    if code == HARD_SIGMOID:
        return dy / 6.0 if (y > 0 and y < 1) else 0.0
    if code == EXPONENTIAL:
        return dy * y
    return dy + 0.0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _softmax_rows(z):
    """Softmax over each row of ``z`` in place, in ``z``'s dtype: for float32 the
    exponentials are :func:`~graphmask.kernels.fastmath._exp` (a vectorised loop; exactly
    0 below exp(-87)), summed in row order in float64."""
    n, d = z.shape
    zero = z.dtype.type(0.0)
    lo = z.dtype.type(-87.0)
    for i in range(n):
        row = z[i]
        m = z.dtype.type(-np.inf)
        for j in range(d):
            m = max(m, row[j])
        for j in range(d):
            x = row[j] - m
            row[j] = zero if x < lo else _exp(x)  # NaN stays NaN
        s = 0.0  # summed and divided in float64, as before the float32 exp
        for j in range(d):
            s += float(row[j])
        inv = 1.0 / s
        for j in range(d):
            row[j] = float(row[j]) * inv


@jit
def activate_inplace(z, code):
    """Apply activation ``code`` to the 2-D array ``z`` in place (softmax over rows)."""
    n, d = z.shape
    if code == LINEAR:
        return
    if code == SOFTMAX:
        _softmax_rows(z)
        return
    for i in range(n):
        for j in range(d):
            z[i, j] = act_scalar(z[i, j], code)


@jit
def activation_forward(x, code):
    """A new 2-D array ``f(x)``."""
    y = x.copy()
    activate_inplace(y, code)
    return y


@jit
def activation_grad(dy, y, x, code):
    """``dx`` for ``y = f(x)`` given ``dy`` (2-D arrays; ``x`` unused unless NEEDS_INPUT)."""
    n, d = dy.shape
    dx = np.empty_like(dy)
    if code == SOFTMAX:
        for i in range(n):
            s = 0.0
            for j in range(d):
                s += dy[i, j] * y[i, j]
            for j in range(d):
                dx[i, j] = y[i, j] * (dy[i, j] - s)
        return dx
    for i in range(n):
        for j in range(d):
            dx[i, j] = act_grad_scalar(dy[i, j], y[i, j], x[i, j], code)
    return dx
