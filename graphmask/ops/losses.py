"""Loss ops: per-position scores and the un-rewritten ``loss`` node (metrics: ``metrics.py``).

``loss_score`` gives the per-position loss of Keras 3 (docs/masking.md, "The per-position scores"),
shape ``y_pred.shape[:-1]``; the reductions live in ``ops/reductions.py``. ``loss`` is the
node ``compile()`` adds; ``passes/losses.py`` replaces it by ``loss_score`` followed by
``masked_mean`` (a mask reaches the loss) or ``weighted_mean`` (no mask).

Target shapes: dense targets have ``y_pred``'s shape; sparse targets ``y_pred.shape[:-1]``
or that plus a trailing 1. For a (B, 1) prediction a (B,) target is expanded, as Keras
does; for higher ranks Keras would squeeze the prediction and average over time, which
ignores the per-timestep mask, so graphmask asks for the trailing 1 instead.

Dropped positions. ``loss_score`` and ``metric_score`` take an optional ``mask`` of shape
``y_pred.shape[:-1]``; a position where it is False is dropped: its score and gradient
are 0 and its target is not validated. With ``ignore_class`` (sparse crossentropy only,
Keras 3's argument) a position labelled ``ignore_class`` is dropped the same way. The
class ids of a dropped position are never used as an index, so any value may sit there
(99, -1, -100 at padding). The mask pass connects the mask of ops whose kernels index
with class ids (``uses``); the reductions drop the same positions (``passes/losses.py``).
"""
from __future__ import annotations

import numpy as np

from graphmask.errors import InputError
from graphmask.kernels import losses as K
from graphmask.ops.base import MaskRule, Op, OpError, Spec, float_dtype, get_op, is_float, register

EPS = 1e-7
LOSS_FNS = ("mean_squared_error", "mean_absolute_error", "binary_crossentropy",
            "categorical_crossentropy", "sparse_categorical_crossentropy")
METRIC_FNS = ("accuracy", "binary_accuracy", "categorical_accuracy",
              "sparse_categorical_accuracy") + LOSS_FNS  # crossentropy metrics too
_SPARSE = ("sparse_categorical_crossentropy", "sparse_categorical_accuracy")
_EXPANDABLE = ("mean_squared_error", "mean_absolute_error", "binary_crossentropy",
               "accuracy", "binary_accuracy")
TAKES_MASK = MaskRule(takes=True, uses=False, out="none")
#: Scores whose kernels index ``y_pred`` with class ids read the mask (masked ids are skipped).
READS_MASK = MaskRule(takes=True, uses=True, out="none")
SCCE = "sparse_categorical_crossentropy"


def score_mask_rule(attrs) -> MaskRule:
    """``loss_score``/``metric_score`` read the mask when class ids index ``y_pred``."""
    return READS_MASK if attrs.get("fn") == SCCE else TAKES_MASK


def ignore_class(attrs):
    """The ``ignore_class`` attribute as an int, or None; only sparse crossentropy has it."""
    ign = attrs.get("ignore_class")
    if ign is None:
        return None
    if attrs.get("fn") != SCCE:
        raise OpError(f"{attrs.get('fn')}: ignore_class applies to {SCCE} only, got "
                      f"ignore_class={ign!r}")
    if isinstance(ign, (bool, np.bool_)) or not isinstance(ign, (int, np.integer)):
        raise OpError(f"{SCCE}: ignore_class must be an integer class id or None, got {ign!r}")
    return int(ign)


def ignore_keep(attrs, y_true: np.ndarray, score_shape) -> np.ndarray | None:
    """``y_true != ignore_class`` in the score's shape (None without ``ignore_class``)."""
    ign = ignore_class(attrs)
    if ign is None:
        return None
    return np.asarray(y_true).reshape(tuple(score_shape)) != ign


def _same(a, b) -> bool:
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def check_fn(attrs, valid) -> str:
    fn = attrs.get("fn")
    if fn not in valid:
        raise OpError(f"unknown fn {fn!r}; expected one of {list(valid)}")
    return fn


