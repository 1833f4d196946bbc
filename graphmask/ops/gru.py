"""The GRU op: Keras 3 semantics with a padding mask (see docs/masking.md).

Gates in Keras order z (update), r (reset), h (candidate)::

    z = ract(x Wz + bz + h Uz + b'z),  r = ract(x Wr + br + h Ur + b'r)
    reset_after=True (Keras 3's default):  hh = act(x Wh + bh + r * (h Uh + b'h))
    reset_after=False:                     hh = act(x Wh + bh + (r * h) Uh)
    h_new = z * h + (1 - z) * hh

``bias`` is (2, 3 units) with ``reset_after`` (row 0 the input bias b, row 1 the
recurrent bias b'), else (3 units,) (input bias only). The mask rules are the LSTM's
(``ops/lstm.py``): at a masked step the state is carried and the output repeats the
previous output (zeros before the first kept step); ``zero_output_for_mask`` zeroes the
sequence output at masked steps; ``go_backwards`` processes time reversed; the single
output of ``return_sequences=False`` is the output of the last kept step (zeros for a
sample with no kept step), the state of ``return_state`` the carried ``h`` (the initial
state for such a sample). The optional port ``h0`` (batch, units) is the initial state.
Kernels work on kept (sample, step) rows only (``kernels/gru.py``).
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import gru as K
from graphmask.ops.base import MaskRule, Op, OpError, Spec, float_dtype, is_float, register
from graphmask.ops.lstm import (
    _ACTIVATION,
    _RECURRENT,
    _active,
    _fits,
    _generator,
    _keep,
    _np_act,
    _np_dact,
    _started,
)
from graphmask.ops.rnn_state import n_residuals as state_residuals
from graphmask.ops.rnn_state import stateful_forward, vjp_inputs


def _cfg(attrs):
    """Attributes with their Keras defaults, validated."""
    c = {"units": attrs.get("units"), "activation": attrs.get("activation", "tanh"),
         "recurrent_activation": attrs.get("recurrent_activation", "sigmoid")}
    c["use_bias"] = bool(attrs.get("use_bias", True))
    c["reset_after"] = bool(attrs.get("reset_after", True))
    for flag in ("return_sequences", "return_state", "go_backwards", "zero_output_for_mask"):
        c[flag] = bool(attrs.get(flag, False))
    if not isinstance(c["units"], (int, np.integer)) or isinstance(c["units"], bool) \
            or c["units"] <= 0:
        raise OpError(f"units must be a positive int, got {c['units']!r}")
    if c["activation"] not in _ACTIVATION:
        raise OpError(f"activation must be one of {_ACTIVATION}, got {c['activation']!r}")
    dropout_cfg(c, attrs)
    if c["recurrent_activation"] not in _RECURRENT:
        raise OpError(f"recurrent_activation must be one of {_RECURRENT}, "
                      f"got {c['recurrent_activation']!r}")
    return c


def bias_shape(units: int, reset_after: bool) -> tuple:
    """Keras 3's GRU bias shape."""
    return (2, 3 * units) if reset_after else (3 * units,)


def dropout_cfg(c, attrs):
    """``dropout`` and ``recurrent_dropout`` of ``attrs`` into ``c``, checked."""
    for rate in ("dropout", "recurrent_dropout"):
        v = attrs.get(rate, 0.0) or 0.0
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
            raise OpError(f"{rate} must be a number in [0, 1), got {v!r}")
        c[rate] = float(v)


def dropping(c) -> bool:
    return bool(c["dropout"] or c["recurrent_dropout"])


def draw_masks(attrs, c, B, D, H, dt, ng):
    """The dropout masks of one forward (Keras 3's cells: each fixed along the sequence):
    without recurrent dropout one ``(B, D)`` input mask (None at rate 0) and None; with
    it ``(ng, B, D)`` and ``(ng, B, H)``, one per gate (Keras's implementation 1; ones
    where a rate is 0). ``None, None`` outside training or with both rates 0."""
    if not _active(attrs) or not dropping(c):
        return None, None
    gen = _generator(attrs)
    if not c["recurrent_dropout"]:
        return _keep(gen, (B, D), c["dropout"], dt), None
    mx = _keep(gen, (ng, B, D), c["dropout"], dt) if c["dropout"] else np.ones((ng, B, D), dt)
    return mx, _keep(gen, (ng, B, H), c["recurrent_dropout"], dt)


