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

On AVX-512 hosts (:data:`WIDE`) the tiles are 8 rows x 32 columns of 16-lane vectors
where the width is a multiple of 32: twice the rows per weight load, and AVX-512's 32
registers hold the 16 accumulators. Callers pass all of a step's rows at once, so the
tiles see as many rows as there are.

The tiles add to their output: :func:`matmul_add_into` (``out += a @ w``, the LSTM step
adding ``h_{t-1} @ recurrent_kernel`` to its input projection) adds each element's full
sum in the tile's last store, and :func:`matmul_into` zeroes ``out`` first, so both share
one compiled set of tiles (a sum of exactly -0.0 comes out +0.0; nothing else differs
from a plain store).

Every output row is computed by the same sequence of operations whatever the other
rows and whichever tile (narrow or wide) holds it, so a row's result does not depend on
how many rows are multiplied with it, on the thread count of the caller, nor on the
vector width. float64 (gradient checks), arrays that are not C-contiguous and widths
that are not a multiple of 16 go to :func:`blocked_dot` (``np.dot`` in row blocks).
"""
from __future__ import annotations

from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.extending import intrinsic, overload, register_jitable

from graphmask.kernels.blas import gemm_into

#: OpenBLAS computes a GEMM with M*N*K at or below this on the calling thread, by its
#: small-matrix kernels (no packing): fast for step-sized products, and bit-identical
#: whichever thread calls (bigger products were seen to round differently in a thread
#: other than the one that first ran BLAS). The products that go to ``np.dot`` here are
#: cut into row blocks under it, and so are the recurrent kernels' other GEMMs.
SERIAL_MNK = 65536 * 4


def _avx512() -> bool:
    """Whether numba compiles for a CPU with AVX-512 (``NUMBA_CPU_NAME`` /
    ``NUMBA_CPU_FEATURES`` when set, as for portable caches; else this host)."""
    if config.CPU_FEATURES is not None:
        return "+avx512f" in config.CPU_FEATURES.split(",")
    if config.CPU_NAME is not None:
        return False  # a named CPU without a feature list: keep to 8-lane vectors
    return bool(llvm_binding.get_host_cpu_features().get("avx512f", False))


#: Columns of one narrow tile (two 8-lane vectors of float32: AVX2).
COLS = 16
#: AVX-512 hosts: wide tiles of two 16-lane vectors, 32 columns, and 8 rows (16
#: accumulators of AVX-512's 32 vector registers). Measured on an Ice Lake Xeon, one
#: thread: (16, 512) x (512, 128) 24 us against the narrow tiles' 34 and OpenBLAS's
#: 4-row blocks' 47; (16, 128) x (128, 64) 2.3 us against 3.8 (OpenBLAS 2.2).
WIDE = _avx512()
WIDE_COLS = 32
WIDE_ROWS = 8
#: Columns of the wide tail tiles (the rows after the last 8-row tile): 4 vectors per row.
TAIL_COLS = 64
#: The inner dimension is summed in blocks of KBLOCK products, the blocks' sums then
#: added up: the rounding error grows with KBLOCK + K / KBLOCK instead of K (a plain
#: running sum over K = 128 was 1.3x less accurate than OpenBLAS, over 512 1.9x).
KBLOCK = 16
#: Rows of one full tile: 4 x 2 accumulator vectors, 2 weight vectors and a broadcast
#: fit AVX2's 16 vector registers.
ROWS = 4


def _make_tile(R: int, lanes: int = 8, nvec: int = 2):
    """``tile(a, w, out, i, j0)``: ``out[i:i+R, j0:j0+VL] += a[i:i+R] @ w[:, j0:j0+VL]``
    (L = ``lanes``, V = ``nvec`` vectors per row; the product summed in full first, then
    added to ``out``: the bits of a separate product and sum) for float32
    C-contiguous 2-D arrays (no bounds checks: the caller's loops keep the tile
    inside the arrays). Every output element is summed in the same
    order whatever R, L and V: a row's bits do not depend on the tile it falls in."""

    @intrinsic
    def tile(typingctx, a, w, out, i, j0):
        arrays = (a, w, out)
        if not all(isinstance(t, types.Array) and t.ndim == 2 and t.layout == "C"
                   and t.dtype == types.float32 for t in arrays):
            return None
        sig = types.void(a, w, out, i, j0)

        def codegen(context, builder, sig, args):
            aty, wty, oty = sig.args[:3]
            A, W, OUT = (context.make_array(t)(context, builder, v)
                       for t, v in zip(sig.args[:3], args[:3]))
            intp = context.get_value_type(types.intp)
            i0 = context.cast(builder, args[3], sig.args[3], types.intp)
            c0 = context.cast(builder, args[4], sig.args[4], types.intp)
            fty = ir.FloatType()
            vty = ir.VectorType(fty, lanes)
            vptr = vty.as_pointer()
            fmuladd = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                f"llvm.fmuladd.v{lanes}f32")
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
                    p = builder.bitcast(ptr(oty, OUT, plus(i0, r), plus(c0, v * lanes)), vptr)
                    t = builder.fadd(builder.load(p, align=4), builder.load(total[r][v]))
                    builder.store(t, p, align=4)
            return context.get_dummy_value()

        return sig, codegen

    return tile


