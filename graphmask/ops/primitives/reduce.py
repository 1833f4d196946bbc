"""Reductions on port ``x``: attrs ``axis`` (None = all, an int or a list) and ``keepdims``.

=========  ======================  ===============================================
op         dtype                   gradient
=========  ======================  ===============================================
sum        ints < 32 bits -> int32  g broadcast back
mean       ints/bool -> float32    g / count broadcast back (NaN over nothing)
max, min   the input's             g shared evenly among the tied extremes
logsumexp  float                   g exp(x - logsumexp(x))
any, all   bool                    none
argmax     int32 (first of ties)   none (``axis`` None or an int only)
=========  ======================  ===============================================

max/min of an empty selection is an error (as Keras); ``axis=[]`` reduces nothing.
Floats are reduced by the row kernels of ``graphmask/kernels/primitives/reduce.py``
after moving the reduced axes last (no copy when they already are).
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels.primitives import reduce as K
from graphmask.ops.base import register
from graphmask.ops.primitives.common import Prim, float_of, kind, norm_axes, norm_axis, spec

_SMALL_INTS = ("bool", "int8", "int16", "uint8", "uint16")


def rows(x: np.ndarray, axes: tuple, dtype) -> tuple[np.ndarray, list]:
    """``x`` as C-contiguous (kept, reduced) rows of ``dtype``, and the axis order used."""
    kept = [a for a in range(x.ndim) if a not in axes]
    perm = kept + list(axes)
    m = int(np.prod([x.shape[a] for a in kept], dtype=np.int64))
    n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    xt = x if perm == list(range(x.ndim)) else x.transpose(perm)
    return np.ascontiguousarray(xt, dtype=dtype).reshape(m, n), perm


def unrows(a2: np.ndarray, shape: tuple, perm: list) -> np.ndarray:
    """Inverse of :func:`rows` for an array of the input's size."""
    a = a2.reshape([shape[p] for p in perm])
    if perm != list(range(len(shape))):
        a = np.ascontiguousarray(a.transpose(np.argsort(perm)))
    return a


def row_sums(x2: np.ndarray) -> np.ndarray:
    """Sums of the rows of a C-contiguous 2-D float array, accumulated in float64."""
    if x2.shape[1] >= K.LONG_ROW:
        return np.sum(x2, axis=1, dtype=np.float64)
    out = np.empty(x2.shape[0], np.float64)
    K.row_sum(x2, out)
    return out


