"""The LSTM op: Keras 3 semantics with a padding mask (see docs/masking.md).

Gates in Keras order i, f, c, o. At a masked step the state is carried (``h_t = h_{t-1}``,
``c_t = c_{t-1}``) and the output repeats the previous output: the output of the last kept
step, or zeros before the first kept step (Keras's ``rnn`` starts its previous output at
zeros, whatever the initial state). ``zero_output_for_mask`` zeroes the sequence output at
every masked step. ``go_backwards`` processes time reversed and returns outputs in
processing order. The single output of ``return_sequences=False`` is the output of the
last kept step (zeros for a sample with no kept step); the states of ``return_state`` are
the carried ``h, c`` (the initial state for a sample with no kept step).

The optional ports ``h0``, ``c0`` (both or neither, each (batch, units)) are the initial
state (zeros without them); they are cast to the op's float dtype, and their gradients
are the state gradients carried back to the first step. Kernels work on kept
(sample, step) rows only (``kernels/lstm.py``).

Dropout (Keras 3's ``LSTMCell``), active in a train plan only (``attrs['_training']``;
``attrs['training']``, when present, pins it): ``dropout`` draws one mask of the input
features per sample, ``(batch, features)``, kept with probability ``1 - rate`` and scaled
by ``1 / (1 - rate)``, and every step of that sample's sequence uses it (the input is
multiplied before the fast kernels run). ``recurrent_dropout`` (as Keras's
implementation 1) draws four input masks and four masks of ``h_{t-1}``, one per gate
(i, f, c, o), each fixed along the sequence; that path runs the NumPy step loop of the
reference, as Keras leaves its fused kernels for the cell loop. New masks are drawn at
every forward (every batch), from graphmask's generator (``set_random_seed``) or, with
``attrs['seed']``, from the stream :func:`seed_stream` keeps for ``attrs['seed_key']``.
The masks are residuals, so the VJP needs no mode flag.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import lstm as K
from graphmask.kernels import parallel_launch
from graphmask.ops.base import MaskRule, Op, OpError, Spec, float_dtype, is_float, register
from graphmask.ops.rnn_state import (  # noqa: F401  (the stateful API, re-exported)
    check_stateful_batch,
    get_state,
    new_state,
    reset_state,
    state_key,
    stateful_forward,
    vjp_inputs,
)
from graphmask.ops.rnn_state import n_residuals as state_residuals
from graphmask.utils import rng as global_rng

_RECURRENT = ("sigmoid", "tanh", "linear", "hard_sigmoid")
_ACTIVATION = ("tanh", "relu", "sigmoid", "linear")


def _cfg(attrs):
    """Attributes with their Keras defaults, validated."""
    c = {"units": attrs.get("units"), "activation": attrs.get("activation", "tanh"),
         "recurrent_activation": attrs.get("recurrent_activation", "sigmoid")}
    c["use_bias"] = bool(attrs.get("use_bias", True))
    for flag in ("return_sequences", "return_state", "go_backwards", "zero_output_for_mask"):
        c[flag] = bool(attrs.get(flag, False))
    if not isinstance(c["units"], (int, np.integer)) or isinstance(c["units"], bool) \
            or c["units"] <= 0:
        raise OpError(f"units must be a positive int, got {c['units']!r}")
    if c["activation"] not in _ACTIVATION:
        raise OpError(f"activation must be one of {_ACTIVATION}, got {c['activation']!r}")
    if c["recurrent_activation"] not in _RECURRENT:
        raise OpError(f"recurrent_activation must be one of {_RECURRENT}, "
                      f"got {c['recurrent_activation']!r}")
    for rate in ("dropout", "recurrent_dropout"):
        value = attrs.get(rate, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
                or not 0.0 <= value < 1.0:
            raise OpError(f"{rate} must be a number in [0, 1), got {value!r}")
        c[rate] = float(value)
    return c


# ---- dropout masks --------------------------------------------------------------------------
_STREAMS: dict[str, np.random.Generator] = {}


def seed_stream(key: str, seed: int) -> None:
    """Start (or restart) the generator of a layer created with ``seed=``: its dropout
    masks then depend on the seed only, as Keras's ``SeedGenerator(seed)``."""
    _STREAMS[key] = np.random.default_rng(int(seed))


