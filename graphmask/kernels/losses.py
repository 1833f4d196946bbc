"""numba kernels of the loss and metric ops.

Every per-position kernel works on 2-D views: predictions ``p`` of shape (N, C) (N = all
positions, C = the last axis), dense targets ``y`` of the same shape (already cast to
``p``'s dtype) or sparse class ids ``ids`` of shape (N,) as int64. Scores go to ``out``
(N,); gradients to ``dp`` (N, C) from a cotangent ``g`` (N,).

A negative id marks a dropped position (masked, or labelled ``ignore_class``): the sparse
kernels give it score 0 and gradient 0 and never read its row of ``p``.

Clipping bounds ``lo``/``hi`` arrive in the prediction dtype (Keras clips float32
probabilities to float32(1e-7) and float32(1 - 1e-7)); the arithmetic after clipping is
done in float64 and stored in the output dtype.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import jit

# ---------------------------------------------------------------- small helpers


@jit
def _log_sigmoid(x):
    # log(1 / (1 + exp(-x))) without overflow for any finite or infinite x
    if x >= 0.0:
        return -np.log1p(np.exp(-x))
    return x - np.log1p(np.exp(x))


@jit
def _sigmoid(x):
    if x >= 0.0:
        return 1.0 / (1.0 + np.exp(-x))
    e = np.exp(x)
    return e / (1.0 + e)


# ---------------------------------------------------------------- regression scores


@jit
def mse_fwd(p, y, out):
    n, c = p.shape
    for i in range(n):
        s = 0.0
        for k in range(c):
            d = float(y[i, k]) - float(p[i, k])
            s += d * d
        out[i] = s / c


@jit
def mse_bwd(p, y, g, dp):
    n, c = p.shape
    for i in range(n):
        gi = 2.0 * float(g[i]) / c
        for k in range(c):
            dp[i, k] = gi * (float(p[i, k]) - float(y[i, k]))


@jit
def mae_fwd(p, y, out):
    n, c = p.shape
    for i in range(n):
        s = 0.0
        for k in range(c):
            s += abs(float(y[i, k]) - float(p[i, k]))
        out[i] = s / c


@jit
def mae_bwd(p, y, g, dp):
    n, c = p.shape
    for i in range(n):
        gi = float(g[i]) / c
        for k in range(c):
            dp[i, k] = gi * np.sign(float(p[i, k]) - float(y[i, k]))


# ---------------------------------------------------------------- binary crossentropy


@jit
def bce_fwd(p, y, from_logits, smoothing, lo, hi, out):
    n, c = p.shape
    for i in range(n):
        s = 0.0
        for k in range(c):
            t = float(y[i, k]) * (1.0 - smoothing) + 0.5 * smoothing
            x = float(p[i, k])
            if from_logits:
                s += -t * _log_sigmoid(x) - (1.0 - t) * _log_sigmoid(-x)
            else:
                q = min(max(x, float(lo)), float(hi))
                s += -(t * np.log(q) + (1.0 - t) * np.log(1.0 - q))
        out[i] = s / c


@jit
def bce_bwd(p, y, from_logits, smoothing, lo, hi, g, dp):
    n, c = p.shape
    for i in range(n):
        gi = float(g[i]) / c
        for k in range(c):
            t = float(y[i, k]) * (1.0 - smoothing) + 0.5 * smoothing
            x = float(p[i, k])
            if from_logits:
                dp[i, k] = gi * (_sigmoid(x) - t)
            elif x > float(lo) and x < float(hi):
                dp[i, k] = gi * (-t / x + (1.0 - t) / (1.0 - x))
            else:
                dp[i, k] = 0.0  # clipped: no gradient, as jnp.clip gives


# ---------------------------------------------------------------- categorical crossentropy
# Sparse targets reuse the dense kernels' row helpers with a one-hot row built on the fly.


@jit
def _cce_row(p, i, t, from_logits, lo, hi):
    """Score of row i against the target distribution t (float64, length C)."""
    c = p.shape[1]
    if from_logits:
        mx = -np.inf
        for k in range(c):
            mx = max(mx, float(p[i, k]))
        se = 0.0
        for k in range(c):
            se += np.exp(float(p[i, k]) - mx)
        lse = mx + np.log(se)
        s = 0.0
        for k in range(c):
            if t[k] != 0.0:
                s -= t[k] * (float(p[i, k]) - lse)
        return s
    tot = 0.0
    for k in range(c):
        tot += float(p[i, k])
    s = 0.0
    for k in range(c):
        if t[k] != 0.0:
            q = min(max(float(p[i, k]) / tot, float(lo)), float(hi))
            s -= t[k] * np.log(q)
    return s


@jit
def _cce_row_grad(p, i, t, from_logits, lo, hi, gi, dp):
    c = p.shape[1]
    if from_logits:
        mx = -np.inf
        for k in range(c):
            mx = max(mx, float(p[i, k]))
        se = 0.0
        st = 0.0
        for k in range(c):
            se += np.exp(float(p[i, k]) - mx)
            st += t[k]
        for k in range(c):
            dp[i, k] = gi * (np.exp(float(p[i, k]) - mx) / se * st - t[k])
        return
    tot = 0.0
    for k in range(c):
        tot += float(p[i, k])
    # d/dr_k of -sum t log clip(r) is -t_k / r_k inside the clip range, 0 outside;
    # r = p / tot, so dp_j = (h_j - sum_k h_k r_k) / tot.
    acc = 0.0
    for k in range(c):
        r = float(p[i, k]) / tot
        h = 0.0
        if t[k] != 0.0 and r > float(lo) and r < float(hi):
            h = -t[k] / r
        dp[i, k] = h
        acc += h * r
    for k in range(c):
        dp[i, k] = gi * (float(dp[i, k]) - acc) / tot


@jit
def cce_fwd(p, y, from_logits, smoothing, lo, hi, out):
    n, c = p.shape
    t = np.empty(c)
    for i in range(n):
        for k in range(c):
            t[k] = float(y[i, k]) * (1.0 - smoothing) + smoothing / c
        out[i] = _cce_row(p, i, t, from_logits, lo, hi)


@jit
def cce_bwd(p, y, from_logits, smoothing, lo, hi, g, dp):
    n, c = p.shape
    t = np.empty(c)
    for i in range(n):
        for k in range(c):
            t[k] = float(y[i, k]) * (1.0 - smoothing) + smoothing / c
        _cce_row_grad(p, i, t, from_logits, lo, hi, float(g[i]), dp)


@jit
def scce_fwd(p, ids, from_logits, lo, hi, out):
    n, c = p.shape
    t = np.zeros(c)
    for i in range(n):
        if ids[i] < 0:
            out[i] = 0.0
            continue
        t[ids[i]] = 1.0
        out[i] = _cce_row(p, i, t, from_logits, lo, hi)
        t[ids[i]] = 0.0


@jit
def scce_bwd(p, ids, from_logits, lo, hi, g, dp):
    n, c = p.shape
    t = np.zeros(c)
    for i in range(n):
        if ids[i] < 0:
            for k in range(c):
                dp[i, k] = 0.0
            continue
        t[ids[i]] = 1.0
        _cce_row_grad(p, i, t, from_logits, lo, hi, float(g[i]), dp)
        t[ids[i]] = 0.0


# ---------------------------------------------------------------- reductions
# score (B, K); mask (B, K) bool; weight (Bw, Kw) with Bw in {1, B}, Kw in {1, K}.


@jit
def _w(w, b, j):
    bw, kw = w.shape
    return float(w[b if bw > 1 else 0, j if kw > 1 else 0])


@jit
def masked_sums(s, m, w):
    """(sum(s * m * w), sum(m), sum(m * w)) in float64."""
    tot = 0.0
    cnt = 0.0
    wcnt = 0.0
    b_, k_ = s.shape
    for b in range(b_):
        for j in range(k_):
            if m[b, j]:
                wi = _w(w, b, j)
                tot += float(s[b, j]) * wi
                cnt += 1.0
                wcnt += wi
    return tot, cnt, wcnt


@jit
def weighted_sums(s, w):
    """(sum(s * w), sum(w broadcast to s))."""
    tot = 0.0
    wcnt = 0.0
    b_, k_ = s.shape
    for b in range(b_):
        for j in range(k_):
            wi = _w(w, b, j)
            tot += float(s[b, j]) * wi
            wcnt += wi
    return tot, wcnt


@jit
def scaled_weight_grad(m, w, scale, ds):
    """ds[b, j] = scale * m[b, j] * w[b, j] (m may be all True)."""
    b_, k_ = ds.shape
    for b in range(b_):
        for j in range(k_):
            ds[b, j] = scale * _w(w, b, j) if m[b, j] else 0.0


# ---------------------------------------------------------------- metric scores


@jit
def equal_fwd(p, y, out):
    n, c = p.shape
    for i in range(n):
        s = 0.0
        for k in range(c):
            if p[i, k] == y[i, k]:
                s += 1.0
        out[i] = s / c


@jit
def binary_accuracy_fwd(p, y, threshold, out):
    n, c = p.shape
    for i in range(n):
        s = 0.0
        for k in range(c):
            hit = 1.0 if float(p[i, k]) > threshold else 0.0
            if float(y[i, k]) == hit:
                s += 1.0
        out[i] = s / c


@jit
def _argmax_row(a, i):
    best = 0
    c = a.shape[1]
    for k in range(1, c):
        if a[i, k] > a[i, best]:
            best = k
    return best


@jit
def categorical_accuracy_fwd(p, y, out):
    for i in range(p.shape[0]):
        out[i] = 1.0 if _argmax_row(p, i) == _argmax_row(y, i) else 0.0


@jit
def sparse_accuracy_fwd(p, ids, out):
    for i in range(p.shape[0]):
        out[i] = 1.0 if float(_argmax_row(p, i)) == float(ids[i]) else 0.0