def per_gate(drop, ng, B, D, H, dt):
    """Both masks as ``(ng, B, D)``, ``(ng, B, H)`` (ones for a missing one)."""
    mx, mh = drop or (None, None)
    if mx is None:
        mx = np.ones((ng, B, D), dt)
    elif mx.ndim == 2:
        mx = np.broadcast_to(mx, (ng, B, D))
    return mx, np.ones((ng, B, H), dt) if mh is None else mh


def cast_inputs(c, inputs):
    """A recurrent op's arrays for its kernels: x, kernel, recurrent kernel and bias (None
    when absent or unused) C-contiguous in their common float dtype, and the mask as bool
    (all kept when absent). Shared by gru and simple_rnn."""
    ws = [inputs["x"], inputs["kernel"], inputs["recurrent_kernel"]]
    if "bias" in inputs:
        ws.append(inputs["bias"])
    dt = np.dtype(float_dtype(*(str(w.dtype) for w in ws)))
    x, k, rk = (np.ascontiguousarray(w, dtype=dt) for w in ws[:3])
    bias = np.ascontiguousarray(inputs["bias"], dtype=dt) if (
        c["use_bias"] and "bias" in inputs) else None
    mask = inputs.get("mask")
    mask = (np.ones(x.shape[:2], dtype=bool) if mask is None
            else np.ascontiguousarray(mask, dtype=bool))
    return dt, x, k, rk, bias, mask


def _prepare(attrs, inputs):
    """Config, weights cast to the common float dtype, input and recurrent biases (3H,)
    (zeros when absent), mask (all kept when absent)."""
    c = _cfg(attrs)
    dt, x, k, rk, bias, mask = cast_inputs(c, inputs)
    H = int(c["units"])
    # the kernels do not bounds-check: shapes are checked here, at run time too
    if (x.ndim != 3 or k.shape != (x.shape[2], 3 * H) or rk.shape != (H, 3 * H)
            or mask.shape != x.shape[:2]
            or (bias is not None and bias.shape != bias_shape(H, c["reset_after"]))):
        raise OpError(f"gru(units={H}): shapes do not fit: x {x.shape}, mask {mask.shape}, "
                      f"kernel {k.shape}, recurrent_kernel {rk.shape}, "
                      f"bias {None if bias is None else bias.shape}")
    b_in = np.zeros(3 * H, dt) if bias is None else (bias[0] if c["reset_after"] else bias)
    b_rec = bias[1] if (bias is not None and c["reset_after"]) else np.zeros(3 * H, dt)
    return c, x, k, rk, b_in, b_rec, mask


def _initial_state(inputs, B, H, dt):
    """h0 as a fresh C-contiguous (B, H) array of ``dt`` (zeros when not connected)."""
    if "h0" not in inputs:
        return np.zeros((B, H), dt)
    h = np.array(inputs["h0"], dtype=dt, order="C", copy=True)
    if h.shape != (B, H):
        raise OpError(f"gru(units={H}): the initial state must be a ({B}, {H}) array, "
                      f"got h0 {h.shape}")
    return h


def infer_recurrent(c, specs, n_gates, bias_shape_):
    """Shared shape rule of the one-state recurrent ops (gru, simple_rnn)."""
    H = int(c["units"])
    x = specs["x"]
    if x.rank != 3 or not is_float(x.dtype):
        raise OpError(f"x must be a float (batch, time, features) array, got {x}")
    B, T, D = x.shape
    want = {"kernel": (D, n_gates * H), "recurrent_kernel": (H, n_gates * H)}
    if c["use_bias"]:
        want["bias"] = bias_shape_
    elif "bias" in specs:
        raise OpError("bias connected but use_bias=False")
    for port, shape in want.items():
        if port not in specs:
            raise OpError(f"input {port!r} is missing")
        s = specs[port]
        if not is_float(s.dtype) or not _fits(s.shape, shape):
            raise OpError(f"{port} must be a float array of shape {shape} for "
                          f"units={H} and {D} input features, got {s}")
    if "mask" in specs:
        m = specs["mask"]
        if m.dtype != "bool" or not _fits(m.shape, (B, T)):
            raise OpError(f"mask must be a bool array of shape {(B, T)}, got {m}")
    s = specs.get("h0")
    if s is not None and (not is_float(s.dtype) or not _fits(s.shape, (B, H))):
        raise OpError(f"h0 must be a float array of shape {(B, H)} (batch, units), got {s}")
    dt = float_dtype(*(specs[p].dtype for p in ["x", *want]))
    y = Spec((B, T, H) if c["return_sequences"] else (B, H), dt)
    return [y] + ([Spec((B, H), dt)] if c["return_state"] else [])


