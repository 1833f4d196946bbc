"""Dense: ``y = f(x @ kernel + bias)`` on the last axis of an input of any rank >= 2.

Weights in Keras order: ``kernel`` (D, units), ``bias`` (units,) (port ``bias`` is absent
for ``use_bias=False``). A (B, T) mask passes through unchanged (Keras 3: Dense
supports masking and does not alter the time axis).

The forward pass is one GEMM over all ``N = prod(x.shape[:-1])`` rows, with bias and
activation fused after it. For swish/silu and gelu, whose derivative needs the
pre-activation, forward returns that ``z`` as one residual; for every other
activation the VJP works from the output alone and there is no residual.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import activations as KA
from graphmask.kernels import dense as K
from graphmask.kernels.util import as_rows, grad_or_zeros, result_dtype
from graphmask.ops.activation import (
    activation_code,
    check_activation,
    reference_activation,
    reference_activation_grad,
)
from graphmask.ops.base import PASS, Op, OpError, Spec, float_dtype, is_float, register


def _keeps_z(attrs) -> bool:
    return activation_code(attrs.get("activation")) in KA.NEEDS_INPUT


def _grad_dtype(x, dt):
    return x.dtype if x.dtype.kind == "f" else dt


@register
class DenseOp(Op):
    name = "dense"
    inputs = ("x", "kernel", "bias?")
    diff_ports = ("x", "kernel", "bias")

    def infer(self, attrs, specs):
        check_activation(attrs.get("activation"))
        units = attrs["units"]
        if not isinstance(units, int) or units < 1:
            raise OpError(f"units must be a positive integer, got {units!r}")
        x, w, b = specs["x"], specs["kernel"], specs.get("bias")
        if x.rank < 2:
            raise OpError(f"Dense expects an input of rank >= 2 (batch, ..., features), "
                          f"got shape {x.shape}")
        if x.dtype == "bool" or not (is_float(x.dtype) or np.dtype(x.dtype).kind in "iu"):
            raise OpError(f"Dense expects a numeric input, got dtype {x.dtype}")
        if w.rank != 2 or w.shape[1] not in (None, units):
            raise OpError(f"kernel must have shape (D, {units}), got {w.shape}")
        d = x.shape[-1]
        if d is not None and w.shape[0] is not None and d != w.shape[0]:
            raise OpError(f"input has {d} features on its last axis but the kernel expects "
                          f"{w.shape[0]} (kernel shape {w.shape})")
        if b is not None and (b.rank != 1 or b.shape[0] not in (None, units)):
            raise OpError(f"bias must have shape ({units},), got {b.shape}")
        dtypes = [w.dtype] + ([b.dtype] if b is not None else [])
        if is_float(x.dtype):
            dtypes.append(x.dtype)
        return [Spec(x.shape[:-1] + (units,), float_dtype(*dtypes))]

    def mask_rule(self, attrs):
        return PASS

    def n_residuals(self, attrs):
        return 1 if _keeps_z(attrs) else 0

    # ---- NumPy definition ------------------------------------------------------------
    def _z(self, inputs):
        x, w, b = inputs["x"], inputs["kernel"], inputs.get("bias")
        dt = result_dtype(x if x.dtype.kind == "f" else None, w, b)
        z = np.matmul(x.astype(dt), w.astype(dt))
        return z + b.astype(dt) if b is not None else z

    def reference(self, attrs, inputs):
        return [reference_activation(attrs.get("activation"), self._z(inputs))]

    def reference_vjp(self, attrs, inputs, grads, wrt):
        z = self._z(inputs)
        dy = grad_or_zeros(grads[0], z.shape, z.dtype)
        dz = reference_activation_grad(attrs.get("activation"), z, dy)
        x, w = inputs["x"], inputs["kernel"]
        d = x.shape[-1]
        out = {}
        if "x" in wrt:
            out["x"] = (dz @ w.astype(z.dtype).T).astype(_grad_dtype(x, z.dtype))
        if "kernel" in wrt:
            out["kernel"] = (x.reshape(-1, d).astype(z.dtype).T @ dz.reshape(-1, w.shape[1])
                             ).astype(w.dtype)
        if "bias" in wrt:
            out["bias"] = dz.reshape(-1, w.shape[1]).sum(axis=0).astype(inputs["bias"].dtype)
        return out

    # ---- kernels ---------------------------------------------------------------------
    def _operands(self, inputs):
        x, w, b = inputs["x"], inputs["kernel"], inputs.get("bias")
        dt = result_dtype(x if x.dtype.kind == "f" else None, w, b)
        units = w.shape[1]
        if x.shape[-1] != w.shape[0]:
            raise OpError(f"input has {x.shape[-1]} features but the kernel expects "
                          f"{w.shape[0]}")
        b2 = np.zeros(units, dt) if b is None else np.ascontiguousarray(b, dtype=dt)
        return as_rows(x, dt), np.ascontiguousarray(w, dtype=dt), b2, dt

    def forward(self, attrs, inputs):
        x2, w, b, _ = self._operands(inputs)
        keep = _keeps_z(attrs)
        y, z = K.dense_forward(x2, w, b, activation_code(attrs.get("activation")), keep)
        shape = inputs["x"].shape[:-1] + (w.shape[1],)
        return [y.reshape(shape), z.reshape(shape)] if keep else [y.reshape(shape)]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        x2, w, _, dt = self._operands(inputs)
        y2 = as_rows(outputs[0], dt)
        z2 = as_rows(outputs[1], dt) if _keeps_z(attrs) else y2
        dy2 = as_rows(grad_or_zeros(grads[0], outputs[0].shape, dt), dt)
        dx, dw, db = K.dense_backward(x2, w, y2, z2, dy2,
                                      activation_code(attrs.get("activation")),
                                      "x" in wrt, "kernel" in wrt, "bias" in wrt)
        out = {}
        if "x" in wrt:
            x = inputs["x"]
            out["x"] = dx.reshape(x.shape).astype(_grad_dtype(x, dt), copy=False)
        if "kernel" in wrt:
            out["kernel"] = dw.astype(inputs["kernel"].dtype, copy=False)
        if "bias" in wrt:
            out["bias"] = db.astype(inputs["bias"].dtype, copy=False)
        return out
