"""Source ops: values fed from outside the graph (inputs, targets, weights, variables).

The runtime supplies their values (feeds and the model's variables); they have no
kernel. Their shape rule reads the static shape stored in ``attrs``.
"""
from __future__ import annotations

from graphmask.ops.base import NO_MASK, Op, Spec, register


class _Source(Op):
    inputs = ()

    def infer(self, attrs, specs):
        return [Spec(tuple(attrs["shape"]), attrs["dtype"])]

    def mask_rule(self, attrs):
        return NO_MASK


@register
class InputOp(_Source):
    """A model input (``Input(shape, dtype)``); ``attrs['shape']`` includes the batch."""
    name = "input"


@register
class TargetOp(_Source):
    """The target ``y`` of one output, fed by fit/evaluate."""
    name = "target"


@register
class SampleWeightOp(_Source):
    """The optional per-sample (B,) or per-position (B, T) weight of one output."""
    name = "sample_weight"


@register
class VariableOp(_Source):
    """A weight of a layer, by name (``attrs['var']``), e.g. ``lstm/kernel``."""
    name = "variable"


@register
class ConstantOp(_Source):
    """A constant array stored in attrs (the autodiff seed: d(total)/d(loss_k) = w_k)."""
    name = "constant"

    def forward(self, attrs, inputs):
        import numpy as np
        return [np.full(tuple(attrs["shape"]), attrs["value"], dtype=attrs["dtype"])]

    reference = forward


@register
class LiteralOp(_Source):
    """A constant array written in user code (``x * 2.0``, ``ops.add(x, np.ones(3))``);
    ``attrs['value']`` holds it as nested lists, ``attrs['shape']``/``['dtype']`` its type."""
    name = "literal"

    def forward(self, attrs, inputs):
        import numpy as np
        return [np.array(attrs["value"], dtype=attrs["dtype"]).reshape(tuple(attrs["shape"]))]

    reference = forward