def recurrent_mask_rule(attrs):
    seq = bool(attrs.get("return_sequences", False))
    # the mask of the initial state is ignored (Keras reads the sequence's only)
    return MaskRule(takes=True, uses=True, out="pass" if seq else "none", mask_from=("x",))


def finish_outputs(c, inputs, mask, y, h):
    """Visible outputs from the kernels' ``y`` and final ``h``: Keras's previous output
    starts at zeros (not at ``h0``) before a sample's first kept step."""
    vis = [y if c["return_sequences"] else h.copy()]
    if "h0" in inputs:  # the kernels repeat the carried h
        if not c["return_sequences"]:
            vis[0][~mask.any(axis=1)] = 0
        elif not c["zero_output_for_mask"]:
            y[~_started(mask, c["go_backwards"])] = 0
    if c["return_state"]:
        vis.append(h)
    return vis


def initial_dh(c, inputs, mask, grads, dt):
    """The gradient w.r.t. the final state, and the sequence output's gradient (empty
    without one), as the kernels take them."""
    B = mask.shape[0]
    H = int(c["units"])
    init = "h0" in inputs
    dh = np.zeros((B, H), dt)
    if c["return_state"] and grads[1] is not None:
        dh += grads[1]
    seq = c["return_sequences"] and grads[0] is not None
    if not c["return_sequences"] and grads[0] is not None:
        dh += np.where(mask.any(axis=1)[:, None], grads[0], 0) if init else grads[0]
    gy = np.ascontiguousarray(grads[0], dtype=dt) if seq else np.empty((0, 0, 0), dt)
    if seq and init and not c["zero_output_for_mask"]:  # outputs forced to 0: no gradient
        gy = np.where(_started(mask, c["go_backwards"])[..., None], gy, 0).astype(dt)
    return dh, seq, gy


def ref_outputs(c, steps, h, started, B, T, H, dt):
    if c["return_sequences"]:
        y = np.stack([s["y"] for s in steps], axis=1) if T else np.zeros((B, 0, H), dt)
    else:
        y = np.where(started, h, 0)  # the output of the last kept step
    return [y.astype(dt)] + ([h] if c["return_state"] else [])


def ref_initial_dh(c, grads, started, B, H, dt):
    dh = np.zeros((B, H), dt)
    if c["return_state"] and grads[1] is not None:
        dh = dh + grads[1]
    if not c["return_sequences"] and grads[0] is not None:
        dh = dh + np.where(started, grads[0], 0)
    return dh


