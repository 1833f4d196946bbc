"""Scatter-add for the VJP of ``prim.take`` (``np.add.at`` is several times slower).

The forward gather is ``np.take`` (a C copy per row). Indices are validated by the op
before the kernel runs, so the kernel never reads or writes out of bounds.
"""
from __future__ import annotations

from graphmask.kernels.primitives import jit


@jit
def scatter_add(g, idx, dx):
    """``dx[o, idx[j], :] += g[o, j, :]`` for (outer, k, inner) ``g``, (outer, n, inner) ``dx``.

    Repeated indices accumulate. ``idx`` is int64 with every value in ``[0, n)``.
    """
    for o in range(g.shape[0]):
        for j in range(g.shape[1]):
            src = g[o, j]
            dst = dx[o, idx[j]]
            for k in range(g.shape[2]):
                dst[k] += src[k]
