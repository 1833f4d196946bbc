"""Shape primitives on port ``x``: reshape, transpose, expand_dims, squeeze, broadcast_to,
tile, repeat (``keras.ops`` semantics; every shape is the full shape, batch included).

Static shapes may hold ``None`` (unknown until run time): ``reshape`` gives ``None`` for
its ``-1`` entry then (``None`` in ``attrs["shape"]`` means the same as ``-1``);
``squeeze`` checks a ``None`` axis is 1 at run time, and refuses ``axis=None`` on an
input with unknown dimensions (which axes go would depend on the data). Gradients:
reshape/transpose/expand_dims/squeeze move ``g`` back; broadcast_to, tile and repeat sum
it over the copies. ``reshape``/``transpose`` return views of ``x`` (no copy).
"""
from __future__ import annotations

import numpy as np

from graphmask.ops.base import register
from graphmask.ops.primitives.common import (
    Prim,
    broadcast_static,
    int_list,
    norm_axes,
    norm_axis,
    spec,
    sum_to_shape,
    zeros_or,
)


class ShapeOp(Prim):
    inputs = ("x",)
    diff_ports = ("x",)

    def infer(self, attrs, specs):
        x = specs["x"]
        self.check_dtype("x", x.dtype)
        return [spec(self.shape_rule(attrs, tuple(x.shape)), x.dtype)]

    def check(self, attrs, x):
        """Run the shape rule on a concrete input (errors before any work)."""
        return self.shape_rule(attrs, tuple(x.shape))

    def reference(self, attrs, inputs):
        x = inputs["x"]
        self.check(attrs, x)
        return [np.array(self.ref(attrs, x))]

    def forward(self, attrs, inputs):
        x = inputs["x"]
        self.check(attrs, x)
        return [self.fast(attrs, x)]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        g = zeros_or(grads[0], outputs[0].shape, x.dtype)
        return {"x": self.back(attrs, x, g)}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        y = self.reference(attrs, inputs)[0]
        g = zeros_or(grads[0], y.shape, x.dtype)
        return {"x": np.asarray(self.ref_back(attrs, x, g), dtype=x.dtype)}

    def back(self, attrs, x, g):
        return g.reshape(x.shape)

    def ref_back(self, attrs, x, g):
        return np.reshape(g, x.shape)