def check_dropout(who: str, dropout, recurrent_dropout, seed, name: str):
    """A layer's ``(dropout, recurrent_dropout, seed)``, checked (rates in [0, 1), seed
    None or an int >= 0); a seeded layer (re)starts its own mask stream."""
    from graphmask.errors import ConfigError
    rates = []
    for arg, value in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
        value = 0.0 if value is None else value
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
                or not 0.0 <= value < 1.0:
            raise ConfigError(f"{who}: {arg} must be a number in [0, 1) (the fraction of "
                              f"units dropped while training), got {value!r}")
        rates.append(float(value))
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or seed < 0):
        raise ConfigError(f"{who}: seed must be None or an int >= 0, got {seed!r}")
    if seed is not None and any(rates):
        seed_stream(f"{name}:{int(seed)}", int(seed))
    return rates[0], rates[1], None if seed is None else int(seed)


def dropout_attrs(dropout, recurrent_dropout, seed, name: str) -> dict:
    """The op attributes of a layer's dropout (none when both rates are 0)."""
    if not (dropout or recurrent_dropout):
        return {}
    out = {"dropout": dropout, "recurrent_dropout": recurrent_dropout}
    if seed is not None:
        out.update(seed=seed, seed_key=f"{name}:{seed}")
    return out


# ---- stateful layers -------------------------------------------------------------------------
# The carried states live in ``ops/rnn_state.py`` (shared with gru and simple_rnn);
# check_stateful_batch, get_state, new_state, reset_state and state_key stay importable
# from here. The ports a stateful call's start state feeds (and its residuals):
STATE_PORTS = ("h0", "c0")


def _generator(attrs) -> np.random.Generator:
    key = attrs.get("seed_key")
    if attrs.get("seed") is None or key is None:
        return global_rng()
    if key not in _STREAMS:
        seed_stream(key, attrs["seed"])
    return _STREAMS[key]


def _active(attrs) -> bool:
    return bool(attrs["training"] if "training" in attrs else attrs.get("_training"))


def _keep(gen, shape, rate, dt):
    return ((gen.random(shape) >= rate) / (1.0 - rate)).astype(dt)


def draw_masks(attrs, B, D, H, dt):
    """The dropout masks of one forward: ``(mx, mh)``. Without recurrent dropout ``mx`` is
    one ``(B, D)`` input mask (``None`` at rate 0) and ``mh`` is ``None``; with it, ``mx``
    is ``(4, B, D)`` and ``mh`` ``(4, B, H)``, one per gate i, f, c, o (ones where a rate
    is 0). ``None, None`` outside training or with both rates 0."""
    c = _cfg(attrs)
    if not _active(attrs) or not (c["dropout"] or c["recurrent_dropout"]):
        return None, None
    gen = _generator(attrs)
    if not c["recurrent_dropout"]:
        return _keep(gen, (B, D), c["dropout"], dt), None
    mx = _keep(gen, (4, B, D), c["dropout"], dt) if c["dropout"] else np.ones((4, B, D), dt)
    return mx, _keep(gen, (4, B, H), c["recurrent_dropout"], dt)


def _per_gate(mx, mh, B, D, H, dt):
    """Both masks as ``(4, B, D)``, ``(4, B, H)`` (ones for a missing one)."""
    if mx is None:
        mx = np.ones((4, B, D), dt)
    elif mx.ndim == 2:
        mx = np.broadcast_to(mx, (4, B, D))
    return mx, np.ones((4, B, H), dt) if mh is None else mh


def _np_act(name, z):
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "relu":
        return np.maximum(z, 0)
    if name == "hard_sigmoid":
        return np.clip(z + 3.0, 0.0, 6.0) / 6.0
    return z


def _np_dact(name, y):
    """Derivative through the activation's output (matches the kernels)."""
    if name == "tanh":
        return 1 - y * y
    if name == "sigmoid":
        return y * (1 - y)
    if name == "relu":
        return (y > 0).astype(y.dtype)
    if name == "hard_sigmoid":
        return ((y > 0) & (y < 1)).astype(y.dtype) / 6.0
    return np.ones_like(y)


