"""Elementwise kernels on flat (1-D C-contiguous) arrays of one float dtype."""
from __future__ import annotations

from graphmask.kernels import jit


@jit
def add_into(acc, x):
    """``acc += x`` in place (sums and gradient accumulation without temporaries)."""
    for i in range(acc.shape[0]):
        acc[i] += x[i]


@jit
def copy_columns(out, x, start):
    """``out[:, start:start + x.shape[1]] = x`` for 2-D arrays (concatenation)."""
    n, w = x.shape
    for i in range(n):
        for j in range(w):
            out[i, start + j] = x[i, j]


@jit
def multiply_into(out, x, y):
    """``out = x * y`` elementwise on flat arrays (dropout's scaling and its VJP)."""
    for i in range(out.shape[0]):
        out[i] = x[i] * y[i]
