"""One numba kernel that runs every fused elementwise chain: a block interpreter.

A fused chain (``graphmask/ops/fused.py``) is compiled by the fusion pass into an
*instruction tape*: an ``int64`` array of rows ``(opcode, dst, a, b, c)``. :func:`run_tape`
walks the flattened output in blocks of :data:`BLOCK` values and runs the whole tape on
each block, each instruction one tight loop over the block (which LLVM vectorises).
Temporaries live in a small register file that stays in the cache, full-size inputs are
read in place and results are written in place, so the intermediate arrays of the
unfused graph and their passes over memory disappear. This is the design of NumExpr's
virtual machine.

Why a tape rather than one kernel composed per chain: one compiled kernel per dtype
(float32, float64) serves every chain, forward and backward, and is cached on disk, so a
new model costs no compile time; a kernel composed per chain from jitted closures runs
faster (no register traffic) but compiles for each chain in each new process, because
numba cannot cache closures.

Operands are slot numbers: input ``k`` is slot ``k`` (read in place when it is full,
else staged block by block into a register of its own: a row ``(1, n)``, a column
``(m, 1)`` or a scalar), output ``o`` is slot :data:`OUT` ``+ o`` (written in place), the
working registers start at :data:`WORK`. ``ACC`` adds a block into a float64
accumulator shaped like a broadcast input (the gradient of that input, summed over its
broadcast axes). Slot lookups never branch on array types: each slot is a buffer, a
step per block (1 in place, 0 in a register) and a base offset, which keeps the loops
vectorised (a view chosen by ``if`` cost 3-10x).

Arithmetic is the dtype's own (constants typed like the arrays), so ``+ - * /``,
``sqrt``, ``abs``, ``maximum``, ``clip`` and ``where`` give bit for bit the values of
NumPy's ufuncs run one after the other. There are no transcendental functions: numba
would call libm's scalar ``exp``/``tanh``/``log``, which are 4-30x slower than NumPy's
SIMD ufuncs on this project's machine (a fused ``tanh(x * w + b)`` ran in 5.4 ms where
the three ufuncs take 0.18 ms), so those stay NumPy ufuncs between fused chains.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels.primitives import jit

#: values per block (one register: 16 KiB of float32)
BLOCK = 4096
#: the most inputs, outputs and working registers of one tape (the buffer tuple has a
#: fixed length so that the kernel compiles once per dtype)
MAX_IN, MAX_OUT, MAX_WORK = 12, 8, 20
#: operand numbers: inputs ``0 .. MAX_IN-1``, outputs from :data:`OUT`, working registers
#: from :data:`WORK`; :data:`NONE` marks an unused operand
OUT = MAX_IN
WORK = MAX_IN + MAX_OUT
SLOTS = WORK + MAX_WORK
NONE = SLOTS
#: the register file's place among the kernel's buffers (after the inputs and outputs)
REGS = WORK

# opcodes (rows ``(op, dst, a, b, c)``; a, b, c operands unless said otherwise)
COPY, ACC, CONST = 1, 2, 3   # dst <- a; accumulator b += a; dst <- constant slot a
NEG, ABS, SQUARE, SQRT, RELU, CLIP = 10, 11, 12, 13, 14, 15   # CLIP: b, c constant slots
ADD, SUB, MUL, DIV, MAX, MIN, WHERE = 30, 31, 32, 33, 34, 35, 36  # WHERE: a ? b : c
# gradients: dst <- the cotangent in a times the derivative at b (the input or output,
# as noted); G_CLIP reads its bounds from constant slots c and c + 1; G_MAX_X ... G_MIN_Y
# give the share of a that max/min(b, c) sends to its first or second operand
G_ABS, G_SQUARE, G_SQRT, G_RELU, G_CLIP = 50, 51, 52, 53, 54
G_MAX_X, G_MAX_Y, G_MIN_X, G_MIN_Y = 60, 61, 62, 63


@jit
def _share(op, g, x, y, zero, half):
    """The part of ``g`` that max/min(x, y) sends to x (``G_*_X``) or y (``G_*_Y``):
    ties split evenly, with a NaN both sides get ``g`` (as ``prim.maximum``)."""
    if x == y:
        return half * g
    if op == G_MAX_X:
        return zero if x < y else g
    if op == G_MAX_Y:
        return zero if x > y else g
    if op == G_MIN_X:
        return zero if x > y else g
    return zero if x < y else g


@jit
def _arith(op, z, x, y, c, size, zero):
    """``z <- x op y`` (``WHERE``: ``z <- x ? y : c``) on ``size`` values."""
    if op == ADD:
        for j in range(size):
            z[j] = x[j] + y[j]
    elif op == SUB:
        for j in range(size):
            z[j] = x[j] - y[j]
    elif op == MUL:
        for j in range(size):
            z[j] = x[j] * y[j]
    elif op == DIV:
        for j in range(size):
            z[j] = x[j] / y[j]
    elif op == MAX:
        for j in range(size):
            u, v = x[j], y[j]
            z[j] = u if (u > v or u != u) else v  # as np.maximum: NaN wins, ties give y
    elif op == MIN:
        for j in range(size):
            u, v = x[j], y[j]
            z[j] = u if (u < v or u != u) else v
    else:  # WHERE
        for j in range(size):
            z[j] = y[j] if x[j] != zero else c[j]


@jit
def _unary(op, z, x, size, lo, hi, zero):
    """``z <- f(x)`` on ``size`` values (``CLIP`` between ``lo`` and ``hi``)."""
    if op == NEG:
        for j in range(size):
            z[j] = -x[j]
    elif op == ABS:
        for j in range(size):
            z[j] = np.abs(x[j])
    elif op == SQUARE:
        for j in range(size):
            z[j] = x[j] * x[j]
    elif op == SQRT:
        for j in range(size):
            z[j] = np.sqrt(x[j])
    elif op == RELU:
        for j in range(size):
            v = x[j]
            z[j] = v if (v > zero or v != v) else zero  # as np.maximum(x, 0): relu(-0) = 0
    else:  # CLIP, as np.clip: NaN stays, a value equal to a bound stays (signed zeros)
        for j in range(size):
            v = x[j]
            v = lo if v < lo else v
            z[j] = hi if v > hi else v


@jit
def _grad(op, z, x, y, c, size, lo, hi, zero, half):
    """``z <- g * f'`` on ``size`` values: ``g`` in ``x``, the point in ``y``; max/min
    shares read their operands from ``y`` and ``c``."""
    if op == G_ABS:
        for j in range(size):
            v = y[j]
            z[j] = x[j] if v > zero else (-x[j] if v < zero else zero)
    elif op == G_SQUARE:
        for j in range(size):
            z[j] = (y[j] + y[j]) * x[j]
    elif op == G_SQRT:  # y holds sqrt(x)
        for j in range(size):
            z[j] = x[j] / (y[j] + y[j])
    elif op == G_RELU:
        for j in range(size):
            z[j] = x[j] if y[j] > zero else zero
    elif op == G_CLIP:
        for j in range(size):
            v = y[j]
            z[j] = x[j] if (v >= lo and v <= hi) else zero
    else:  # G_MAX_X ... G_MIN_Y
        for j in range(size):
            z[j] = _share(op, x[j], y[j], c[j], zero, half)


@jit
def _stage(dst, src, mode, off, size, n):
    """``dst[:size]`` <- the flat values ``off .. off+size`` of a broadcast input of the
    ``(m, n)`` space: ``mode`` 1 a row (``src`` has ``n`` values), 2 a column (``m``
    values), 3 a scalar."""
    if mode == 3:
        v = src[0]
        for j in range(size):
            dst[j] = v
        return
    t = 0
    while t < size:
        i, j0 = divmod(off + t, n)
        w = min(n - j0, size - t)
        seg = dst[t:t + w]
        if mode == 1:
            part = src[j0:j0 + w]
            for j in range(w):
                seg[j] = part[j]
        else:
            v = src[i]
            for j in range(w):
                seg[j] = v
        t += w


@jit
def _accumulate(acc, src, mode, off, size, n):
    """Add the flat values ``off .. off+size`` of the ``(m, n)`` space (in ``src``) into a
    float64 accumulator shaped like a broadcast input (``mode`` as in :func:`_stage`)."""
    if mode == 3:
        s = 0.0
        for j in range(size):
            s += src[j]
        acc[0] += s
        return
    t = 0
    while t < size:
        i, j0 = divmod(off + t, n)
        w = min(n - j0, size - t)
        seg = src[t:t + w]
        if mode == 1:
            part = acc[j0:j0 + w]
            for j in range(w):
                part[j] += seg[j]
        else:
            s = 0.0
            for j in range(w):
                s += seg[j]
            acc[i] += s
        t += w


@jit
def _slots(modes):
    """Where each operand lives: (buffer index, step per block, base offset). A full input
    or an output is read in place at the block's offset; a broadcast input is staged in
    register ``k`` (for input ``k``); the working registers follow."""
    buf = np.empty(SLOTS + 1, np.int64)
    step = np.zeros(SLOTS + 1, np.int64)
    base = np.zeros(SLOTS + 1, np.int64)
    for k in range(SLOTS + 1):
        if k < MAX_IN and modes[k] == 0:
            buf[k], step[k] = k, 1
        elif k < MAX_IN:
            buf[k], base[k] = REGS, k * BLOCK
        elif k < WORK:
            buf[k], step[k] = k, 1
        else:
            buf[k], base[k] = REGS, (MAX_IN + min(k - WORK, MAX_WORK - 1)) * BLOCK
    return buf, step, base


@jit
def run_tape(tape, consts, bufs, modes, accs, acc_modes, total, n):
    """Run ``tape`` over the ``(total // n, n)`` iteration space.

    Parameters
    ----------
    tape : int64 array (k, 5)
        The instructions ``(op, dst, a, b, c)`` (see the opcodes above).
    consts : float64 array
        Constant slots read by ``CONST``, ``CLIP`` and ``G_CLIP`` (the clip bounds are
        compared in float64, as the primitive's VJP compares them).
    bufs : tuple of ``WORK + 1`` 1-D arrays
        The inputs (flattened; unused ones any array), the outputs (``total`` values
        each), then the register file (``(MAX_IN + MAX_WORK) * BLOCK`` values).
    modes : int64 array (MAX_IN,)
        Per input: 0 full (``total`` values), 1 a row (``n``), 2 a column
        (``total // n``), 3 a scalar.
    accs : tuple of 1-D float64 arrays
        Accumulators, zeroed by the caller, summed into by ``ACC`` (operand ``b`` is the
        accumulator's index); ``acc_modes`` gives their shapes as ``modes`` does.
    total, n : int
        The number of values and the length of a row.
    """
    regs = bufs[REGS]
    zero = np.zeros(1, regs.dtype)[0]
    half = np.full(1, 0.5, regs.dtype)[0]
    if total == 0:
        return
    buf, step, base = _slots(modes)
    k = tape.shape[0]
    periodic = n <= BLOCK and BLOCK % n == 0   # a row input looks the same in every block
    for q in range(MAX_IN):
        if modes[q] == 3 or (modes[q] == 1 and periodic):
            _stage(regs[q * BLOCK:(q + 1) * BLOCK], bufs[q], modes[q], 0,
                   min(BLOCK, total), n)
    for off in range(0, total, BLOCK):
        size = min(BLOCK, total - off)
        for q in range(MAX_IN):
            if modes[q] == 2 or (modes[q] == 1 and not periodic):
                _stage(regs[q * BLOCK:(q + 1) * BLOCK], bufs[q], modes[q], off, size, n)
        for t in range(k):
            op = tape[t, 0]
            i = tape[t, 2]
            o = off * step[i] + base[i]
            x = bufs[buf[i]][o:o + size]
            if op == ACC:
                _accumulate(accs[tape[t, 3]], x, acc_modes[tape[t, 3]], off, size, n)
                continue
            i = tape[t, 1]
            o = off * step[i] + base[i]
            z = bufs[buf[i]][o:o + size]
            if op == CONST:
                v = consts[tape[t, 2]]
                for j in range(size):
                    z[j] = v
            elif op == COPY:
                for j in range(size):
                    z[j] = x[j]
            elif op < ADD:
                lo, hi = zero, zero
                if op == CLIP:
                    lo, hi = consts[tape[t, 3]], consts[tape[t, 4]]
                _unary(op, z, x, size, lo, hi, zero)
            else:
                i = tape[t, 3]
                o = off * step[i] + base[i]
                y = bufs[buf[i]][o:o + size]
                i = tape[t, 4] if (op == WHERE or op >= G_MAX_X) else tape[t, 3]
                o = off * step[i] + base[i]
                c = bufs[buf[i]][o:o + size]
                if op < G_ABS:
                    _arith(op, z, x, y, c, size, zero)
                else:
                    lo, hi = zero, zero
                    if op == G_CLIP:
                        lo, hi = consts[tape[t, 4]], consts[tape[t, 4] + 1]
                    _grad(op, z, x, y, c, size, lo, hi, zero, half)
