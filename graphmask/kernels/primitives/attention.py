"""Row kernels of ``prim.masked_softmax`` (``graphmask/ops/primitives/attention.py``).

Each row of a C-contiguous (rows, S) float array is one query's scores over S keys. The
softmax runs in three passes, as ``prim.softmax`` does: :func:`masked_shift_rows` reads
only the keys a row keeps (the ``keep`` mask, the causal triangle, the sliding window)
for their max and writes ``x - max`` there and ``-inf`` at every dropped key; NumPy's
SIMD ``exp`` then runs in place over the whole array (``exp(-inf) = 0``); and
:func:`normalize_kept_rows` divides each row by its sum. Measured on T1's scores
(32, 4, 100, 100) with 41% of the pairs kept, one thread: a single fused pass calling
numba's scalar ``math.exp`` on the kept keys only took 8.1 ms, these three passes
2.4 ms; the composed ``where`` / ``softmax`` / ``where`` 3.1-3.4 ms, ``prim.softmax``
without a mask 2.0 ms (``benchmarks/bench_transformer.py --softmax``).
"""
from __future__ import annotations

import math

from graphmask.kernels.primitives import jit


@jit
def masked_shift_rows(x, keep, use_keep, t_len, causal, window, y, empty):
    """``y[i, j] = x[i, j] - max`` at the keys row ``i`` keeps, ``-inf`` elsewhere;
    ``empty[i]`` is set when row ``i`` keeps no key.

    Row ``i`` is query position ``t = i % t_len``; with ``causal`` it keeps keys
    ``j <= t``; with ``window > 0`` keys ``|t - j| < window``; with ``use_keep`` only
    keys where ``keep[i, j]``."""
    n_rows, s_len = x.shape
    for i in range(n_rows):
        t = i % t_len
        lo = 0
        hi = s_len
        if causal and t + 1 < hi:
            hi = t + 1
        if window > 0:
            if t - window + 1 > lo:
                lo = t - window + 1
            if t + window < hi:
                hi = t + window
        xr, yr = x[i], y[i]
        mx = -math.inf
        count = 0
        for j in range(lo, hi):
            if use_keep and not keep[i, j]:
                continue
            count += 1
            if xr[j] > mx:
                mx = xr[j]
        empty[i] = count == 0
        for j in range(s_len):
            yr[j] = -math.inf
        if count == 0:
            continue
        for j in range(lo, hi):
            if use_keep and not keep[i, j]:
                continue
            yr[j] = xr[j] - mx


@jit
def normalize_kept_rows(e, empty):
    """``e[i] /= sum(e[i])`` for every row that keeps a key (float64 sums)."""
    for i in range(e.shape[0]):
        if empty[i]:
            continue
        er = e[i]
        s = 0.0
        for j in range(e.shape[1]):
            s += er[j]
        inv = 1.0 / s
        for j in range(e.shape[1]):
            er[j] *= inv
