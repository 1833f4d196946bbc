"""Masking(mask_value): zero the timesteps whose features all equal ``mask_value``.

The mask pass inserts ``mask_any_not_equal(x, value=mask_value)`` (kept iff any feature
of ``x[b, t, :]`` differs from ``mask_value``) and connects it both to this op's
``mask`` port and to the consumers downstream. The output is ``where(mask[..., None],
x, 0)``: masked timesteps become exactly zero, so a NaN sitting at a masked step does
not leak (as it would through a multiplication). The gradient passes at kept steps and
is zero at masked ones.

The ``mask`` port is optional because the shape pass runs before the mask pass connects
it; when it is not connected the op computes the same mask from ``x`` itself.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import masking as K
from graphmask.kernels.util import as_flat, as_rows, grad_or_zeros
from graphmask.ops.base import MaskRule, Op, OpError, Spec, get_op, is_float, register


def _check_mask(x_shape, m_shape):
    want = tuple(x_shape[:-1])
    if len(m_shape) != len(want) or any(
            a is not None and b is not None and a != b for a, b in zip(m_shape, want)):
        raise OpError(f"mask of shape {tuple(m_shape)} does not fit data of shape "
                      f"{tuple(x_shape)} (expected {want})")


@register
class MaskingOp(Op):
    name = "masking"
    inputs = ("x", "mask?")
    diff_ports = ("x",)

    def infer(self, attrs, specs):
        # the shape pass runs before the mask pass connects the mask port
        x, m = specs["x"], specs.get("mask")
        if x.rank < 2:
            raise OpError(f"Masking expects (batch, timesteps, features), got shape {x.shape}")
        if not is_float(x.dtype):
            raise OpError(f"Masking expects float data, got {x.dtype}")
        if m is not None:
            _check_mask(x.shape, m.shape)
        return [Spec(x.shape, x.dtype)]

    def mask_rule(self, attrs):
        return MaskRule(takes=True, uses=True, out="create",
                        create=("mask_any_not_equal",
                                {"value": attrs.get("mask_value", 0.0)}, "x"))

    def _mask(self, attrs, inputs):
        m = inputs.get("mask")
        if m is None:
            return get_op("mask_any_not_equal").forward(
                {"value": attrs.get("mask_value", 0.0)}, {"x": inputs["x"]})[0]
        return m

    def reference(self, attrs, inputs):
        x, m = inputs["x"], self._mask(attrs, inputs).astype(bool)
        return [np.where(m[..., None], x, np.zeros((), x.dtype))]

    def _apply(self, x, m):
        _check_mask(x.shape, m.shape)
        return K.keep_rows(as_rows(x), as_flat(m, bool)).reshape(x.shape)

    def forward(self, attrs, inputs):
        return [self._apply(inputs["x"], self._mask(attrs, inputs))]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        dy = grad_or_zeros(grads[0], x.shape, x.dtype)
        return {"x": self._apply(dy, self._mask(attrs, inputs))}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        dy = grad_or_zeros(grads[0], x.shape, x.dtype)
        m = self._mask(attrs, inputs).astype(bool)
        return {"x": np.where(m[..., None], dy, np.zeros((), x.dtype))}
