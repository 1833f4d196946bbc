"""Mask kernels: building boolean masks and applying them to rows of features.

Data arrays arrive as 2-D ``(N, F)`` rows (N = B*T) with masks flattened to ``(N,)``;
comparisons run in the data's own dtype (the scalar is cast to it first, as Keras
compares ``x != mask_value`` in the dtype of ``x``).
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import jit


@jit
def keep_rows(x, mask):
    """``where(mask[:, None], x, 0)``: masked rows become exactly zero (NaN included)."""
    n, f = x.shape
    out = np.zeros_like(x)
    for i in range(n):
        if mask[i]:
            for j in range(f):
                out[i, j] = x[i, j]
    return out


@jit
def any_not_equal_rows(x, value):
    """``any(x != value, axis=-1)`` for 2-D ``x`` -> bool (N,)."""
    n, f = x.shape
    out = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        for j in range(f):
            if x[i, j] != value:  # NaN != value is True, as in NumPy
                out[i] = True
                break
    return out


@jit
def not_equal(x, value):
    """``x != value`` elementwise for 1-D ``x`` -> bool."""
    out = np.empty(x.shape[0], dtype=np.bool_)
    for i in range(x.shape[0]):
        out[i] = x[i] != value
    return out


@jit
def combine_into(acc, m, use_or):
    """``acc |= m`` (``use_or``) or ``acc &= m``, in place, for 1-D bool arrays."""
    for i in range(acc.shape[0]):
        acc[i] = (acc[i] or m[i]) if use_or else (acc[i] and m[i])
