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

Metric objects: :class:`SparseCategoricalCrossentropy` takes Keras 3's ``ignore_class``
(the only built-in metric Keras gives it to). ``compile`` keeps a metric object as its
``{"class_name", "config"}`` dict (:func:`serialize`), which is also how it is saved.
Positions labelled ``ignore_class`` score 0; as in Keras 3's ``Mean``, they leave the
count when the metric's reduction has a mask (the output is masked) or a sample weight
(``weighted_metrics``), and count as zeros otherwise.

Differences from Keras: without a mask or weights Keras counts samples (per-sample means
of a (B, T) score), graphmask counts positions; the two agree whenever T is the same in
every batch. A weighted metric with ``ignore_class`` on an unmasked output drops ignored
positions even when ``fit``/``evaluate`` get no ``sample_weight`` (Keras then has no
weight, and counts them as zeros).
"""
from __future__ import annotations

import difflib
from typing import Any

from graphmask.errors import ConfigError, GraphmaskError
from graphmask.ops.base import OpError
from graphmask.ops.losses import ignore_class as _attrs_ignore_class
from graphmask.training.losses import Loss
from graphmask.training.metric_classes import (
    CLASSES,
    Mean,
    MeanMetricWrapper,
    Metric,
    SparseCategoricalCrossentropy,
    Sum,
)

__all__ = ["Metric", "SparseCategoricalCrossentropy", "deserialize", "get", "is_host",
           "name_of", "resolve_accuracy", "serialize", "standardize"]

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


_CLASSES = CLASSES
#: names of the host metric classes, as Keras resolves metric strings (class, snake case)
_HOST_NAMES = {k: c for c in CLASSES.values() if c.host
               for k in (c.__name__, c.__name__.lower(), c.default_name)}


def is_host(identifier: Any) -> bool:
    """True for a metric object (or its serialized dict) the compiled graph has no score
    for: ``compile`` updates it after each batch from the output, its mask and the targets.
    ``Mean`` and ``Sum`` take values, not (y_true, y_pred), and are refused."""
    if isinstance(identifier, dict) and "class_name" in identifier:
        identifier = deserialize(identifier)
    if isinstance(identifier, (Mean, Sum)) and not isinstance(identifier, MeanMetricWrapper):
        raise ConfigError(f"compile: {type(identifier).__name__} averages values given to "
                          f"update_state(values); compiled metrics take (y_true, y_pred), "
                          f"e.g. metrics=['mse'] or MeanSquaredError()")
    return isinstance(identifier, Metric) and identifier.host


def serialize(metric: Metric) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}`` of a metric object."""
    return {"class_name": type(metric).__name__, "config": metric.get_config()}


def deserialize(config: dict[str, Any]) -> Metric:
    name = config.get("class_name")
    if name not in _CLASSES:
        raise ConfigError(f"unknown metric class {name!r}; metric objects: {sorted(_CLASSES)} "
                          f"(other metrics are given by name)")
    cfg = config.get("config", {})
    if not isinstance(cfg, dict):
        raise ConfigError(f"metric {name}: config must be a dict, got {cfg!r}")
    try:
        return _CLASSES[name].from_config(dict(cfg))
    except TypeError as e:
        raise ConfigError(f"metric {name}: bad config {cfg!r} ({e})") from None


def standardize(identifier: Any) -> Any:
    """What ``compile`` keeps for a metric: a name or dict as given, an object serialized."""
    if isinstance(identifier, str) and identifier not in ALIASES:
        cls = _HOST_NAMES.get(identifier) or _HOST_NAMES.get(identifier.lower())
        if cls is not None:  # 'auc', 'Precision', 'root_mean_squared_error', ... as Keras
            return serialize(cls())
    return serialize(identifier) if isinstance(identifier, Metric) else identifier


def name_of(identifier: Any) -> str:
    """The result name of a metric: its name, its object's ``name``, or its attrs' fn."""
    if isinstance(identifier, Metric):
        return identifier.name
    if isinstance(identifier, dict):
        if "class_name" in identifier:
            return deserialize(identifier).name
        return str(identifier.get("fn"))
    return str(identifier)


def get(identifier: str | dict | Metric, loss: Loss | None = None, y_true_shape=None,
        y_pred_shape=None) -> dict:
    """``metric_score`` attrs for a metric name ('accuracy', 'acc', 'mse', 'mae', Keras class
    or function names), a :class:`Metric` (or its :func:`serialize` dict) or an attrs dict
    (returned as a copy).

    For 'accuracy' pass the target and prediction shapes to get Keras 3's exact choice;
    without them the loss decides (see the module doc).
    """
    if isinstance(identifier, Metric):
        return identifier.attrs()
    if isinstance(identifier, dict) and "class_name" in identifier:
        return deserialize(identifier).attrs()
    if isinstance(identifier, dict):
        if identifier.get("fn") not in {a["fn"] for a in _SCORES.values()} | {"accuracy"}:
            raise ConfigError(f"metric attrs {identifier!r} name no known metric fn")
        try:
            _attrs_ignore_class(identifier)
        except (OpError, GraphmaskError) as e:
            raise ConfigError(f"metric attrs {identifier!r}: {e}") from None
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
