"""Flatten: ``(B, d1, d2, ...) -> (B, d1 * d2 * ...)``.

Keras 3's Flatten does not support masking; a mask reaching it is a compile-time error
(see the mask pass). Flattening is a pure reshape: no arithmetic, so no numba kernel;
the output is a C-contiguous array (a view when the input already is one).
"""
from __future__ import annotations

import math

import numpy as np

from graphmask.kernels.util import grad_or_zeros
from graphmask.ops.base import NO_MASK, Op, OpError, Spec, register


def _flat_shape(shape):
    rest = shape[1:]
    return (shape[0], None if any(d is None for d in rest) else math.prod(rest))


@register
class FlattenOp(Op):
    name = "flatten"
    inputs = ("x",)
    diff_ports = ("x",)

    def infer(self, attrs, specs):
        x = specs["x"]
        if x.rank < 1:
            raise OpError("Flatten needs an input with a batch axis")
        return [Spec(_flat_shape(x.shape), x.dtype)]

    def mask_rule(self, attrs):
        return NO_MASK

    def reference(self, attrs, inputs):
        x = inputs["x"]
        return [np.reshape(x, _flat_shape(x.shape)).copy()]

    def forward(self, attrs, inputs):
        x = np.ascontiguousarray(inputs["x"])
        return [x.reshape(_flat_shape(x.shape))]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        dy = grad_or_zeros(grads[0], _flat_shape(x.shape), x.dtype)
        return {"x": np.ascontiguousarray(dy).reshape(x.shape)}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x, g = inputs["x"], grads[0]
        dx = np.zeros(x.shape, x.dtype)
        if g is not None and x.ndim == 1:  # (B,) -> (B, 1)
            dx[:] = np.asarray(g, dtype=x.dtype)[:, 0]
        elif g is not None:
            # output column j of sample b is x[b, i1, i2, ...] with (i1, i2, ...) the C-order
            # (row-major) position j in x.shape[1:]: route each column's cotangent there
            cols = np.unravel_index(np.arange(math.prod(x.shape[1:])), x.shape[1:])
            dx[(slice(None), *cols)] = np.asarray(g, dtype=x.dtype)
        return {"x": dx}
