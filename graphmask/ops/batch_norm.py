"""``batch_normalization``: Keras 3's ``BatchNormalization`` over the last axis.

Ports: ``x`` (..., C), ``gamma?`` and ``beta?`` (C,) (absent for ``scale=False`` /
``center=False``), ``moving_mean`` and ``moving_variance`` (C,), and ``mask?`` (the
input's padding mask, of shape ``x.shape[:-1]``).

* Inference (predict, evaluate, or a frozen layer: ``attrs['frozen']``):
  ``y = (x - moving_mean) * (rsqrt(moving_variance + epsilon) * gamma) + beta``.
* Training (``attrs['_training']``, set on a train plan's forward nodes): the same with
  the batch's moments over every axis but the last. Without a mask they are the plain
  mean and (biased) variance; with a mask only kept positions count, and both sums are
  divided by ``count + 1e-7`` (Keras 3's ``_moments``: an all-masked batch gives mean 0
  and variance 0). Every position, kept or not, is normalised. The gradient flows
  through the moments.

After ``y`` it returns three residuals: the mean and ``rsqrt(var + epsilon)`` it used,
and whether they were the batch's (a (1,) bool array: the VJP node gets the forward's
attrs without the plan's ``_training`` mark, so the mode travels with the values). In
training it reports the moving-statistics updates ``moving * momentum + batch * (1 -
momentum)`` for the weights named by ``attrs['moving_mean_var']`` and
``attrs['moving_variance_var']`` (``graphmask/ops/state.py``); the train step applies
them once it succeeded. The mask passes through unchanged.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import batch_norm as K
from graphmask.kernels.util import as_rows, grad_or_zeros
from graphmask.ops.base import MaskRule, Op, OpError, Spec, float_dtype, is_float, register
from graphmask.ops.state import report_moving_average

#: Keras's ``backend.epsilon()``: added to the count of kept positions (masked moments).
COUNT_EPSILON = 1e-7


def _training(attrs) -> bool:
    return bool(attrs.get("_training")) and not attrs.get("frozen", False)


@register
class BatchNormalizationOp(Op):
    name = "batch_normalization"
    inputs = ("x", "gamma?", "beta?", "moving_mean", "moving_variance", "mask?")
    diff_ports = ("x", "gamma", "beta")

    def infer(self, attrs, specs):
        for key in ("momentum", "epsilon"):
            v = attrs[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise OpError(f"{key} must be a finite number, got {v!r}")
        x = specs["x"]
        if x.rank < 2:
            raise OpError(f"BatchNormalization expects (batch, ..., channels), got shape "
                          f"{x.shape}")
        if not (is_float(x.dtype) or np.dtype(x.dtype).kind in "iu") or x.dtype == "bool":
            raise OpError(f"BatchNormalization expects numeric data, got dtype {x.dtype}")
        c = x.shape[-1]
        for port in ("gamma", "beta", "moving_mean", "moving_variance"):
            s = specs.get(port)
            if s is not None and (s.rank != 1 or None not in (s.shape[0], c)
                                  and s.shape[0] != c):
                raise OpError(f"{port} must have shape ({c},), got {s.shape}")
        m = specs.get("mask")
        if m is not None and (m.rank != x.rank - 1 or any(
                a is not None and b is not None and a != b for a, b in zip(m.shape, x.shape))):
            raise OpError(f"the mask must have the input's shape without its last axis "
                          f"(Keras 3), got mask {m.shape} for input {x.shape}")
        return [Spec(x.shape, float_dtype(x.dtype))]

    def mask_rule(self, attrs):
        return MaskRule(takes=True, uses=True, out="pass")

    def n_residuals(self, attrs):
        return 3

    # ---- shared preparation --------------------------------------------------------
    @staticmethod
    def _prep(attrs, inputs):
        x = inputs["x"]
        dt = np.dtype(float_dtype(str(x.dtype)))
        x2 = as_rows(x, dt)
        c = x2.shape[1]
        m = inputs.get("mask")
        if m is not None and tuple(m.shape) != tuple(x.shape[:-1]):
            raise OpError(f"mask of shape {m.shape} does not fit input of shape {x.shape}")
        keep = np.ones(x2.shape[0], bool) if m is None else \
            np.ascontiguousarray(m, dtype=bool).reshape(-1)
        count = x2.shape[0] if m is None else int(keep.sum())
        denom = np.array([count + COUNT_EPSILON if m is not None else max(count, 1)], dt)

        def weight(port, fill):
            w = inputs.get(port)
            return np.full(c, fill, dt) if w is None else np.ascontiguousarray(w, dtype=dt)
        return x2, keep, denom, weight, dt

    def _stats(self, attrs, x2, keep, denom, weight, dt):
        """(mean, rsqrt(var + epsilon)) this step normalises with; in training, reports
        the moving-statistics updates."""
        eps = dt.type(attrs["epsilon"])
        if not _training(attrs):
            mean, var = weight("moving_mean", 0.0), weight("moving_variance", 1.0)
        else:
            mean, var = K.moments(x2, keep, denom)
            for key, batch in (("moving_mean_var", mean), ("moving_variance_var", var)):
                if attrs.get(key):
                    report_moving_average(attrs[key], batch, attrs["momentum"])
        return mean, (dt.type(1.0) / np.sqrt(var + eps)).astype(dt)

    # ---- kernels -------------------------------------------------------------------
    def forward(self, attrs, inputs):
        x2, keep, denom, weight, dt = self._prep(attrs, inputs)
        mean, inv = self._stats(attrs, x2, keep, denom, weight, dt)
        y = K.normalize(x2, mean, inv, weight("gamma", 1.0), weight("beta", 0.0))
        return [y.reshape(inputs["x"].shape), mean, inv, np.array([_training(attrs)])]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        x2, keep, denom, weight, dt = self._prep(attrs, inputs)
        mean, inv, training = outputs[1], outputs[2], bool(outputs[3][0])
        dy = as_rows(grad_or_zeros(grads[0], outputs[0].shape, dt), dt)
        dx, dgamma, dbeta = K.backward(x2, keep, dy, mean, inv, weight("gamma", 1.0), denom,
                                       training)
        out = {"x": dx.reshape(inputs["x"].shape).astype(
            inputs["x"].dtype if is_float(str(inputs["x"].dtype)) else dt, copy=False)}
        if "gamma" in inputs:
            out["gamma"] = dgamma.astype(inputs["gamma"].dtype, copy=False)
        if "beta" in inputs:
            out["beta"] = dbeta.astype(inputs["beta"].dtype, copy=False)
        return {p: out[p] for p in wrt}

    # ---- NumPy definition ------------------------------------------------------------
    def _reference_moments(self, attrs, inputs):
        x = inputs["x"]
        dt = np.dtype(float_dtype(str(x.dtype)))
        x2 = x.astype(dt).reshape(-1, x.shape[-1])
        m = inputs.get("mask")
        if not _training(attrs):
            mean = inputs["moving_mean"].astype(dt)
            return x2, mean, inputs["moving_variance"].astype(dt), dt
        if m is None:
            mean = x2.mean(axis=0)
            return x2, mean, ((x2 - mean) ** 2).mean(axis=0), dt
        keep = m.reshape(-1, 1).astype(bool)
        denom = dt.type(keep.sum() + COUNT_EPSILON)
        mean = np.where(keep, x2, dt.type(0)).sum(axis=0) / denom
        var = (np.where(keep, x2 - mean, dt.type(0)) ** 2).sum(axis=0) / denom
        return x2, mean, var, dt

    def reference(self, attrs, inputs):
        x2, mean, var, dt = self._reference_moments(attrs, inputs)
        gamma = inputs["gamma"].astype(dt) if "gamma" in inputs else dt.type(1)
        beta = inputs["beta"].astype(dt) if "beta" in inputs else dt.type(0)
        y = (x2 - mean) * (1 / np.sqrt(var + dt.type(attrs["epsilon"])) * gamma) + beta
        return [y.astype(dt).reshape(inputs["x"].shape)]

    def reference_vjp(self, attrs, inputs, grads, wrt):
        """The chain rule written out: ``y = xhat * gamma + beta``, ``xhat = (x - mean) *
        (var + eps)^-1/2``, and in training ``mean``, ``var`` functions of the kept x."""
        x2, mean, var, dt = self._reference_moments(attrs, inputs)
        c = x2.shape[1]
        gamma = inputs["gamma"].astype(dt) if "gamma" in inputs else np.ones(c, dt)
        dy = grad_or_zeros(grads[0], inputs["x"].shape, dt).reshape(-1, c)
        r = 1 / np.sqrt(var + dt.type(attrs["epsilon"]))
        out = {"gamma": (dy * (x2 - mean) * r).sum(axis=0), "beta": dy.sum(axis=0)}
        dx = dy * gamma * r
        if _training(attrs):
            m = inputs.get("mask")
            keep = np.ones((x2.shape[0], 1)) if m is None else m.reshape(-1, 1).astype(dt)
            n = x2.shape[0] if m is None else keep.sum() + COUNT_EPSILON
            dvar = (dy * gamma * (x2 - mean)).sum(axis=0) * -0.5 * r ** 3
            dmean = -(dy * gamma).sum(axis=0) * r + dvar * (
                -2 * (keep * (x2 - mean)).sum(axis=0) / n)
            dx = dx + keep * (dmean / n + dvar * 2 * (x2 - mean) / n)
        out["x"] = dx.reshape(inputs["x"].shape)
        res = {}
        for p in wrt:
            if p in inputs:
                want = inputs[p].dtype if is_float(str(inputs[p].dtype)) else dt
                res[p] = out[p].astype(want)
        return res
