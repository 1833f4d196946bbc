"""``prim.masked_softmax``: the softmax of attention scores over the keys a query keeps.

Ports ``x`` (float scores ``(..., T, S)``: T queries, S keys) and an optional bool
``keep`` broadcastable to ``x`` (True = the query may attend to that key). Attrs:

* ``causal`` (bool): query ``t`` also drops the keys ``s > t`` (Keras's causal mask, the
  lower triangle of the last two axes);
* ``window`` (int >= 0): with ``window > 0`` query ``t`` also drops the keys with
  ``|t - s| >= window`` (Keras 3's ``sliding_window``);
* ``empty`` (how a row that keeps no key is filled), one per way Keras 3 computes it,
  so that each attention layer matches Keras exactly:

  - ``"zero"``: ``where(keep, softmax(where(keep, x, -1e9)), 0)`` (Keras's ``Softmax``
    layer with a mask; ``MultiHeadAttention`` with dropout or attention scores): an
    empty row is all 0;
  - ``"uniform"``: ``softmax(x + where(keep, 0, -0.7 * 3.38953e38))`` (Keras's
    ``dot_product_attention``, used by ``MultiHeadAttention`` otherwise): an empty row
    is ``1 / S`` everywhere;
  - ``"shift"``: ``softmax(where(keep, x, x - 1e9))`` (Keras's ``Attention`` and
    ``AdditiveAttention``): an empty row is the softmax of ``x - 1e9`` computed in the
    dtype of ``x`` (float32 rounding makes close scores equal there).

  A row that keeps a key gives the same in all three: the softmax over its kept keys,
  0 at the others. The ``reference`` is these formulas, literally.

The kernels (``graphmask/kernels/primitives/attention.py``) read only the kept keys of
each row for its max, then exponentiate in NumPy and normalise. The VJP is the
softmax's, ``y (g - sum(g y))`` from the output ``y``: 0 into dropped keys, 0 into the
scores of an empty ``"zero"`` row, and for ``"uniform"`` / ``"shift"`` the gradient
autograd gives Keras's formulas (it does not see the rounding that makes an empty row
uniform).
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels.primitives import attention as KA
from graphmask.kernels.primitives import reduce as K
from graphmask.ops.base import register
from graphmask.ops.primitives.common import Prim, float_of, kind, spec, zeros_or

#: Keras's fills: the ``Softmax`` layer's and ``Attention``'s ``-1e9``, and the bias the
#: torch backend's ``dot_product_attention`` adds at dropped keys (float32 and float64).
SOFTMAX_FILL = -1e9
SDPA_FILL = 3.38953e38 * -0.7
EMPTY = ("zero", "uniform", "shift")


@register
class MaskedSoftmax(Prim):
    name = "prim.masked_softmax"
    inputs = ("x", "keep?")
    diff_ports = ("x",)

    def _attrs(self, attrs):
        causal = attrs.get("causal", False)
        window = attrs.get("window", 0)
        empty = attrs.get("empty", "zero")
        if not isinstance(causal, bool):
            raise self.error(f"attrs['causal'] must be True or False, got {causal!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 0:
            raise self.error(f"attrs['window'] must be an int >= 0, got {window!r}")
        if empty not in EMPTY:
            raise self.error(f"attrs['empty'] must be one of {list(EMPTY)}, got {empty!r}")
        return causal, window, empty

    def infer(self, attrs, specs):
        self._attrs(attrs)
        x = specs["x"]
        if kind(self.check_dtype("x", x.dtype)) != "f":
            raise self.error(f"input x must hold float scores, got {x.dtype}")
        if x.rank < 2:
            raise self.error(f"input x must have rank >= 2 (queries, keys), got shape "
                             f"{tuple(x.shape)}")
        keep = specs.get("keep")
        if keep is not None:
            if keep.dtype != "bool":
                raise self.error(f"input keep must be bool, got {keep.dtype}")
            aligned = zip(x.shape[x.rank - keep.rank:], keep.shape)
            if keep.rank > x.rank or any(k not in (1, None) and d is not None and k != d
                                         for d, k in aligned):
                raise self.error(f"input keep {tuple(keep.shape)} must broadcast to the "
                                 f"scores x {tuple(x.shape)} without growing them")
        return [spec(x.shape, float_of(x.dtype))]

    # ---- the definition ----------------------------------------------------------------
    def _kept(self, attrs, x, keep):
        causal, window, _ = self._attrs(attrs)
        k = np.ones(x.shape, bool) if keep is None else np.broadcast_to(keep, x.shape)
        t = np.arange(x.shape[-2])[:, None]
        s = np.arange(x.shape[-1])[None, :]
        if causal:
            k = k & (t >= s)
        if window:
            k = k & (np.abs(t - s) < window)
        return k

    def reference(self, attrs, inputs):
        x = inputs["x"]
        dt = float_of(str(x.dtype))
        x = x.astype(dt)
        k = self._kept(attrs, x, inputs.get("keep"))
        empty = self._attrs(attrs)[2]
        if empty == "zero":
            z = np.where(k, x, np.asarray(SOFTMAX_FILL, dt))
        elif empty == "uniform":
            z = x + np.where(k, 0, SDPA_FILL).astype(dt)
        else:
            z = np.where(k, x, x - np.asarray(1e9, dt))
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        y = e / e.sum(axis=-1, keepdims=True)
        return [np.where(k, y, 0).astype(dt) if empty == "zero" else y]

    # ---- the fast path -----------------------------------------------------------------
    def forward(self, attrs, inputs):
        causal, window, empty = self._attrs(attrs)
        x = inputs["x"]
        dt = float_of(str(x.dtype))
        t_len, s_len = x.shape[-2], x.shape[-1]
        x2 = np.ascontiguousarray(x, dtype=dt).reshape(-1, s_len)
        keep = inputs.get("keep")
        if keep is None:
            k2 = np.ones((1, 1), bool)
        else:
            k2 = np.ascontiguousarray(np.broadcast_to(keep, x.shape)).reshape(-1, s_len)
        y2 = np.empty_like(x2)
        rows = np.empty(x2.shape[0], np.bool_)
        if x2.size:
            KA.masked_shift_rows(x2, k2, keep is not None, max(t_len, 1), causal, window,
                                 y2, rows)
            np.exp(y2, out=y2)  # NumPy's SIMD exp; exp(-inf) = 0 at the dropped keys
            KA.normalize_kept_rows(y2, rows)
        if empty != "zero" and rows.any():
            if empty == "uniform":
                y2[rows] = 1.0 / s_len
            else:
                z = x2[rows] - np.asarray(1e9, dt)
                z -= z.max(axis=1, keepdims=True)
                np.exp(z, out=z)
                y2[rows] = z / z.sum(axis=1, keepdims=True)
        return [y2.reshape(x.shape)]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x, y = inputs["x"], outputs[0]
        s_len = y.shape[-1]
        y2 = y.reshape(-1, s_len)
        g2 = np.ascontiguousarray(zeros_or(grads[0], y.shape, y.dtype)).reshape(-1, s_len)
        dx2 = np.empty_like(y2)
        if y2.size:
            K.row_softmax_grad(y2, g2, dx2, False)
        return {"x": dx2.reshape(y.shape).astype(x.dtype, copy=False)}

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if "x" not in wrt:
            return {}
        x = inputs["x"]
        y = self.reference(attrs, inputs)[0]
        g = zeros_or(grads[0], y.shape, y.dtype)
        dx = y * (g - np.sum(g * y, axis=-1, keepdims=True))
        return {"x": dx.astype(x.dtype)}
