"""Elementwise VJP kernels of the primitive ops (``graphmask/ops/primitives/``).

Measured on this project's machine (2M float32 values): NumPy's SIMD ufuncs run exp,
tanh, log, pow and plain ``+ - * /`` at least as fast as a numba loop (scalar libm calls
from numba are 3-10x slower), so forwards use ufuncs writing into one output array. What
numba wins is fusing several ufunc passes and their temporaries into one loop: the VJPs
below (tanh 4x, relu 2x, maximum/minimum ties 2-5x faster than the NumPy expression).

Every kernel works on C-contiguous float32/float64 arrays and picks the op by an integer
code, with one loop per code (so each loop vectorises) and constants typed like the
arrays (a float64 literal would silently promote float32 loops). Each kernel compiles for
two signatures only.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels.primitives import jit

# unary VJP codes
ABS, SQUARE, SQRT, LOG1P, TANH, SIGMOID, RELU, CLIP = 0, 1, 2, 3, 4, 5, 6, 7
# binary VJP codes
MAXIMUM, MINIMUM = 0, 1


@jit
def unary_grad(g, x, y, out, code, lo, hi):
    """``out = g * f'(x)`` on 1-D arrays, with ``y = f(x)`` (pass ``x`` when unused).

    ``lo``/``hi`` are CLIP's bounds (ignored otherwise); its gradient passes at the bounds.
    """
    zero = np.zeros(1, g.dtype)[0]
    one = np.ones(1, g.dtype)[0]
    n = g.shape[0]
    if code == ABS:
        for i in range(n):
            v = x[i]
            out[i] = g[i] if v > 0 else (-g[i] if v < 0 else zero)
    elif code == SQUARE:
        for i in range(n):
            out[i] = (x[i] + x[i]) * g[i]
    elif code == SQRT:
        for i in range(n):
            out[i] = g[i] / (y[i] + y[i])
    elif code == LOG1P:
        for i in range(n):
            out[i] = g[i] / (one + x[i])
    elif code == TANH:
        for i in range(n):
            out[i] = g[i] * (one - y[i] * y[i])
    elif code == SIGMOID:
        for i in range(n):
            out[i] = g[i] * y[i] * (one - y[i])
    elif code == RELU:
        for i in range(n):
            out[i] = g[i] if x[i] > 0 else zero
    else:  # CLIP
        for i in range(n):
            out[i] = g[i] if (x[i] >= lo and x[i] <= hi) else zero


@jit
def _maxmin(code, g, a, b, zero, half):
    """(d/da, d/db) * g of maximum/minimum: ties split evenly; with a NaN both get g."""
    if a == b:
        return half * g, half * g
    if code == MAXIMUM:
        return (zero if a < b else g), (zero if a > b else g)
    return (zero if a > b else g), (zero if a < b else g)


@jit
def maxmin_grad(g, x, y, gx, gy, code, which):
    """Full-size (m, n) gradients of ``maximum``/``minimum`` given ``g``.

    ``x``/``y`` are 2-D with each dimension either that of ``g`` or 1 (broadcast, read
    without a copy); the caller sums ``gx``/``gy`` over broadcast axes. ``which``: 0 both,
    1 only ``gx``, 2 only ``gy`` (the other may then be any (m, n) array, e.g. the same).
    """
    m, n = g.shape
    zero = np.zeros(1, g.dtype)[0]
    half = np.full(1, 0.5, g.dtype)[0]
    xi = 1 if x.shape[0] > 1 else 0
    yi = 1 if y.shape[0] > 1 else 0
    xj = 1 if x.shape[1] > 1 else 0
    yj = 1 if y.shape[1] > 1 else 0
    for i in range(m):
        xr, yr, gr, ga, gb = x[i * xi], y[i * yi], g[i], gx[i], gy[i]
        if xj == 1 and yj == 1 and which == 1:
            for j in range(n):
                ga[j] = _maxmin(code, gr[j], xr[j], yr[j], zero, half)[0]
        elif xj == 1 and yj == 1 and which == 2:
            for j in range(n):
                gb[j] = _maxmin(code, gr[j], xr[j], yr[j], zero, half)[1]
        else:
            for j in range(n):
                da, db = _maxmin(code, gr[j], xr[j * xj], yr[j * yj], zero, half)
                if which != 2:
                    ga[j] = da
                if which != 1:
                    gb[j] = db