@register
class GRU(Op):
    name = "gru"
    side_by_side = True  # the scheduler may run it beside an independent loop
    inputs = ("x", "mask?", "kernel", "recurrent_kernel", "bias?", "h0?")
    diff_ports = ("x", "kernel", "recurrent_kernel", "bias", "h0")

    def infer(self, attrs, specs):
        c = _cfg(attrs)
        return infer_recurrent(c, specs, 3, bias_shape(int(c["units"]), c["reset_after"]))

    def mask_rule(self, attrs):
        return recurrent_mask_rule(attrs)

    def n_residuals(self, attrs):
        # offsets, rows, x_t, h_{t-1}, z, r, hh, recurrent h part (+ the dropout masks)
        # (+ with state_key, stateful, the state the forward started from)
        return (10 if dropping(_cfg(attrs)) else 8) + state_residuals(attrs, ("h0",))

    # ---- reference (readable NumPy, one step at a time) -------------------------------
    def _ref_steps(self, attrs, inputs, drop=None):
        c, x, k, rk, b_in, b_rec, mask = _prepare(attrs, inputs)
        if c["go_backwards"]:
            x, mask = x[:, ::-1], mask[:, ::-1]
        B, T, D = x.shape
        H = int(c["units"])
        mx, mh = per_gate(drop, 3, B, D, H, x.dtype)
        ra, a = c["recurrent_activation"], c["activation"]
        h = _initial_state(inputs, B, H, x.dtype)
        started = np.zeros((B, 1), bool)  # a kept step was seen: previous output = h
        steps = []
        for t in range(T):
            xp = [(x[:, t] * mx[g]) @ k[:, g * H:(g + 1) * H] + b_in[g * H:(g + 1) * H]
                  for g in range(3)]
            hp = [(h * mh[g]) @ rk[:, g * H:(g + 1) * H] + b_rec[g * H:(g + 1) * H]
                  for g in range(2)]
            z = _np_act(ra, xp[0] + hp[0])
            r = _np_act(ra, xp[1] + hp[1])
            if c["reset_after"]:
                rh = (h * mh[2]) @ rk[:, 2 * H:] + b_rec[2 * H:]
                hh = _np_act(a, xp[2] + r * rh)
            else:
                rh = r * (h * mh[2])
                hh = _np_act(a, xp[2] + rh @ rk[:, 2 * H:])
            keep = mask[:, t, None]
            started = started | keep
            steps.append({"x": x[:, t], "h": h, "z": z, "r": r, "hh": hh, "rh": rh,
                          "keep": keep})
            h = np.where(keep, z * h + (1 - z) * hh, h).astype(x.dtype)
            vis = keep if c["zero_output_for_mask"] else started
            steps[-1]["vis"] = vis
            steps[-1]["y"] = np.where(vis, h, 0)
        return c, steps, h, started, (B, T, H, x.dtype)

    def reference(self, attrs, inputs, drop=None):
        """The outputs; ``drop``: the dropout masks ``(mx, mh)`` of :func:`draw_masks`."""
        c, steps, h, started, (B, T, H, dt) = self._ref_steps(attrs, inputs, drop)
        return ref_outputs(c, steps, h, started, B, T, H, dt)

    def reference_vjp(self, attrs, inputs, grads, wrt, drop=None):
        c, steps, _, started, (B, T, H, dt) = self._ref_steps(attrs, inputs, drop)
        _, x, k, rk, _, _, _ = _prepare(attrs, inputs)
        mx, mh = per_gate(drop, 3, B, x.shape[2], H, dt)
        ra, a = c["recurrent_activation"], c["activation"]
        dh = ref_initial_dh(c, grads, started, B, H, dt)
        dk, drk = np.zeros_like(k), np.zeros_like(rk)
        db_in, db_rec = np.zeros(3 * H, dt), np.zeros(3 * H, dt)
        dxs = np.zeros(x.shape, dt)

        def cols(g):
            return slice(g * H, (g + 1) * H)

        for t in range(T - 1, -1, -1):
            s = steps[t]
            if c["return_sequences"] and grads[0] is not None:
                dh = dh + np.where(s["vis"], grads[0][:, t], 0)
            keep = s["keep"]
            dz = np.where(keep, dh * (s["h"] - s["hh"]) * _np_dact(ra, s["z"]), 0)
            dah = np.where(keep, dh * (1 - s["z"]) * _np_dact(a, s["hh"]), 0)
            if c["reset_after"]:
                dr = dah * s["rh"] * _np_dact(ra, s["r"])
                dzh = [dz, dr, dah * s["r"]]
                db_rec += np.concatenate(dzh, axis=1).sum(0)
            else:
                drh = dah @ rk[:, 2 * H:].T  # d(r * h'), h' the dropped-out state
                dr = drh * (s["h"] * mh[2]) * _np_dact(ra, s["r"])
                dzh = [dz, dr]
                drk[:, 2 * H:] += s["rh"].T @ dah
            dprev = dh * s["z"]
            for g, d in enumerate(dzh):
                drk[:, cols(g)] += (s["h"] * mh[g]).T @ d
                dprev = dprev + (d @ rk[:, cols(g)].T) * mh[g]
            if not c["reset_after"]:
                dprev = dprev + drh * s["r"] * mh[2]
            dx_t = 0
            for g, d in enumerate([dz, dr, dah]):
                dk[:, cols(g)] += (np.where(keep, s["x"], 0) * mx[g]).T @ d
                db_in[cols(g)] += d.sum(0)
                dx_t = dx_t + (d @ k[:, cols(g)].T) * mx[g]
            dxs[:, t] = dx_t
            dh = np.where(keep, dprev, dh)  # carried state: straight through
        if c["go_backwards"]:
            dxs = dxs[:, ::-1]
        db = np.stack([db_in, db_rec]) if c["reset_after"] else db_in
        out = {"x": dxs, "kernel": dk, "recurrent_kernel": drk, "bias": db, "h0": dh}
        return {p: np.ascontiguousarray(out[p]).astype(inputs[p].dtype) for p in wrt}

    # ---- fast path ----------------------------------------------------------------------
    def forward(self, attrs, inputs):
        # stateful (state_key): from the carried state, see ops/rnn_state.py
        return stateful_forward("gru", attrs, inputs, lambda ins: self._forward(attrs, ins))

    def _forward(self, attrs, inputs):
        """(outputs and residuals, (final h,))."""
        c, x, k, rk, b_in, b_rec, mask = _prepare(attrs, inputs)
        B, T, D = x.shape
        H = int(c["units"])
        h = _initial_state(inputs, B, H, x.dtype)
        y = np.empty((B, T, H) if c["return_sequences"] else (0, 0, 0), x.dtype)
        keep = attrs.get("_residuals", True)  # False: no VJP reads them (inference)
        mx, mh = draw_masks(attrs, c, B, D, H, x.dtype, 3)
        empty = np.empty(0, x.dtype)
        drop = [empty if mx is None else mx, empty if mh is None else mh] if dropping(c) \
            else []
        if mh is not None:  # recurrent dropout: the reference's step loop (Keras's cell loop)
            out = self.reference({**attrs, "return_state": True}, inputs, (mx, mh))
            vis = out[:1] + (out[1:] if c["return_state"] else [])
            return vis + [np.empty(0, np.int64)] * 2 + [empty] * 6 + drop, (out[1],)
        if mx is not None:  # the same input mask at every step
            x = np.ascontiguousarray(x * mx[:, None, :])
        offsets, rows = K.schedule(mask, c["go_backwards"])
        res = K.forward(x, k, rk, b_in, b_rec, offsets, rows, mask, c, y, h, keep)
        vis = finish_outputs(c, inputs, mask, y, h)
        if not keep:  # the workspace is reused: hand out nothing that lives in it
            res = [np.empty((0,) * r.ndim, r.dtype) for r in res]
        return vis + [offsets, rows, *res, *drop], (h,)

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        inputs, outputs = vjp_inputs(attrs, inputs, outputs)  # stateful: the start state
        c, x, k, rk, _, _, mask = _prepare(attrs, inputs)
        mx = None
        if dropping(c):
            mx, mh = outputs[-2:]
            if mh.size:  # recurrent dropout: the step loop's VJP with the same masks
                return self.reference_vjp(attrs, inputs, grads, wrt, (mx, mh))
            mx = mx if mx.size else None
            outputs = outputs[:-2]
        if mx is not None:  # the kernels saw x * mx
            x = np.ascontiguousarray(x * mx[:, None, :])
        dh, seq, gy = initial_dh(c, inputs, mask, grads, x.dtype)
        offsets, rows, *res = outputs[-8:]
        dx, dk, drk, db_in, db_rec = K.backward(x, k, rk, offsets, rows, mask, c, res, seq,
                                                gy, dh)
        if mx is not None:
            dx = dx * mx[:, None, :]
        # dh now holds the state gradient carried back to the first step
        out = {"x": lambda: dx, "kernel": lambda: dk, "recurrent_kernel": lambda: drk,
               "bias": lambda: (np.stack([db_in, db_rec]) if c["reset_after"] else db_in),
               "h0": lambda: dh}
        return {p: out[p]().astype(inputs[p].dtype, copy=False) for p in wrt}
