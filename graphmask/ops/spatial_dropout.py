"""``spatial_dropout_1d``: drops whole channels of a (B, L, C) input while training.

In a train plan (``attrs['_training']``) each (sample, channel) is kept with probability
``1 - rate`` for every step at once, and kept values are scaled by ``1 / (1 - rate)``
(Keras 3's ``SpatialDropout1D``: dropout with ``noise_shape (B, 1, C)``). The (B, 1, C)
scale is the residual the VJP multiplies the gradient by. Draws come from graphmask's
seeded generator (``set_random_seed``). The identity in predict and evaluate. The mask
passes through unchanged (Keras: a Dropout subclass, it supports masking).
"""
from __future__ import annotations

import numpy as np

from graphmask.ops.base import PASS, Op, OpError, Spec, is_float, register
from graphmask.utils import rng


@register
class SpatialDropout1DOp(Op):
    name = "spatial_dropout_1d"
    inputs = ("x",)
    diff_ports = ("x",)

    def infer(self, attrs, specs):
        x = specs["x"]
        rate = attrs["rate"]
        if x.rank != 3:
            raise OpError(f"SpatialDropout1D expects (batch, steps, channels), got shape "
                          f"{x.shape}")
        if not is_float(x.dtype):
            raise OpError(f"SpatialDropout1D input must be float, got {x.dtype}")
        if not 0.0 <= rate < 1.0:
            raise OpError(f"SpatialDropout1D rate must be in [0, 1), got {rate!r}")
        return [Spec(x.shape, x.dtype)]

    def mask_rule(self, attrs):
        return PASS

    def n_residuals(self, attrs):
        return 1

    def reference(self, attrs, inputs):
        return [inputs["x"]]

    def forward(self, attrs, inputs):
        x = inputs["x"]
        rate = float(attrs["rate"])
        if not attrs.get("_training") or rate == 0.0:
            return [x, np.ones((1, 1, 1), x.dtype)]
        keep = rng().random((x.shape[0], 1, x.shape[2])) >= rate
        scale = (keep / (1.0 - rate)).astype(x.dtype)
        return [x * scale, scale]

    def reference_vjp(self, attrs, inputs, grads, wrt):
        g = grads[0]
        return {"x": np.zeros_like(inputs["x"]) if g is None else g}

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        g = grads[0]
        if g is None:
            return {"x": np.zeros_like(inputs["x"])}
        return {"x": (g * outputs[1]).astype(inputs["x"].dtype, copy=False)}