def target_layout(fn: str, pred_shape, true_shape) -> str:
    """How y_true lines up with y_pred: "dense", "expand" (add a trailing 1) or "sparse"."""
    pred_shape, true_shape = tuple(pred_shape), tuple(true_shape)
    if len(pred_shape) < 2:
        raise OpError(f"{fn}: y_pred must have rank >= 2 (batch, ..., classes/features), "
                      f"got shape {pred_shape}")
    lead = pred_shape[:-1]
    if fn in _SPARSE:
        if _same(true_shape, lead) or _same(true_shape, lead + (1,)):
            return "sparse"
        raise OpError(f"{fn}: y_true must have shape {lead} or {lead + (1,)} (class ids) "
                      f"for y_pred of shape {pred_shape}, got {true_shape}")
    if _same(true_shape, pred_shape):
        return "dense"
    if fn in _EXPANDABLE and pred_shape[-1] in (1, None) and _same(true_shape, lead):
        if len(pred_shape) == 2:
            return "expand"
        raise OpError(f"{fn}: y_true of shape {true_shape} lacks the trailing axis of size 1 "
                      f"of y_pred {pred_shape}; reshape it to {lead + (1,)} (Keras 3 would "
                      f"squeeze y_pred and average over time, ignoring the mask)")
    raise OpError(f"{fn}: y_true shape {true_shape} does not match y_pred shape {pred_shape}")


def _first(bad: np.ndarray, shape) -> tuple:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), shape))


def class_ids(fn: str, y: np.ndarray, n_classes: int | None, as_float=False, keep=None,
              ignore=None) -> np.ndarray:
    """Flat class ids (int64), -1 at dropped positions; whole floats accepted.

    ``keep`` (bool, ``y.size`` entries) and ``ignore`` (labels equal to it) drop positions:
    they are not checked and get id -1. A kept id that is not a whole number or lies
    outside ``[0, n_classes)`` raises InputError naming its position (the first one).
    With ``as_float`` (accuracy metrics) ids are compared, not indexed: no checks.
    """
    yf = y.reshape(-1)
    if as_float:
        return yf.astype(np.float64)
    if y.dtype.kind not in "iubf":
        raise InputError(f"{fn}: class ids must be integers, got dtype {y.dtype}")
    drop = np.zeros(yf.shape, bool) if keep is None else ~np.asarray(keep, bool).reshape(-1)
    if ignore is not None:
        drop |= yf == ignore
    if y.dtype.kind == "f":
        bad = ~drop & ~(np.floor(yf) == yf)
        if bad.any():
            pos = _first(bad, y.shape)
            raise InputError(f"{fn}: class ids must be whole numbers; y_true{list(pos)} = "
                             f"{y[pos].item()!r}")
    bad = ~drop & ((yf < 0) | (yf >= n_classes))
    if bad.any():
        pos = _first(bad, y.shape)
        raise InputError(f"{fn}: class id {y[pos].item()!r} at y_true{list(pos)} is outside "
                         f"[0, {n_classes})")
    ids = np.where(drop, 0, yf).astype(np.int64)  # kept ids are in range: the cast is exact
    ids[drop] = -1
    return ids


def _keep(fn, inputs, lead):
    """The ``mask`` input as a bool array of the score's shape, or None."""
    m = inputs.get("mask")
    if m is None:
        return None
    if tuple(m.shape) != tuple(lead):
        raise OpError(f"{fn}: mask of shape {tuple(m.shape)} does not fit the scores of shape "
                      f"{tuple(lead)}")
    return np.asarray(m, bool)


def flat(fn: str, inputs, as_float_ids=False, attrs=None):
    """(p (N, C) contiguous, y (N, C) in p's dtype or ids (N,), score shape, dropped (N,)).

    ``dropped`` marks the positions whose score and gradient are 0 (None: none dropped).
    """
    p = inputs["y_pred"]
    if not is_float(str(p.dtype)):
        raise OpError(f"{fn}: y_pred must be float, got {p.dtype}")
    y = inputs["y_true"]
    layout = target_layout(fn, p.shape, y.shape)
    c = p.shape[-1]
    p2 = np.ascontiguousarray(p.reshape(-1, c))
    keep = _keep(fn, inputs, p.shape[:-1])
    ign = ignore_class(attrs or {"fn": fn})
    if layout == "sparse":
        y2 = class_ids(fn, y, c, as_float=as_float_ids, keep=keep, ignore=ign)
        if not as_float_ids:
            return p2, y2, p.shape[:-1], y2 < 0
    else:
        y2 = np.ascontiguousarray(y.astype(p.dtype, copy=False).reshape(-1, c))
    return p2, y2, p.shape[:-1], None if keep is None else ~keep.reshape(-1)


def bounds(dtype):
    """Keras's clipping bounds in the prediction dtype."""
    return np.dtype(dtype).type(EPS), np.dtype(dtype).type(1.0 - EPS)


# ---------------------------------------------------------------- NumPy reference


def _log_softmax(x):
    m = np.max(x, -1, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), -1, keepdims=True))