def _tiles():
    """The tile kinds of :func:`_make_loops`."""
    return (_make_tile(ROWS), _make_tile(2), _make_tile(1),
            _make_tile(WIDE_ROWS, 16), _make_tile(4, 16), _make_tile(2, 16), _make_tile(1, 16),
            # the rows after the last 8-row tile, 64 columns at a time: a 1-row tile of 2
            # vectors has only 2 independent chains of fused multiply-adds and waits on
            # their latency; 4 vectors per row keep twice as many in flight
            _make_tile(4, 16, 4), _make_tile(2, 16, 4), _make_tile(1, 16, 4))


@register_jitable(inline="always")
def row_block(kn):
    """Rows per BLAS call with K*N = ``kn``: M*N*K under :data:`SERIAL_MNK`, a multiple
    of 8 when it can be (the small kernels are slow on ragged row counts)."""
    mr = SERIAL_MNK // max(1, kn)
    return mr - mr % 8 if mr >= 8 else max(1, mr)


@register_jitable
def blocked_dot(a, w, out):
    """``out[:] = a @ w`` by ``np.dot`` in row blocks of :func:`row_block`, a fixed grid
    from row 0 (so OpenBLAS stays on the calling thread and rounds the same)."""
    n = a.shape[0]
    mr = row_block(w.shape[0] * w.shape[1])
    for i in range(0, n, mr):
        e = min(n, i + mr)
        gemm_into(a[i:e], w, out[i:e])


def _make_loops():
    """``narrow(a, w, out)`` and ``wide(a, w, out)``: ``out += a @ w`` by the 16-column
    tiles or the AVX-512 tiles (8 rows x 32 columns, the last rows 64 columns at a time
    when the width allows)."""
    (tile4, tile2, tile1, wtile8, wtile4, wtile2, wtile1,
     wtile4x4, wtile2x4, wtile1x4) = _tiles()

    @register_jitable
    def narrow(a, w, out):
        n = a.shape[0]
        for j0 in range(0, w.shape[1], COLS):  # a 16-column slice of w stays in L1
            i = 0
            while i + ROWS <= n:
                tile4(a, w, out, i, j0)
                i += ROWS
            if i + 2 <= n:
                tile2(a, w, out, i, j0)
                i += 2
            if i < n:
                tile1(a, w, out, i, j0)

    @register_jitable
    def wide(a, w, out):
        n = a.shape[0]
        N = w.shape[1]
        full = n - n % WIDE_ROWS
        for j0 in range(0, N, WIDE_COLS):
            for i in range(0, full, WIDE_ROWS):
                wtile8(a, w, out, i, j0)
        if full == n:
            return
        if N % TAIL_COLS == 0:
            for j0 in range(0, N, TAIL_COLS):
                i = full
                if i + 4 <= n:
                    wtile4x4(a, w, out, i, j0)
                    i += 4
                if i + 2 <= n:
                    wtile2x4(a, w, out, i, j0)
                    i += 2
                if i < n:
                    wtile1x4(a, w, out, i, j0)
            return
        for j0 in range(0, N, WIDE_COLS):
            i = full
            if i + 4 <= n:
                wtile4(a, w, out, i, j0)
                i += 4
            if i + 2 <= n:
                wtile2(a, w, out, i, j0)
                i += 2
            if i < n:
                wtile1(a, w, out, i, j0)

    return narrow, wide