@register
class ReshapeOp(ShapeOp):
    name = "prim.reshape"

    def shape_rule(self, attrs, shape):
        target = int_list(self, attrs.get("shape"), "attrs['shape']", allow_none=True)
        free = [i for i, d in enumerate(target) if d is None or d == -1]
        if len(free) > 1 or any(d is not None and d < -1 for d in target):
            raise self.error(f"attrs['shape']={attrs['shape']!r} may hold one -1 (or None) "
                             f"and otherwise sizes >= 0")
        fixed = int(np.prod([d for i, d in enumerate(target) if i not in free]))
        if None in shape:
            known = int(np.prod([d for d in shape if d is not None]))
            if not free and known and fixed % known:
                raise self.error(f"cannot reshape {shape} to {tuple(target)}")
            return tuple(None if i in free else d for i, d in enumerate(target))
        total = int(np.prod(shape))
        if free:
            if fixed == 0 or total % fixed:
                raise self.error(f"cannot reshape {shape} to {tuple(target)}")
            return tuple(total // fixed if i in free else d for i, d in enumerate(target))
        if fixed != total:
            raise self.error(f"cannot reshape {shape} (size {total}) to {tuple(target)} "
                             f"(size {fixed})")
        return tuple(target)

    def ref(self, attrs, x):
        return np.reshape(x, self.check(attrs, x))

    def fast(self, attrs, x):
        return x.reshape(self.check(attrs, x))


@register
class TransposeOp(ShapeOp):
    name = "prim.transpose"

    def _perm(self, attrs, rank):
        axes = attrs.get("axes")
        if axes is None:
            return list(range(rank))[::-1]
        perm = [norm_axis(self, a, rank, "axes entry") for a in int_list(self, axes, "axes")]
        if sorted(perm) != list(range(rank)):
            raise self.error(f"axes={axes!r} is not a permutation of the {rank} axes")
        return perm

    def shape_rule(self, attrs, shape):
        return tuple(shape[p] for p in self._perm(attrs, len(shape)))

    def ref(self, attrs, x):
        return np.transpose(x, self._perm(attrs, x.ndim))

    def fast(self, attrs, x):
        return x.transpose(self._perm(attrs, x.ndim))

    def back(self, attrs, x, g):
        return g.transpose(np.argsort(self._perm(attrs, x.ndim)))

    def ref_back(self, attrs, x, g):
        perm = self._perm(attrs, x.ndim)
        inverse = [perm.index(i) for i in range(x.ndim)]
        return np.transpose(g, inverse)


@register
class ExpandDimsOp(ShapeOp):
    name = "prim.expand_dims"

    def shape_rule(self, attrs, shape):
        axis = attrs.get("axis")
        if axis is None:
            raise self.error("attrs['axis'] (an int or a list of ints) is required")
        n = len(axis) if isinstance(axis, (list, tuple)) else 1
        axes = norm_axes(self, axis, len(shape) + n)
        rest = iter(shape)
        return tuple(1 if i in axes else next(rest) for i in range(len(shape) + n))

    def ref(self, attrs, x):
        axis = attrs["axis"]
        return np.expand_dims(x, tuple(axis) if isinstance(axis, list) else axis)

    def fast(self, attrs, x):
        return x.reshape(self.check(attrs, x))


@register
class SqueezeOp(ShapeOp):
    name = "prim.squeeze"

    def _axes(self, attrs, shape):
        axis = attrs.get("axis")
        if axis is None:
            if None in shape:
                raise self.error(f"axis=None on the input shape {shape} with unknown (None) "
                                 f"dimensions: name the axes to squeeze")
            return tuple(i for i, d in enumerate(shape) if d == 1)
        axes = norm_axes(self, axis, len(shape))
        for a in axes:
            if shape[a] not in (1, None):
                raise self.error(f"cannot squeeze axis {a} of size {shape[a]} "
                                 f"(input shape {shape})")
        return axes

    def shape_rule(self, attrs, shape):
        axes = self._axes(attrs, shape)
        return tuple(d for i, d in enumerate(shape) if i not in axes)

    def ref(self, attrs, x):
        return np.squeeze(x, axis=self._axes(attrs, x.shape))

    def fast(self, attrs, x):
        return x.reshape(self.check(attrs, x))


@register
class BroadcastToOp(ShapeOp):
    name = "prim.broadcast_to"

    def shape_rule(self, attrs, shape):
        target = tuple(int_list(self, attrs.get("shape"), "attrs['shape']"))
        if any(d < 0 for d in target) or len(target) < len(shape):
            raise self.error(f"cannot broadcast {shape} to attrs['shape']={list(target)}")
        out = broadcast_static(self, [shape, target], ["x", "attrs['shape']"])
        if out != target:
            raise self.error(f"cannot broadcast {shape} to attrs['shape']={list(target)}")
        return target

    def ref(self, attrs, x):
        return np.broadcast_to(x, self.check(attrs, x))

    def fast(self, attrs, x):
        return np.array(np.broadcast_to(x, self.check(attrs, x)), order="C")  # writeable

    def back(self, attrs, x, g):
        return np.asarray(sum_to_shape(g, x.shape), order="C")

    def ref_back(self, attrs, x, g):
        while g.ndim > x.ndim:
            g = g.sum(axis=0)
        return g.sum(axis=tuple(i for i, d in enumerate(x.shape) if d == 1), keepdims=True)


def _counts(op, value, arg):
    items = int_list(op, value, arg)
    if any(r < 0 for r in items):
        raise op.error(f"{arg}={value!r} must not be negative")
    return items


@register
class TileOp(ShapeOp):
    name = "prim.tile"

    def _layout(self, attrs, shape):
        reps = _counts(self, attrs.get("repeats"), "attrs['repeats']")
        d = max(len(shape), len(reps))
        return (1,) * (d - len(shape)) + tuple(shape), [1] * (d - len(reps)) + reps

    def shape_rule(self, attrs, shape):
        padded, reps = self._layout(attrs, shape)
        return tuple(None if s is None else s * r for s, r in zip(padded, reps))

    def ref(self, attrs, x):
        return np.tile(x, attrs["repeats"])

    fast = ref

    def back(self, attrs, x, g):
        padded, reps = self._layout(attrs, x.shape)
        inter = [v for pair in zip(reps, padded) for v in pair]
        return g.reshape(inter).sum(axis=tuple(range(0, 2 * len(reps), 2))).reshape(x.shape)

    def ref_back(self, attrs, x, g):
        padded, reps = self._layout(attrs, x.shape)
        acc = np.zeros(padded, g.dtype)
        for idx in np.ndindex(*reps):
            acc += g[tuple(slice(i * s, (i + 1) * s) for i, s in zip(idx, padded))]
        return acc.reshape(x.shape)


@register
class RepeatOp(ShapeOp):
    name = "prim.repeat"

    def _args(self, attrs, rank):
        r = attrs.get("repeats")
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            raise self.error(f"attrs['repeats'] must be an int >= 0, got {r!r}")
        axis = attrs.get("axis")
        return r, (None if axis is None else norm_axis(self, axis, rank))

    def shape_rule(self, attrs, shape):
        r, axis = self._args(attrs, len(shape))
        if axis is None:
            return (None if None in shape else int(np.prod(shape)) * r,)
        d = shape[axis]
        return shape[:axis] + (None if d is None else d * r,) + shape[axis + 1:]

    def ref(self, attrs, x):
        return np.repeat(x, attrs["repeats"], axis=attrs.get("axis"))

    fast = ref

    def back(self, attrs, x, g):
        r, axis = self._args(attrs, x.ndim)
        if axis is None:
            return g.reshape(x.size, r).sum(axis=1).reshape(x.shape)
        split = x.shape[:axis] + (x.shape[axis], r) + x.shape[axis + 1:]
        return g.reshape(split).sum(axis=axis + 1)

    def ref_back(self, attrs, x, g):
        r, axis = self._args(attrs, x.ndim)
        flat = x.reshape(-1) if axis is None else x
        ax = 0 if axis is None else axis
        parts = [np.take(g, np.arange(i, g.shape[ax], r), axis=ax) for i in range(r)]
        total = sum(parts) if parts else np.zeros(flat.shape, g.dtype)
        return np.reshape(total, x.shape)
