"""Masked and weighted reductions of per-position scores (losses and metrics).

``masked_mean``      ``sum(score * m * w) / sum(m)``; exactly 0 (zero gradient) if sum(m) == 0
                     (Keras 3's masked loss; the denominator counts kept positions).
``weighted_mean``    ``sum(score * w) / score.size`` (Keras 3's loss without a mask).
``weighted_average`` two outputs ``total = sum(s * m * w)`` and ``count = sum(m * w)``: what
                     a Keras metric accumulates over batches; its result is total / count.

``weight`` may be a scalar, per-sample (shape (B,), broadcast over the other axes, which
Keras 3 fails to do with a (B, T) mask) or of the score's shape. Sums are in float64.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import losses as K
from graphmask.ops.base import Op, OpError, Spec, float_dtype, is_float, register


def _same(a, b) -> bool:
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def _check_specs(name, specs):
    s = specs["score"]
    if not is_float(s.dtype):
        raise OpError(f"{name}: score must be float, got {s.dtype}")
    if "mask" in specs and not _same(specs["mask"].shape, s.shape):
        raise OpError(f"{name}: mask shape {specs['mask'].shape} differs from score shape "
                      f"{s.shape}")
    if "weight" in specs:
        w = specs["weight"].shape
        if not (w == () or _same(w, s.shape[:1]) or _same(w, s.shape)):
            raise OpError(f"{name}: weight must have shape (), {s.shape[:1]} (per sample) or "
                          f"{s.shape} (per position), got {w}")
    return Spec((), float_dtype(s.dtype))


def layout(name, inputs):
    """(score (B, K), mask (B, K) bool, weight (Bw, Kw)) contiguous, in score's dtype."""
    s = inputs["score"]
    _check_specs(name, {p: Spec(tuple(a.shape), str(a.dtype)) for p, a in inputs.items()})
    b = s.shape[0] if s.ndim else 1
    s2 = np.ascontiguousarray(s.reshape(b, -1))
    if "mask" in inputs:
        m2 = np.ascontiguousarray(inputs["mask"].astype(bool, copy=False).reshape(s2.shape))
    else:
        m2 = np.ones(s2.shape, dtype=bool)
    if "weight" in inputs:
        w = inputs["weight"].astype(s.dtype, copy=False)
        shape = (1, 1) if w.ndim == 0 else (b, 1) if w.shape == s.shape[:1] else s2.shape
        w2 = np.ascontiguousarray(w.reshape(shape))
    else:
        w2 = np.ones((1, 1), s.dtype)
    return s2, m2, w2


def _dense(inputs):
    """Reference helper: mask and weight as float64 arrays of the score's shape."""
    s = inputs["score"].astype(np.float64)
    m = inputs["mask"].astype(np.float64) if "mask" in inputs else np.ones_like(s)
    w = inputs.get("weight", np.ones((), np.float64)).astype(np.float64)
    if w.ndim == 1 and s.ndim > 1:
        w = w.reshape((-1,) + (1,) * (s.ndim - 1))
    return s, m, np.broadcast_to(w, s.shape)


def _scalar(x, dtype):
    return np.asarray(x, dtype=dtype)


def _grad(inputs, scale, g):
    """d score = g * scale * m * w (kernel path)."""
    s2, m2, w2 = layout("reduction", inputs)
    ds = np.empty_like(s2)
    K.scaled_weight_grad(m2, w2, float(0.0 if g is None else g) * scale, ds)
    return ds.reshape(inputs["score"].shape)


@register
class MaskedMean(Op):
    name = "masked_mean"
    inputs = ("score", "mask", "weight?")
    diff_ports = ("score",)

    def infer(self, attrs, specs):
        return [_check_specs(self.name, specs)]

    def reference(self, attrs, inputs):
        s, m, w = _dense(inputs)
        n = m.sum()
        val = (s * m * w).sum() / n if n > 0 else 0.0
        return [_scalar(val, inputs["score"].dtype)]

    def forward(self, attrs, inputs):
        tot, cnt, _ = K.masked_sums(*layout(self.name, inputs))
        return [_scalar(tot / cnt if cnt > 0 else 0.0, inputs["score"].dtype)]

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if not wrt:
            return {}
        s, m, w = _dense(inputs)
        n = m.sum()
        g = 0.0 if grads[0] is None else float(grads[0])
        ds = g * m * w / n if n > 0 else np.zeros_like(s)
        return {"score": ds.astype(inputs["score"].dtype)}

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if not wrt:
            return {}
        n = np.count_nonzero(inputs["mask"])
        return {"score": _grad(inputs, 1.0 / n if n else 0.0, grads[0])}


@register
class WeightedMean(Op):
    name = "weighted_mean"
    inputs = ("score", "weight?")
    diff_ports = ("score",)

    def infer(self, attrs, specs):
        return [_check_specs(self.name, specs)]

    def reference(self, attrs, inputs):
        s, _, w = _dense(inputs)
        return [_scalar((s * w).sum() / s.size if s.size else 0.0, inputs["score"].dtype)]

    def forward(self, attrs, inputs):
        s2, _, w2 = layout(self.name, inputs)
        tot, _ = K.weighted_sums(s2, w2)
        return [_scalar(tot / s2.size if s2.size else 0.0, inputs["score"].dtype)]

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if not wrt:
            return {}
        s, _, w = _dense(inputs)
        g = 0.0 if grads[0] is None else float(grads[0])
        return {"score": (g * w / max(s.size, 1)).astype(inputs["score"].dtype)}

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if not wrt:
            return {}
        return {"score": _grad(inputs, 1.0 / max(inputs["score"].size, 1), grads[0])}


@register
class WeightedAverage(Op):
    """Metric accumulation: outputs (total, count); not differentiable."""

    name = "weighted_average"
    inputs = ("score", "mask?", "weight?")
    diff_ports = ()

    def infer(self, attrs, specs):
        spec = _check_specs(self.name, specs)
        return [spec, spec]

    def reference(self, attrs, inputs):
        s, m, w = _dense(inputs)
        dt = inputs["score"].dtype
        return [_scalar((s * m * w).sum(), dt), _scalar((m * w).sum(), dt)]

    def forward(self, attrs, inputs):
        tot, _, wcnt = K.masked_sums(*layout(self.name, inputs))
        dt = inputs["score"].dtype
        return [_scalar(tot, dt), _scalar(wcnt, dt)]

    def reference_vjp(self, attrs, inputs, grads, wrt):
        return {}

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        return {}
