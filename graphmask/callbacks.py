"""``keras.callbacks`` names: the public namespace ``graphmask.callbacks``.

Callbacks for ``fit``: History, EarlyStopping, ModelCheckpoint and the progress display.
The implementation lives in ``graphmask/training/callbacks.py``.
"""
from graphmask.training.callbacks import (
    Callback,
    CallbackList,
    EarlyStopping,
    History,
    ModelCheckpoint,
    ProgressBar,
)

__all__ = [
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "ModelCheckpoint",
    "ProgressBar",
]
