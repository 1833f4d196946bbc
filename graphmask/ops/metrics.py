"""The ``metric_score`` op: per-position metric values as Keras 3 computes them.

Accuracies give 1.0/0.0 per position; the loss functions are accepted too (Keras's
mse/mae/crossentropy metrics) and reuse ``loss_score``'s code, ``ignore_class`` of the
sparse crossentropy included. Like ``loss_score`` it takes an optional ``mask``: a
position where it is False scores 0 and its target is not validated (see
``ops/losses.py``). ``weighted_average`` (in ``reductions.py``) accumulates the scores over
the kept positions.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import losses as K
from graphmask.ops.base import Op, register
from graphmask.ops.losses import (
    LOSS_FNS,
    METRIC_FNS,
    _infer_score,
    _zero_dropped,
    check_fn,
    flat,
    score_forward,
    score_mask_rule,
    score_reference,
)


def metric_reference(attrs, inputs):
    fn = check_fn(attrs, METRIC_FNS)
    if fn in LOSS_FNS:
        return score_reference(attrs, inputs)
    p2, y2, shape, dropped = flat(fn, inputs, as_float_ids=True, attrs=attrs)
    if fn == "accuracy":
        s = np.mean(p2 == y2, -1)
    elif fn == "binary_accuracy":
        hit = (p2.astype(np.float64) > float(attrs.get("threshold", 0.5))).astype(np.float64)
        s = np.mean(y2.astype(np.float64) == hit, -1)
    elif fn == "categorical_accuracy":
        s = np.argmax(p2, -1) == np.argmax(y2, -1)
    else:
        s = np.argmax(p2, -1).astype(np.float64) == y2
    return _zero_dropped(s.astype(p2.dtype), dropped).reshape(shape)


def metric_forward(attrs, inputs):
    fn = check_fn(attrs, METRIC_FNS)
    if fn in LOSS_FNS:
        return score_forward(attrs, inputs)
    p, y, shape, dropped = flat(fn, inputs, as_float_ids=True, attrs=attrs)
    out = np.empty(p.shape[0], p.dtype)
    if fn == "accuracy":
        K.equal_fwd(p, y, out)
    elif fn == "binary_accuracy":
        K.binary_accuracy_fwd(p, y, float(attrs.get("threshold", 0.5)), out)
    elif fn == "categorical_accuracy":
        K.categorical_accuracy_fwd(p, y, out)
    else:
        K.sparse_accuracy_fwd(p, y, out)
    return _zero_dropped(out, dropped).reshape(shape)


@register
class MetricScore(Op):
    """Per-position metric value as Keras 3 computes it (1.0/0.0 for accuracies).

    The loss functions are accepted too (Keras's mse/mae/crossentropy metrics); they take
    ``from_logits``/``label_smoothing`` like ``loss_score``.
    """

    name = "metric_score"
    inputs = ("y_pred", "y_true", "mask?")
    diff_ports = ()

    def infer(self, attrs, specs):
        return [_infer_score(attrs, specs, METRIC_FNS)]

    def mask_rule(self, attrs):
        return score_mask_rule(attrs)

    def reference(self, attrs, inputs):
        return [metric_reference(attrs, inputs)]

    def forward(self, attrs, inputs):
        return [metric_forward(attrs, inputs)]

    def reference_vjp(self, attrs, inputs, grads, wrt):
        return {}

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        return {}
