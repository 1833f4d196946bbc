"""graphmask: sequence models as symbolic graphs with explicit, checkable padding masks.

Keras-style functional API (``Input``, ``Embedding``, ``LSTM``, ``Dense``, ``Masking``,
``Model``), compiled by the passes in ``passes/`` and run by numba kernels.
"""
__version__ = "0.1.0"

from graphmask import errors, losses, metrics, optimizers  # noqa: E402
from graphmask.callbacks import Callback, EarlyStopping, History, ModelCheckpoint  # noqa: E402
from graphmask.layers import (  # noqa: E402
    LSTM,
    Activation,
    Add,
    Concatenate,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAveragePooling1D,
    Input,
    Layer,
    Masking,
)
from graphmask.model import Model  # noqa: E402
from graphmask.saving import load_model  # noqa: E402
from graphmask.sequential import Sequential  # noqa: E402
from graphmask.utils import clear_session, set_random_seed  # noqa: E402

__all__ = [
    "LSTM", "Activation", "Add", "Concatenate", "Dense", "Dropout", "Embedding", "Flatten",
    "GlobalAveragePooling1D", "Input", "Layer", "Masking", "Model", "Sequential", "Callback",
    "EarlyStopping", "History", "ModelCheckpoint", "errors", "losses", "metrics", "optimizers",
    "clear_session", "set_random_seed", "load_model",
]
