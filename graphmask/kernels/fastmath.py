"""A fast float32 exp for the kernels' activation loops (sigmoid, tanh, softmax), and
sigmoid / tanh over whole arrays in explicit vector code (the recurrent gates);
:func:`lanewise` builds such vector loops over several arrays (the LSTM cell,
``kernels/cells.py``).

numba's ``np.exp`` calls libm one value at a time; :func:`_exp` is a branch-free
polynomial that LLVM vectorises (16 values per AVX-512 instruction), accurate to a few
float32 ulps. float64 arguments go to ``np.exp`` unchanged.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from graphmask.kernels.smallgemm import WIDE

# float32 constants: mixing a float32 value with a Python float would promote to float64.
_F1 = np.float32(1.0)
_FHALF = np.float32(0.5)
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # few mantissa bits: n * _LN2_HI is exact
_LN2_LO = np.float32(-2.12194440e-4)
_EXP_LO = np.float32(-87.0)
_EXP_HI = np.float32(88.0)
# Taylor coefficients 1/k! of exp on |r| <= ln2 / 2 (degree 7: error below 1e-8).
_C2 = np.float32(1.0 / 2)
_C3 = np.float32(1.0 / 6)
_C4 = np.float32(1.0 / 24)
_C5 = np.float32(1.0 / 120)
_C6 = np.float32(1.0 / 720)
_C7 = np.float32(1.0 / 5040)


@intrinsic
def _bits_to_f32(typingctx, v):
    """Reinterpret the low 32 bits of an int64 as a float32 (2**n without libm)."""
    if v != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.trunc(args[0], ir.IntType(32)), ir.FloatType())

    return types.float32(types.int64), codegen


def _exp(x):
    """exp: a branch-free, vectorizable approximation for float32, libm for float64."""
    return np.exp(x)


@overload(_exp)
def _exp_impl(x):
    if x == types.float32:
        def exp_f32(x):
            x = min(max(x, _EXP_LO), _EXP_HI)
            n = np.floor(x * _LOG2E + _FHALF)
            r = x - n * _LN2_HI - n * _LN2_LO
            p = _C6 + r * _C7
            p = _C5 + r * p
            p = _C4 + r * p
            p = _C3 + r * p
            p = _C2 + r * p
            p = _F1 + r * p
            p = _F1 + r * p
            return p * _bits_to_f32((np.int64(n) + 127) << 23)
        return exp_f32
    return lambda x: np.exp(x)


# ---- sigmoid and tanh over a whole float32 array, in explicit vectors --------------------
# LLVM vectorises the scalar loops of _exp with 8-lane vectors even on AVX-512 hosts (its
# tuning for those CPUs prefers 256-bit vectors) and without fused multiply-adds (numba
# does not contract by default). These loops are written as vector code instead: 16 lanes
# on AVX-512 hosts (8 elsewhere), the polynomial by fused multiply-adds. Every element goes
# through the same lane operations, the tail too (copied through a vector on the stack),
# so an element's result does not depend on its position or on the array's length.
def _vector_exp(builder, vty, x, const, fma, floor):
    """exp(x) for a float vector ``x``: the :func:`_exp` polynomial, by fused
    multiply-adds (range reduction exact: n * LN2_HI has few mantissa bits)."""
    lanes = vty.count
    lo, hi = const(_EXP_LO), const(_EXP_HI)
    x = builder.select(builder.fcmp_ordered("<", x, lo), lo, x)
    x = builder.select(builder.fcmp_ordered(">", x, hi), hi, x)
    n = builder.call(floor, [builder.call(fma, [x, const(_LOG2E), const(_FHALF)])])
    neg_n = builder.fneg(n)
    r = builder.call(fma, [neg_n, const(_LN2_HI), x])
    r = builder.call(fma, [neg_n, const(_LN2_LO), r])
    p = builder.call(fma, [r, const(_C7), const(_C6)])
    for c in (_C5, _C4, _C3, _C2, _F1, _F1):
        p = builder.call(fma, [r, p, const(c)])
    ity = ir.VectorType(ir.IntType(32), lanes)
    e = builder.fptosi(n, ity)
    e = builder.add(e, ir.Constant(ity, [ir.Constant(ir.IntType(32), 127)] * lanes))
    e = builder.shl(e, ir.Constant(ity, [ir.Constant(ir.IntType(32), 23)] * lanes))
    return builder.fmul(p, builder.bitcast(e, vty))


class VectorMath:
    """The vector operations of the float32 kernels, emitted by ``builder`` on vectors of
    ``lanes`` float32: constants, fused multiply-adds, and this module's exp, sigmoid and
    tanh. Every intrinsic that computes a sigmoid or tanh builds it here, so a value gets
    the same bits whichever kernel computes it (``sigmoid_inplace`` or a fused cell)."""

    def __init__(self, builder, lanes: int):
        self.builder = builder
        self.lanes = lanes
        self.fty = ir.FloatType()
        self.vty = ir.VectorType(self.fty, lanes)
        mod = builder.module
        vty = self.vty
        self._fma = cgutils.get_or_insert_function(
            mod, ir.FunctionType(vty, [vty, vty, vty]), f"llvm.fma.v{lanes}f32")
        self._floor = cgutils.get_or_insert_function(
            mod, ir.FunctionType(vty, [vty]), f"llvm.floor.v{lanes}f32")
        if lanes == 16:
            self._rcp14 = cgutils.get_or_insert_function(
                mod, ir.FunctionType(vty, [vty, vty, ir.IntType(16)]),
                "llvm.x86.avx512.rcp14.ps.512")
        self.one = self.const(1.0)
        self.two = self.const(2.0)

    def const(self, c):
        return ir.Constant(self.vty, [ir.Constant(self.fty, float(c))] * self.lanes)

    def fma(self, a, b, c):
        return self.builder.call(self._fma, [a, b, c])

    def reciprocal(self, d):
        """1 / d: a division on 8 lanes; on 16, AVX-512's 14-bit estimate and a Newton
        step (within an ulp; the divider takes twice as long for 16)."""
        b = self.builder
        if self.lanes != 16:
            return b.fdiv(self.one, d)
        r = b.call(self._rcp14, [d, self.const(0.0), ir.Constant(ir.IntType(16), -1)])
        err = self.fma(b.fneg(d), r, self.one)
        return self.fma(r, err, r)

    def exp(self, x):
        return _vector_exp(self.builder, self.vty, x, self.const, self._fma, self._floor)

    def sigmoid(self, x):
        """1 / (1 + exp(-x))"""
        b = self.builder
        return self.reciprocal(b.fadd(self.one, self.exp(b.fneg(x))))

    def tanh(self, x):
        """1 - 2 / (exp(2x) + 1), saturating cleanly at +-1"""
        b = self.builder
        e = self.exp(b.fmul(self.two, x))
        return b.fsub(self.one, b.fmul(self.two, self.reciprocal(b.fadd(e, self.one))))


def lanewise(nargs: int, body):
    """An intrinsic ``f(n, a_0, i_0, ..., a_{nargs-1}, i_{nargs-1})`` over ``n``
    consecutive float32 values of each array ``a_k`` along its last axis, from the index
    tuple ``i_k`` (the first value's index, one entry per dimension; the caller keeps
    every value inside its array: unchecked). For each position, ``body(vm, values)``
    gets the arrays' values there as vectors (``vm``: :class:`VectorMath`) and returns
    ``{k: new vector}``, stored back in place. Every value is read before any is written
    at its position, so one array may be read and written, and several operands may lie
    in one array (disjoint ranges).

    Operands are whole arrays and index tuples, never slices: a slice made in a kernel is
    a new array object that numba reference-counts (atomic operations around every call,
    several times the cost of the math for a 16-unit chunk).

    C-contiguous arrays go by whole vectors, the tail and other layouts through vectors
    on the stack: every element goes through the same lane operations wherever it lies,
    so a result depends neither on ``n`` nor on the layout."""

    def typer(typingctx, n, *operands):
        arrays, indices = operands[0::2], operands[1::2]
        if not isinstance(n, types.Integer):
            return None
        for arr, idx in zip(arrays, indices):
            if not (isinstance(arr, types.Array) and arr.dtype == types.float32
                    and isinstance(idx, types.BaseTuple) and len(idx) == arr.ndim
                    and all(isinstance(t, types.Integer) for t in idx)):
                return None
        return types.void(n, *operands), codegen

    def codegen(context, builder, sig, args):
        vm = VectorMath(builder, 16 if WIDE else 8)
        lanes, vty, fty = vm.lanes, vm.vty, vm.fty
        intp = context.get_value_type(types.intp)
        n = context.cast(builder, args[0], sig.args[0], types.intp)
        atys, itys = sig.args[1::2], sig.args[2::2]
        arys = [context.make_array(t)(context, builder, v) for t, v in zip(atys, args[1::2])]
        starts = [[context.cast(builder, v, t, types.intp)
                   for v, t in zip(cgutils.unpack_tuple(builder, tup, len(ity)), ity)]
                  for tup, ity in zip(args[2::2], itys)]
        L = ir.Constant(intp, lanes)
        zero = ir.Constant(intp, 0)
        bufs = [cgutils.alloca_once_value(builder, vm.const(0.0)) for _ in arys]

        def element(k, pos):
            idx = starts[k][:-1] + [builder.add(starts[k][-1], pos)]
            return cgutils.get_item_pointer(context, builder, atys[k], arys[k], idx)

        def through_buffers(start, count):
            """Values start..start+count (count <= lanes, any strides) through vectors
            on the stack: the same lane operations as whole vectors."""
            for k, buf in enumerate(bufs):
                bp = builder.bitcast(buf, fty.as_pointer())
                with cgutils.for_range(builder, count) as loop:
                    src = element(k, builder.add(start, loop.index))
                    builder.store(builder.load(src), builder.gep(bp, [loop.index]))
            new = body(vm, [builder.load(buf) for buf in bufs])
            for k, v in sorted(new.items()):
                builder.store(v, bufs[k])
                bp = builder.bitcast(bufs[k], fty.as_pointer())
                with cgutils.for_range(builder, count) as loop:
                    dst = element(k, builder.add(start, loop.index))
                    builder.store(builder.load(builder.gep(bp, [loop.index])), dst)

        if not all(t.layout == "C" for t in atys):  # strided: all through buffers
            with cgutils.for_range_slice(builder, zero, n, L) as (i, _):
                left = builder.sub(n, i)
                through_buffers(i, builder.select(builder.icmp_signed("<", left, L), left, L))
            return context.get_dummy_value()
        nfull = builder.sub(n, builder.srem(n, L))
        with cgutils.for_range_slice(builder, zero, nfull, L) as (i, _):
            ptrs = [builder.bitcast(element(k, i), vty.as_pointer()) for k in range(len(arys))]
            new = body(vm, [builder.load(p, align=4) for p in ptrs])
            for k, v in sorted(new.items()):
                builder.store(v, ptrs[k], align=4)
        rem = builder.sub(n, nfull)
        with builder.if_then(builder.icmp_signed(">", rem, zero)):
            through_buffers(nfull, rem)
        return context.get_dummy_value()

    # a fixed number of named parameters (numba's intrinsics take no *args)
    return intrinsic(_ARITIES[nargs](typer))


# operand counts the kernels use: typing functions with explicit parameters, n then
# (array, index) pairs
_ARITIES = {
    1: lambda t: (lambda ctx, n, a0, i0: t(ctx, n, a0, i0)),
    3: lambda t: (lambda ctx, n, a0, i0, a1, i1, a2, i2: t(ctx, n, a0, i0, a1, i1, a2, i2)),
    8: lambda t: (lambda ctx, n, a0, i0, a1, i1, a2, i2, a3, i3, a4, i4, a5, i5, a6, i6, a7,
                  i7: t(ctx, n, a0, i0, a1, i1, a2, i2, a3, i3, a4, i4, a5, i5, a6, i6, a7,
                        i7)),
    12: lambda t: (lambda ctx, n, a0, i0, a1, i1, a2, i2, a3, i3, a4, i4, a5, i5, a6, i6, a7,
                   i7, a8, i8, a9, i9, a10, i10, a11, i11: t(
                       ctx, n, a0, i0, a1, i1, a2, i2, a3, i3, a4, i4, a5, i5, a6, i6, a7,
                       i7, a8, i8, a9, i9, a10, i10, a11, i11)),
}


_sigmoid_vec = lanewise(1, lambda vm, v: {0: vm.sigmoid(v[0])})
_tanh_vec = lanewise(1, lambda vm, v: {0: vm.tanh(v[0])})


def sigmoid_inplace(v):
    """sigmoid on the 1-D array ``v`` in place, inside kernels: explicit vectors for
    float32 (strided arrays through a buffer, the same bits), else ``1 / (1 + exp(-x))``
    element by element."""
    v[:] = 1.0 / (1.0 + np.exp(-v))


def tanh_inplace(v):
    """tanh on the 1-D array ``v`` in place, inside kernels: ``1 - 2 / (exp(2x) + 1)``
    (saturating cleanly at +-1), in explicit vectors for float32 (as
    :func:`sigmoid_inplace`)."""
    v[:] = 1.0 - 2.0 / (np.exp(2.0 * v) + 1.0)


def _is_vector_array(v):
    """float32 1-D arrays, contiguous or strided: every float32 value goes through the
    same vector code, so a result never depends on the layout it was computed in."""
    return isinstance(v, types.Array) and v.ndim == 1 and v.dtype == types.float32


def _sigmoid_loop(v):
    one = v.dtype.type(1.0)
    for k in range(v.size):  # np.divide: numba's / checks for zero, blocking SIMD
        v[k] = np.divide(one, one + _exp(-v[k]))


def _tanh_loop(v):
    one = v.dtype.type(1.0)
    two = v.dtype.type(2.0)
    for k in range(v.size):
        v[k] = one - np.divide(two, _exp(two * v[k]) + one)


def _overload_inplace(api, vector, loop):
    """``api`` inside kernels: the vector intrinsic for float32, the element loop else."""
    @overload(api)
    def impl(v):
        return (lambda v: vector(v.size, v, (0,))) if _is_vector_array(v) else loop


_overload_inplace(sigmoid_inplace, _sigmoid_vec, _sigmoid_loop)
_overload_inplace(tanh_inplace, _tanh_vec, _tanh_loop)
