"""Joining and splitting: concatenate, stack (ports ``x0`` ... ``x{n-1}``) and split.

``concatenate``/``stack`` take ``attrs["n"]`` inputs (``axis`` default 0, as
``keras.ops``) and promote dtypes as arithmetic does; their VJPs cut ``g`` back into the
inputs' pieces. ``split`` has one output per piece: ``indices_or_sections`` is a count of
equal pieces or the increasing split points; its VJP joins the pieces' gradients (zeros
for pieces no gradient reaches).
"""
from __future__ import annotations

import numpy as np

from graphmask.ops.base import register
from graphmask.ops.primitives.common import Prim, norm_axis, promote, spec, zeros_or
from graphmask.ops.structural import VARIADIC_PORTS, variadic_ports


def specs_of(inputs):
    """Specs of concrete arrays (to run ``infer`` as the run-time check)."""
    return {p: spec(a.shape, a.dtype) for p, a in inputs.items()}


def _merge(op, dims, what):
    known = {d for d in dims if d is not None}
    if len(known) > 1:
        raise op.error(what)
    return known.pop() if known else None


class Join(Prim):
    diff_ports = VARIADIC_PORTS

    def ports(self, attrs):
        return variadic_ports(self.name, attrs)

    def _common(self, attrs, specs):
        ports = self.ports(attrs)
        shapes = [tuple(specs[p].shape) for p in ports]
        dt = promote(*(self.check_dtype(p, specs[p].dtype) for p in ports))
        if len({len(s) for s in shapes}) > 1:
            raise self.error(f"inputs must have the same rank, got shapes {shapes}")
        return ports, shapes, dt

    def reference_vjp(self, attrs, inputs, grads, wrt):
        y = self.reference(attrs, inputs)[0]
        g = zeros_or(grads[0], y.shape, y.dtype)
        return {p: np.array(self.ref_part(attrs, inputs, g, p), dtype=inputs[p].dtype)
                for p in wrt}


@register
class ConcatenateOp(Join):
    name = "prim.concatenate"

    def infer(self, attrs, specs):
        ports, shapes, dt = self._common(attrs, specs)
        if not shapes[0]:
            raise self.error("inputs must have rank >= 1, got scalars")
        ax = norm_axis(self, attrs.get("axis", 0), len(shapes[0]))
        out = []
        for k, dims in enumerate(zip(*shapes)):
            if k == ax:
                out.append(None if None in dims else sum(dims))
            else:
                out.append(_merge(self, dims, f"shapes must match except on axis {ax}, got "
                                              f"{shapes}"))
        return [spec(out, dt)]

    def reference(self, attrs, inputs):
        out = self.infer(attrs, specs_of(inputs))[0]
        return [np.concatenate([inputs[p].astype(out.dtype) for p in self.ports(attrs)],
                               axis=attrs.get("axis", 0))]

    def forward(self, attrs, inputs):
        out = self.infer(attrs, specs_of(inputs))[0]
        arrays = [inputs[p] for p in self.ports(attrs)]
        return [np.concatenate(arrays, axis=attrs.get("axis", 0), dtype=out.dtype,
                               casting="unsafe")]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        ports = self.ports(attrs)
        g = zeros_or(grads[0], outputs[0].shape, outputs[0].dtype)
        ax = norm_axis(self, attrs.get("axis", 0), g.ndim)
        parts = np.split(g, np.cumsum([inputs[p].shape[ax] for p in ports])[:-1], axis=ax)
        return {p: parts[ports.index(p)].astype(inputs[p].dtype, copy=False) for p in wrt}

    def ref_part(self, attrs, inputs, g, port):
        ports = self.ports(attrs)
        ax = norm_axis(self, attrs.get("axis", 0), g.ndim)
        start = sum(inputs[p].shape[ax] for p in ports[:ports.index(port)])
        return np.take(g, np.arange(start, start + inputs[port].shape[ax]), axis=ax)


