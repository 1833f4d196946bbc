"""Ops that build masks. The mask pass inserts them; they are never differentiated.

* ``mask_not_equal(x, value)``: ``x != value`` (same shape; Embedding's ``ids != 0``).
* ``mask_any_not_equal(x, value)``: ``any(x != value, axis=-1)`` ((B, T, F) -> (B, T);
  Masking's rule).
* ``mask_or`` / ``mask_and``: elementwise OR / AND of ``attrs["n"]`` masks on ports
  ``m0`` ... ``m{n-1}`` (merging masked branches).

Comparisons happen in the dtype of ``x`` (the value is cast to it first, as in Keras),
so ``mask_value=0.1`` matches float32 data holding ``float32(0.1)``. An integer ``x``
compared with a non-whole value is never equal to it.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import masking as K
from graphmask.kernels.util import as_flat, as_rows
from graphmask.ops.base import NO_MASK, MaskRule, Op, OpError, Spec, register


def _operands(x: np.ndarray, value):
    """``(x', value')`` of a common kernel dtype, or ``None`` when nothing can be equal."""
    if x.dtype.kind in "biu":
        if not float(value).is_integer():
            return None
        return x.astype(np.int64, copy=False), np.int64(value)
    if x.dtype.kind != "f":
        raise OpError(f"cannot compare values of dtype {x.dtype} with {value!r}")
    dt = np.float64 if x.dtype == np.float64 else np.float32
    return x.astype(dt, copy=False), dt(value)


class _MaskOp(Op):
    diff_ports = ()

    def mask_rule(self, attrs):
        return NO_MASK

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        return {}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        return {}


@register
class MaskNotEqual(_MaskOp):
    name = "mask_not_equal"
    inputs = ("x",)

    def infer(self, attrs, specs):
        return [Spec(specs["x"].shape, "bool")]

    def reference(self, attrs, inputs):
        x = inputs["x"]
        ops = _operands(x, attrs["value"])
        return [np.ones(x.shape, bool) if ops is None else ops[0] != ops[1]]

    def forward(self, attrs, inputs):
        x = inputs["x"]
        ops = _operands(x, attrs["value"])
        if ops is None:
            return [np.ones(x.shape, bool)]
        return [K.not_equal(as_flat(ops[0]), ops[1]).reshape(x.shape)]


@register
class MaskAnyNotEqual(_MaskOp):
    name = "mask_any_not_equal"
    inputs = ("x",)

    def infer(self, attrs, specs):
        x = specs["x"]
        if x.rank < 2:
            raise OpError(f"mask_any_not_equal needs rank >= 2 (..., features), got {x.shape}")
        return [Spec(x.shape[:-1], "bool")]

    def reference(self, attrs, inputs):
        x = inputs["x"]
        ops = _operands(x, attrs["value"])
        if ops is None:
            return [np.ones(x.shape[:-1], bool) if x.shape[-1] else np.zeros(x.shape[:-1], bool)]
        return [np.any(ops[0] != ops[1], axis=-1)]

    def forward(self, attrs, inputs):
        x = inputs["x"]
        ops = _operands(x, attrs["value"])
        if ops is None:
            return self.reference(attrs, inputs)
        return [K.any_not_equal_rows(as_rows(ops[0]), ops[1]).reshape(x.shape[:-1])]


class _Combine(_MaskOp):
    use_or = True

    def ports(self, attrs):
        n = attrs.get("n")
        if not isinstance(n, int) or n < 1:
            raise OpError(f"{self.name} needs attrs['n'] >= 1 (number of masks), got {n!r}")
        return tuple(f"m{i}" for i in range(n))

    def infer(self, attrs, specs):
        shapes = [specs[p].shape for p in self.ports(attrs)]
        for p, s in zip(self.ports(attrs), shapes):
            if specs[p].dtype != "bool":
                raise OpError(f"{self.name}: {p} must be a bool mask, got {specs[p].dtype}")
            if len(s) != len(shapes[0]) or any(
                    a is not None and b is not None and a != b for a, b in zip(s, shapes[0])):
                raise OpError(f"{self.name}: mask shapes differ: {shapes}")
        shape = tuple(next((d for d in dims if d is not None), None) for dims in zip(*shapes))
        return [Spec(shape, "bool")]

    def reference(self, attrs, inputs):
        ms = [inputs[p].astype(bool) for p in self.ports(attrs)]
        return [np.logical_or.reduce(ms) if self.use_or else np.logical_and.reduce(ms)]

    def forward(self, attrs, inputs):
        ms = [inputs[p] for p in self.ports(attrs)]
        if any(m.shape != ms[0].shape for m in ms):
            raise OpError(f"{self.name}: mask shapes differ: {[m.shape for m in ms]}")
        acc = as_flat(ms[0], bool).copy()
        for m in ms[1:]:
            K.combine_into(acc, as_flat(m, bool), self.use_or)
        return [acc.reshape(ms[0].shape)]


@register
class MaskOr(_Combine):
    name = "mask_or"
    use_or = True


@register
class MaskAnd(_Combine):
    name = "mask_and"
    use_or = False


@register
class AttachMask(Op):
    """``x`` unchanged, now carrying the mask on port ``mask`` (never differentiated).

    The front end inserts it where a mask is set by hand: a custom layer's
    ``compute_mask`` result, an explicit ``layer(x, mask=m)``, ``Lambda(..., mask=...)``.
    The output is ``x`` itself (no copy); the mask pass reads the rule ``out="port"``.
    """

    name = "attach_mask"
    inputs = ("x", "mask")
    diff_ports = ("x",)

    def mask_rule(self, attrs):
        return MaskRule(takes=True, uses=False, out="port")

    def infer(self, attrs, specs):
        x, m = specs["x"], specs["mask"]
        if m.dtype != "bool":
            raise OpError(f"attach_mask: the mask must be bool, got {m.dtype}")
        if m.rank > x.rank or any(a is not None and b is not None and a != b
                                  for a, b in zip(m.shape, x.shape)):
            raise OpError(f"attach_mask: mask of shape {m.shape} does not fit a tensor of "
                          f"shape {x.shape}")
        return [x]

    def reference(self, attrs, inputs):
        return [inputs["x"]]

    def forward(self, attrs, inputs):
        x, m = inputs["x"], inputs["mask"]
        if m.shape != x.shape[:m.ndim]:
            raise OpError(f"attach_mask: mask of shape {m.shape} does not fit a tensor of "
                          f"shape {x.shape}")
        return [x]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        g = grads[0]
        return {"x": np.zeros_like(inputs["x"]) if g is None else g}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        g = grads[0]
        return {"x": np.zeros(inputs["x"].shape, inputs["x"].dtype) if g is None
                else np.array(g, copy=True)}
