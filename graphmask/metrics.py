"""``keras.metrics`` names: the public namespace ``graphmask.metrics``.

Metric names -> attrs of the ``metric_score`` op, resolved as Keras 3 resolves them.
The implementation lives in ``graphmask/training/metrics.py``.
"""
from graphmask.training.metrics import (
    Metric,
    SparseCategoricalCrossentropy,
    deserialize,
    get,
    name_of,
    resolve_accuracy,
    serialize,
    standardize,
)

__all__ = [
    "Metric",
    "SparseCategoricalCrossentropy",
    "deserialize",
    "get",
    "name_of",
    "resolve_accuracy",
    "serialize",
    "standardize",
]