def _targets(fn, attrs, p, y):
    """Dense float64 targets (label smoothing applied; one-hot for sparse ids)."""
    c = p.shape[-1]
    ls = float(attrs.get("label_smoothing", 0.0) or 0.0)
    if fn == "sparse_categorical_crossentropy":
        return np.where(y[:, None] >= 0, np.eye(c)[np.maximum(y, 0)], 0.0)  # -1: dropped
    t = y.astype(np.float64)
    if fn == "binary_crossentropy":
        return t * (1.0 - ls) + 0.5 * ls
    if fn == "categorical_crossentropy":
        return t * (1.0 - ls) + ls / c
    return t


def _zero_dropped(a, dropped):
    """``a`` with the rows of dropped positions set to 0 (NaN there does not leak)."""
    if dropped is not None:
        a[dropped] = 0
    return a


def score_reference(attrs, inputs):
    fn = check_fn(attrs, LOSS_FNS)
    p2, y2, shape, dropped = flat(fn, inputs, attrs=attrs)
    p = p2.astype(np.float64)
    t = _targets(fn, attrs, p, y2)
    lo, hi = (float(b) for b in bounds(p2.dtype))
    logits = bool(attrs.get("from_logits", False))
    if fn == "mean_squared_error":
        s = np.mean((t - p) ** 2, -1)
    elif fn == "mean_absolute_error":
        s = np.mean(np.abs(t - p), -1)
    elif fn == "binary_crossentropy":
        if logits:  # log sigmoid(x) = -logaddexp(0, -x)
            e = t * np.logaddexp(0.0, -p) + (1.0 - t) * np.logaddexp(0.0, p)
        else:
            q = np.clip(p, lo, hi)
            e = -(t * np.log(q) + (1.0 - t) * np.log(1.0 - q))
        s = np.mean(e, -1)
    else:
        if logits:
            logq = _log_softmax(p)
        else:
            logq = np.log(np.clip(p / np.sum(p, -1, keepdims=True), lo, hi))
        s = -np.sum(np.where(t != 0, t * logq, 0.0), -1)
    return _zero_dropped(s, dropped).astype(p2.dtype).reshape(shape)


def score_reference_vjp(attrs, inputs, g):
    fn = check_fn(attrs, LOSS_FNS)
    p2, y2, _, dropped = flat(fn, inputs, attrs=attrs)
    p = p2.astype(np.float64)
    t = _targets(fn, attrs, p, y2)
    c = p.shape[-1]
    g = np.zeros(p.shape[0]) if g is None else np.asarray(g, np.float64).reshape(-1)
    lo, hi = (float(b) for b in bounds(p2.dtype))
    logits = bool(attrs.get("from_logits", False))
    if fn == "mean_squared_error":
        d = 2.0 * (p - t) / c
    elif fn == "mean_absolute_error":
        d = np.sign(p - t) / c
    elif fn == "binary_crossentropy":
        if logits:
            e = np.exp(-np.abs(p))  # stable sigmoid
            d = (np.where(p >= 0, 1.0 / (1.0 + e), e / (1.0 + e)) - t) / c
        else:
            inside = (p > lo) & (p < hi)
            d = np.where(inside, -t / p + (1.0 - t) / (1.0 - p), 0.0) / c
    elif logits:
        sm = np.exp(_log_softmax(p))
        d = sm * t.sum(-1, keepdims=True) - t
    else:
        tot = p.sum(-1, keepdims=True)
        r = p / tot
        h = np.where((t != 0) & (r > lo) & (r < hi), -t / r, 0.0)
        d = (h - np.sum(h * r, -1, keepdims=True)) / tot
    d = _zero_dropped(d * g[:, None], dropped)
    return d.astype(p2.dtype).reshape(inputs["y_pred"].shape)


# ---------------------------------------------------------------- numba paths


def score_forward(attrs, inputs):
    fn = check_fn(attrs, LOSS_FNS)
    p, y, shape, dropped = flat(fn, inputs, attrs=attrs)
    out = np.empty(p.shape[0], p.dtype)
    logits = bool(attrs.get("from_logits", False))
    ls = float(attrs.get("label_smoothing", 0.0) or 0.0)
    lo, hi = bounds(p.dtype)
    if fn == "mean_squared_error":
        K.mse_fwd(p, y, out)
    elif fn == "mean_absolute_error":
        K.mae_fwd(p, y, out)
    elif fn == "binary_crossentropy":
        K.bce_fwd(p, y, logits, ls, lo, hi, out)
    elif fn == "categorical_crossentropy":
        K.cce_fwd(p, y, logits, ls, lo, hi, out)
    else:
        K.scce_fwd(p, y, logits, lo, hi, out)
    return _zero_dropped(out, dropped).reshape(shape)


