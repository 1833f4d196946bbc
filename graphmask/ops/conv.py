"""Conv1D: ``y = f(conv(x, kernel) + bias)`` over the steps of a (B, L, C) input.

channels_last, as Keras 3's ``Conv1D``: ``kernel`` (K, C / groups, F), ``bias`` (F,)
(port absent for ``use_bias=False``). Output step ``t``, filter ``f`` of group ``g``:

    z[b, t, f] = sum_k sum_c x[b, t*s - pad_left + k*d, g*C_g + c] * kernel[k, c, f] + bias[f]

with zeros outside ``[0, L)``. Padding (:func:`conv_geometry`, Keras 3's rule on every
backend): ``valid`` none; ``same`` ``total = max(0, (ceil(L/s) - 1)*s + d*(K-1) + 1 - L)``
split as ``total // 2`` on the left and the rest on the right; ``causal`` ``d*(K-1)`` on
the left only (``y[t]`` never reads ``x[t+1:]``).

A convolution mixes neighbouring steps, so a padding mask cannot pass through it: a mask
reaching it is a compile-time ``MaskError`` naming both layers (Keras 3 only warns and
drops it). The forward pass builds the (B*L_out, K*C_g) patch matrix (im2col) per group
and runs the Dense kernel on it (one GEMM, bias and activation fused); the VJP runs
Dense's backward kernel and adds the patch gradients back (col2im).
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import activations as KA
from graphmask.kernels import conv as K
from graphmask.kernels import dense as KD
from graphmask.kernels.util import grad_or_zeros, result_dtype
from graphmask.ops.activation import (
    activation_code,
    check_activation,
    reference_activation,
    reference_activation_grad,
)
from graphmask.ops.base import NO_MASK, Op, OpError, Spec, float_dtype, is_float, register

PADDINGS = ("valid", "same", "causal")


def conv_geometry(length, k_eff, stride, padding):
    """``(l_out, pad_left, pad_right)`` of a 1-D window op over ``length`` steps.

    ``k_eff`` is the window's span (``d*(K-1) + 1``). ``length`` None gives ``l_out``
    None. ``valid`` with a window longer than the input gives ``l_out <= 0`` (the
    caller refuses it).
    """
    if padding == "causal":
        left, right = k_eff - 1, 0
    elif padding == "same":
        if length is None:
            return None, None, None
        out = (length + stride - 1) // stride
        total = max(0, (out - 1) * stride + k_eff - length)
        left, right = total // 2, total - total // 2
    else:
        left, right = 0, 0
    if length is None:
        return None, left, right
    return (length + left + right - k_eff) // stride + 1, left, right


def _positive(attrs, key, default=1):
    v = attrs.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise OpError(f"{key} must be a positive int, got {v!r}")
    return int(v)


def check_attrs(attrs):
    """The validated ``(stride, dilation, groups, padding)``; an ``OpError`` otherwise."""
    check_activation(attrs.get("activation"))
    stride, dil = _positive(attrs, "strides"), _positive(attrs, "dilation_rate")
    groups = _positive(attrs, "groups")
    padding = attrs.get("padding", "valid")
    if padding not in PADDINGS:
        raise OpError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if stride > 1 and dil > 1:
        raise OpError(f"strides > 1 is not supported with dilation_rate > 1 (as Keras 3), "
                      f"got strides={stride}, dilation_rate={dil}")
    return stride, dil, groups, padding


def _keeps_z(attrs) -> bool:
    return activation_code(attrs.get("activation")) in KA.NEEDS_INPUT


@register
class Conv1DOp(Op):
    name = "conv1d"
    inputs = ("x", "kernel", "bias?")
    diff_ports = ("x", "kernel", "bias")

    def infer(self, attrs, specs):
        stride, dil, groups, padding = check_attrs(attrs)
        x, w, b = specs["x"], specs["kernel"], specs.get("bias")
        if x.rank != 3:
            raise OpError(f"Conv1D expects (batch, steps, channels), got shape {x.shape}")
        if not is_float(x.dtype):
            raise OpError(f"Conv1D expects float data, got dtype {x.dtype}")
        if w.rank != 3:
            raise OpError(f"kernel must have shape (kernel_size, channels / groups, filters), "
                          f"got {w.shape}")
        k, cg, f = w.shape
        c = x.shape[2]
        if c is not None and c % groups:
            raise OpError(f"input has {c} channels, not divisible by groups={groups}")
        if c is not None and cg is not None and c // groups != cg:
            raise OpError(f"input has {c} channels: with groups={groups} the kernel needs "
                          f"{c // groups} input channels per group, its shape is {w.shape}")
        if f is not None and f % groups:
            raise OpError(f"filters ({f}) must be divisible by groups ({groups})")
        if b is not None and (b.rank != 1 or None not in (b.shape[0], f) and b.shape[0] != f):
            raise OpError(f"bias must have shape ({f},), got {b.shape}")
        l_out = None if k is None else \
            conv_geometry(x.shape[1], dil * (k - 1) + 1, stride, padding)[0]
        if l_out is not None and l_out < 1:
            raise OpError(f"an input of {x.shape[1]} steps is shorter than the kernel's span "
                          f"{dil * (k - 1) + 1} (kernel_size={k}, dilation_rate={dil}) with "
                          f"padding='valid': the output would have no steps")
        dtypes = [x.dtype, w.dtype] + ([b.dtype] if b is not None else [])
        return [Spec((x.shape[0], l_out, f), float_dtype(*dtypes))]

    def mask_rule(self, attrs):
        return NO_MASK

    def n_residuals(self, attrs):
        return 1 if _keeps_z(attrs) else 0

    # ---- geometry shared by the reference and the kernels -----------------------------
    def _setup(self, attrs, inputs):
        stride, dil, groups, padding = check_attrs(attrs)
        x, w, b = inputs["x"], inputs["kernel"], inputs.get("bias")
        dt = result_dtype(x, w, b)
        k, cg, f = w.shape
        if x.ndim != 3 or x.shape[2] != cg * groups:
            raise OpError(f"input of shape {x.shape} does not fit kernel {w.shape} with "
                          f"groups={groups}")
        l_out, left, _ = conv_geometry(x.shape[1], dil * (k - 1) + 1, stride, padding)
        if l_out < 1:
            raise OpError(f"an input of {x.shape[1]} steps is shorter than the kernel's span "
                          f"{dil * (k - 1) + 1} with padding='valid'")
        return stride, dil, groups, left, l_out, dt

    # ---- NumPy definition ------------------------------------------------------------
    def _z(self, attrs, inputs):
        stride, dil, groups, left, l_out, dt = self._setup(attrs, inputs)
        x, w, b = inputs["x"].astype(dt), inputs["kernel"].astype(dt), inputs.get("bias")
        k, cg, f = w.shape
        fg = f // groups
        z = np.zeros((x.shape[0], l_out, f), dt)
        for t in range(l_out):
            for j in range(k):
                s = t * stride - left + j * dil
                if 0 <= s < x.shape[1]:
                    for g in range(groups):
                        z[:, t, g * fg:(g + 1) * fg] += (x[:, s, g * cg:(g + 1) * cg]
                                                         @ w[j, :, g * fg:(g + 1) * fg])
        return z + b.astype(dt) if b is not None else z

    def reference(self, attrs, inputs):
        return [reference_activation(attrs.get("activation"), self._z(attrs, inputs))]

    def reference_vjp(self, attrs, inputs, grads, wrt):
        stride, dil, groups, left, l_out, dt = self._setup(attrs, inputs)
        z = self._z(attrs, inputs)
        dz = reference_activation_grad(attrs.get("activation"), z,
                                       grad_or_zeros(grads[0], z.shape, dt))
        x, w = inputs["x"].astype(dt), inputs["kernel"].astype(dt)
        k, cg, f = w.shape
        fg = f // groups
        dx, dw = np.zeros_like(x), np.zeros_like(w)
        for t in range(l_out):
            for j in range(k):
                s = t * stride - left + j * dil
                if not 0 <= s < x.shape[1]:
                    continue
                for g in range(groups):
                    cs, fs = slice(g * cg, (g + 1) * cg), slice(g * fg, (g + 1) * fg)
                    dx[:, s, cs] += dz[:, t, fs] @ w[j, :, fs].T
                    dw[j, :, fs] += x[:, s, cs].T @ dz[:, t, fs]
        out = {"x": dx.astype(inputs["x"].dtype), "kernel": dw.astype(inputs["kernel"].dtype)}
        if "bias" in inputs:
            out["bias"] = dz.sum(axis=(0, 1)).astype(inputs["bias"].dtype)
        return {p: out[p] for p in wrt}

    # ---- kernels ---------------------------------------------------------------------
    def _operands(self, attrs, inputs):
        stride, dil, groups, left, l_out, dt = self._setup(attrs, inputs)
        x = np.ascontiguousarray(inputs["x"], dtype=dt)
        w = np.ascontiguousarray(inputs["kernel"], dtype=dt)
        b = inputs.get("bias")
        b = np.zeros(w.shape[2], dt) if b is None else np.ascontiguousarray(b, dtype=dt)
        return x, w, b, (stride, dil, groups, left, l_out)

    @staticmethod
    def _cols(x, w, g, geo):
        stride, dil, groups, left, l_out = geo
        k, cg, f = w.shape
        fg = f // groups
        cols = K.im2col(x, g * cg, cg, k, stride, dil, left, l_out)
        wg = np.ascontiguousarray(w[:, :, g * fg:(g + 1) * fg].reshape(k * cg, fg))
        return cols, wg, slice(g * fg, (g + 1) * fg)

    def forward(self, attrs, inputs):
        x, w, b, geo = self._operands(attrs, inputs)
        code, keep = activation_code(attrs.get("activation")), _keeps_z(attrs)
        groups, l_out = geo[2], geo[4]
        shape = (x.shape[0], l_out, w.shape[2])
        if groups == 1:
            cols, wg, _ = self._cols(x, w, 0, geo)
            y, z = KD.dense_forward(cols, wg, b, code, keep)
            return [y.reshape(shape), z.reshape(shape)] if keep else [y.reshape(shape)]
        y = np.empty((x.shape[0] * l_out, w.shape[2]), x.dtype)
        z = np.empty_like(y) if keep else None
        for g in range(groups):
            cols, wg, fs = self._cols(x, w, g, geo)
            yg, zg = KD.dense_forward(cols, wg, np.ascontiguousarray(b[fs]), code, keep)
            y[:, fs] = yg
            if keep:
                z[:, fs] = zg
        return [y.reshape(shape), z.reshape(shape)] if keep else [y.reshape(shape)]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        x, w, b, geo = self._operands(attrs, inputs)
        stride, dil, groups, left, l_out = geo
        k, cg, f = w.shape
        dt = x.dtype
        n = x.shape[0] * l_out
        y2 = np.ascontiguousarray(outputs[0], dtype=dt).reshape(n, f)
        z2 = np.ascontiguousarray(outputs[1], dtype=dt).reshape(n, f) if _keeps_z(attrs) \
            else y2
        dy2 = np.ascontiguousarray(grad_or_zeros(grads[0], outputs[0].shape, dt)).reshape(n, f)
        code = activation_code(attrs.get("activation"))
        dx = np.zeros_like(x) if "x" in wrt else None
        dw = np.empty_like(w) if "kernel" in wrt else None
        db = np.empty_like(b) if "bias" in wrt else None
        for g in range(groups):
            cols, wg, fs = self._cols(x, w, g, geo)
            if groups == 1:
                yg, zg, dyg = y2, z2, dy2
            else:
                yg, zg, dyg = (np.ascontiguousarray(a[:, fs]) for a in (y2, z2, dy2))
            dcols, dwg, dbg = KD.dense_backward(cols, wg, yg, zg, dyg, code, dx is not None,
                                                dw is not None, db is not None)
            if dx is not None:
                K.col2im_add(dcols, dx, g * cg, cg, k, stride, dil, left, l_out)
            if dw is not None:
                dw[:, :, fs] = dwg.reshape(k, cg, f // groups)
            if db is not None:
                db[fs] = dbg
        out = {}
        if dx is not None:
            out["x"] = dx.astype(inputs["x"].dtype, copy=False)
        if dw is not None:
            out["kernel"] = dw.astype(inputs["kernel"].dtype, copy=False)
        if db is not None:
            out["bias"] = db.astype(inputs["bias"].dtype, copy=False)
        return out
