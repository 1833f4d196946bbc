"""The ``vjp`` op: one backward node per differentiable forward node.

Its ports are the forward node's inputs (``in:<port>``), all its outputs including
residuals (``out:<i>``) and the gradients arriving at its visible outputs
(``grad:<k>``, absent where no gradient flows). It calls the forward op's ``vjp`` and
returns one gradient per port listed in ``attrs['wrt']``.
"""
from __future__ import annotations

from graphmask.ops.base import NO_MASK, Op, get_op, register


def _split(attrs, inputs):
    ins, outs, grads = {}, [None] * attrs["n_all"], [None] * attrs["n_visible"]
    for port, value in inputs.items():
        kind, _, key = port.partition(":")
        if kind == "in":
            ins[key] = value
        elif kind == "out":
            outs[int(key)] = value
        else:
            grads[int(key)] = value
    return ins, outs, grads


@register
class VJPOp(Op):
    name = "vjp"

    def ports(self, attrs):
        return (tuple(f"in:{p}" for p in attrs["in_ports"])
                + tuple(f"out:{i}" for i in range(attrs["n_all"]))
                + tuple(f"grad:{k}?" for k in range(attrs["n_visible"])))

    def infer(self, attrs, specs):
        return [specs[f"in:{p}"] for p in attrs["wrt"]]

    def mask_rule(self, attrs):
        return NO_MASK

    def forward(self, attrs, inputs):
        ins, outs, grads = _split(attrs, inputs)
        res = get_op(attrs["op"]).vjp(attrs["attrs"], ins, outs, grads, attrs["wrt"])
        return [res[p] for p in attrs["wrt"]]

    def reference(self, attrs, inputs):
        ins, _, grads = _split(attrs, inputs)
        res = get_op(attrs["op"]).reference_vjp(attrs["attrs"], ins, grads, attrs["wrt"])
        return [res[p] for p in attrs["wrt"]]