def _prepare(attrs, inputs):
    """Config, common float dtype, weights cast to it, mask (all kept when absent)."""
    c = _cfg(attrs)
    ws = [inputs["x"], inputs["kernel"], inputs["recurrent_kernel"]]
    if "bias" in inputs:
        ws.append(inputs["bias"])
    dt = np.dtype(np.float64 if any(w.dtype == np.float64 for w in ws) else np.float32)
    x, k, rk = (np.ascontiguousarray(w, dtype=dt) for w in ws[:3])
    bias = np.ascontiguousarray(inputs["bias"], dtype=dt) if (
        c["use_bias"] and "bias" in inputs) else None
    mask = inputs.get("mask")
    mask = (np.ones(x.shape[:2], dtype=bool) if mask is None
            else np.ascontiguousarray(mask, dtype=bool))
    H = int(c["units"])
    # the kernels do not bounds-check: shapes are checked here, at run time too
    if (x.ndim != 3 or k.shape != (x.shape[2], 4 * H) or rk.shape != (H, 4 * H)
            or mask.shape != x.shape[:2] or (bias is not None and bias.shape != (4 * H,))):
        raise OpError(f"lstm(units={H}): shapes do not fit: x {x.shape}, mask {mask.shape}, "
                      f"kernel {k.shape}, recurrent_kernel {rk.shape}, "
                      f"bias {None if bias is None else bias.shape}")
    return c, x, k, rk, bias, mask


def _initial_state(inputs, B, H, dt):
    """(h0, c0) as fresh C-contiguous (B, H) arrays of ``dt`` (zeros when not connected);
    the kernels update them in place into the final state."""
    if "h0" not in inputs and "c0" not in inputs:
        return np.zeros((B, H), dt), np.zeros((B, H), dt)
    if "h0" not in inputs or "c0" not in inputs:
        raise OpError(f"lstm(units={H}): the initial state needs both h0 and c0")
    out = [np.array(inputs[p], dtype=dt, order="C", copy=True) for p in ("h0", "c0")]
    if any(a.shape != (B, H) for a in out):
        raise OpError(f"lstm(units={H}): the initial state must be two ({B}, {H}) arrays, "
                      f"got h0 {out[0].shape}, c0 {out[1].shape}")
    return out


def _started(mask, back):
    """(B, T) in processing order: True from each sample's first kept step on (Keras's
    previous output is zeros before it)."""
    pm = mask[:, ::-1] if back else mask
    return np.logical_or.accumulate(pm, axis=1) if pm.size else pm.copy()


def _fits(shape, want):
    """Same rank, and equal wherever both dimensions are known."""
    return len(shape) == len(want) and all(
        a is None or b is None or a == b for a, b in zip(shape, want))


def _widest_step(offsets):
    return int(np.diff(offsets).max()) if offsets.size > 1 else 0


