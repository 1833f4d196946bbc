"""The LSTM cell's gate math per row, in explicit vectors (float32, Keras's default
activations: sigmoid gates, tanh cell).

A step of :mod:`graphmask.kernels.lstm` leaves, for each kept row and unit chunk, the
four gate pre-activations side by side (``i, f, g, o``, ``uq`` units each). Written as
loops over the chunk's ``uq`` units, the gate math took a third of a step: those loops
read and write eight or twelve arrays, LLVM cannot rule out that they overlap and runs
them one element at a time. These intrinsics (:func:`graphmask.kernels.fastmath.lanewise`)
do the same operations on whole vectors, in the same order, with the same sigmoid and
tanh as :func:`~graphmask.kernels.fastmath.sigmoid_inplace`: the results are bit for bit
those of the element loops they replace (``tests/test_lstm_cells.py``).
"""
from __future__ import annotations

from numba import types
from numba.extending import overload

from graphmask.kernels.fastmath import lanewise, sigmoid_inplace, tanh_inplace


def _forward(vm, v):
    # pre-activations (the g columns of the weights come times 2: tanh(x) = 2 sigmoid(2x)
    # - 1), the carried c; then outputs: gate activations in place, c_{t-1}, tanh(c_t),
    # c_t, h_t
    zi, zf, zg, zo, c, _, _, _ = v
    b = vm.builder
    i = vm.sigmoid(zi)
    f = vm.sigmoid(zf)
    g = b.fsub(b.fmul(vm.two, vm.sigmoid(zg)), vm.one)
    o = vm.sigmoid(zo)
    c_new = b.fadd(b.fmul(f, c), b.fmul(i, g))
    tc = vm.tanh(c_new)
    return {0: i, 1: f, 2: g, 3: o, 4: c_new, 5: c, 6: tc, 7: b.fmul(o, tc)}


_forward_vec = lanewise(8, _forward)


def lstm_cell_forward(Z, j, c, h, b, u0, Cp, Tc, uq):
    """Inside kernels, one row and unit chunk of an LSTM step: ``Z[j]`` holds the chunk's
    ``uq`` pre-activations of each gate side by side (``i, f, g, o``; the g ones times
    2) and gets the gate activations; the state ``c[b, u0:u0 + uq]`` is copied to
    ``Cp[j]`` and becomes the new cell state, ``Tc[j]`` its tanh, ``h[b, u0:u0 + uq]``
    the output. Vectors for float32, else the element loop below (float64: the gradient
    checks)."""


def _forward_loop(Z, j, c, h, b, u0, Cp, Tc, uq):
    one = Z.dtype.type(1.0)
    two = Z.dtype.type(2.0)
    z = Z[j]
    sigmoid_inplace(z)
    for k in range(2 * uq, 3 * uq):
        z[k] = two * z[k] - one
    cp = Cp[j]
    tc = Tc[j]
    for k in range(uq):
        cp[k] = c[b, u0 + k]
        tc[k] = z[uq + k] * cp[k] + z[k] * z[2 * uq + k]
        c[b, u0 + k] = tc[k]
    tanh_inplace(tc)
    for k in range(uq):
        h[b, u0 + k] = z[3 * uq + k] * tc[k]


@overload(lstm_cell_forward, inline="always")
def _forward_impl(Z, j, c, h, b, u0, Cp, Tc, uq):
    if not all(a.dtype == types.float32 for a in (Z, c, h, Cp, Tc)):
        return _forward_loop

    def vec(Z, j, c, h, b, u0, Cp, Tc, uq):
        _forward_vec(uq, Z, (j, 0), Z, (j, uq), Z, (j, 2 * uq), Z, (j, 3 * uq), c, (b, u0),
                     Cp, (j, 0), Tc, (j, 0), h, (b, u0))
    return vec


def _backward(vm, v):
    gi, gf, gg, go, tc, cp, dh, dc, _, _, _, _ = v
    b = vm.builder
    one = vm.one
    dct = b.fadd(dc, b.fmul(b.fmul(dh, go), b.fsub(one, b.fmul(tc, tc))))
    dzi = b.fmul(b.fmul(b.fmul(dct, gg), gi), b.fsub(one, gi))
    dzf = b.fmul(b.fmul(b.fmul(dct, cp), gf), b.fsub(one, gf))
    dzg = b.fmul(b.fmul(dct, gi), b.fsub(one, b.fmul(gg, gg)))
    dzo = b.fmul(b.fmul(b.fmul(dh, tc), go), b.fsub(one, go))
    return {7: b.fmul(dct, gf), 8: dzi, 9: dzf, 10: dzg, 11: dzo}


_backward_vec = lanewise(12, _backward)


def lstm_cell_backward(A, Tc, Cp, r, dh, dc, b, u0, dZ, uq):
    """Inside kernels, one row and unit chunk of an LSTM step backwards: from the gate
    activations ``A[r]`` (``i, f, g, o`` side by side, ``uq`` each), ``tanh(c_t)``
    ``Tc[r]``, ``c_{t-1}`` ``Cp[r]`` and the gradients ``dh[b, u0:u0 + uq]``,
    ``dc[b, u0:u0 + uq]`` w.r.t. ``h_t``, ``c_t``: the gate pre-activation gradients in
    ``dZ[r, 4 u0:4 u0 + 4 uq]`` (same order); ``dc`` becomes the gradient w.r.t.
    ``c_{t-1}``. Vectors for float32, else the element loop below."""


def _backward_loop(A, Tc, Cp, r, dh, dc, b, u0, dZ, uq):
    one = A.dtype.type(1.0)
    z = A[r]
    dz = dZ[r, 4 * u0:4 * u0 + 4 * uq]
    for k in range(uq):
        gi = z[k]
        gf = z[uq + k]
        gg = z[2 * uq + k]
        go = z[3 * uq + k]
        tc = Tc[r, k]
        dhk = dh[b, u0 + k]
        dct = dc[b, u0 + k] + dhk * go * (one - tc * tc)
        dz[k] = dct * gg * gi * (one - gi)
        dz[uq + k] = dct * Cp[r, k] * gf * (one - gf)
        dz[2 * uq + k] = dct * gi * (one - gg * gg)
        dz[3 * uq + k] = dhk * tc * go * (one - go)
        dc[b, u0 + k] = dct * gf


@overload(lstm_cell_backward, inline="always")
def _backward_impl(A, Tc, Cp, r, dh, dc, b, u0, dZ, uq):
    if not all(a.dtype == types.float32 for a in (A, Tc, Cp, dh, dc, dZ)):
        return _backward_loop

    def vec(A, Tc, Cp, r, dh, dc, b, u0, dZ, uq):
        o = 4 * u0
        _backward_vec(uq, A, (r, 0), A, (r, uq), A, (r, 2 * uq), A, (r, 3 * uq), Tc, (r, 0),
                      Cp, (r, 0), dh, (b, u0), dc, (b, u0), dZ, (r, o), dZ, (r, o + uq),
                      dZ, (r, o + 2 * uq), dZ, (r, o + 3 * uq))
    return vec
