"""Dense kernels: one GEMM (BLAS through np.dot) with bias and activation fused after it.

All arrays are 2-D C-contiguous of one float dtype: ``x`` (N, D), ``w`` (D, U),
``b`` (U,) (zeros when the layer has no bias).
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import jit
from graphmask.kernels.activations import activate_inplace, activation_grad


@jit
def _gemm(a, b):
    """``a @ b`` into a new C-contiguous array: numba's three-argument np.dot (the
    two-argument form compiles one more wrapper per layout pair); a zero inner size
    gives zeros, as np.dot does."""
    out = np.empty((a.shape[0], b.shape[1]), a.dtype)
    if a.shape[1] == 0:
        zero = out.dtype.type(0.0)
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                out[i, j] = zero
    else:
        np.dot(a, b, out)
    return out


@jit
def dense_forward(x, w, b, code, keep_z):
    """``(y, z)`` with ``z = x @ w + b`` and ``y = f(z)``.

    When ``keep_z`` is False the activation runs in place and ``z`` is returned as an
    empty (0, 0) array (the VJP then needs only ``y``).
    """
    z = _gemm(x, w)
    n, u = z.shape
    for i in range(n):
        for j in range(u):
            z[i, j] += b[j]
    if keep_z:
        y = z.copy()
        activate_inplace(y, code)
        return y, z
    activate_inplace(z, code)
    return z, np.empty((0, 0), dtype=z.dtype)


@jit
def dense_backward(x, w, y, z, dy, code, need_dx, need_dw, need_db):
    """``(dx, dw, db)`` of :func:`dense_forward`; unrequested ones are empty arrays.

    ``z`` is the pre-activation when the activation needs it (swish, gelu); otherwise
    pass ``y`` for it.
    """
    dz = activation_grad(dy, y, z, code)
    dx = _gemm(dz, w.T) if need_dx else np.empty((0, 0), dtype=dz.dtype)
    dw = _gemm(x.T, dz) if need_dw else np.empty((0, 0), dtype=dz.dtype)
    u = dz.shape[1]
    db = np.zeros(u if need_db else 0, dtype=dz.dtype)
    if need_db:
        for i in range(dz.shape[0]):
            for j in range(u):
                db[j] += dz[i, j]
    return dx, dw, db
