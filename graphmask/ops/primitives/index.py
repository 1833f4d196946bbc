"""Indexing: take and getitem (port ``x``).

``take`` (ports ``x``, ``indices``) gathers along ``axis`` (None: of the flattened
``x``); negative indices count from the end, anything else out of range is an error at
run time, never a read outside ``x``; repeated indices add up their gradients (numba
scatter-add, ``graphmask/kernels/primitives/gather.py``). ``getitem`` is NumPy basic
indexing with ``attrs["key"]`` a list of ``{"kind": "int", "value": i}``,
``{"kind": "slice", "start": a, "stop": b, "step": c}``, ``{"kind": "newaxis"}`` or
``{"kind": "ellipsis"}``; on an unknown (``None``) dimension an int is checked at run
time and a slice gives ``None``.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels.primitives import gather as K
from graphmask.ops.base import register
from graphmask.ops.primitives.common import Prim, float_of, kind, norm_axis, spec
from graphmask.ops.primitives.join import specs_of


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
        self.infer(attrs, specs_of(inputs))
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
