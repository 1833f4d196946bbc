"""The ``dropout`` op: identity at inference, random zeroing while training.

In a train plan (``attrs['_training']`` set by the scheduler; ``attrs['training']``, when
present, pins it: Keras's explicit ``training=``) each element is kept with
probability ``1 - rate`` and scaled by ``1 / (1 - rate)``, as Keras's Dropout does; the
scale array is the residual the VJP multiplies the gradient by. Random draws come from
graphmask's seeded generator (``graphmask.utils.set_random_seed``), so a seeded training
run is repeatable. The mask passes through unchanged (Keras: Dropout supports masking).
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels.elementwise import multiply_into
from graphmask.ops.base import PASS, Op, OpError, Spec, is_float, register
from graphmask.utils import rng


def _scale(attrs, x):
    rate = float(attrs["rate"])
    keep = rng().random(x.shape) >= rate
    return (keep / (1.0 - rate)).astype(x.dtype)


def _mul(a, b):
    out = np.empty_like(a)
    multiply_into(out.reshape(-1), np.ascontiguousarray(a).reshape(-1),
                  np.ascontiguousarray(b).reshape(-1))
    return out


@register
class DropoutOp(Op):
    name = "dropout"
    inputs = ("x",)
    diff_ports = ("x",)

    def infer(self, attrs, specs):
        x = specs["x"]
        rate = attrs["rate"]
        if not is_float(x.dtype):
            raise OpError(f"Dropout input must be float, got {x.dtype}")
        if not 0.0 <= rate < 1.0:
            raise OpError(f"Dropout rate must be in [0, 1), got {rate!r}")
        return [Spec(x.shape, x.dtype)]

    def mask_rule(self, attrs):
        return PASS

    def n_residuals(self, attrs):
        return 1

    def reference(self, attrs, inputs):
        return [inputs["x"]]

    def forward(self, attrs, inputs):
        x = inputs["x"]
        active = attrs["training"] if "training" in attrs else attrs.get("_training")
        if not active or attrs["rate"] == 0.0:
            return [x, np.ones((1,) * x.ndim, x.dtype)]
        scale = _scale(attrs, x)
        return [_mul(x, scale), scale]

    def reference_vjp(self, attrs, inputs, grads, wrt):
        g = grads[0]
        return {"x": np.zeros_like(inputs["x"]) if g is None else g}

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        g, scale = grads[0], outputs[1]
        if g is None:
            return {"x": np.zeros_like(inputs["x"])}
        if scale.shape != g.shape:  # inference-mode forward: identity
            return {"x": g}
        return {"x": _mul(g, scale)}
