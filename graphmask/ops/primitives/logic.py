"""Comparisons, logic and ``where``.

``equal``, ``not_equal``, ``greater``, ``greater_equal``, ``less``, ``less_equal``,
``logical_and``, ``logical_or`` (ports ``x``, ``y``, broadcasting) and ``logical_not``
(port ``x``) give bool and have no gradient; the logical ops read any dtype as "is
nonzero". ``where`` (ports ``condition``, ``x``, ``y``) picks ``x`` where the condition
is nonzero, else ``y``; its dtype is that of ``x`` and ``y`` together (as arithmetic)
and the gradient goes to ``x`` where the condition holds and to ``y`` elsewhere.
"""
from __future__ import annotations

import numpy as np

from graphmask.ops.base import register
from graphmask.ops.primitives.common import (
    Prim,
    broadcast_run,
    broadcast_static,
    float_of,
    promote,
    reference_unbroadcast,
    spec,
    sum_to_shape,
    zeros_or,
)


class NoGrad(Prim):
    """A primitive with a bool output: no gradient (zeros if ever asked)."""

    diff_ports = ()

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        return {p: np.zeros(inputs[p].shape, inputs[p].dtype) for p in wrt}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        return {p: np.zeros_like(inputs[p]) for p in wrt}


class Compare(NoGrad):
    inputs = ("x", "y")

    def infer(self, attrs, specs):
        x, y = specs["x"], specs["y"]
        self.check_dtype("x", x.dtype)
        self.check_dtype("y", y.dtype)
        return [spec(broadcast_static(self, [x.shape, y.shape], ["x", "y"]), "bool")]

    def reference(self, attrs, inputs):
        x, y = inputs["x"], inputs["y"]
        broadcast_run(self, [x, y], ["x", "y"])
        return [np.asarray(self.ref(x, y), dtype=bool)]

    def forward(self, attrs, inputs):
        x, y = inputs["x"], inputs["y"]
        out = np.empty(broadcast_run(self, [x, y], ["x", "y"]), dtype=bool)
        self.ufunc(x, y, out=out)
        return [out]


def _compare(name, ufunc, ref):
    cls = type(f"{name.title().replace('_', '')}Op", (Compare,), {
        "name": f"prim.{name}", "ufunc": staticmethod(ufunc), "ref": staticmethod(ref)})
    return register(cls)


_compare("equal", np.equal, lambda x, y: x == y)
_compare("not_equal", np.not_equal, lambda x, y: x != y)
_compare("greater", np.greater, lambda x, y: x > y)
_compare("greater_equal", np.greater_equal, lambda x, y: x >= y)
_compare("less", np.less, lambda x, y: x < y)
_compare("less_equal", np.less_equal, lambda x, y: x <= y)
_compare("logical_and", np.logical_and, lambda x, y: (x != 0) & (y != 0))
_compare("logical_or", np.logical_or, lambda x, y: (x != 0) | (y != 0))


@register
class LogicalNotOp(NoGrad):
    name = "prim.logical_not"
    inputs = ("x",)

    def infer(self, attrs, specs):
        self.check_dtype("x", specs["x"].dtype)
        return [spec(specs["x"].shape, "bool")]

    def reference(self, attrs, inputs):
        return [np.asarray(inputs["x"] == 0)]

    def forward(self, attrs, inputs):
        return [np.logical_not(inputs["x"])]


@register
class WhereOp(Prim):
    """``x`` where ``condition`` is nonzero, else ``y`` (broadcasting all three)."""

    name = "prim.where"
    inputs = ("condition", "x", "y")
    diff_ports = ("x", "y")

    def _dtype(self, dx, dy, dc):
        for p, d in (("condition", dc), ("x", dx), ("y", dy)):
            self.check_dtype(p, d)
        return promote(dx, dy)

    def infer(self, attrs, specs):
        c, x, y = specs["condition"], specs["x"], specs["y"]
        shape = broadcast_static(self, [c.shape, x.shape, y.shape], self.inputs)
        return [spec(shape, self._dtype(x.dtype, y.dtype, c.dtype))]

    def _args(self, inputs):
        c, x, y = (inputs[p] for p in self.inputs)
        shape = broadcast_run(self, [c, x, y], self.inputs)
        return c, x, y, np.dtype(self._dtype(str(x.dtype), str(y.dtype), str(c.dtype))), shape

    def reference(self, attrs, inputs):
        c, x, y, dt, _ = self._args(inputs)
        return [np.where(c != 0, x.astype(dt), y.astype(dt))]

    def forward(self, attrs, inputs):
        c, x, y, dt, shape = self._args(inputs)
        out = np.empty(shape, dtype=dt)
        np.copyto(out, y, casting="unsafe")
        np.copyto(out, x, casting="unsafe", where=c.astype(bool, copy=False))
        return [out]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        c, x, y, _, shape = self._args(inputs)
        g = zeros_or(grads[0], shape, float_of(str(outputs[0].dtype)))
        cond = c.astype(bool, copy=False)
        out = {}
        for p in wrt:
            part = np.zeros(shape, g.dtype)
            np.copyto(part, g, where=cond if p == "x" else ~cond)
            out[p] = sum_to_shape(part, inputs[p].shape).astype(inputs[p].dtype, copy=False)
        return out

    def reference_vjp(self, attrs, inputs, grads, wrt):
        c, x, y, dt, shape = self._args(inputs)
        g = zeros_or(grads[0], shape, dt)
        cond = np.broadcast_to(c != 0, shape)
        full = {"x": np.where(cond, g, 0), "y": np.where(cond, 0, g)}
        return {p: reference_unbroadcast(full[p], inputs[p].shape).astype(inputs[p].dtype)
                for p in wrt}