def score_vjp(attrs, inputs, g):
    fn = check_fn(attrs, LOSS_FNS)
    p, y, _, dropped = flat(fn, inputs, attrs=attrs)
    dp = np.empty_like(p)
    if g is None:
        dp[...] = 0
        return dp.reshape(inputs["y_pred"].shape)
    g = np.ascontiguousarray(g, dtype=p.dtype).reshape(-1)
    logits = bool(attrs.get("from_logits", False))
    ls = float(attrs.get("label_smoothing", 0.0) or 0.0)
    lo, hi = bounds(p.dtype)
    if fn == "mean_squared_error":
        K.mse_bwd(p, y, g, dp)
    elif fn == "mean_absolute_error":
        K.mae_bwd(p, y, g, dp)
    elif fn == "binary_crossentropy":
        K.bce_bwd(p, y, logits, ls, lo, hi, g, dp)
    elif fn == "categorical_crossentropy":
        K.cce_bwd(p, y, logits, ls, lo, hi, g, dp)
    else:
        K.scce_bwd(p, y, logits, lo, hi, g, dp)
    return _zero_dropped(dp, dropped).reshape(inputs["y_pred"].shape)


def _infer_score(attrs, specs, valid):
    fn = check_fn(attrs, valid)
    pred, true = specs["y_pred"], specs["y_true"]
    if not is_float(pred.dtype):
        raise OpError(f"{fn}: y_pred must be float, got {pred.dtype}")
    ignore_class(attrs)
    target_layout(fn, pred.shape, true.shape)
    lead = tuple(pred.shape[:-1])
    if "mask" in specs:
        m = specs["mask"]
        if m.dtype != "bool" or not _same(m.shape, lead):
            raise OpError(f"{fn}: the mask must be bool of shape {lead} (the scores' shape), "
                          f"got {m.dtype} of shape {m.shape}")
    return Spec(lead, float_dtype(pred.dtype))


# ---------------------------------------------------------------- ops


@register
class LossScore(Op):
    """Per-position loss, shape ``y_pred.shape[:-1]``."""

    name = "loss_score"
    inputs = ("y_pred", "y_true", "mask?")
    diff_ports = ("y_pred",)

    def infer(self, attrs, specs):
        return [_infer_score(attrs, specs, LOSS_FNS)]

    def mask_rule(self, attrs):
        return score_mask_rule(attrs)

    def reference(self, attrs, inputs):
        return [score_reference(attrs, inputs)]

    def forward(self, attrs, inputs):
        return [score_forward(attrs, inputs)]

    def reference_vjp(self, attrs, inputs, grads, wrt):
        return {"y_pred": score_reference_vjp(attrs, inputs, grads[0])} if wrt else {}

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        return {"y_pred": score_vjp(attrs, inputs, grads[0])} if wrt else {}


@register
class Loss(Op):
    """Scalar loss before the loss pass: ``sum(score * w) / score.size``.

    With ``ignore_class`` the positions labelled with it are dropped from the numerator
    and the denominator (``masked_mean`` over ``y_true != ignore_class``), as in Keras 3.
    ``passes/losses.py`` rewrites this node, adding the padding mask.
    """

    name = "loss"
    inputs = ("y_pred", "y_true", "weight?")
    diff_ports = ("y_pred",)

    def infer(self, attrs, specs):
        s = _infer_score(attrs, specs, LOSS_FNS)
        return [Spec((), s.dtype)]

    def mask_rule(self, attrs):
        return TAKES_MASK

    @staticmethod
    def _red(attrs, score, inputs):
        """(reduction op, its inputs) for per-position ``score``."""
        red = {"score": score, **({"weight": inputs["weight"]} if "weight" in inputs else {})}
        keep = ignore_keep(attrs, inputs["y_true"], score.shape)
        if keep is None:
            return get_op("weighted_mean"), red
        return get_op("masked_mean"), {**red, "mask": keep}

    def reference(self, attrs, inputs):
        op, red = self._red(attrs, score_reference(attrs, inputs), inputs)
        return op.reference({}, red)

    def forward(self, attrs, inputs):
        op, red = self._red(attrs, score_forward(attrs, inputs), inputs)
        return op.forward({}, red)

    def reference_vjp(self, attrs, inputs, grads, wrt):
        if not wrt:
            return {}
        op, red = self._red(attrs, score_reference(attrs, inputs), inputs)
        gs = op.reference_vjp({}, red, grads, ["score"])["score"]
        return {"y_pred": score_reference_vjp(attrs, inputs, gs)}

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        if not wrt:
            return {}
        # the mean's VJP needs only the score's shape and dtype, not its values
        p = inputs["y_pred"]
        op, red = self._red(attrs, np.empty(p.shape[:-1], p.dtype), inputs)
        gs = op.vjp({}, red, outputs, grads, ["score"])["score"]
        return {"y_pred": score_vjp(attrs, inputs, gs)}
