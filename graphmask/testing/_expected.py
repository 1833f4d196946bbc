"""Independent expectations: Keras 3 mask propagation and loss formulas in NumPy.

Nothing here uses the mask pass or the loss kernels: the masks come from the layers'
documented semantics applied to concrete values, the losses from the formulas of
docs/masking.md ("Losses and metrics with a mask"), so a fault in the compiler or in a
kernel shows up as a disagreement.
"""
from __future__ import annotations

import numpy as np

from graphmask.testing import _runner as R

EPS = 1e-7
_PASS = ("dense", "activation", "identity", "dropout", "add_n")
_DROP = ("global_average_pooling_1d", "global_max_pooling_1d", "flatten")
_MERGE = ("add", "concatenate")


def expected_masks(model, batch) -> dict:
    """``{(node, out): bool (B, T) array or None}`` for inputs and layer outputs.

    The mask a custom layer returns itself (``compute_mask``, ``Lambda(mask=...)``: an
    ``attach_mask`` node) is taken as it is computed: it is the layer's own definition.

    Ops the checker has no rule for are left out, and so is everything downstream
    of them (:func:`mask_gaps` says which and why).
    """
    return expected_masks_and_gaps(model, batch)[0]


def mask_gaps(model, batch) -> dict:
    """``{(node, out): reason}`` for the layer outputs :func:`expected_masks` leaves out."""
    return expected_masks_and_gaps(model, batch)[1]


def expected_masks_and_gaps(model, batch) -> tuple[dict, dict]:
    """(:func:`expected_masks`, :func:`mask_gaps`) in one pass."""
    g = model.graph
    nodes = R.layer_nodes(g)
    need = []
    for nid in nodes:
        op = g.node(nid)["op"]
        if op == "embedding":
            need.append(R.port_source(g, nid, "ids"))
        elif op == "masking":
            need.append(R.port_source(g, nid, "x"))
        elif op == "attach_mask":
            need.append(R.port_source(g, nid, "mask"))
    need = list(dict.fromkeys(need))
    vals = dict(zip(need, R.execute(model, batch, need))) if need else {}
    exp: dict = {(nid, 0): None for nid in g.meta["inputs"]}
    gaps: dict = {}
    for nid in nodes:
        n = g.node(nid)
        op, attrs = n["op"], n["attrs"]
        srcs = [tuple(src) for p, src in g.in_ports(nid).items()
                if p != "mask" and g.node(src[0])["op"] != "variable"]
        n_out = len(n["specs"])
        unknown = [s for s in srcs if s not in exp]
        if unknown and op != "attach_mask":  # attach_mask's mask is its port's, not x's
            why = gaps.get(unknown[0], "")
            if not why.startswith("downstream of"):
                first = g.node(unknown[0][0])
                why = (f"downstream of layer {first['layer']!r} ({first['op']}), whose "
                       f"output mask the checker cannot derive")
            gaps.update({(nid, k): why for k in range(n_out)})
            continue
        incoming = [exp.get(s) for s in srcs]
        if op == "embedding":
            ids = vals[R.port_source(g, nid, "ids")]
            out = (np.asarray(ids) != 0) if attrs.get("mask_zero") else None
        elif op == "masking":
            x = vals[R.port_source(g, nid, "x")]
            out = np.any(x != np.asarray(attrs.get("mask_value", 0.0), x.dtype), axis=-1)
        elif op in ("lstm", "gru", "simple_rnn"):
            out = incoming[0] if attrs.get("return_sequences") else None
        elif op == "attach_mask":
            # a custom layer's own mask (its compute_mask, or Lambda's mask=): user code,
            # taken as computed; what the compiler must do is carry it onwards
            out = np.asarray(vals[R.port_source(g, nid, "mask")], bool)
        elif op in _PASS:
            out = next((m for m in incoming if m is not None), None)
        elif op in _DROP:
            out = None
        elif op in _MERGE:
            out = None if any(m is None for m in incoming) else np.logical_or.reduce(incoming)
        else:
            why = f"the checker has no Keras 3 mask rule for op {op!r}"
            gaps.update({(nid, k): why for k in range(n_out)})
            continue
        exp[(nid, 0)] = out
        for k in range(1, n_out):
            exp[(nid, k)] = None
    return exp, gaps


def _scores(lobj, p: np.ndarray, y: np.ndarray) -> np.ndarray:
    fn = lobj.fn
    p = np.asarray(p, np.float64)
    logits = bool(getattr(lobj, "from_logits", False))
    ls = float(getattr(lobj, "label_smoothing", 0.0) or 0.0)
    if fn == "sparse_categorical_crossentropy":
        ids = np.asarray(y).astype(np.int64)
        if ids.ndim == p.ndim:
            ids = ids[..., 0]
        y = np.eye(p.shape[-1])[ids]
    y = np.asarray(y, np.float64)
    if y.ndim == p.ndim - 1:
        y = y[..., None]
    if fn == "mean_squared_error":
        return np.mean((y - p) ** 2, axis=-1)
    if fn == "mean_absolute_error":
        return np.mean(np.abs(y - p), axis=-1)
    if fn == "binary_crossentropy":
        y = y * (1 - ls) + 0.5 * ls
        if logits:
            return np.mean(np.maximum(p, 0) - p * y + np.log1p(np.exp(-np.abs(p))), axis=-1)
        q = np.clip(p, EPS, 1 - EPS)
        return np.mean(-(y * np.log(q) + (1 - y) * np.log(1 - q)), axis=-1)
    if fn in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        y = y * (1 - ls) + ls / p.shape[-1]
        if logits:
            z = p - p.max(axis=-1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        else:
            q = np.clip(p / p.sum(axis=-1, keepdims=True), EPS, 1 - EPS)
            logp = np.log(q)
        return -np.sum(y * logp, axis=-1)
    raise AssertionError(f"graphmask.testing does not know the loss {fn!r}")


def expected_loss(lobj, pred, y, w, mask):
    """(expected value, {name of a wrong formula: its value}) for one loss."""
    s = _scores(lobj, pred, y)
    w = np.ones_like(s) if w is None else np.broadcast_to(
        np.asarray(w, np.float64).reshape(np.shape(w) + (1,) * (s.ndim - np.ndim(w))), s.shape)
    alts = {"the unmasked mean sum(score*w)/count (padding treated as data)":
            float((s * w).sum() / s.size)}
    if mask is None:
        return float((s * w).sum() / s.size), alts
    m = np.asarray(mask, np.float64).reshape(s.shape)
    n = m.sum()
    want = float((s * m * w).sum() / n) if n else 0.0
    alts["sum(score*m*w)/count over all positions, padding included (the Keras 2.3 / "
         "tf.keras <= 2.10 bug)"] = float((s * m * w).sum() / s.size)
    if (m * w).sum():
        alts["sum(score*m*w)/sum(m*w) (a weighted denominator)"] = float(
            (s * m * w).sum() / (m * w).sum())
    return want, alts
