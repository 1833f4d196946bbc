"""``keras.optimizers`` names: the public namespace ``graphmask.optimizers``.

Optimizers with Keras 3's update rules (see docs/masking.md, "Optimizers").
The implementation lives in ``graphmask/training/optimizers.py``.
"""
from graphmask.training.optimizers import (
    SGD,
    Adam,
    Optimizer,
    RMSprop,
    deserialize,
    get,
    serialize,
)

__all__ = [
    "Adam",
    "Optimizer",
    "RMSprop",
    "SGD",
    "deserialize",
    "get",
    "serialize",
]
