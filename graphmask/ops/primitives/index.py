"""Joining, splitting and indexing: concatenate, stack, split, take, getitem.

``concatenate``/``stack`` take ``attrs["n"]`` inputs on ports ``x0`` ... ``x{n-1}``
(``axis`` default 0, as ``keras.ops``) and promote dtypes as arithmetic does.
``split`` has one output per piece (``indices_or_sections``: a count of equal pieces or
the increasing split points). ``take`` (ports ``x``, ``indices``) gathers along ``axis``
(None: of the flattened ``x``); negative indices count from the end, anything else out
of range is an error at run time, never a read outside ``x``; repeated indices add up
their gradients (numba scatter-add). ``getitem`` is NumPy basic indexing with
``attrs["key"]`` a list of ``{"kind": "int", "value": i}``, ``{"kind": "slice",
"start": a, "stop": b, "step": c}``, ``{"kind": "newaxis"}`` or ``{"kind": "ellipsis"}``.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels.primitives import gather as K
from graphmask.ops.base import register
from graphmask.ops.primitives.common import (
    Prim,
    float_of,
    kind,
    norm_axis,
    promote,
    spec,
    zeros_or,
)
from graphmask.ops.structural import VARIADIC_PORTS, variadic_ports


def _specs(inputs):
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
        out = self.infer(attrs, _specs(inputs))[0]
        return [np.concatenate([inputs[p].astype(out.dtype) for p in self.ports(attrs)],
                               axis=attrs.get("axis", 0))]

    def forward(self, attrs, inputs):
        out = self.infer(attrs, _specs(inputs))[0]
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
        out = self.infer(attrs, _specs(inputs))[0]
        return [np.stack([inputs[p].astype(out.dtype) for p in self.ports(attrs)],
                         axis=attrs.get("axis", 0))]

    def forward(self, attrs, inputs):
        out = self.infer(attrs, _specs(inputs))[0]
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


@register
class TakeOp(Prim):
    name = "prim.take"
    inputs = ("x", "indices")
    diff_ports = ("x",)

    def _axis(self, attrs, rank):
        axis = attrs.get("axis")
        return None if axis is None else norm_axis(self, axis, rank)

    def infer(self, attrs, specs):
        x, ind = specs["x"], specs["indices"]
        self.check_dtype("x", x.dtype)
        if kind(self.check_dtype("indices", ind.dtype)) not in "iu":
            raise self.error(f"input indices must be ints, got {ind.dtype}")
        ax = self._axis(attrs, x.rank)
        if ax is None:
            return [spec(ind.shape, x.dtype)]
        return [spec(x.shape[:ax] + ind.shape + x.shape[ax + 1:], x.dtype)]

    def _indices(self, attrs, inputs):
        """(axis, flat int64 indices in [0, n), the data as (outer, n, inner) shape)."""
        x, ind = inputs["x"], inputs["indices"]
        self.infer(attrs, _specs(inputs))
        ax = self._axis(attrs, x.ndim)
        n = x.size if ax is None else x.shape[ax]
        idx = np.asarray(ind, dtype=np.int64).reshape(-1)
        bad = idx[(idx < -n) | (idx >= n)]
        if bad.size:
            raise self.error(f"index {int(bad[0])} is out of range for axis "
                             f"{'None' if ax is None else ax} of size {n}")
        idx = np.where(idx < 0, idx + n, idx)
        if ax is None:
            return ax, idx, (1, n, 1)
        inner = int(np.prod(x.shape[ax + 1:], dtype=np.int64))
        return ax, idx, (int(np.prod(x.shape[:ax], dtype=np.int64)), n, inner)

    def _out_shape(self, attrs, inputs):
        x, ind = inputs["x"], inputs["indices"]
        ax = self._axis(attrs, x.ndim)
        return ind.shape if ax is None else x.shape[:ax] + ind.shape + x.shape[ax + 1:]

    def reference(self, attrs, inputs):
        ax, idx, _ = self._indices(attrs, inputs)
        x = inputs["x"]
        y = np.take(x.reshape(-1) if ax is None else x, idx, axis=0 if ax is None else ax)
        return [y.reshape(self._out_shape(attrs, inputs))]

    forward = reference

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        _, idx, (outer, n, inner) = self._indices(attrs, inputs)
        dt = np.dtype(float_of(str(x.dtype)))
        dx = np.zeros((outer, n, inner), dt)
        if grads[0] is not None and idx.size:
            g = np.asarray(grads[0], dt, order="C").reshape(outer, idx.size, inner)
            K.scatter_add(g, idx, dx)
        return {"x": dx.reshape(x.shape).astype(x.dtype, copy=False)}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        ax, idx, _ = self._indices(attrs, inputs)
        dx = np.zeros(x.shape, x.dtype)
        if grads[0] is None:
            return {"x": dx}
        ax0 = 0 if ax is None else ax
        target = dx.reshape(-1) if ax is None else dx
        g = np.asarray(grads[0]).reshape(target.shape[:ax0] + (idx.size,)
                                         + target.shape[ax0 + 1:])
        np.add.at(np.moveaxis(target, ax0, 0), idx, np.moveaxis(g, ax0, 0))
        return {"x": dx}


_KINDS = {"int": ("value",), "slice": ("start", "stop", "step"), "newaxis": (),
          "ellipsis": ()}


def _valid_item(item) -> bool:
    if not isinstance(item, dict) or item.get("kind") not in _KINDS:
        return False
    for field in _KINDS[item["kind"]]:
        v = item.get(field)
        if v is None and item["kind"] == "slice":
            continue
        if isinstance(v, bool) or not isinstance(v, int):
            return False
    return True


@register
class GetitemOp(Prim):
    name = "prim.getitem"
    inputs = ("x",)
    diff_ports = ("x",)

    def _key(self, attrs, rank):
        """The key as a NumPy index tuple, with the axis each int/slice reads."""
        key = attrs.get("key")
        if not isinstance(key, (list, tuple)):
            raise self.error(f"attrs['key'] must be a list of items, got {key!r}")
        for item in key:
            if not _valid_item(item):
                raise self.error(f"bad key item {item!r}: expected {{'kind': 'int', "
                                 f"'value': i}}, {{'kind': 'slice', 'start': a, 'stop': b, "
                                 f"'step': c}}, {{'kind': 'newaxis'}} or {{'kind': 'ellipsis'}}")
            if item["kind"] == "slice" and item.get("step") == 0:
                raise self.error(f"slice step must not be 0 in key item {item!r}")
        kinds = [item["kind"] for item in key]
        used = sum(k in ("int", "slice") for k in kinds)
        if kinds.count("ellipsis") > 1 or used > rank:
            raise self.error(f"key {key!r} indexes {used} axes (at most one ellipsis) but "
                             f"x has rank {rank}")
        index, axis = [], 0
        for item in key:
            k = item["kind"]
            if k == "int":
                index.append((int(item["value"]), axis))
                axis += 1
            elif k == "slice":
                index.append((slice(item.get("start"), item.get("stop"), item.get("step")),
                              axis))
                axis += 1
            elif k == "newaxis":
                index.append((None, None))
            else:
                index.append((Ellipsis, None))
                axis += rank - used
        return index

    def _out_shape(self, index, shape):
        out, axis = [], 0
        for entry, ax in index:
            if entry is Ellipsis:
                n = len(shape) - sum(a is not None for _, a in index)
                out += shape[axis:axis + n]
                axis += n
            elif entry is None:
                out.append(1)
            else:
                d = shape[ax]
                axis = ax + 1
                if isinstance(entry, slice):
                    out.append(None if d is None else len(range(*entry.indices(d))))
                elif d is not None and not -d <= entry < d:
                    raise self.error(f"index {entry} is out of range for axis {ax} of size {d}")
        return tuple(out) + tuple(shape[axis:])

    def infer(self, attrs, specs):
        x = specs["x"]
        self.check_dtype("x", x.dtype)
        return [spec(self._out_shape(self._key(attrs, x.rank), tuple(x.shape)), x.dtype)]

    def _index(self, attrs, x):
        index = self._key(attrs, x.ndim)
        self._out_shape(index, x.shape)  # range checks on the concrete shape
        return tuple(entry for entry, _ in index)

    def reference(self, attrs, inputs):
        x = inputs["x"]
        return [np.array(x[self._index(attrs, x)])]

    def forward(self, attrs, inputs):
        x = inputs["x"]
        return [np.asarray(x[self._index(attrs, x)])]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        dx = np.zeros(x.shape, x.dtype)
        if grads[0] is not None:
            dx[self._index(attrs, x)] = grads[0]
        return {"x": dx}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        dx = np.zeros(x.size, x.dtype)
        if grads[0] is not None:
            where = np.arange(x.size).reshape(x.shape)[self._index(attrs, x)]
            np.add.at(dx, np.ravel(where), np.ravel(grads[0]))
        return {"x": dx.reshape(x.shape)}
