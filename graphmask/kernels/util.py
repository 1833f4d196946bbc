"""Small Python-side helpers that prepare arrays for kernels (no numba code here).

Kernels take C-contiguous 2-D float arrays of one dtype, so each is compiled for two
signatures only (float32, float64). These helpers do the reshaping and casting.
"""
from __future__ import annotations

import numpy as np


def result_dtype(*arrays) -> np.dtype:
    """float64 if any float input is float64, else float32 (see ``ops.base.float_dtype``)."""
    for a in arrays:
        if a is not None and a.dtype == np.float64:
            return np.dtype(np.float64)
    return np.dtype(np.float32)


def as_rows(a: np.ndarray, dtype=None) -> np.ndarray:
    """``a`` as a C-contiguous ``(prod(shape[:-1]), shape[-1])`` array of ``dtype``."""
    a = np.asarray(a)
    if a.ndim == 0:
        a = a.reshape(1, 1)
    n = int(np.prod(a.shape[:-1], dtype=np.int64))
    return np.ascontiguousarray(a.reshape(n, a.shape[-1]), dtype=dtype or a.dtype)


def as_flat(a: np.ndarray, dtype=None) -> np.ndarray:
    """``a`` as a C-contiguous 1-D array of ``dtype``."""
    return np.ascontiguousarray(np.asarray(a), dtype=dtype).reshape(-1)


def grad_or_zeros(g, shape, dtype) -> np.ndarray:
    """The cotangent ``g`` of an output, or zeros when no gradient flows into it."""
    if g is None:
        return np.zeros(shape, dtype=dtype)
    return np.asarray(g, dtype=dtype)
