"""Row kernel of ``prim.masked_softmax`` (``graphmask/ops/primitives/attention.py``).

Each row of a C-contiguous (rows, S) float array is one query's scores over S keys. Only
the keys a row keeps (the ``keep`` mask, the causal triangle, the sliding window) are
read: their max, their exponentials and their sum; every other entry is written 0. The
exponentials are scalar ``math.exp`` calls, so skipping the dropped keys saves work
in proportion to the padding (a padded query row costs one pass of zeros).
"""
from __future__ import annotations

import math

from graphmask.kernels.primitives import jit


@jit
def masked_softmax_rows(x, keep, use_keep, t_len, causal, window, y, empty):
    """``y[i]`` = softmax of ``x[i]`` over the kept keys, 0 elsewhere; ``empty[i]`` is set
    when row ``i`` keeps no key (its ``y[i]`` is left 0 for the caller to fill).

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
        for j in range(s_len):
            yr[j] = 0.0
        mx = -math.inf
        count = 0
        for j in range(lo, hi):
            if use_keep and not keep[i, j]:
                continue
            count += 1
            if xr[j] > mx:
                mx = xr[j]
        if count == 0:
            empty[i] = True
            continue
        empty[i] = False
        total = 0.0
        for j in range(lo, hi):
            if use_keep and not keep[i, j]:
                continue
            e = math.exp(xr[j] - mx)
            yr[j] = e
            total += e
        inv = 1.0 / total
        for j in range(lo, hi):
            yr[j] *= inv
