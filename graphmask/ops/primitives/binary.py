"""Elementwise arithmetic on ports ``x`` and ``y`` with NumPy broadcasting.

=========  ==========  =====================================================================
op         value       gradients (``gx``, ``gy``), summed over broadcast axes
=========  ==========  =====================================================================
add        x + y       g, g
subtract   x - y       g, -g
multiply   x * y       g y, g x
divide     x / y       g / y, -g x / y^2  (ints give float32, as Keras)
power      x ** y      g y x^(y-1) (0 where y == 0), g x^y log x (0 where x == 0 and y >= 0)
maximum    max(x, y)   g to the larger; ties split g evenly (g/2 each, as Keras 3 / torch)
minimum    min(x, y)   g to the smaller; ties split evenly
=========  ==========  =====================================================================

NaN propagates through maximum/minimum (as NumPy and torch). Integer ``power`` with a
negative exponent is an error (NumPy's rule; torch would silently give 0).
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels.primitives import elementwise as K
from graphmask.ops.base import register
from graphmask.ops.primitives.common import (
    Prim,
    broadcast_run,
    broadcast_static,
    float_of,
    kind,
    promote,
    reference_unbroadcast,
    spec,
    sum_to_shape,
    zeros_or,
)

_QUIET = {"all": "ignore"}


def collapse(xs: tuple, ys: tuple, out: tuple):
    """A broadcast pattern as 2-D ``(m, n)`` shapes of (out, x, y), or None.

    Axes of ``out`` are grouped into runs where each operand is either full or
    broadcast; two runs at most fit the 2-D kernels (same shape, scalar, a row like a
    bias, a column like a per-row scale).
    """
    r = len(out)
    xs, ys = (1,) * (r - len(xs)) + tuple(xs), (1,) * (r - len(ys)) + tuple(ys)
    groups: list = []
    for a, b, d in zip(xs, ys, out):
        if d == 1:
            continue
        pat = (a == d, b == d)
        if groups and groups[-1][0] == pat:
            groups[-1][1] *= d
        else:
            groups.append([pat, d])
    if len(groups) > 2:
        return None
    while len(groups) < 2:
        groups.insert(0, [(True, True), 1])
    ((px0, py0), m), ((px1, py1), n) = groups
    return (m, n), (m if px0 else 1, n if px1 else 1), (m if py0 else 1, n if py1 else 1)


class Binary(Prim):
    inputs = ("x", "y")
    diff_ports = ("x", "y")
    ufunc = None

    def out_dtype(self, dx: str, dy: str) -> str:
        self.check_dtype("x", dx)
        self.check_dtype("y", dy)
        return promote(dx, dy)

    def infer(self, attrs, specs):
        x, y = specs["x"], specs["y"]
        shape = broadcast_static(self, [x.shape, y.shape], ["x", "y"])
        return [spec(shape, self.out_dtype(x.dtype, y.dtype))]

    def _prepare(self, inputs):
        x, y = inputs["x"], inputs["y"]
        dt = self.out_dtype(str(x.dtype), str(y.dtype))
        return x, y, np.dtype(dt), broadcast_run(self, [x, y], ["x", "y"])

    def reference(self, attrs, inputs):
        x, y, dt, _ = self._prepare(inputs)
        with np.errstate(**_QUIET):
            return [np.asarray(self.ref(x.astype(dt), y.astype(dt)), dtype=dt)]

    def forward(self, attrs, inputs):
        x, y, dt, shape = self._prepare(inputs)
        out = np.empty(shape, dtype=dt)
        with np.errstate(**_QUIET):
            self.ufunc(x, y, out=out, dtype=dt)
        return [out]

    # ---- gradients -----------------------------------------------------------------
    def _grad_setup(self, inputs, grads):
        x, y = inputs["x"], inputs["y"]
        dt = np.dtype(float_of(str(x.dtype), str(y.dtype)))
        shape = broadcast_run(self, [x, y], ["x", "y"])
        g = zeros_or(grads[0], shape, dt)
        return x.astype(dt, copy=False), y.astype(dt, copy=False), g

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        wrt = [p for p in wrt if p in ("x", "y")]
        if not wrt:
            return {}
        x, y, g = self._grad_setup(inputs, grads)
        with np.errstate(**_QUIET):
            parts = self.grad(x, y, g, wrt, outputs[0])
        return {p: sum_to_shape(parts[p], inputs[p].shape).astype(inputs[p].dtype, copy=False)
                for p in wrt}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        wrt = [p for p in wrt if p in ("x", "y")]
        if not wrt:
            return {}
        x, y, g = self._grad_setup(inputs, grads)
        xb, yb = np.broadcast_arrays(x, y)
        with np.errstate(**_QUIET):
            gx, gy = self.ref_grad(xb, yb, g)
        full = {"x": gx, "y": gy}
        return {p: reference_unbroadcast(np.asarray(full[p] * np.ones_like(g)),
                                         inputs[p].shape).astype(inputs[p].dtype)
                for p in wrt}


@register
class AddOp(Binary):
    name, ufunc = "prim.add", np.add

    @staticmethod
    def ref(x, y):
        return x + y

    @staticmethod
    def ref_grad(x, y, g):
        return g, g

    @staticmethod
    def grad(x, y, g, wrt, value):
        return {"x": g, "y": g}


@register
class SubtractOp(Binary):
    name, ufunc = "prim.subtract", np.subtract

    def out_dtype(self, dx, dy):
        if kind(dx) == "b" and kind(dy) == "b":
            raise self.error("inputs x and y are both bool, which prim.subtract does not take")
        return super().out_dtype(dx, dy)

    @staticmethod
    def ref(x, y):
        return x - y

    @staticmethod
    def ref_grad(x, y, g):
        return g, -g

    @staticmethod
    def grad(x, y, g, wrt, value):
        return {"x": g, "y": np.negative(g) if "y" in wrt else None}


@register
class MultiplyOp(Binary):
    name, ufunc = "prim.multiply", np.multiply

    @staticmethod
    def ref(x, y):
        return x * y

    @staticmethod
    def ref_grad(x, y, g):
        return g * y, g * x

    @staticmethod
    def grad(x, y, g, wrt, value):
        return {"x": np.multiply(g, y) if "x" in wrt else None,
                "y": np.multiply(g, x) if "y" in wrt else None}


@register
class DivideOp(Binary):
    name, ufunc = "prim.divide", np.divide

    def out_dtype(self, dx, dy):
        dt = super().out_dtype(dx, dy)
        return dt if kind(dt) == "f" else "float32"

    @staticmethod
    def ref(x, y):
        return x / y

    @staticmethod
    def ref_grad(x, y, g):
        return g / y, -g * x / (y * y)

    @staticmethod
    def grad(x, y, g, wrt, value):
        gx = np.divide(g, y)
        gy = None
        if "y" in wrt:
            gy = np.multiply(gx, x)
            np.divide(gy, y, out=gy)
            np.negative(gy, out=gy)
        return {"x": gx, "y": gy}


@register
class PowerOp(Binary):
    name, ufunc = "prim.power", np.power

    def out_dtype(self, dx, dy):
        if kind(dx) == "b" and kind(dy) == "b":
            raise self.error("inputs x and y are both bool, which prim.power does not take")
        return super().out_dtype(dx, dy)

    def _check(self, inputs):
        x, y, dt, _ = self._prepare(inputs)
        if dt.kind in "iu" and np.any(y < 0):
            raise self.error(f"integer x to the negative integer power y={int(y.min())} "
                             f"(cast x to float first)")

    def forward(self, attrs, inputs):
        self._check(inputs)
        return super().forward(attrs, inputs)

    def reference(self, attrs, inputs):
        self._check(inputs)
        return super().reference(attrs, inputs)

    @staticmethod
    def ref(x, y):
        return x ** y

    @staticmethod
    def ref_grad(x, y, g):
        gx = np.where(y == 0, 0.0, g * y * x ** (y - 1))
        gy = np.where((x == 0) & (y >= 0), 0.0, g * x ** y * np.log(x))
        return gx, gy

    @staticmethod
    def grad(x, y, g, wrt, value):
        out = {}
        if "x" in wrt:
            gx = np.empty(g.shape, g.dtype)
            np.subtract(y, 1, out=gx)
            np.power(x, gx, out=gx)
            gx *= y
            gx *= g
            out["x"] = np.where(y == 0, 0, gx)
        if "y" in wrt:
            gy = np.empty(g.shape, g.dtype)
            np.log(x, out=gy)
            gy *= value
            gy *= g
            out["y"] = np.where((x == 0) & (y >= 0), 0, gy)
        return out


class MaxMin(Binary):
    code = K.MAXIMUM

    def grad(self, x, y, g, wrt, value):
        layout = collapse(x.shape, y.shape, g.shape)
        if layout is None:  # three or more broadcast runs: materialise the operands
            x, y = (np.ascontiguousarray(a) for a in np.broadcast_arrays(x, y))
            layout = ((1, g.size),) * 3
        (m, n), xs, ys = layout
        g2 = np.ascontiguousarray(g).reshape(m, n)
        which = 0 if len(wrt) == 2 else (1 if wrt[0] == "x" else 2)
        gx = np.empty((m, n), g.dtype) if which != 2 else None
        gy = np.empty((m, n), g.dtype) if which != 1 else None
        gx = gy if gx is None else gx
        gy = gx if gy is None else gy
        if g.size:
            K.maxmin_grad(g2, np.ascontiguousarray(x).reshape(xs),
                          np.ascontiguousarray(y).reshape(ys), gx, gy, self.code, which)
        return {"x": gx.reshape(g.shape), "y": gy.reshape(g.shape)}


@register
class MaximumOp(MaxMin):
    name, ufunc, code = "prim.maximum", np.maximum, K.MAXIMUM

    @staticmethod
    def ref(x, y):
        return np.maximum(x, y)

    @staticmethod
    def ref_grad(x, y, g):  # torch's rule: with a NaN neither side is smaller, both get g
        return (np.where(x == y, g / 2, np.where(x < y, 0, g)),
                np.where(x == y, g / 2, np.where(x > y, 0, g)))


@register
class MinimumOp(MaxMin):
    name, ufunc, code = "prim.minimum", np.minimum, K.MINIMUM

    @staticmethod
    def ref(x, y):
        return np.minimum(x, y)

    @staticmethod
    def ref_grad(x, y, g):
        return (np.where(x == y, g / 2, np.where(x > y, 0, g)),
                np.where(x == y, g / 2, np.where(x < y, 0, g)))
