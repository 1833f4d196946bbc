"""``softmax`` / ``log_softmax`` (attrs ``axis``, default -1) and ``one_hot``.

softmax(x) = exp(x - max) / sum(exp(x - max)) along ``axis``; its VJP is
``y (g - sum(g y))``; log_softmax(x) = x - logsumexp(x) with VJP ``g - exp(y) sum(g)``.
Both run on ``axis`` moved last: the shift by the row max (one pass), NumPy's SIMD
``exp`` in place, then the row sums (``graphmask/kernels/primitives/reduce.py``).

``one_hot`` (int port ``x``, attrs ``num_classes``, ``axis``) gives float32 with the new
class axis at ``axis`` of the output; like ``keras.ops.one_hot`` with torch, a negative
id gives an all-zero row and an id >= num_classes is an error.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels.primitives import reduce as K
from graphmask.ops.base import register
from graphmask.ops.primitives.common import Prim, float_of, kind, norm_axis, spec, zeros_or
from graphmask.ops.primitives.reduce import row_sums, rows, shift_rows, unrows


class Softmax(Prim):
    name = "prim.softmax"
    inputs = ("x",)
    diff_ports = ("x",)
    log = False

    def _axis(self, attrs, rank):
        if rank == 0:
            raise self.error("input x must have rank >= 1, got a scalar")
        return norm_axis(self, attrs.get("axis", -1), rank)

    def infer(self, attrs, specs):
        x = specs["x"]
        self.check_dtype("x", x.dtype)
        self._axis(attrs, x.rank)
        return [spec(x.shape, float_of(x.dtype))]

    def reference(self, attrs, inputs):
        x = inputs["x"]
        axis = self._axis(attrs, x.ndim)
        xf = x.astype(float_of(str(x.dtype)))
        m = np.max(xf, axis=axis, keepdims=True)
        z = xf - np.where(m == -np.inf, 0, m)
        with np.errstate(all="ignore"):
            lse = np.log(np.sum(np.exp(z), axis=axis, keepdims=True))
            return [z - lse if self.log else np.exp(z - lse)]

    def forward(self, attrs, inputs):
        x = inputs["x"]
        axis = self._axis(attrs, x.ndim)
        x2, perm = rows(x, (axis,), float_of(str(x.dtype)))
        y2, _ = shift_rows(x2, False)  # x - max, row by row
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if self.log:
                y2 -= np.log(row_sums(np.exp(y2)))[:, None].astype(y2.dtype)
            else:
                np.exp(y2, out=y2)
                K.row_normalize(y2)
        return [unrows(y2, x.shape, perm)]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x, y = inputs["x"], outputs[0]
        axis = self._axis(attrs, x.ndim)
        g2, perm = rows(zeros_or(grads[0], y.shape, y.dtype), (axis,), y.dtype)
        y2, _ = rows(y, (axis,), y.dtype)
        dx2 = np.exp(y2) if self.log else np.empty_like(y2)
        K.row_softmax_grad(y2, g2, dx2, self.log)
        return {"x": unrows(dx2, x.shape, perm).astype(x.dtype, copy=False)}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        axis = self._axis(attrs, x.ndim)
        y = self.reference(attrs, inputs)[0]
        g = zeros_or(grads[0], y.shape, y.dtype)
        if self.log:
            dx = g - np.exp(y) * np.sum(g, axis=axis, keepdims=True)
        else:
            dx = y * (g - np.sum(g * y, axis=axis, keepdims=True))
        return {"x": dx.astype(x.dtype)}


register(Softmax)


@register
class LogSoftmax(Softmax):
    name = "prim.log_softmax"
    log = True


@register
class OneHotOp(Prim):
    name = "prim.one_hot"
    inputs = ("x",)
    diff_ports = ()

    def _attrs(self, attrs, rank):
        n = attrs.get("num_classes")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise self.error(f"attrs['num_classes'] must be a positive int, got {n!r}")
        return n, norm_axis(self, attrs.get("axis", -1), rank + 1)

    def infer(self, attrs, specs):
        x = specs["x"]
        if kind(self.check_dtype("x", x.dtype)) not in "iu":
            raise self.error(f"input x must hold int class ids, got {x.dtype}")
        n, axis = self._attrs(attrs, x.rank)
        return [spec(x.shape[:axis] + (n,) + x.shape[axis:], "float32")]

    def _ids(self, attrs, x):
        n, axis = self._attrs(attrs, x.ndim)
        if x.size and x.max() >= n:
            raise self.error(f"input x holds the class id {int(x.max())}, out of range for "
                             f"num_classes={n}")
        return n, axis

    def reference(self, attrs, inputs):
        x = inputs["x"]
        n, axis = self._ids(attrs, x)
        y = (x[..., None] == np.arange(n)).astype(np.float32)  # negative ids match nothing
        return [np.moveaxis(y, -1, axis)]

    def forward(self, attrs, inputs):
        x = inputs["x"]
        n, axis = self._ids(attrs, x)
        flat = np.asarray(x, dtype=np.int64).reshape(-1)
        y = np.zeros((flat.size, n), np.float32)
        keep = np.flatnonzero(flat >= 0)
        y[keep, flat[keep]] = 1
        y = y.reshape(x.shape + (n,))
        return [y if axis == x.ndim else np.ascontiguousarray(np.moveaxis(y, -1, axis))]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        return {p: np.zeros(inputs[p].shape, inputs[p].dtype) for p in wrt}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        return {p: np.zeros_like(inputs[p]) for p in wrt}
