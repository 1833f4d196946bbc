"""Global pooling over time: (B, T, F) -> (B, F).

``global_average_pooling_1d`` (Keras GlobalAveragePooling1D) reads the (B, T) mask on
its optional ``mask`` port: ``sum_t x*m / sum_t m``, where masked steps are skipped
(a NaN there does not leak). A sample with every step masked gives 0 (Keras gives NaN
from 0/0). Without a mask it is the plain mean over time. It outputs no mask.

``global_max_pooling_1d`` (Keras GlobalMaxPooling1D) is the max over time. In Keras 3
this layer does not support masking (its ``call`` has no ``mask`` argument and
``supports_masking`` stays False, so Keras only warns and drops the mask). graphmask
follows that layer's semantics, the plain max, and, as for every layer that cannot
take a mask, reports a mask reaching it at compile time (``MaskRule`` ``takes=False``)
instead of silently pooling over padding. Its gradient is split evenly among the time
steps holding the maximum (``dy / n`` for ``n`` tied steps), as Keras 3's ``ops.max`` gives
on every backend (torch ``amax``, JAX, TensorFlow); an all-zero padded row is such a tie.
A NaN maximum gives NaN at every step of that (sample, feature), as those backends do.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import pooling as K
from graphmask.kernels.util import grad_or_zeros
from graphmask.ops.base import NO_MASK, MaskRule, Op, OpError, Spec, is_float, register


def _check_x(name, x):
    if x.rank != 3:
        raise OpError(f"{name} expects (batch, timesteps, features), got shape {x.shape}")
    if not is_float(x.dtype):
        raise OpError(f"{name} expects float data, got {x.dtype}")


def _mask(inputs):
    x = inputs["x"]
    m = inputs.get("mask")
    if m is None:
        return np.ones(x.shape[:2], dtype=bool)
    if m.shape != x.shape[:2]:
        raise OpError(f"mask of shape {m.shape} does not fit data of shape {x.shape}")
    return np.ascontiguousarray(m, dtype=bool)


@register
class GlobalAveragePooling1D(Op):
    name = "global_average_pooling_1d"
    inputs = ("x", "mask?")
    diff_ports = ("x",)

    def infer(self, attrs, specs):
        x = specs["x"]
        _check_x("GlobalAveragePooling1D", x)
        m = specs.get("mask")
        if m is not None and (m.rank != 2 or any(
                a is not None and b is not None and a != b for a, b in zip(m.shape, x.shape))):
            raise OpError(f"mask of shape {m.shape} does not fit data of shape {x.shape}")
        return [Spec((x.shape[0], x.shape[2]), x.dtype)]

    def mask_rule(self, attrs):
        return MaskRule(takes=True, uses=True, out="none")

    def reference(self, attrs, inputs):
        x, m = inputs["x"], _mask(inputs)
        total = np.where(m[..., None], x, np.zeros((), x.dtype)).sum(axis=1)
        count = m.sum(axis=1, keepdims=True)
        return [(total / np.maximum(count, 1)).astype(x.dtype)]

    def forward(self, attrs, inputs):
        return [K.gap_forward(np.ascontiguousarray(inputs["x"]), _mask(inputs))]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        dy = grad_or_zeros(grads[0], (x.shape[0], x.shape[2]), x.dtype)
        return {"x": K.gap_backward(np.ascontiguousarray(dy), _mask(inputs))}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x, m = inputs["x"], _mask(inputs)
        dy = grad_or_zeros(grads[0], (x.shape[0], x.shape[2]), x.dtype)
        w = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        return {"x": (w[..., None] * dy[:, None, :]).astype(x.dtype)}


@register
class GlobalMaxPooling1D(Op):
    name = "global_max_pooling_1d"
    inputs = ("x",)
    diff_ports = ("x",)

    def infer(self, attrs, specs):
        x = specs["x"]
        _check_x("GlobalMaxPooling1D", x)
        if x.shape[1] == 0:
            raise OpError("GlobalMaxPooling1D needs at least one timestep")
        return [Spec((x.shape[0], x.shape[2]), x.dtype)]

    def mask_rule(self, attrs):
        return NO_MASK

    def _x(self, inputs):
        x = inputs["x"]
        if x.ndim != 3 or x.shape[1] == 0:
            raise OpError(f"GlobalMaxPooling1D needs (batch, timesteps >= 1, features), "
                          f"got shape {x.shape}")
        return np.ascontiguousarray(x)

    def reference(self, attrs, inputs):
        return [np.max(self._x(inputs), axis=1)]

    def forward(self, attrs, inputs):
        return [K.gmp_forward(self._x(inputs))]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = self._x(inputs)
        dy = grad_or_zeros(grads[0], (x.shape[0], x.shape[2]), x.dtype)
        return {"x": K.gmp_backward(x, np.ascontiguousarray(dy))}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = self._x(inputs)
        dy = grad_or_zeros(grads[0], (x.shape[0], x.shape[2]), x.dtype)
        best = np.max(x, axis=1, keepdims=True)
        ties = x == best
        n = ties.sum(axis=1, keepdims=True)
        dx = np.where(ties, dy[:, None, :] / np.maximum(n, 1), np.zeros((), x.dtype))
        return {"x": np.where(np.isnan(best), np.nan, dx).astype(x.dtype)}
