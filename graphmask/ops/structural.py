"""Structural ops: ``add_n`` (gradient accumulation), ``identity`` and
``training_switch`` (a custom layer whose ``call`` differs with ``training``).

``add_n`` sums ``attrs["n"]`` arrays of one shape on ports ``x0`` ... ``x{n-1}``; the
autodiff pass uses it where a value feeds several consumers. Its ``diff_ports`` lists
``x0`` ... ``x{MAX_INPUTS-1}``; only the connected ones (``ports(attrs)``) matter.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import elementwise as K
from graphmask.kernels.util import as_flat, grad_or_zeros, result_dtype
from graphmask.ops.base import (
    IGNORES_MASK,
    PASS,
    Op,
    OpError,
    Spec,
    float_dtype,
    is_float,
    register,
)

#: Largest number of inputs of a variadic op (add_n, add, concatenate).
MAX_INPUTS = 256
VARIADIC_PORTS = tuple(f"x{i}" for i in range(MAX_INPUTS))


def variadic_ports(op_name, attrs, least=1) -> tuple[str, ...]:
    """Ports ``x0`` ... ``x{n-1}`` for ``attrs["n"]`` (validated)."""
    n = attrs.get("n")
    if not isinstance(n, int) or not least <= n <= MAX_INPUTS:
        raise OpError(f"{op_name} needs attrs['n'] between {least} and {MAX_INPUTS} "
                      f"(number of inputs), got {n!r}")
    return VARIADIC_PORTS[:n]


def same_shape(op_name, specs, ports) -> tuple:
    """The common shape of ``ports`` (``None`` matches anything) or :class:`OpError`."""
    shapes = [tuple(specs[p].shape) for p in ports]
    for p in ports:
        if not is_float(specs[p].dtype):
            raise OpError(f"{op_name}: input {p} must be float, got {specs[p].dtype}")
    if any(len(s) != len(shapes[0]) for s in shapes) or any(
            a is not None and b is not None and a != b
            for s in shapes for a, b in zip(s, shapes[0])):
        raise OpError(f"{op_name}: inputs must have the same shape, got {shapes}")
    return tuple(next((d for d in dims if d is not None), None) for dims in zip(*shapes))


def sum_arrays(op_name, arrays) -> np.ndarray:
    """Elementwise sum with the numba kernel (result dtype: float64 if any is)."""
    if any(a.shape != arrays[0].shape for a in arrays):
        raise OpError(f"{op_name}: inputs must have the same shape, got "
                      f"{[a.shape for a in arrays]}")
    dt = result_dtype(*arrays)
    acc = np.array(arrays[0], dtype=dt, order="C", copy=True)
    flat = acc.reshape(-1)
    for a in arrays[1:]:
        K.add_into(flat, as_flat(a, dt))
    return acc


class SumOp(Op):
    """Shared by ``add_n`` and the ``add`` merge: ``y = x0 + x1 + ...``."""

    diff_ports = VARIADIC_PORTS

    def ports(self, attrs):
        return variadic_ports(self.name, attrs)

    def infer(self, attrs, specs):
        ports = self.ports(attrs)
        shape = same_shape(self.name, specs, ports)
        return [Spec(shape, float_dtype(*(specs[p].dtype for p in ports)))]

    def reference(self, attrs, inputs):
        arrays = [inputs[p] for p in self.ports(attrs)]
        dt = result_dtype(*arrays)
        return [np.sum([a.astype(dt) for a in arrays], axis=0)]

    def forward(self, attrs, inputs):
        return [sum_arrays(self.name, [inputs[p] for p in self.ports(attrs)])]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        out = {}
        for p in wrt:
            x = inputs[p]
            g = grad_or_zeros(grads[0], x.shape, x.dtype)
            out[p] = g if g.dtype == x.dtype else g.astype(x.dtype)
        return out

    def reference_vjp(self, attrs, inputs, grads, wrt):
        # y = x0 + x1 + ...: the Jacobian of y with respect to each term is the identity,
        # so every term gets the output cotangent (zeros where none flows), in its dtype.
        g = grads[0]
        return {p: np.zeros(inputs[p].shape, inputs[p].dtype) if g is None
                else np.array(g, dtype=inputs[p].dtype) for p in wrt}


@register
class AddNOp(SumOp):
    name = "add_n"

    def mask_rule(self, attrs):
        return PASS


@register
class IdentityOp(Op):
    name = "identity"
    inputs = ("x",)
    diff_ports = ("x",)

    def infer(self, attrs, specs):
        return [specs["x"]]

    def mask_rule(self, attrs):
        return PASS

    def reference(self, attrs, inputs):
        return [inputs["x"].copy()]

    def forward(self, attrs, inputs):
        return [inputs["x"]]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        return {"x": grad_or_zeros(grads[0], x.shape, x.dtype)}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x, g = inputs["x"], grads[0]  # y = x: dx = dy
        return {"x": np.zeros(x.shape, x.dtype) if g is None else np.array(g, dtype=x.dtype)}


@register
class TrainingSwitchOp(Op):
    """``on_true`` while training, else ``on_false``: the two traces of a custom layer
    whose ``call`` computes something else when ``training`` is true (``if training:``).

    The ``branches`` pass (``passes/branches.py``) resolves every switch before any other
    pass runs: the train graph keeps the ``on_true`` branch, the inference graph the
    ``on_false`` one, so the other branch is never computed. ``forward`` and ``vjp`` are
    the same choice for a graph run without that pass (both inputs computed).
    """

    name = "training_switch"
    inputs = ("on_true", "on_false")
    diff_ports = ("on_true", "on_false")

    def infer(self, attrs, specs):
        a, b = specs["on_true"], specs["on_false"]
        if a.dtype != b.dtype or len(a.shape) != len(b.shape) or any(
                x != y for x, y in zip(a.shape, b.shape)):
            raise OpError(f"call() returns a {a.dtype} tensor of shape {a.shape} with "
                          f"training=True but a {b.dtype} tensor of shape {b.shape} with "
                          f"training=False; both must match")
        return [a]

    def mask_rule(self, attrs):
        return IGNORES_MASK

    def reference(self, attrs, inputs):
        return [inputs["on_true" if attrs.get("_training") else "on_false"].copy()]

    def forward(self, attrs, inputs):
        return [inputs["on_true" if attrs.get("_training") else "on_false"]]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        taken = "on_true" if attrs.get("_training") else "on_false"
        out = {}
        for port in wrt:
            x = inputs[port]
            out[port] = grad_or_zeros(grads[0] if port == taken else None, x.shape, x.dtype)
        return out

    def reference_vjp(self, attrs, inputs, grads, wrt):
        taken = "on_true" if attrs.get("_training") else "on_false"
        g = grads[0]
        return {p: (np.array(g, dtype=inputs[p].dtype) if p == taken and g is not None
                    else np.zeros(inputs[p].shape, inputs[p].dtype)) for p in wrt}
