"""The recurrent layers' per-step products, ``out = a @ w`` with few rows, in float32.

A recurrent step multiplies only its kept rows (often 8 to 32) by a weight matrix such as
the (128, 512) recurrent kernel. OpenBLAS packs both operands into its own layout at
every call; with so few rows, packing the weights costs more than the product (measured
on an AVX2 machine: 30% of an LSTM forward pass in ``sgemm_itcopy``, and
(16, 128) x (128, 512) took 60-73 us where this kernel takes 36-56 us).

:func:`matmul_into` reads the weights where they are instead: the output in tiles of
4 rows x 16 columns, each tile's accumulators kept in vector registers through the
inner dimension (one fused multiply-add per weight vector and row, summed in blocks of
:data:`KBLOCK` for accuracy). The tile is an
``@intrinsic`` that emits the vector code itself: written with numba arrays, LLVM keeps
no accumulator tile in registers (such kernels measured 3-27 GFLOP/s, this one 50-65).

Every output row is computed by the same sequence of operations whatever the other
rows, so a row's result does not depend on how many rows are multiplied with it (nor on
the thread count of the caller). float64 (gradient checks) and widths that are not a
multiple of 16 go to ``np.dot``.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

#: Columns of one tile (two AVX2 vectors of float32).
COLS = 16
#: The inner dimension is summed in blocks of KBLOCK products, the blocks' sums then
#: added up: the rounding error grows with KBLOCK + K / KBLOCK instead of K (a plain
#: running sum over K = 128 was 1.3x less accurate than OpenBLAS, over 512 1.9x).
KBLOCK = 16
#: Rows of one full tile: 4 x 2 accumulator vectors, 2 weight vectors and a broadcast
#: fit AVX2's 16 vector registers.
ROWS = 4


def _make_tile(R: int):
    """``tile(a, w, out, i, j0)``: ``out[i:i+R, j0:j0+16] = a[i:i+R] @ w[:, j0:j0+16]``
    for float32 C-contiguous 2-D arrays (no bounds checks: the caller's loops keep the
    tile inside the arrays)."""

    @intrinsic
    def tile(typingctx, a, w, out, i, j0):
        arrays = (a, w, out)
        if not all(isinstance(t, types.Array) and t.ndim == 2 and t.layout == "C"
                   and t.dtype == types.float32 for t in arrays):
            return None
        sig = types.void(a, w, out, i, j0)

        def codegen(context, builder, sig, args):
            aty, wty, oty = sig.args[:3]
            A, W, O = (context.make_array(t)(context, builder, v)
                       for t, v in zip(sig.args[:3], args[:3]))
            intp = context.get_value_type(types.intp)
            i0 = context.cast(builder, args[3], sig.args[3], types.intp)
            c0 = context.cast(builder, args[4], sig.args[4], types.intp)
            fty = ir.FloatType()
            lanes = 8
            vty = ir.VectorType(fty, lanes)
            vptr = vty.as_pointer()
            nvec = COLS // lanes
            fmuladd = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty, vty, vty]), "llvm.fmuladd.v8f32")
            zero = ir.Constant(vty, [ir.Constant(fty, 0.0)] * lanes)
            splat = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
            first = ir.Constant(ir.IntType(32), 0)
            # allocas in the entry block: LLVM promotes them to registers
            acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(nvec)]
                   for _ in range(R)]
            total = [[cgutils.alloca_once_value(builder, zero) for _ in range(nvec)]
                     for _ in range(R)]
            K = cgutils.unpack_tuple(builder, A.shape, 2)[1]

            def ptr(ty, arr, row, col):
                return cgutils.get_item_pointer(context, builder, ty, arr, [row, col])

            def plus(x, n):
                return builder.add(x, ir.Constant(intp, n))

            kblock = ir.Constant(intp, KBLOCK)
            with cgutils.for_range_slice(builder, ir.Constant(intp, 0), K, kblock) as (kb, _):
                for r in range(R):
                    for v in range(nvec):
                        builder.store(zero, acc[r][v])
                stop = plus(kb, KBLOCK)
                stop = builder.select(builder.icmp_signed("<", stop, K), stop, K)
                with cgutils.for_range_slice(builder, kb, stop, ir.Constant(intp, 1)) as (k, _):
                    wv = [builder.load(builder.bitcast(ptr(wty, W, k, plus(c0, v * lanes)),
                                                       vptr), align=4) for v in range(nvec)]
                    for r in range(R):
                        s = builder.load(ptr(aty, A, plus(i0, r), k))
                        sv = builder.insert_element(ir.Constant(vty, ir.Undefined), s, first)
                        sv = builder.shuffle_vector(sv, ir.Constant(vty, ir.Undefined), splat)
                        for v in range(nvec):
                            a = builder.load(acc[r][v])
                            builder.store(builder.call(fmuladd, [sv, wv[v], a]), acc[r][v])
                for r in range(R):
                    for v in range(nvec):
                        t = builder.fadd(builder.load(total[r][v]), builder.load(acc[r][v]))
                        builder.store(t, total[r][v])
            for r in range(R):
                for v in range(nvec):
                    p = builder.bitcast(ptr(oty, O, plus(i0, r), plus(c0, v * lanes)), vptr)
                    builder.store(builder.load(total[r][v]), p, align=4)
            return context.get_dummy_value()

        return sig, codegen

    return tile


_tile4 = _make_tile(ROWS)
_tile2 = _make_tile(2)
_tile1 = _make_tile(1)


def matmul_into(a, w, out):
    """``out[:] = a @ w`` for 2-D C-contiguous arrays, inside kernels (``np.dot``'s
    contract: ``out`` (a.shape[0], w.shape[1]) is written, not read)."""
    np.dot(a, w, out)


@overload(matmul_into)
def _matmul_into_impl(a, w, out):
    if not all(isinstance(t, types.Array) and t.ndim == 2 for t in (a, w, out)):
        return None
    tiled = all(t.dtype == types.float32 and t.layout == "C" for t in (a, w, out))
    if not tiled:
        return lambda a, w, out: np.dot(a, w, out)

    def impl(a, w, out):
        n = a.shape[0]
        N = w.shape[1]
        if N % COLS != 0:
            np.dot(a, w, out)
            return
        for j0 in range(0, N, COLS):  # a 16-column slice of w stays in L1 over the rows
            i = 0
            while i + ROWS <= n:
                _tile4(a, w, out, i, j0)
                i += ROWS
            if i + 2 <= n:
                _tile2(a, w, out, i, j0)
                i += 2
            if i < n:
                _tile1(a, w, out, i, j0)

    return impl