_narrow_tiles_add, _wide_tiles_add = _make_loops()

if WIDE:
    @register_jitable
    def _add_tiles(a, w, out):
        """``out += a @ w`` by tiles (the width a multiple of 16): 32-column tiles
        where the width allows, else 16-column ones."""
        if w.shape[1] % WIDE_COLS == 0:
            _wide_tiles_add(a, w, out)
        else:
            _narrow_tiles_add(a, w, out)
else:
    @register_jitable
    def _add_tiles(a, w, out):
        """``out += a @ w`` by 16-column tiles (the width a multiple of 16)."""
        _narrow_tiles_add(a, w, out)


@register_jitable
def _zero_fill(out):
    zero = out.dtype.type(0.0)
    for i in range(out.shape[0]):
        row = out[i]
        for k in range(row.size):
            row[k] = zero


def _tiled_types(*arrays) -> bool:
    return all(t.dtype == types.float32 and t.layout == "C" for t in arrays)


def matmul_into(a, w, out):
    """``out[:] = a @ w`` for 2-D arrays, inside kernels (``np.dot``'s contract:
    ``out`` (a.shape[0], w.shape[1]) is written, not read). float32 C-contiguous with
    a width that is a multiple of 16: register tiles over all the rows at once (``out``
    zeroed, then the products added: the tiles of :func:`matmul_add_into`, compiled
    once for both); otherwise :func:`blocked_dot`."""
    blocked_dot(a, w, out)


@overload(matmul_into)
def _matmul_into_impl(a, w, out):
    if not all(isinstance(t, types.Array) and t.ndim == 2 for t in (a, w, out)):
        return None
    if not _tiled_types(a, w, out):
        return lambda a, w, out: blocked_dot(a, w, out)

    def impl(a, w, out):
        if w.shape[1] % COLS == 0:
            _zero_fill(out)
            _add_tiles(a, w, out)
        else:
            blocked_dot(a, w, out)

    return impl


def matmul_add_into(a, w, out, scratch):
    """``out += a @ w`` inside kernels, with the bits of ``matmul_into(a, w, scratch)``
    followed by ``out += scratch`` (the product is summed in full before it is added).
    Tiled arrays (as :func:`matmul_into`) add in the tiles' last store and leave
    ``scratch`` alone; otherwise the product goes through ``scratch``
    (``out``'s shape)."""
    matmul_into(a, w, scratch)
    out += scratch


@register_jitable
def _add_through_scratch(a, w, out, scratch):
    # only for products matmul_into gives to blocked_dot: the same bits, without
    # compiling the tiles once more
    blocked_dot(a, w, scratch)
    for i in range(out.shape[0]):
        o = out[i]
        s = scratch[i]
        for k in range(o.size):
            o[k] += s[k]


@overload(matmul_add_into)
def _matmul_add_into_impl(a, w, out, scratch):
    if not all(isinstance(t, types.Array) and t.ndim == 2 for t in (a, w, out, scratch)):
        return None
    if not _tiled_types(a, w, out):
        return _add_through_scratch

    def impl(a, w, out, scratch):
        if w.shape[1] % COLS == 0:
            _add_tiles(a, w, out)
        else:
            _add_through_scratch(a, w, out, scratch)

    return impl
