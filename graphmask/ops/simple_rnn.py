"""The SimpleRNN op: ``h_t = act(x_t W + b + h_{t-1} U)``, Keras 3 semantics with a
padding mask.

The mask rules are the LSTM's and GRU's (``ops/lstm.py``, ``ops/gru.py``): at a masked
step the state is carried and the output repeats the previous output (zeros before the
first kept step); ``zero_output_for_mask`` zeroes the sequence output at masked steps;
``go_backwards`` processes time reversed; the single output of
``return_sequences=False`` is the output of the last kept step (zeros for a sample with
no kept step), the state of ``return_state`` the carried ``h``. The optional port ``h0``
(batch, units) is the initial state. Kernels work on kept rows only
(``kernels/simple_rnn.py``).
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import simple_rnn as K
from graphmask.ops.base import Op, OpError, register
from graphmask.ops.gru import (
    _initial_state,
    cast_inputs,
    draw_masks,
    dropout_cfg,
    dropping,
    finish_outputs,
    infer_recurrent,
    initial_dh,
    per_gate,
    recurrent_mask_rule,
    ref_initial_dh,
    ref_outputs,
)
from graphmask.ops.lstm import _ACTIVATION, _np_act, _np_dact
from graphmask.ops.rnn_state import n_residuals as state_residuals
from graphmask.ops.rnn_state import stateful_forward, vjp_inputs


def _cfg(attrs):
    c = {"units": attrs.get("units"), "activation": attrs.get("activation", "tanh"),
         "use_bias": bool(attrs.get("use_bias", True))}
    for flag in ("return_sequences", "return_state", "go_backwards", "zero_output_for_mask"):
        c[flag] = bool(attrs.get(flag, False))
    if not isinstance(c["units"], (int, np.integer)) or isinstance(c["units"], bool) \
            or c["units"] <= 0:
        raise OpError(f"units must be a positive int, got {c['units']!r}")
    if c["activation"] not in _ACTIVATION:
        raise OpError(f"activation must be one of {_ACTIVATION}, got {c['activation']!r}")
    dropout_cfg(c, attrs)
    return c


def _prepare(attrs, inputs):
    c = _cfg(attrs)
    dt, x, k, rk, bias, mask = cast_inputs(c, inputs)
    H = int(c["units"])
    if (x.ndim != 3 or k.shape != (x.shape[2], H) or rk.shape != (H, H)
            or mask.shape != x.shape[:2] or (bias is not None and bias.shape != (H,))):
        raise OpError(f"simple_rnn(units={H}): shapes do not fit: x {x.shape}, "
                      f"mask {mask.shape}, kernel {k.shape}, recurrent_kernel {rk.shape}, "
                      f"bias {None if bias is None else bias.shape}")
    return c, x, k, rk, (np.zeros(H, dt) if bias is None else bias), mask


@register
class SimpleRNN(Op):
    name = "simple_rnn"
    side_by_side = True  # the scheduler may run it beside an independent loop
    inputs = ("x", "mask?", "kernel", "recurrent_kernel", "bias?", "h0?")
    diff_ports = ("x", "kernel", "recurrent_kernel", "bias", "h0")

    def infer(self, attrs, specs):
        c = _cfg(attrs)
        return infer_recurrent(c, specs, 1, (int(c["units"]),))

    def mask_rule(self, attrs):
        return recurrent_mask_rule(attrs)

    def n_residuals(self, attrs):
        # offsets, rows, x_t, h_{t-1}, h_t of every kept row (+ the dropout masks)
        # (+ with state_key, stateful, the state the forward started from)
        return (7 if dropping(_cfg(attrs)) else 5) + state_residuals(attrs, ("h0",))

    def _ref_steps(self, attrs, inputs, drop=None):
        c, x, k, rk, b, mask = _prepare(attrs, inputs)
        if c["go_backwards"]:
            x, mask = x[:, ::-1], mask[:, ::-1]
        B, T, D = x.shape
        H = int(c["units"])
        (mx,), (mh,) = per_gate(drop, 1, B, D, H, x.dtype)
        h = _initial_state(inputs, B, H, x.dtype)
        started = np.zeros((B, 1), bool)
        steps = []
        for t in range(T):
            out = _np_act(c["activation"], (x[:, t] * mx) @ k + b + (h * mh) @ rk)
            keep = mask[:, t, None]
            started = started | keep
            steps.append({"x": x[:, t], "h": h, "out": out, "keep": keep})
            h = np.where(keep, out, h).astype(x.dtype)
            vis = keep if c["zero_output_for_mask"] else started
            steps[-1]["vis"] = vis
            steps[-1]["y"] = np.where(vis, h, 0)
        return c, steps, h, started, (B, T, H, x.dtype)

    def reference(self, attrs, inputs, drop=None):
        """The outputs; ``drop``: the dropout masks ``(mx, mh)`` (``ops/gru.py``)."""
        c, steps, h, started, (B, T, H, dt) = self._ref_steps(attrs, inputs, drop)
        return ref_outputs(c, steps, h, started, B, T, H, dt)

    def reference_vjp(self, attrs, inputs, grads, wrt, drop=None):
        c, steps, _, started, (B, T, H, dt) = self._ref_steps(attrs, inputs, drop)
        _, x, k, rk, _, _ = _prepare(attrs, inputs)
        (mx,), (mh,) = per_gate(drop, 1, B, x.shape[2], H, dt)
        dh = ref_initial_dh(c, grads, started, B, H, dt)
        dk, drk, db = np.zeros_like(k), np.zeros_like(rk), np.zeros(H, dt)
        dxs = np.zeros(x.shape, dt)
        for t in range(T - 1, -1, -1):
            s = steps[t]
            if c["return_sequences"] and grads[0] is not None:
                dh = dh + np.where(s["vis"], grads[0][:, t], 0)
            da = np.where(s["keep"], dh * _np_dact(c["activation"], s["out"]), 0)
            dk += (s["x"] * mx).T @ da
            drk += (s["h"] * mh).T @ da
            db += da.sum(0)
            dxs[:, t] = (da @ k.T) * mx
            dh = np.where(s["keep"], (da @ rk.T) * mh, dh)
        if c["go_backwards"]:
            dxs = dxs[:, ::-1]
        out = {"x": dxs, "kernel": dk, "recurrent_kernel": drk, "bias": db, "h0": dh}
        return {p: np.ascontiguousarray(out[p]).astype(inputs[p].dtype) for p in wrt}

    def forward(self, attrs, inputs):
        # stateful (state_key): from the carried state, see ops/rnn_state.py
        return stateful_forward("simple_rnn", attrs, inputs,
                                lambda ins: self._forward(attrs, ins))

    def _forward(self, attrs, inputs):
        """(outputs and residuals, (final h,))."""
        c, x, k, rk, b, mask = _prepare(attrs, inputs)
        B, T, _ = x.shape
        H = int(c["units"])
        h = _initial_state(inputs, B, H, x.dtype)
        y = np.empty((B, T, H) if c["return_sequences"] else (0, 0, 0), x.dtype)
        mx, mh = draw_masks(attrs, c, B, x.shape[2], H, x.dtype, 1)
        empty = np.empty(0, x.dtype)
        drop = [empty if mx is None else mx, empty if mh is None else mh] if dropping(c) \
            else []
        if mh is not None:  # recurrent dropout: the reference's step loop (Keras's cell loop)
            out = self.reference({**attrs, "return_state": True}, inputs, (mx, mh))
            vis = out[:1] + (out[1:] if c["return_state"] else [])
            return vis + [np.empty(0, np.int64)] * 2 + [empty] * 3 + drop, (out[1],)
        if mx is not None:  # the same input mask at every step
            x = np.ascontiguousarray(x * mx[:, None, :])
        offsets, rows = K.schedule(mask, c["go_backwards"])
        res = K.simple_rnn_forward(x, k, b, rk, offsets, rows, mask, c["go_backwards"],
                                   K.ACTIVATIONS.index(c["activation"]),
                                   c["return_sequences"], c["zero_output_for_mask"], y, h)
        return finish_outputs(c, inputs, mask, y, h) + [offsets, rows, *res, *drop], (h,)

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        inputs, outputs = vjp_inputs(attrs, inputs, outputs)  # stateful: the start state
        c, x, k, rk, _, mask = _prepare(attrs, inputs)
        mx = None
        if dropping(c):
            mx, mh = outputs[-2:]
            if mh.size:  # recurrent dropout: the step loop's VJP with the same masks
                return self.reference_vjp(attrs, inputs, grads, wrt, (mx, mh))
            mx = mx if mx.size else None
            outputs = outputs[:-2]
        dh, seq, gy = initial_dh(c, inputs, mask, grads, x.dtype)
        offsets, rows, Xc, Hp, Y = outputs[-5:]
        dx, dk, drk, db = K.simple_rnn_backward(
            Xc, Hp, Y, k, rk, offsets, rows, mask, c["go_backwards"],
            K.ACTIVATIONS.index(c["activation"]), seq, c["zero_output_for_mask"], gy, dh,
            x.shape[0])
        if mx is not None:  # the kernels saw x * mx
            dx = dx * mx[:, None, :]
        out = {"x": dx, "kernel": dk, "recurrent_kernel": drk, "bias": db, "h0": dh}
        return {p: out[p].astype(inputs[p].dtype, copy=False) for p in wrt}