@register
class LSTM(Op):
    name = "lstm"
    side_by_side = True  # the scheduler may run it beside an independent loop
    side_by_side_max_batch = 2 * K.GROUP_SAMPLES  # from here on: sample groups
    inputs = ("x", "mask?", "kernel", "recurrent_kernel", "bias?", "h0?", "c0?")
    diff_ports = ("x", "kernel", "recurrent_kernel", "bias", "h0", "c0")

    def infer(self, attrs, specs):
        c = _cfg(attrs)
        H = int(c["units"])
        x = specs["x"]
        if x.rank != 3 or not is_float(x.dtype):
            raise OpError(f"x must be a float (batch, time, features) array, got {x}")
        B, T, D = x.shape
        want = {"kernel": (D, 4 * H), "recurrent_kernel": (H, 4 * H)}
        if c["use_bias"]:
            want["bias"] = (4 * H,)
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
        if ("h0" in specs) != ("c0" in specs):
            raise OpError(f"the initial state needs both h0 and c0, got only "
                          f"{'h0' if 'h0' in specs else 'c0'}")
        for port in ("h0", "c0"):
            s = specs.get(port)
            if s is not None and (not is_float(s.dtype) or not _fits(s.shape, (B, H))):
                raise OpError(f"{port} must be a float array of shape {(B, H)} (batch, units), "
                              f"got {s}")
        dt = float_dtype(*(specs[p].dtype for p in ["x", *want]))
        y = Spec((B, T, H) if c["return_sequences"] else (B, H), dt)
        return [y] + ([Spec((B, H), dt), Spec((B, H), dt)] if c["return_state"] else [])

    def mask_rule(self, attrs):
        seq = bool(attrs.get("return_sequences", False))
        # the masks of the initial state are ignored (Keras reads the sequence's only)
        return MaskRule(takes=True, uses=True, out="pass" if seq else "none",
                        mask_from=("x",))

    def n_residuals(self, attrs):
        # offsets, rows, x_t, h_{t-1}, gate activations, c_{t-1}, act(c_t); with a dropout
        # rate also the masks mx, mh (empty when none was drawn)
        # and with state_key (stateful) the state the forward started from, h0 and c0
        c = _cfg(attrs)
        n = 9 if c["dropout"] or c["recurrent_dropout"] else 7
        return n + state_residuals(attrs, STATE_PORTS)

    # ---- reference (readable NumPy, one step at a time) -------------------------------
    def _ref_steps(self, attrs, inputs, drop=None):
        c, x, k, rk, bias, mask = _prepare(attrs, inputs)
        if c["go_backwards"]:
            x, mask = x[:, ::-1], mask[:, ::-1]
        B, T, D = x.shape
        H = int(c["units"])
        mx, mh = _per_gate(*(drop or (None, None)), B, D, H, x.dtype)
        h, cs = _initial_state(inputs, B, H, x.dtype)
        started = np.zeros((B, 1), bool)  # a kept step was seen: previous output = h
        steps = []
        for t in range(T):
            z = np.concatenate([(x[:, t] * mx[g]) @ k[:, g * H:(g + 1) * H]
                                + (h * mh[g]) @ rk[:, g * H:(g + 1) * H]
                                for g in range(4)], axis=1) + (0 if bias is None else bias)
            i, f, g, o = (_np_act(c["recurrent_activation"], z[:, :H]),
                          _np_act(c["recurrent_activation"], z[:, H:2 * H]),
                          _np_act(c["activation"], z[:, 2 * H:3 * H]),
                          _np_act(c["recurrent_activation"], z[:, 3 * H:]))
            cn = f * cs + i * g
            tc = _np_act(c["activation"], cn)
            keep = mask[:, t, None]
            started = started | keep
            steps.append({"x": x[:, t], "h": h, "c": cs, "i": i, "f": f, "g": g, "o": o,
                          "tc": tc, "keep": keep})
            h = np.where(keep, o * tc, h).astype(x.dtype)
            cs = np.where(keep, cn, cs).astype(x.dtype)
            # output: h at a kept step; at a masked one the previous output (zeros before
            # the first kept step), or zeros with zero_output_for_mask
            vis = keep if c["zero_output_for_mask"] else started
            steps[-1]["vis"] = vis
            steps[-1]["y"] = np.where(vis, h, 0)
        return c, steps, h, cs, started, (B, T, H, x.dtype)

    def reference(self, attrs, inputs, drop=None):
        """The outputs; ``drop``: the dropout masks ``(mx, mh)`` of :func:`draw_masks`."""
        c, steps, h, cs, started, (B, T, H, dt) = self._ref_steps(attrs, inputs, drop)
        if c["return_sequences"]:
            y = np.stack([s["y"] for s in steps], axis=1) if T else np.zeros((B, 0, H), dt)
        else:
            y = np.where(started, h, 0)  # the output of the last kept step
        return [y.astype(dt)] + ([h, cs] if c["return_state"] else [])

    def reference_vjp(self, attrs, inputs, grads, wrt, drop=None):
        c, steps, _, _, started, (B, T, H, dt) = self._ref_steps(attrs, inputs, drop)
        _, x, k, rk, _, _ = _prepare(attrs, inputs)
        mx, mh = _per_gate(*(drop or (None, None)), B, x.shape[2], H, dt)
        ra, a = c["recurrent_activation"], c["activation"]
        dh = np.zeros((B, H), dt)
        dc = np.zeros((B, H), dt)
        if c["return_state"]:
            dh = dh + (0 if grads[1] is None else grads[1])
            dc = dc + (0 if grads[2] is None else grads[2])
        if not c["return_sequences"] and grads[0] is not None:
            dh = dh + np.where(started, grads[0], 0)
        dk, drk, db = np.zeros_like(k), np.zeros_like(rk), np.zeros((4 * H,), dt)
        dxs = np.zeros(x.shape, dt)
        for t in range(T - 1, -1, -1):
            s = steps[t]
            if c["return_sequences"] and grads[0] is not None:
                dh = dh + np.where(s["vis"], grads[0][:, t], 0)
            dct = dc + dh * s["o"] * _np_dact(a, s["tc"])
            dz = np.concatenate([dct * s["g"] * _np_dact(ra, s["i"]),
                                 dct * s["c"] * _np_dact(ra, s["f"]),
                                 dct * s["i"] * _np_dact(a, s["g"]),
                                 dh * s["tc"] * _np_dact(ra, s["o"])], axis=1)
            dz = np.where(s["keep"], dz, 0)  # masked step: no gradient into its inputs
            dx_t, dh_t = 0, 0
            for g in range(4):
                cols = slice(g * H, (g + 1) * H)
                dk[:, cols] += (np.where(s["keep"], s["x"], 0) * mx[g]).T @ dz[:, cols]
                drk[:, cols] += (s["h"] * mh[g]).T @ dz[:, cols]
                dx_t = dx_t + (dz[:, cols] @ k[:, cols].T) * mx[g]
                dh_t = dh_t + (dz[:, cols] @ rk[:, cols].T) * mh[g]
            db += dz.sum(0)
            dxs[:, t] = dx_t
            dh = np.where(s["keep"], dh_t, dh)  # carried state: passes straight through
            dc = np.where(s["keep"], dct * s["f"], dc)
        if c["go_backwards"]:
            dxs = dxs[:, ::-1]
        out = {"x": dxs, "kernel": dk, "recurrent_kernel": drk, "bias": db, "h0": dh, "c0": dc}
        return {p: np.ascontiguousarray(out[p]).astype(inputs[p].dtype) for p in wrt}

    # ---- fast path ----------------------------------------------------------------------
    def forward(self, attrs, inputs):
        # stateful (state_key): start from the carried state (unless one is given), carry
        # the last; the start state is the last residuals
        def run(ins):
            outs, h, cs = self._forward(attrs, ins)
            return outs, (h, cs)

        return stateful_forward("lstm", attrs, inputs, run, STATE_PORTS)

    def _forward(self, attrs, inputs):
        """(outputs and residuals, final h, final c)."""
        c, x, k, rk, bias, mask = _prepare(attrs, inputs)
        B, T, D = x.shape
        H = int(c["units"])
        dropping = c["dropout"] or c["recurrent_dropout"]
        mx, mh = draw_masks(attrs, B, D, H, x.dtype)
        empty = np.empty(0, x.dtype)
        if mh is not None:  # recurrent dropout: the step loop, with the masks as residuals
            full = self.reference({**attrs, "return_state": True}, inputs, (mx, mh))
            vis = full if c["return_state"] else full[:1]
            return (vis + [np.empty(0, np.int64)] * 2 + [empty] * 5 + [mx, mh], full[1],
                    full[2])
        if mx is not None:  # the same input mask at every step
            x = x * mx[:, None, :]
        back = c["go_backwards"]
        uoff = K.unit_chunks(H)
        offsets, rows = K.lstm_schedule(mask, back)
        bp = np.zeros(4 * H, x.dtype) if bias is None else bias
        weights = (k, bp[None], rk)
        packed = [K.pack(w, uoff) for w in weights]  # fresh arrays
        if c["activation"] == "tanh" and c["recurrent_activation"] == "sigmoid":
            # the kernels take tanh(x) as 2 sigmoid(2x) - 1: g columns times 2
            for w, P in zip(weights, packed):
                K.scale_packed_gate(P, w.shape[0], uoff, 2, 2)
        y = np.empty((B, T, H) if c["return_sequences"] else (0, 0, 0), x.dtype)
        h, cs = _initial_state(inputs, B, H, x.dtype)
        keep = attrs.get("_residuals", True)  # False: no VJP reads them (inference)
        ws = np.empty(0, x.dtype) if keep else K.workspace(
            K.forward_workspace_size(rows.size, B, x.shape[2], H), x.dtype)
        with parallel_launch(), K.threads_for(_widest_step(offsets), H) as th:
            res = K.drivers(x.dtype)[0](
                x, *packed, uoff, offsets,
                rows, mask, back,
                K.ACTIVATIONS.index(c["activation"]),
                K.ACTIVATIONS.index(c["recurrent_activation"]),
                c["return_sequences"], c["zero_output_for_mask"], y, h, cs, ws, th.threads)
        vis = [y if c["return_sequences"] else h.copy()]
        last = (h.copy(), cs.copy())
        if "h0" in inputs:  # the kernels repeat the carried h, Keras's previous output is 0
            if not c["return_sequences"]:
                vis[0][~mask.any(axis=1)] = 0
            elif not c["zero_output_for_mask"]:
                y[~_started(mask, back)] = 0
        if c["return_state"]:
            vis += [h, cs]
        if not keep:  # the workspace is reused: hand out nothing that lives in it
            res = [np.empty((0,) * r.ndim, r.dtype) for r in res]
        drop = [empty if mx is None else mx, empty] if dropping else []
        return (vis + [offsets, rows, *res, *drop], *last)

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        c, x, k, rk, _, mask = _prepare(attrs, inputs)
        B = x.shape[0]
        H = int(c["units"])
        # stateful: the carried state the forward started from
        inputs, outputs = vjp_inputs(attrs, inputs, outputs, STATE_PORTS)
        mx = None
        if c["dropout"] or c["recurrent_dropout"]:
            mx, mh = outputs[-2:]
            if mh.size:  # recurrent dropout: the step loop's VJP with the same masks
                return self.reference_vjp(attrs, inputs, grads, wrt, (mx, mh))
            mx = mx if mx.size else None
            outputs = outputs[:-2]
        init = "h0" in inputs
        uoff = K.unit_chunks(H)
        offsets, rows, Xc, Hp, A, Cp, Tc = outputs[-7:]
        dh = np.zeros((B, H), x.dtype)
        dc = np.zeros((B, H), x.dtype)
        if c["return_state"]:
            if grads[1] is not None:
                dh += grads[1]
            if grads[2] is not None:
                dc += grads[2]
        seq = c["return_sequences"] and grads[0] is not None
        if not c["return_sequences"] and grads[0] is not None:
            dh += np.where(mask.any(axis=1)[:, None], grads[0], 0) if init else grads[0]
        gy = np.ascontiguousarray(grads[0], dtype=x.dtype) if seq else np.empty(
            (0, 0, 0), x.dtype)
        if seq and init and not c["zero_output_for_mask"]:  # outputs forced to 0: no gradient
            gy = np.where(_started(mask, c["go_backwards"])[..., None], gy, 0).astype(x.dtype)
        with parallel_launch(), K.threads_for(_widest_step(offsets), H) as th:
            _, backward, weight_grads = K.drivers(x.dtype)
            rkT = np.ascontiguousarray(K.permute(rk, uoff).T)
            N, D = Xc.shape
            ws = K.workspace(N * (4 * H + D) + B * H, x.dtype)
            dZ = backward(A, Cp, Tc, rkT, uoff, offsets, rows, mask,
                          c["go_backwards"], K.ACTIVATIONS.index(c["activation"]),
                          K.ACTIVATIONS.index(c["recurrent_activation"]), seq,
                          c["zero_output_for_mask"], gy, dh, dc, ws, th.threads)
            dXc = ws[N * 4 * H + B * H:].reshape(N, D)
            dx, dk, drk, db = weight_grads(dZ, Xc, Hp, K.permute(k, uoff), offsets, rows,
                                           c["go_backwards"], B, dXc, th.threads)
        # dh, dc now hold the state gradients carried back to the first step
        if mx is not None:  # the kernels saw x * mx
            dx = dx * mx[:, None, :]
        out = {"x": lambda: dx, "kernel": lambda: K.unpermute(dk, uoff),
               "recurrent_kernel": lambda: K.unpermute(drk, uoff),
               "bias": lambda: K.unpermute(db, uoff)[0], "h0": lambda: dh, "c0": lambda: dc}
        return {p: out[p]().astype(inputs[p].dtype, copy=False) for p in wrt}
