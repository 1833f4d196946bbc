"""Metric names -> attrs of the ``metric_score`` op, resolved as Keras 3 resolves them.

A metric is a per-position score (op ``metric_score``) accumulated over batches by
``weighted_average`` into ``total = sum(s * m * w)`` and ``count = sum(m * w)``; its
value is ``total / count`` (0 when
count is 0), over the same kept positions as the loss.

``"accuracy"`` / ``"acc"``: Keras 3 (``compile_utils.get_metric``) picks the accuracy from
the shapes, not from the loss: ``binary_accuracy`` when y_pred's last axis is 1, else
``sparse_categorical_accuracy`` when y_true has lower rank than y_pred (or a last axis of
1), else ``categorical_accuracy``. Give the shapes to get exactly that; without shapes
the loss decides (binary / categorical / sparse crossentropy -> the matching accuracy).

Differences from Keras: without a mask or weights Keras counts samples (per-sample means
of a (B, T) score), graphmask counts positions; the two agree whenever T is the same in
every batch.
"""
from __future__ import annotations

import difflib

from graphmask.errors import ConfigError
from graphmask.losses import Loss

__all__ = ["get", "resolve_accuracy"]

_SCORES: dict[str, dict] = {
    "binary_accuracy": {"fn": "binary_accuracy", "threshold": 0.5},
    "categorical_accuracy": {"fn": "categorical_accuracy"},
    "sparse_categorical_accuracy": {"fn": "sparse_categorical_accuracy"},
    "mean_squared_error": {"fn": "mean_squared_error"},
    "mean_absolute_error": {"fn": "mean_absolute_error"},
    "binary_crossentropy": {"fn": "binary_crossentropy", "from_logits": False,
                            "label_smoothing": 0.0},
    "categorical_crossentropy": {"fn": "categorical_crossentropy", "from_logits": False,
                                 "label_smoothing": 0.0},
    "sparse_categorical_crossentropy": {"fn": "sparse_categorical_crossentropy",
                                        "from_logits": False},
}
ALIASES: dict[str, str] = {k: k for k in _SCORES}
ALIASES.update({
    "BinaryAccuracy": "binary_accuracy", "CategoricalAccuracy": "categorical_accuracy",
    "SparseCategoricalAccuracy": "sparse_categorical_accuracy",
    "MeanSquaredError": "mean_squared_error", "mse": "mean_squared_error",
    "MSE": "mean_squared_error", "MeanAbsoluteError": "mean_absolute_error",
    "mae": "mean_absolute_error", "MAE": "mean_absolute_error",
    "BinaryCrossentropy": "binary_crossentropy", "bce": "binary_crossentropy",
    "BCE": "binary_crossentropy", "CategoricalCrossentropy": "categorical_crossentropy",
    "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
    "accuracy": "accuracy", "acc": "accuracy",
})
_BY_LOSS = {"binary_crossentropy": "binary_accuracy",
            "categorical_crossentropy": "categorical_accuracy",
            "sparse_categorical_crossentropy": "sparse_categorical_accuracy"}


def resolve_accuracy(y_true_shape=None, y_pred_shape=None, loss: Loss | None = None) -> str:
    """The accuracy function ``"accuracy"`` means (Keras 3's rule; see module doc)."""
    if y_true_shape is not None and y_pred_shape is not None:
        t, p = tuple(y_true_shape), tuple(y_pred_shape)
        if p[-1] == 1:
            return "binary_accuracy"
        if len(t) < len(p) or (t[-1] == 1 and (p[-1] is None or p[-1] > 1)):
            return "sparse_categorical_accuracy"
        return "categorical_accuracy"
    if loss is not None and loss.fn in _BY_LOSS:
        return _BY_LOSS[loss.fn]
    raise ConfigError("metric 'accuracy' needs the target and prediction shapes (or a "
                      "crossentropy loss) to choose binary, categorical or sparse accuracy")


def get(identifier: str | dict, loss: Loss | None = None, y_true_shape=None,
        y_pred_shape=None) -> dict:
    """``metric_score`` attrs for a metric name ('accuracy', 'acc', 'mse', 'mae', Keras class
    or function names) or an attrs dict (returned as a copy).

    For 'accuracy' pass the target and prediction shapes to get Keras 3's exact choice;
    without them the loss decides (see the module doc).
    """
    if isinstance(identifier, dict):
        if identifier.get("fn") not in {a["fn"] for a in _SCORES.values()} | {"accuracy"}:
            raise ConfigError(f"metric attrs {identifier!r} name no known metric fn")
        return dict(identifier)
    if not isinstance(identifier, str):
        raise ConfigError(f"cannot interpret {identifier!r} as a metric; give a name such as "
                          f"'accuracy' or 'mse'")
    key = ALIASES.get(identifier) or {k.lower(): v for k, v in ALIASES.items()}.get(
        identifier.lower())
    if key is None:
        close = difflib.get_close_matches(identifier, list(ALIASES), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown metric {identifier!r}{hint} (known: {sorted(ALIASES)})")
    if key == "accuracy":
        key = resolve_accuracy(y_true_shape, y_pred_shape, loss)
    # as in Keras, crossentropy metrics read probabilities even when the loss has logits
    return dict(_SCORES[key])
