"""Dense kernels: one GEMM (BLAS through np.dot) with bias and activation fused after it.

All arrays are 2-D C-contiguous of one float dtype: ``x`` (N, D), ``w`` (D, U),
``b`` (U,) (zeros when the layer has no bias).

Each activation gets its own compiled copy of the kernels, made on first use, with the
activation code a compile-time constant: a model compiles only the activation code it
runs (a linear Dense compiles no activation at all).
"""
from __future__ import annotations

import threading
import types as pytypes

import numpy as np

from graphmask.kernels import jit
from graphmask.kernels.activations import LINEAR, activate_inplace, activation_grad

#: The activation code of a per-activation copy (see :func:`_for_code`).
_CODE = 0


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
def _forward(x, w, b, z, y, keep_z):
    """``z = x @ w + b`` into ``z``; the activation into ``y`` when ``keep_z``, else in
    place in ``z`` (``y`` unused)."""
    n, u = z.shape
    if x.shape[1] == 0:
        zero = z.dtype.type(0.0)
        for i in range(n):
            for j in range(u):
                z[i, j] = zero
    elif n > 0:
        np.dot(x, w, z)
    for i in range(n):  # row views: this loop vectorises, z[i, j] did not
        row = z[i]
        for j in range(u):
            row[j] += b[j]
    # _CODE != LINEAR compares two constants: numba drops the dead branch before typing
    if keep_z:
        for i in range(n):
            zr = z[i]
            yr = y[i]
            for j in range(u):
                yr[j] = zr[j]
        if _CODE != LINEAR:
            activate_inplace(y, _CODE)
    elif _CODE != LINEAR:
        activate_inplace(z, _CODE)


@jit
def _backward(x, w, y, z, dy, need_dx, need_dw, need_db):
    if _CODE != LINEAR:
        dz = activation_grad(dy, y, z, _CODE)
    else:  # read only below
        dz = dy
    dx = _gemm(dz, w.T) if need_dx else np.empty((0, 0), dtype=dz.dtype)
    dw = _gemm(x.T, dz) if need_dw else np.empty((0, 0), dtype=dz.dtype)
    u = dz.shape[1]
    db = np.zeros(u if need_db else 0, dtype=dz.dtype)
    if need_db:
        for i in range(dz.shape[0]):
            for j in range(u):
                db[j] += dz[i, j]
    return dx, dw, db


_copies: dict = {}
_copies_lock = threading.Lock()


def _for_code(kernel, code: int):
    """``kernel`` compiled with ``_CODE = code`` (made once per process; each copy has its
    own qualname, hence its own on-disk cache entry)."""
    key = (kernel, int(code))
    f = _copies.get(key)
    if f is None:
        with _copies_lock:
            f = _copies.get(key)
            if f is None:
                py = kernel.py_func
                g = pytypes.FunctionType(py.__code__, dict(py.__globals__, _CODE=int(code)),
                                         f"{py.__name__}_a{int(code)}", py.__defaults__,
                                         py.__closure__)
                g.__qualname__ = f"{py.__qualname__}_a{int(code)}"
                f = _copies[key] = jit(g)
    return f


#: A forward pass with at least this many multiply-adds is cut into two halves of rows
#: that run at once on two threads (graphmask.runtime.run_pair). Handing a half to the
#: other thread and waiting for it costs about 110 us (measured on a 2-core virtual
#: machine, where waking an idle core is slow): below ~2**25 multiply-adds (~350 us on
#: one thread) one thread is as fast or faster: W1's output layer, (3200, 128) x
#: (128, 32), took 231 us as two halves and 223 us on one thread.
SPLIT_WORK = 1 << 25


def _cut(n: int, work: int):
    """The row where a forward pass is cut in two, or None. It depends on the shapes
    only, never on the thread count: with one thread the halves run one after the other,
    so results are the same bits either way (OpenBLAS rounds a row differently when it
    multiplies it among a different number of rows)."""
    if work < SPLIT_WORK or n < 64:
        return None
    return n // 2 - (n // 2) % 8


def dense_forward(x, w, b, code, keep_z):
    """``(y, z)`` with ``z = x @ w + b`` and ``y = f(z)`` for activation ``code``.

    When ``keep_z`` is False the activation runs in place and ``z`` is returned as an
    empty (0, 0) array (the VJP then needs only ``y``). Large products run as two halves
    of rows at once (see :func:`_cut`).
    """
    n, u = x.shape[0], w.shape[1]
    z = np.empty((n, u), x.dtype)
    y = np.empty((n, u) if keep_z else (0, 0), x.dtype)
    f = _for_code(_forward, code)
    cut = _cut(n, n * x.shape[1] * u)
    if cut is None:
        f(x, w, b, z, y, keep_z)
    else:
        from graphmask.runtime import run_pair  # (lazy: the runtime sits above kernels)
        y0, y1 = (y[:cut], y[cut:]) if keep_z else (y, y)
        run_pair(lambda: f(x[:cut], w, b, z[:cut], y0, keep_z),
                 lambda: f(x[cut:], w, b, z[cut:], y1, keep_z))
    return (y, z) if keep_z else (z, np.empty((0, 0), x.dtype))


def dense_backward(x, w, y, z, dy, code, need_dx, need_dw, need_db):
    """``(dx, dw, db)`` of :func:`dense_forward`; unrequested ones are empty arrays.

    ``z`` is the pre-activation when the activation needs it (swish, gelu); otherwise
    pass ``y`` for it.
    """
    return _for_code(_backward, code)(x, w, y, z, dy, need_dx, need_dw, need_db)
