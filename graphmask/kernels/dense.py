"""Dense kernels: one GEMM (BLAS, ``blas.gemm_into``) with bias and activation fused after it.

All arrays are 2-D C-contiguous of one float dtype: ``x`` (N, D), ``w`` (D, U),
``b`` (U,) (zeros when the layer has no bias).

Each activation gets its own compiled copy of the kernels, made on first use, with the
activation code a compile-time constant: a model compiles only the activation code it
runs (a linear Dense compiles no activation at all).
"""
from __future__ import annotations

import threading
import types as pytypes

import numba
import numpy as np

from graphmask.kernels import jit, jit_parallel, parallel_launch
from graphmask.kernels.activations import LINEAR, activate_inplace, activation_grad
from graphmask.kernels.blas import gemm_into
from graphmask.kernels.launch import tiered

#: The activation code of a per-activation copy (see :func:`_for_code`).
_CODE = 0


@jit
def _gemm(a, b):
    """``a @ b`` into a new C-contiguous array (``blas.gemm_into``: np.dot's BLAS call);
    a zero inner size gives zeros, as np.dot does."""
    out = np.empty((a.shape[0], b.shape[1]), a.dtype)
    if a.shape[1] == 0:
        zero = out.dtype.type(0.0)
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                out[i, j] = zero
    else:
        gemm_into(a, b, out)
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
        gemm_into(x, w, z)
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


@jit
def _backward_into(x, w, y, z, dy, dx, dw, db):
    """The VJP of a block of rows into given arrays (at least one row, one input and one
    unit): ``dx`` its rows of ``dz @ w.T``, or (0, 0) when not wanted; ``dw`` the block's
    ``x.T @ dz``, or (0, 0); ``db`` (zeros on entry) the block's column sums of ``dz``, or
    (0,)."""
    if _CODE != LINEAR:
        dz = activation_grad(dy, y, z, _CODE)
    else:  # read only below
        dz = dy
    if dx.shape[0] > 0:
        gemm_into(dz, w.T, dx)
    if dw.shape[0] > 0:
        gemm_into(x.T, dz, dw)
    if db.size > 0:
        for i in range(dz.shape[0]):
            for j in range(db.size):
                db[j] += dz[i, j]


@jit_parallel
def _forward_split(x, w, b, z, y, keep_z, cut):
    """:func:`_forward` of rows ``:cut`` and ``cut:`` at once, one half per thread."""
    for half in numba.prange(2):
        a = 0 if half == 0 else cut
        e = cut if half == 0 else x.shape[0]
        _forward(x[a:e], w, b, z[a:e], y[a:e], keep_z)


@jit_parallel
def _backward_split(x, w, y, z, dy, dx, dw2, db2, cut):
    """:func:`_backward_into` of rows ``:cut`` and ``cut:`` at once, one half per thread;
    half ``h``'s weight and bias sums go to ``dw2[h]``, ``db2[h]``."""
    for half in numba.prange(2):
        a = 0 if half == 0 else cut
        e = cut if half == 0 else x.shape[0]
        _backward_into(x[a:e], w, y[a:e], z[a:e], dy[a:e], dx[a:e], dw2[half], db2[half])


#: The kernels each kernel calls by name: a per-activation copy calls their copies.
_CALLS = {"_forward_split": ("_forward",), "_backward_split": ("_backward_into",)}

_copies: dict = {}
_copies_lock = threading.RLock()


def _for_code(kernel, code: int):
    """``kernel`` compiled with ``_CODE = code`` (made once per process; each copy has its
    own qualname, hence its own on-disk cache entry); a kernel that calls others (the
    splits) calls their copies for ``code``."""
    key = (kernel, int(code))
    f = _copies.get(key)
    if f is None:
        with _copies_lock:
            f = _copies.get(key)
            if f is None:
                py = kernel.py_func
                names = {"_CODE": int(code)}
                for callee in _CALLS.get(py.__name__, ()):
                    names[callee] = _for_code(py.__globals__[callee], code)
                g = pytypes.FunctionType(py.__code__, dict(py.__globals__, **names),
                                         f"{py.__name__}_a{int(code)}", py.__defaults__,
                                         py.__closure__)
                g.__qualname__ = f"{py.__qualname__}_a{int(code)}"
                parallel = bool(kernel.targetoptions.get("parallel"))
                f = _copies[key] = (jit_parallel if parallel else jit)(g)
    return f


