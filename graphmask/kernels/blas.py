"""``gemm_into(a, b, out)``: ``out[:] = a @ b`` inside kernels, by the BLAS calls numba's
three-argument ``np.dot`` makes, without its wrapper.

numba's ``np.dot(a, b, out)`` checks the shapes, copies operands that are not
contiguous and returns ``out``: the copies and the returned array need numba's runtime
(reference counts, allocation), and the whole wrapper is compiled once per layout
combination and calling module (7 times on a cold W1 training step). The kernels'
operands are always C- or F-contiguous (row blocks, their transposes) with the right
shapes, so this intrinsic goes straight to the BLAS call numba would make for them:
``numba_xxgemm`` (or ``xxgemv``/``xxdot`` when a side is one row or column, as numba
does), the same arguments, so the same bits as ``np.dot``. Kernels that use it compile
without numba's runtime where nothing else needs it (the recurrent task kernels:
``kernels/lstm.py``), which also drops the reference counting of every array view they
make.

Contract (unchecked, the callers' arithmetic guarantees it): 2-D float arrays of one
dtype, ``a`` (m, k), ``b`` (k, n), ``out`` (m, n) C-contiguous, each dimension below
2**31. Other layouts go to ``np.dot``.
"""
from __future__ import annotations

import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload
from numba.np import linalg as _nla


def _gemm_codegen(context, builder, sig, args):
    xty, yty, outty = sig.args
    x, y, out = (context.make_array(t)(context, builder, v) for t, v in zip(sig.args, args))
    x_shapes = cgutils.unpack_tuple(builder, x.shape)
    y_shapes = cgutils.unpack_tuple(builder, y.shape)
    out_shapes = cgutils.unpack_tuple(builder, out.shape)
    m, k = x_shapes
    n = y_shapes[1]
    dtype = xty.dtype
    zero = context.get_constant(types.intp, 0)
    one = context.get_constant(types.intp, 1)
    is_empty = builder.or_(builder.icmp_signed("==", k, zero),
                           builder.or_(builder.icmp_signed("==", m, zero),
                                       builder.icmp_signed("==", n, zero)))
    # the branches of numba's dot_3_mm (numba/np/linalg.py), in the same order
    with builder.if_else(is_empty, likely=False) as (empty, nonempty):
        with empty:
            cgutils.memset(builder, out.data, builder.mul(out.itemsize, out.nitems), 0)
        with nonempty:
            is_left_vec = builder.icmp_signed("==", m, one)
            is_right_vec = builder.icmp_signed("==", n, one)
            with builder.if_else(is_right_vec) as (r_vec, r_mat):
                with r_vec:
                    with builder.if_else(is_left_vec) as (v_v, m_v):
                        with v_v:
                            _nla.call_xxdot(context, builder, False, dtype, k, x.data,
                                            y.data, out.data)
                        with m_v:
                            _nla.call_xxgemv(context, builder, xty.layout == outty.layout,
                                             xty, x_shapes, x.data, y.data, out.data)
                with r_mat:
                    with builder.if_else(is_left_vec) as (v_m, m_m):
                        with v_m:
                            _nla.call_xxgemv(context, builder, yty.layout != outty.layout,
                                             yty, y_shapes, y.data, x.data, out.data)
                        with m_m:
                            _nla.call_xxgemm(context, builder, xty, x_shapes, x.data,
                                             yty, y_shapes, y.data, outty, out_shapes,
                                             out.data)
    return context.get_dummy_value()


def _blas_operands(a, b, out) -> bool:
    return (all(isinstance(t, types.Array) and t.ndim == 2 for t in (a, b, out))
            and a.dtype == b.dtype == out.dtype and a.dtype in (types.float32, types.float64)
            and a.layout in "CF" and b.layout in "CF" and out.layout == "C")


@intrinsic
def _gemm(typingctx, a, b, out):
    if not _blas_operands(a, b, out):
        return None
    _nla.ensure_blas()
    return types.void(a, b, out), _gemm_codegen


def gemm_into(a, b, out):
    """``out[:] = a @ b`` for 2-D float arrays, inside kernels (see the module doc)."""
    np.dot(a, b, out)


@overload(gemm_into, inline="always")
def _gemm_into_impl(a, b, out):
    if _blas_operands(a, b, out):
        return lambda a, b, out: _gemm(a, b, out)
    return lambda a, b, out: np.dot(a, b, out)  # any other layout
