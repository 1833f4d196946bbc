"""Embedding kernels: a checked row gather and the scatter-add of its gradient.

``ids`` is always a flat int64 array (callers cast), the tables are 2-D C-contiguous.
"""
from __future__ import annotations

from graphmask.kernels import jit


@jit
def embedding_gather(ids, table, out):
    """``out[i] = table[ids[i]]``; returns the flat index of the first id outside
    ``[0, len(table))`` (nothing after it is written), or -1 when all are valid."""
    v, e = table.shape
    for i in range(ids.shape[0]):
        k = ids[i]
        if k < 0 or k >= v:
            return i
        for j in range(e):
            out[i, j] = table[k, j]
    return -1


@jit
def embedding_scatter_add(ids, dy, dtable):
    """``dtable[ids[i]] += dy[i]`` for every i (repeated ids accumulate)."""
    e = dy.shape[1]
    for i in range(ids.shape[0]):
        k = ids[i]
        for j in range(e):
            dtable[k, j] += dy[i, j]