def shift_rows(x2: np.ndarray, finite: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(x2 - shift, shift)`` with ``shift`` the row max (with ``finite``, 0 where that is
    infinite): the exponent of a stable softmax/logsumexp (``reduce.row_shift`` kernel)."""
    out = np.empty_like(x2)
    if x2.shape[1] >= K.LONG_ROW:
        shift = np.max(x2, axis=1)
        if finite:
            shift[np.isinf(shift)] = 0
        with np.errstate(invalid="ignore"):
            np.subtract(x2, shift[:, None], out=out)
    else:
        shift = np.empty(x2.shape[0], x2.dtype)
        K.row_shift(x2, out, shift, finite)
    return out, shift


def out_shape(shape: tuple, axes: tuple, keepdims: bool) -> tuple:
    if keepdims:
        return tuple(1 if a in axes else d for a, d in enumerate(shape))
    return tuple(d for a, d in enumerate(shape) if a not in axes)


class Reduce(Prim):
    inputs = ("x",)
    diff_ports = ("x",)
    empty_ok = True

    def out_dtype(self, dtype: str) -> str:
        return float_of(dtype) if kind(dtype) == "f" else dtype

    def _axes(self, attrs, rank):
        keep = attrs.get("keepdims", False)
        if not isinstance(keep, bool):
            raise self.error(f"attrs['keepdims'] must be a bool, got {keep!r}")
        return norm_axes(self, attrs.get("axis"), rank), keep

    def infer(self, attrs, specs):
        x = specs["x"]
        self.check_dtype("x", x.dtype)
        axes, keep = self._axes(attrs, x.rank)
        if not self.empty_ok and any(x.shape[a] == 0 for a in axes):
            raise self.error(f"cannot reduce an empty selection (input shape {x.shape})")
        return [spec(out_shape(x.shape, axes, keep), self.out_dtype(x.dtype))]

    def _setup(self, attrs, x):
        axes, keep = self._axes(attrs, x.ndim)
        if not self.empty_ok and any(x.shape[a] == 0 for a in axes):
            raise self.error(f"cannot reduce an empty selection (input shape {x.shape})")
        return axes, keep, out_shape(x.shape, axes, keep), np.dtype(self.out_dtype(str(x.dtype)))

    def _g(self, grads, shape, dtype):
        return np.zeros(shape, dtype) if grads[0] is None else np.asarray(grads[0], dtype)

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        axes, keep, shape, dt = self._setup(attrs, x)
        x2, perm = rows(x, axes, dt)
        g2 = self._g(grads, shape, dt).reshape(x2.shape[0])
        dx2 = self.grad2(x2, np.asarray(outputs[0], dt).reshape(x2.shape[0]), g2)
        return {"x": unrows(dx2, x.shape, perm).astype(x.dtype, copy=False)}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        axes, keep, shape, dt = self._setup(attrs, x)
        y = self.reference(attrs, inputs)[0]
        kept = tuple(1 if a in axes else d for a, d in enumerate(x.shape))
        g = self._g(grads, shape, dt).reshape(kept)
        return {"x": self.ref_grad(x.astype(dt), y.reshape(kept), g, axes).astype(x.dtype)}


@register
class SumOp(Reduce):
    name = "prim.sum"

    def out_dtype(self, dtype):
        return "int32" if dtype in _SMALL_INTS else super().out_dtype(dtype)

    def reference(self, attrs, inputs):
        x = inputs["x"]
        axes, keep, _, dt = self._setup(attrs, x)
        return [np.asarray(np.sum(x, axis=axes, keepdims=keep, dtype=dt))]

    def forward(self, attrs, inputs):
        x = inputs["x"]
        axes, keep, shape, dt = self._setup(attrs, x)
        if dt.kind != "f":
            return [np.asarray(np.sum(x, axis=axes, keepdims=keep, dtype=dt))]
        x2, _ = rows(x, axes, dt)
        return [row_sums(x2).astype(dt).reshape(shape)]

    def grad2(self, x2, y, g):
        return np.repeat(g[:, None], x2.shape[1], axis=1)

    def ref_grad(self, x, y, g, axes):
        return g * np.ones_like(x)


@register
class MeanOp(SumOp):
    name = "prim.mean"

    def out_dtype(self, dtype):
        return float_of(dtype)

    def reference(self, attrs, inputs):
        x = inputs["x"]
        axes, keep, _, dt = self._setup(attrs, x)
        with np.errstate(invalid="ignore", divide="ignore"):
            return [np.asarray(np.mean(x.astype(np.float64), axis=axes, keepdims=keep), dt)]

    def forward(self, attrs, inputs):
        x = inputs["x"]
        axes, keep, shape, dt = self._setup(attrs, x)
        x2, _ = rows(x, axes, dt)
        with np.errstate(invalid="ignore", divide="ignore"):
            return [(row_sums(x2) / x2.shape[1]).astype(dt).reshape(shape)]

    def grad2(self, x2, y, g):
        with np.errstate(invalid="ignore", divide="ignore"):
            return super().grad2(x2, y, g / x2.shape[1])

    def ref_grad(self, x, y, g, axes):
        count = int(np.prod([x.shape[a] for a in axes]))
        return g / count * np.ones_like(x)


@register
class MaxOp(Reduce):
    name = "prim.max"
    sign = 1
    empty_ok = False

    def reference(self, attrs, inputs):
        x = inputs["x"]
        axes, keep, _, dt = self._setup(attrs, x)
        f = np.max if self.sign > 0 else np.min
        return [np.asarray(f(x.astype(dt), axis=axes, keepdims=keep))]

    def forward(self, attrs, inputs):
        x = inputs["x"]
        axes, keep, shape, dt = self._setup(attrs, x)
        if dt.kind != "f" or not axes:
            f = np.max if self.sign > 0 else np.min
            return [np.asarray(f(x.astype(dt, copy=False), axis=axes, keepdims=keep))]
        x2, _ = rows(x, axes, dt)
        if x2.shape[1] >= K.LONG_ROW:
            return [(np.max if self.sign > 0 else np.min)(x2, axis=1).reshape(shape)]
        out = np.empty(x2.shape[0], dt)
        K.row_max(x2, out, self.sign)
        return [out.reshape(shape)]

    def grad2(self, x2, y, g):
        dx = np.empty_like(x2)
        K.row_max_grad(x2, y, g, dx)
        return dx

    def ref_grad(self, x, y, g, axes):
        hit = x == y
        return g * hit / hit.sum(axis=axes, keepdims=True)


@register
class MinOp(MaxOp):
    name = "prim.min"
    sign = -1


@register
class LogSumExpOp(Reduce):
    name = "prim.logsumexp"

    def out_dtype(self, dtype):
        return float_of(dtype)

    def reference(self, attrs, inputs):
        x = inputs["x"]
        axes, keep, _, dt = self._setup(attrs, x)
        xf = x.astype(dt)
        m = np.max(xf, axis=axes, keepdims=True, initial=-np.inf)
        m = np.where(np.isfinite(m), m, 0)
        with np.errstate(divide="ignore"):
            s = np.log(np.sum(np.exp(xf - m), axis=axes, keepdims=True)) + m
        return [np.asarray(s if keep else np.squeeze(s, axis=axes), dtype=dt)]

    def forward(self, attrs, inputs):
        x = inputs["x"]
        axes, keep, shape, dt = self._setup(attrs, x)
        x2, _ = rows(x, axes, dt)
        e, shift = shift_rows(x2, True)  # x - max
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            np.exp(e, out=e)
            return [(np.log(row_sums(e)) + shift).astype(dt).reshape(shape)]

    def grad2(self, x2, y, g):
        with np.errstate(invalid="ignore"):  # NaN where the whole row is -inf, as torch
            dx = np.subtract(x2, y[:, None])
            np.exp(dx, out=dx)
        dx *= g[:, None]
        return dx

    def ref_grad(self, x, y, g, axes):
        with np.errstate(invalid="ignore"):
            return g * np.exp(x - y)


class Logical(Reduce):
    diff_ports = ()

    def out_dtype(self, dtype):
        return "bool"

    def reference(self, attrs, inputs):
        x = inputs["x"]
        axes, keep, _, _ = self._setup(attrs, x)
        return [np.asarray(self.ref(x != 0, axis=axes, keepdims=keep))]

    forward = reference

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        return {p: np.zeros(inputs[p].shape, inputs[p].dtype) for p in wrt}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        return {p: np.zeros_like(inputs[p]) for p in wrt}


@register
class AnyOp(Logical):
    name = "prim.any"
    ref = staticmethod(np.any)


@register
class AllOp(Logical):
    name = "prim.all"
    ref = staticmethod(np.all)


@register
class ArgmaxOp(Logical):
    """Index of the largest value (the first one among ties), as int32."""

    name = "prim.argmax"
    empty_ok = False

    def out_dtype(self, dtype):
        return "int32"

    def _axes(self, attrs, rank):
        keep = attrs.get("keepdims", False)
        if not isinstance(keep, bool):
            raise self.error(f"attrs['keepdims'] must be a bool, got {keep!r}")
        axis = attrs.get("axis")
        return (tuple(range(rank)) if axis is None else (norm_axis(self, axis, rank),)), keep

    def reference(self, attrs, inputs):
        x = inputs["x"]
        axes, keep, shape, _ = self._setup(attrs, x)
        axis = axes[0] if attrs.get("axis") is not None else None
        return [np.asarray(np.argmax(x, axis=axis, keepdims=keep), np.int32).reshape(shape)]

    forward = reference