#: A product with at least this many multiply-adds (and 64 rows) is cut into two halves
#: of rows that run at once on two threads: a forward pass as two row blocks, a VJP as
#: two blocks whose weight and bias sums are then added (half 0 + half 1). The cut
#: depends on the shapes only, never on the thread count: with one thread, or before the
#: split kernel is compiled (it compiles in the background, ``kernels/launch.py``), the
#: halves run one after the other, so results are the same bits either way (OpenBLAS
#: rounds a row differently when it multiplies it among a different number of rows).
#: Measured on a 2-core machine, W1's output layer (3200, 128) x (128, 32), 13M
#: multiply-adds: forward 0.29 -> ~0.16 ms, VJP 0.62 -> 0.31 ms; numba's threads are
#: still spinning from the LSTM's launch then (a hand-off to a sleeping Python thread
#: cost ~110 us, which kept the threshold at 2**25 with ``run_pair``).
SPLIT_WORK = 1 << 23


def _cut(n: int, work: int):
    """The row where a product is cut in two, or None."""
    if work < SPLIT_WORK or n < 64:
        return None
    return n // 2 - (n // 2) % 8


def _run_split(split, args) -> bool:
    """Launch ``split`` when threads are there and it is compiled (False: the caller runs
    the two halves itself)."""
    if numba.get_num_threads() < 2 or not tiered(split, args):
        return False
    with parallel_launch():
        split(*args)
    return True


def dense_forward(x, w, b, code, keep_z):
    """``(y, z)`` with ``z = x @ w + b`` and ``y = f(z)`` for activation ``code``.

    When ``keep_z`` is False the activation runs in place and ``z`` is returned as an
    empty (0, 0) array (the VJP then needs only ``y``). Large products run as two halves
    of rows at once (see :data:`SPLIT_WORK`).
    """
    n, u = x.shape[0], w.shape[1]
    z = np.empty((n, u), x.dtype)
    y = np.empty((n, u) if keep_z else (0, 0), x.dtype)
    f = _for_code(_forward, code)
    cut = _cut(n, n * x.shape[1] * u)
    if cut is None:
        f(x, w, b, z, y, keep_z)
    elif not _run_split(_for_code(_forward_split, code), (x, w, b, z, y, keep_z, cut)):
        f(x[:cut], w, b, z[:cut], y[:cut], keep_z)  # y[:cut] of a (0, 0) y is itself
        f(x[cut:], w, b, z[cut:], y[cut:], keep_z)
    return (y, z) if keep_z else (z, np.empty((0, 0), x.dtype))


def dense_backward(x, w, y, z, dy, code, need_dx, need_dw, need_db):
    """``(dx, dw, db)`` of :func:`dense_forward`; unrequested ones are empty arrays.

    ``z`` is the pre-activation when the activation needs it (swish, gelu); otherwise
    pass ``y`` for it. Large products run as two halves of rows at once (see
    :data:`SPLIT_WORK`).
    """
    n, d, u = x.shape[0], x.shape[1], w.shape[1]
    cut = _cut(n, n * d * u)
    if cut is None:
        return _for_code(_backward, code)(x, w, y, z, dy, need_dx, need_dw, need_db)
    dt = x.dtype
    dx = np.empty((n, d) if need_dx else (0, 0), dt)
    dw2 = np.empty((2, d, u) if need_dw else (2, 0, 0), dt)
    db2 = np.zeros((2, u) if need_db else (2, 0), dt)
    if not _run_split(_for_code(_backward_split, code), (x, w, y, z, dy, dx, dw2, db2, cut)):
        half = _for_code(_backward_into, code)
        half(x[:cut], w, y[:cut], z[:cut], dy[:cut], dx[:cut], dw2[0], db2[0])
        half(x[cut:], w, y[cut:], z[cut:], dy[cut:], dx[cut:], dw2[1], db2[1])
    dw = np.add(dw2[0], dw2[1]) if need_dw else np.empty((0, 0), dt)
    db = np.add(db2[0], db2[1]) if need_db else np.empty(0, dt)
    return dx, dw, db
