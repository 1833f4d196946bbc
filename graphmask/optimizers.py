"""``keras.optimizers`` names: the public namespace ``graphmask.optimizers``.

Optimizers with Keras 3's update rules (see docs/masking.md, "Optimizers") and the
learning-rate schedules (``graphmask.optimizers.schedules``, as in Keras).
The implementation lives in ``graphmask/training/optimizers.py`` and ``schedules.py``.
"""
from graphmask.training import schedules
from graphmask.training.optimizers import (
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Lion,
    Nadam,
    Optimizer,
    RMSprop,
    deserialize,
    get,
    serialize,
)

__all__ = [
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Lion",
    "Nadam",
    "Optimizer",
    "RMSprop",
    "SGD",
    "deserialize",
    "get",
    "schedules",
    "serialize",
]
