"""Merge layers: ``add`` (elementwise sum) and ``concatenate`` (along ``attrs["axis"]``).

Both take ``attrs["n"]`` inputs on ports ``x0`` ... ``x{n-1}``. ``add`` needs equal
shapes (no broadcasting); ``concatenate`` needs equal shapes on every axis but ``axis``.

Masks. Keras 3.4+ combines the masks of merged inputs with OR and gives no mask when
any input is unmasked (Keras 2 used AND). A :class:`MaskRule` describes one incoming
mask, so these ops declare ``MaskRule(takes=True, uses=False, out="pass")``: the mask
pass combines several incoming masks itself (inserting ``mask_or``) and passes the
result on. ``concatenate`` only accepts masks when joining the last (feature) axis,
``axis=-1``; along any other axis the time axis might change length, so a masked
input is a compile-time error there (``takes=False``).
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import elementwise as K
from graphmask.kernels.util import grad_or_zeros, result_dtype
from graphmask.ops.base import NO_MASK, MaskRule, Op, OpError, Spec, float_dtype, is_float, register
from graphmask.ops.structural import VARIADIC_PORTS, SumOp, variadic_ports

MERGE_MASK = MaskRule(takes=True, uses=False, out="pass")
#: ops whose masked inputs merge (OR; none if an input is unmasked), for the mask pass
#: and the front end's ``keras_mask`` alike
MERGE_OPS = ("add", "concatenate")


@register
class AddOp(SumOp):
    name = "add"

    def mask_rule(self, attrs):
        return MERGE_MASK


def _axis(attrs, rank) -> int:
    axis = attrs.get("axis", -1)
    if not isinstance(axis, int) or not -rank <= axis < rank:
        raise OpError(f"concatenate axis {axis!r} is out of range for inputs of rank {rank}")
    return axis % rank


@register
class ConcatenateOp(Op):
    name = "concatenate"
    diff_ports = VARIADIC_PORTS

    def ports(self, attrs):
        return variadic_ports(self.name, attrs)

    def mask_rule(self, attrs):
        return MERGE_MASK if attrs.get("axis", -1) == -1 else NO_MASK

    def infer(self, attrs, specs):
        ports = self.ports(attrs)
        shapes = [tuple(specs[p].shape) for p in ports]
        for p in ports:
            if not is_float(specs[p].dtype):
                raise OpError(f"concatenate: input {p} must be float, got {specs[p].dtype}")
        if any(len(s) != len(shapes[0]) for s in shapes):
            raise OpError(f"concatenate: inputs must have the same rank, got {shapes}")
        ax = _axis(attrs, len(shapes[0]))
        out = []
        for k, dims in enumerate(zip(*shapes)):
            if k == ax:
                out.append(None if None in dims else sum(dims))
                continue
            known = {d for d in dims if d is not None}
            if len(known) > 1:
                raise OpError(f"concatenate on axis {attrs.get('axis', -1)}: shapes must "
                              f"match on every other axis, got {shapes}")
            out.append(known.pop() if known else None)
        return [Spec(tuple(out), float_dtype(*(specs[p].dtype for p in ports)))]

    def reference(self, attrs, inputs):
        arrays = [inputs[p] for p in self.ports(attrs)]
        dt = result_dtype(*arrays)
        return [np.concatenate([a.astype(dt) for a in arrays], axis=attrs.get("axis", -1))]

    def forward(self, attrs, inputs):
        arrays = [inputs[p] for p in self.ports(attrs)]
        ax = _axis(attrs, arrays[0].ndim)
        shape0 = arrays[0].shape
        if any(a.ndim != len(shape0) or a.shape[:ax] + a.shape[ax + 1:] !=
               shape0[:ax] + shape0[ax + 1:] for a in arrays):
            raise OpError(f"concatenate on axis {attrs.get('axis', -1)}: shapes must match on "
                          f"every other axis, got {[a.shape for a in arrays]}")
        dt = result_dtype(*arrays)
        outer = int(np.prod(shape0[:ax], dtype=np.int64))
        total = sum(a.shape[ax] for a in arrays)
        shape = shape0[:ax] + (total,) + shape0[ax + 1:]
        out = np.empty(shape, dtype=dt)
        if out.size == 0:
            return [out]
        # as (outer, width) rows, concatenation copies one column block per input
        out2 = out.reshape(outer, -1)
        start = 0
        for a in arrays:
            a2 = np.ascontiguousarray(a, dtype=dt).reshape(outer, -1)
            K.copy_columns(out2, a2, start)
            start += a2.shape[1]
        return [out]

    def _split(self, attrs, inputs, g):
        ports = self.ports(attrs)
        ax = _axis(attrs, g.ndim)
        bounds = np.cumsum([inputs[p].shape[ax] for p in ports])[:-1]
        return dict(zip(ports, np.split(g, bounds, axis=ax)))

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        shape = outputs[0].shape
        dt = outputs[0].dtype
        g = grad_or_zeros(grads[0], shape, dt)
        parts = self._split(attrs, inputs, g)
        return {p: np.ascontiguousarray(parts[p], dtype=inputs[p].dtype) for p in wrt}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        y = self.reference(attrs, inputs)[0]
        g = grad_or_zeros(grads[0], y.shape, y.dtype)
        parts = self._split(attrs, inputs, g)
        return {p: parts[p].astype(inputs[p].dtype) for p in wrt}
