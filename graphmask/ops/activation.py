"""Elementwise activations (and softmax over the last axis), as in ``keras.activations``.

Definitions (Keras 3 defaults):

* ``linear``: x; ``relu``: max(x, 0); ``tanh``; ``sigmoid``: 1 / (1 + exp(-x));
* ``softmax``: exp(x) / sum(exp(x)) over the last axis;
* ``elu``: x if x > 0 else exp(x) - 1 (alpha = 1);
* ``softplus``: log(1 + exp(x)); ``swish`` = ``silu``: x * sigmoid(x);
* ``gelu``: the exact form 0.5 x (1 + erf(x / sqrt(2))) (Keras 3's ``approximate=False``);
* ``hard_sigmoid``: relu6(x + 3) / 6 = clip(x / 6 + 1/2, 0, 1) (Keras 3; Keras 2 used
  0.2 x + 0.5);
* ``exponential``: exp(x).

The derivative of relu at 0 is taken as 0, that of hard_sigmoid at +-3 as 0.
"""
from __future__ import annotations

import difflib

import numpy as np
from scipy.special import erf

from graphmask.errors import ConfigError
from graphmask.kernels import activations as K
from graphmask.kernels.util import as_rows, grad_or_zeros
from graphmask.ops.base import PASS, Op, OpError, Spec, is_float, register

#: Every valid activation name.
ACTIVATIONS: tuple[str, ...] = tuple(K.CODES)


def check_activation(name) -> str:
    """Validate an activation name; return it (``None`` means ``"linear"``).

    Raises
    ------
    ConfigError
        For an unknown name, suggesting the closest valid one.
    """
    if name is None:
        return "linear"
    if isinstance(name, str) and name in K.CODES:
        return name
    close = difflib.get_close_matches(str(name).lower(), ACTIVATIONS, n=1, cutoff=0.0)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown activation {name!r}{hint} Valid names: {', '.join(ACTIVATIONS)}")


def activation_code(name) -> int:
    """The kernel code of an activation name (validated)."""
    return K.CODES[check_activation(name)]


def _sigmoid(x):
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def reference_activation(name, x: np.ndarray) -> np.ndarray:
    """NumPy definition of each activation (the semantics the kernels must match)."""
    name = check_activation(name)
    if name == "linear":
        return x.copy()
    if name == "relu":
        return np.maximum(x, 0)
    if name == "tanh":
        return np.tanh(x)
    if name == "sigmoid":
        return _sigmoid(x)
    if name == "softmax":
        e = np.exp(x - np.max(x, axis=-1, keepdims=True))
        return e / np.sum(e, axis=-1, keepdims=True)
    if name == "elu":
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))
    if name == "softplus":
        return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
    if name in ("swish", "silu"):
        return x * _sigmoid(x)
    if name == "gelu":
        return (0.5 * x * (1 + erf(x / np.sqrt(2)))).astype(x.dtype)
    if name == "hard_sigmoid":
        return np.clip(x / 6 + 0.5, 0, 1).astype(x.dtype)
    return np.exp(x)  # exponential


def reference_activation_grad(name, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """NumPy ``dy * f'(x)`` (softmax: the full Jacobian-vector product per row)."""
    name = check_activation(name)
    y = reference_activation(name, x)
    if name == "linear":
        d = np.ones_like(x)
    elif name == "relu":
        d = (x > 0).astype(x.dtype)
    elif name == "tanh":
        d = 1 - y * y
    elif name == "sigmoid":
        d = y * (1 - y)
    elif name == "softmax":
        return y * (dy - np.sum(dy * y, axis=-1, keepdims=True))
    elif name == "elu":
        d = np.where(x > 0, 1, np.exp(np.minimum(x, 0)))
    elif name == "softplus":
        d = _sigmoid(x)
    elif name in ("swish", "silu"):
        s = _sigmoid(x)
        d = s + x * s * (1 - s)
    elif name == "gelu":
        d = 0.5 * (1 + erf(x / np.sqrt(2))) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)
    elif name == "hard_sigmoid":
        d = ((x > -3) & (x < 3)) / 6.0
    else:
        d = y
    return (dy * d).astype(x.dtype)


@register
class ActivationOp(Op):
    """``y = f(x)`` for ``attrs["activation"]``; passes a mask through."""

    name = "activation"
    inputs = ("x",)
    diff_ports = ("x",)

    def infer(self, attrs, specs):
        check_activation(attrs.get("activation"))
        x = specs["x"]
        if not is_float(x.dtype):
            raise OpError(f"activation expects a float input, got {x.dtype}")
        if attrs.get("activation") == "softmax" and x.rank == 0:
            raise OpError("softmax needs an input of rank >= 1")
        return [Spec(x.shape, x.dtype)]

    def mask_rule(self, attrs):
        return PASS

    def reference(self, attrs, inputs):
        return [reference_activation(attrs.get("activation"), inputs["x"])]

    def forward(self, attrs, inputs):
        x = inputs["x"]
        y = K.activation_forward(as_rows(x), activation_code(attrs.get("activation")))
        return [y.reshape(x.shape)]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        dy = grad_or_zeros(grads[0], x.shape, x.dtype)
        dx = K.activation_grad(as_rows(dy), as_rows(outputs[0]), as_rows(x),
                               activation_code(attrs.get("activation")))
        return {"x": dx.reshape(x.shape)}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        dy = grad_or_zeros(grads[0], x.shape, x.dtype)
        return {"x": reference_activation_grad(attrs.get("activation"), x, dy)}
