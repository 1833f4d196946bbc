"""``keras.losses`` names: the public namespace ``graphmask.losses``.

Keras-style loss objects.
The implementation lives in ``graphmask/training/losses.py``.
"""
from graphmask.training.losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Loss,
    MeanAbsoluteError,
    MeanSquaredError,
    SparseCategoricalCrossentropy,
    deserialize,
    get,
    serialize,
    sparse_categorical_crossentropy,
)

__all__ = [
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "Loss",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "SparseCategoricalCrossentropy",
    "deserialize",
    "get",
    "serialize",
    "sparse_categorical_crossentropy",
]
