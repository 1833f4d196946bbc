"""MaxPooling1D and AveragePooling1D: windows of ``pool_size`` steps every ``strides``.

(B, L, C) channels_last -> (B, L_out, C). ``valid``: ``L_out = (L - pool) // strides + 1``;
``same``: ``L_out = ceil(L / strides)``, padded as Keras 3 does (``total // 2`` steps on the
left, the rest on the right; :func:`graphmask.ops.conv.conv_geometry`).

What the padding holds is Keras 3's (the torch backend, this project's oracle):

* max: padded steps never win (the maximum of the steps inside the input); its gradient
  goes to the first maximum of each window (a NaN wins), as ``torch.max_pool1d``;
* average with equal padding on both sides (``valid``, and ``same`` when the total is
  even): the mean of the steps inside the input; with unequal padding (``same`` with an
  odd total) Keras pads by repeating the edge steps, which then count in the mean.

A window mixes neighbouring steps, so a padding mask cannot pass: a mask reaching a
pooling layer is a compile-time ``MaskError`` naming both layers (Keras 3 only warns).
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import pooling1d as K
from graphmask.kernels.util import grad_or_zeros
from graphmask.ops.base import NO_MASK, Op, OpError, Spec, is_float, register
from graphmask.ops.conv import conv_geometry


def _check(attrs):
    for key in ("pool_size", "strides"):
        v = attrs[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise OpError(f"{key} must be a positive int, got {v!r}")
    if attrs.get("padding", "valid") not in ("valid", "same"):
        raise OpError(f"padding must be 'valid' or 'same', got {attrs.get('padding')!r}")
    return int(attrs["pool_size"]), int(attrs["strides"]), attrs.get("padding", "valid")


def _geometry(attrs, length):
    """``(pool, stride, pad_left, l_out, clamp)`` for an input of ``length`` steps."""
    pool, stride, padding = _check(attrs)
    l_out, left, right = conv_geometry(length, pool, stride, padding)
    if l_out is not None and l_out < 1:
        raise OpError(f"an input of {length} steps is shorter than pool_size={pool} with "
                      f"padding='valid': the output would have no steps")
    return pool, stride, left, l_out, left != right


class _Pool1D(Op):
    inputs = ("x",)
    diff_ports = ("x",)
    title = ""

    def infer(self, attrs, specs):
        x = specs["x"]
        if x.rank != 3:
            raise OpError(f"{self.title} expects (batch, steps, channels), got shape {x.shape}")
        if not is_float(x.dtype):
            raise OpError(f"{self.title} expects float data, got dtype {x.dtype}")
        l_out = _geometry(attrs, x.shape[1])[3]
        return [Spec((x.shape[0], l_out, x.shape[2]), x.dtype)]

    def mask_rule(self, attrs):
        return NO_MASK

    def _x(self, attrs, inputs):
        x = inputs["x"]
        if x.ndim != 3:
            raise OpError(f"{self.title} expects (batch, steps, channels), got shape {x.shape}")
        return np.ascontiguousarray(x), _geometry(attrs, x.shape[1])

    @staticmethod
    def _windows(x, geo):
        """The (B, L_out, pool, C) windows and whether each step is inside the input."""
        pool, stride, left, l_out, clamp = geo
        length = x.shape[1]
        steps = np.arange(l_out)[:, None] * stride - left + np.arange(pool)[None, :]
        inside = (steps >= 0) & (steps < length)
        if clamp:
            steps, inside = np.clip(steps, 0, length - 1), np.ones_like(inside)
        return x[:, np.clip(steps, 0, length - 1), :], inside, steps


@register
class MaxPooling1DOp(_Pool1D):
    name = "max_pooling_1d"
    title = "MaxPooling1D"

    def n_residuals(self, attrs):
        return 1

    def reference(self, attrs, inputs):
        x, geo = self._x(attrs, inputs)
        win, inside, _ = self._windows(x, geo)
        lowest = np.array(-np.inf, x.dtype)
        return [np.max(np.where(inside[None, :, :, None], win, lowest), axis=2)]

    def forward(self, attrs, inputs):
        x, (pool, stride, left, l_out, _) = self._x(attrs, inputs)
        return list(K.max_pool_forward(x, pool, stride, left, l_out))

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        x = inputs["x"]
        dy = grad_or_zeros(grads[0], outputs[0].shape, x.dtype)
        return {"x": K.max_pool_backward(np.ascontiguousarray(dy), outputs[1], x.shape[1])}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        x, geo = self._x(attrs, inputs)
        win, inside, steps = self._windows(x, geo)
        dy = grad_or_zeros(grads[0], (x.shape[0], geo[3], x.shape[2]), x.dtype)
        masked = np.where(inside[None, :, :, None], win, np.array(-np.inf, x.dtype))
        nan = np.isnan(masked)
        first = np.where(nan.any(axis=2), np.argmax(nan, axis=2), np.argmax(masked, axis=2))
        dx = np.zeros_like(x)
        b, t, c = np.meshgrid(np.arange(x.shape[0]), np.arange(geo[3]), np.arange(x.shape[2]),
                              indexing="ij")
        np.add.at(dx, (b, steps[t, first], c), dy)
        return {"x": dx}


@register
class AveragePooling1DOp(_Pool1D):
    name = "average_pooling_1d"
    title = "AveragePooling1D"

    def reference(self, attrs, inputs):
        x, geo = self._x(attrs, inputs)
        win, inside, _ = self._windows(x, geo)
        kept = inside[None, :, :, None]
        total = np.where(kept, win, np.zeros((), x.dtype)).sum(axis=2)
        return [(total / inside.sum(axis=1)[None, :, None]).astype(x.dtype)]

    def forward(self, attrs, inputs):
        x, (pool, stride, left, l_out, clamp) = self._x(attrs, inputs)
        return [K.avg_pool_forward(x, pool, stride, left, l_out, clamp)]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        x, (pool, stride, left, l_out, clamp) = self._x(attrs, inputs)
        dy = grad_or_zeros(grads[0], (x.shape[0], l_out, x.shape[2]), x.dtype)
        return {"x": K.avg_pool_backward(np.ascontiguousarray(dy), x.shape[1], pool, stride,
                                         left, clamp)}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        x, geo = self._x(attrs, inputs)
        _, inside, steps = self._windows(x, geo)
        dy = grad_or_zeros(grads[0], (x.shape[0], geo[3], x.shape[2]), x.dtype)
        share = dy / inside.sum(axis=1)[None, :, None]
        dx = np.zeros_like(x)
        for t in range(geo[3]):
            for j in range(geo[0]):
                if inside[t, j]:
                    dx[:, steps[t, j], :] += share[:, t, :]
        return {"x": dx}