@register
class StackOp(Join):
    name = "prim.stack"

    def infer(self, attrs, specs):
        ports, shapes, dt = self._common(attrs, specs)
        ax = norm_axis(self, attrs.get("axis", 0), len(shapes[0]) + 1)
        dims = [_merge(self, d, f"inputs must have the same shape, got {shapes}")
                for d in zip(*shapes)]
        return [spec(dims[:ax] + [len(ports)] + dims[ax:], dt)]

    def reference(self, attrs, inputs):
        out = self.infer(attrs, specs_of(inputs))[0]
        return [np.stack([inputs[p].astype(out.dtype) for p in self.ports(attrs)],
                         axis=attrs.get("axis", 0))]

    def forward(self, attrs, inputs):
        out = self.infer(attrs, specs_of(inputs))[0]
        return [np.stack([inputs[p] for p in self.ports(attrs)], axis=attrs.get("axis", 0),
                         dtype=out.dtype, casting="unsafe")]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        ports = self.ports(attrs)
        g = zeros_or(grads[0], outputs[0].shape, outputs[0].dtype)
        ax = norm_axis(self, attrs.get("axis", 0), g.ndim)
        moved = np.moveaxis(g, ax, 0)
        return {p: moved[ports.index(p)].astype(inputs[p].dtype) for p in wrt}

    def ref_part(self, attrs, inputs, g, port):
        ax = norm_axis(self, attrs.get("axis", 0), g.ndim)
        return np.take(g, self.ports(attrs).index(port), axis=ax)


@register
class SplitOp(Prim):
    name = "prim.split"
    inputs = ("x",)
    diff_ports = ("x",)

    def _sizes(self, attrs, shape):
        if not shape:
            raise self.error("input x must have rank >= 1, got a scalar")
        ax = norm_axis(self, attrs.get("axis", 0), len(shape))
        d, ios = shape[ax], attrs.get("indices_or_sections")
        if isinstance(ios, int) and not isinstance(ios, bool):
            if ios < 1:
                raise self.error(f"indices_or_sections={ios} must be >= 1")
            if d is not None and d % ios:
                raise self.error(f"cannot split axis {ax} of size {d} into {ios} equal "
                                 f"sections")
            return ax, [None if d is None else d // ios] * ios
        ok = isinstance(ios, (list, tuple)) and all(
            isinstance(i, int) and not isinstance(i, bool) for i in ios)
        if not ok or any(i < 0 for i in ios) or list(ios) != sorted(ios):
            raise self.error(f"indices_or_sections={ios!r} must be an int or a list of "
                             f"increasing split points >= 0")
        if d is not None and ios and ios[-1] > d:
            raise self.error(f"split point {ios[-1]} is past the end of axis {ax} (size {d})")
        bounds = [0] + list(ios)
        sizes = [b - a for a, b in zip(bounds, bounds[1:])]
        return ax, sizes + [None if d is None else d - bounds[-1]]

    def infer(self, attrs, specs):
        x = specs["x"]
        self.check_dtype("x", x.dtype)
        ax, sizes = self._sizes(attrs, tuple(x.shape))
        return [spec(x.shape[:ax] + (s,) + x.shape[ax + 1:], x.dtype) for s in sizes]

    def reference(self, attrs, inputs):
        x = inputs["x"]
        ax, sizes = self._sizes(attrs, x.shape)
        starts = np.cumsum([0] + sizes)
        return [np.take(x, np.arange(a, a + s), axis=ax) for a, s in zip(starts, sizes)]

    def forward(self, attrs, inputs):
        x = inputs["x"]
        ax, sizes = self._sizes(attrs, x.shape)
        return np.split(x, np.cumsum(sizes)[:-1], axis=ax)

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        ax, _ = self._sizes(attrs, x.shape)
        parts = [zeros_or(g, o.shape, x.dtype) for g, o in zip(grads, outputs)]
        return {"x": np.concatenate(parts, axis=ax)}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        ax, sizes = self._sizes(attrs, x.shape)
        dx = np.zeros(x.shape, x.dtype)
        start = 0
        for g, s in zip(grads, sizes):
            if g is not None:
                index = [slice(None)] * x.ndim
                index[ax] = slice(start, start + s)
                dx[tuple(index)] = g
            start += s
        return {"x": dx}
