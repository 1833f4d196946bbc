"""Elementwise unary primitives on port ``x`` (``keras.ops`` names, ``prim.`` prefix).

=====================  ===================================  ==============================
op                     definition                           gradient ``g * f'(x)``
=====================  ===================================  ==============================
negative               -x                                   -g
abs                    |x|                                  g * sign(x) (0 at 0)
square                 x * x                                2 x g
sqrt                   sqrt(x) (NaN below 0)                g / (2 sqrt(x)) (inf at 0)
exp, log               as NumPy                             g y, g / x
log1p, tanh            as NumPy                             g / (1 + x), g (1 - y^2)
sigmoid                1 / (1 + exp(-x))                    g y (1 - y)
softplus               log(1 + exp(x))                      g sigmoid(x)
relu                   max(x, 0)                            g where x > 0 (0 at 0)
clip (attrs min, max)  min(max(x, min), max)                g where min <= x <= max
cast (attrs dtype)     x.astype(dtype)                      g, between floats only
stop_gradient          x                                    none
=====================  ===================================  ==============================

Dtypes: the float-valued functions (sqrt ... softplus) give float32 on int/bool input
and keep float64; negative/abs/square/relu keep ints (square of bool gives int32, as
Keras; negative and relu refuse bool). These are the values ``keras.ops`` gives with the
torch backend, checked by ``tests/conformance/test_keras_primitives.py``.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels.primitives import elementwise as K
from graphmask.ops.base import MissingKernel, register
from graphmask.ops.primitives.common import DTYPES, Prim, float_of, kind, spec, zeros_or

_QUIET = {"all": "ignore"}  # inf/NaN results are values here, as in keras.ops


def _flat(a, dtype):
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1)


def sigmoid_into(x, out):
    """``out = 1 / (1 + exp(-x))`` with in-place ufuncs (exp overflowing to inf gives 0)."""
    with np.errstate(over="ignore", under="ignore"):
        np.negative(x, out=out)
        np.exp(out, out=out)
    out += 1
    np.reciprocal(out, out=out)
    return out


class Unary(Prim):
    """``y = f(x)``; subclasses set ``rule`` (``"float"`` or ``"same"``) and the maths."""

    inputs = ("x",)
    diff_ports = ("x",)
    rule = "float"
    code = -1          # kernel code of a fused VJP (-1: NumPy VJP in ``grad``)
    bool_to = None     # result dtype on bool input for "same" ops (None: refused)

    def out_dtype(self, dtype: str) -> str:
        self.check_dtype("x", dtype)
        if self.rule == "float" or kind(dtype) == "f":
            return float_of(dtype)
        if kind(dtype) == "b":
            if self.bool_to is None:
                raise self.error(f"input x is bool, which {self.name} does not take")
            return self.bool_to
        return dtype

    def infer(self, attrs, specs):
        x = specs["x"]
        return [spec(x.shape, self.out_dtype(x.dtype))]

    # definitions, on x already cast to the result dtype
    # each unary primitive defines these four; the base class has none (MissingKernel)
    def ref(self, x):
        raise MissingKernel(f"{self.name}: no reference definition")

    def ref_grad(self, x, y, g):
        raise MissingKernel(f"{self.name}: no reference gradient")

    def fast(self, x, out):
        raise MissingKernel(f"{self.name}: no forward kernel")

    def grad(self, x, y, g):
        raise MissingKernel(f"{self.name}: no VJP kernel")

    def reference(self, attrs, inputs):
        x = inputs["x"]
        dt = self.out_dtype(str(x.dtype))
        with np.errstate(**_QUIET):
            return [np.asarray(self.ref(x.astype(dt)), dtype=dt)]

    def forward(self, attrs, inputs):
        x = inputs["x"]
        dt = np.dtype(self.out_dtype(str(x.dtype)))
        xc = np.asarray(x, dtype=dt, order="C")
        out = np.empty(x.shape, dtype=dt)
        with np.errstate(**_QUIET):
            self.fast(xc, out)
        return [out]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        dt = float_of(str(x.dtype))
        g = _flat(zeros_or(grads[0], x.shape, dt), dt)
        xf, yf = _flat(x, dt), _flat(outputs[0], dt)
        with np.errstate(**_QUIET):
            if self.code >= 0:
                dx = np.empty_like(g)
                K.unary_grad(g, xf, yf, dx, self.code, *self.bounds(attrs))
            else:
                dx = self.grad(xf, yf, g)
        return {"x": dx.reshape(x.shape).astype(x.dtype, copy=False)}

    def bounds(self, attrs):
        return 0.0, 0.0

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        y = self.reference(attrs, inputs)[0]
        g = zeros_or(grads[0], y.shape, y.dtype)
        with np.errstate(**_QUIET):
            return {"x": np.asarray(self.ref_grad(x.astype(y.dtype), y, g)).astype(x.dtype)}


def _declare(name, rule, ref, ref_grad, fast, grad=None, code=-1, bool_to=None):
    cls = type(f"{name.title().replace('_', '')}Op", (Unary,), {
        "name": f"prim.{name}", "rule": rule, "code": code, "bool_to": bool_to,
        "ref": staticmethod(ref), "ref_grad": staticmethod(ref_grad),
        "fast": staticmethod(fast), "grad": staticmethod(grad)})
    return register(cls)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softplus(x):
    return np.logaddexp(0, x)


def _softplus_into(x, out):
    np.abs(x, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.log1p(out, out=out)
    np.add(out, x, out=out, where=x > 0)  # max(x, 0) + log1p(exp(-|x|))


def _softplus_grad(x, y, g):
    return sigmoid_into(x, np.empty_like(g)).__imul__(g)


_declare("negative", "same", np.negative, lambda x, y, g: -g,
         lambda x, out: np.negative(x, out=out), lambda x, y, g: np.negative(g))
_declare("abs", "same", np.abs, lambda x, y, g: g * np.sign(x),
         lambda x, out: np.abs(x, out=out), code=K.ABS, bool_to="bool")
_declare("square", "same", lambda x: x * x, lambda x, y, g: 2 * x * g,
         lambda x, out: np.square(x, out=out), code=K.SQUARE, bool_to="int32")
_declare("sqrt", "float", np.sqrt, lambda x, y, g: g * 0.5 / np.sqrt(x),
         lambda x, out: np.sqrt(x, out=out), code=K.SQRT)
_declare("exp", "float", np.exp, lambda x, y, g: g * np.exp(x),
         lambda x, out: np.exp(x, out=out), lambda x, y, g: np.multiply(g, y))
_declare("log", "float", np.log, lambda x, y, g: g / x,
         lambda x, out: np.log(x, out=out), lambda x, y, g: np.divide(g, x))
_declare("log1p", "float", np.log1p, lambda x, y, g: g / (1 + x),
         lambda x, out: np.log1p(x, out=out), code=K.LOG1P)
_declare("tanh", "float", np.tanh, lambda x, y, g: g * (1 - np.tanh(x) ** 2),
         lambda x, out: np.tanh(x, out=out), code=K.TANH)
_declare("sigmoid", "float", _sigmoid, lambda x, y, g: g * _sigmoid(x) * (1 - _sigmoid(x)),
         sigmoid_into, code=K.SIGMOID)
_declare("softplus", "float", _softplus, lambda x, y, g: g * _sigmoid(x),
         _softplus_into, _softplus_grad)
_declare("relu", "same", lambda x: np.maximum(x, 0), lambda x, y, g: g * (x > 0),
         lambda x, out: np.maximum(x, 0, out=out), code=K.RELU)


def _number(op, attrs, key):
    v = attrs.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise op.error(f"attrs['{key}'] must be a number, got {v!r}")
    return v


@register
class ClipOp(Unary):
    """``min(max(x, min), max)``; the gradient passes at the bounds (torch.clamp)."""

    name = "prim.clip"
    rule = "same"
    code = K.CLIP

    def _limits(self, attrs):
        lo, hi = _number(self, attrs, "min"), _number(self, attrs, "max")
        if lo > hi:
            raise self.error(f"attrs['min']={lo!r} is greater than attrs['max']={hi!r}")
        return lo, hi

    def _dtype(self, attrs, dtype):
        lo, hi = self._limits(attrs)
        self.check_dtype("x", dtype)
        if kind(dtype) == "f":
            return float_of(dtype)
        if isinstance(lo, int) and isinstance(hi, int):
            return "int32" if kind(dtype) == "b" else dtype  # as Keras: ints stay ints
        return "float32"

    def infer(self, attrs, specs):
        x = specs["x"]
        return [spec(x.shape, self._dtype(attrs, x.dtype))]

    def reference(self, attrs, inputs):
        x = inputs["x"]
        lo, hi = self._limits(attrs)
        dt = self._dtype(attrs, str(x.dtype))
        return [np.minimum(np.maximum(x.astype(dt), lo), hi).astype(dt)]

    def forward(self, attrs, inputs):
        x = inputs["x"]
        lo, hi = self._limits(attrs)
        dt = self._dtype(attrs, str(x.dtype))
        return [np.clip(np.asarray(x, dtype=dt), lo, hi, out=np.empty(x.shape, dt))]

    def bounds(self, attrs):
        lo, hi = self._limits(attrs)
        return float(lo), float(hi)

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        lo, hi = self._limits(attrs)
        g = zeros_or(grads[0], x.shape, x.dtype)
        return {"x": (g * ((x >= lo) & (x <= hi))).astype(x.dtype)}


@register
class CastOp(Prim):
    """``x.astype(dtype)``; floats to ints truncate toward zero; gradient between floats."""

    name = "prim.cast"
    inputs = ("x",)
    diff_ports = ("x",)

    def _target(self, attrs):
        dt = attrs.get("dtype")
        if dt not in DTYPES:
            raise self.error(f"attrs['dtype'] must be one of {', '.join(DTYPES)}, got {dt!r}")
        return dt

    def infer(self, attrs, specs):
        self.check_dtype("x", specs["x"].dtype)
        return [spec(specs["x"].shape, self._target(attrs))]

    def reference(self, attrs, inputs):
        with np.errstate(invalid="ignore"):
            return [np.array(inputs["x"], dtype=self._target(attrs))]

    def forward(self, attrs, inputs):
        with np.errstate(invalid="ignore"):
            return [np.asarray(inputs["x"], dtype=self._target(attrs))]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        if kind(self._target(attrs)) != "f" or grads[0] is None:
            return {"x": np.zeros(x.shape, x.dtype)}
        return {"x": np.asarray(grads[0], dtype=x.dtype)}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        through = kind(self._target(attrs)) == "f" and grads[0] is not None
        return {"x": (np.array(grads[0]) if through else np.zeros(x.shape)).astype(x.dtype)}


@register
class StopGradientOp(Prim):
    """``x`` unchanged; no gradient flows back through it."""

    name = "prim.stop_gradient"
    inputs = ("x",)
    diff_ports = ()

    def infer(self, attrs, specs):
        self.check_dtype("x", specs["x"].dtype)
        return [specs["x"]]

    def reference(self, attrs, inputs):
        return [inputs["x"].copy()]

    def forward(self, attrs, inputs):
        return [inputs["x"]]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        return {p: np.zeros(inputs[p].shape, inputs[p].dtype) for p in wrt}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        return {p: np.zeros_like(inputs[p]) for p in wrt}
