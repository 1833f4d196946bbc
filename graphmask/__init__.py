"""graphmask: sequence models as symbolic graphs with explicit, checkable padding masks.

Keras-style functional API (``Input``, ``Embedding``, ``LSTM``, ``Dense``, ``Masking``,
``Model``), compiled by the passes in ``passes/`` and run by numba kernels.
"""
__version__ = "0.1.0"

from graphmask import (  # noqa: E402
    callbacks,
    distribute,
    errors,
    initializers,
    inspect,
    layers,
    losses,
    metrics,
    models,
    ops,
    optimizers,
    saving,
    utils,
)
from graphmask.callbacks import Callback, EarlyStopping, History, ModelCheckpoint  # noqa: E402
from graphmask.io.interop import from_keras, to_keras  # noqa: E402
from graphmask.io.saving import load_model  # noqa: E402
from graphmask.layers import (  # noqa: E402
    GRU,
    LSTM,
    RNN,
    Activation,
    Add,
    AdditiveAttention,
    Attention,
    Average,
    AveragePooling1D,
    BatchNormalization,
    Bidirectional,
    Concatenate,
    Conv1D,
    Dense,
    Dot,
    Dropout,
    EinsumDense,
    Embedding,
    Flatten,
    GlobalAveragePooling1D,
    GlobalMaxPooling1D,
    GRUCell,
    Input,
    Lambda,
    Layer,
    LayerNormalization,
    LSTMCell,
    Masking,
    Maximum,
    MaxPooling1D,
    Minimum,
    MultiHeadAttention,
    Multiply,
    Permute,
    RepeatVector,
    Reshape,
    SimpleRNN,
    SimpleRNNCell,
    SpatialDropout1D,
    StackedRNNCells,
    Subtract,
    TimeDistributed,
)
from graphmask.models.functional import Model  # noqa: E402
from graphmask.models.sequential import Sequential  # noqa: E402
from graphmask.runtime import clear_workspaces  # noqa: E402
from graphmask.utils import clear_session, set_random_seed  # noqa: E402

__all__ = [
    "LSTM", "GRU", "SimpleRNN", "RNN", "LSTMCell", "GRUCell", "SimpleRNNCell",
    "StackedRNNCells",
    "Activation", "Add", "Concatenate", "Dense", "Dropout", "Embedding", "Flatten",
    "GlobalAveragePooling1D", "GlobalMaxPooling1D", "Input", "Lambda", "Layer", "Masking",
    "TimeDistributed", "Model", "Sequential", "Callback", "EarlyStopping", "History",
    "ModelCheckpoint", "callbacks", "errors", "initializers", "layers", "losses", "metrics",
    "models", "ops", "optimizers", "utils", "inspect", "saving", "clear_session",
    "set_random_seed", "load_model", "distribute", "from_keras", "to_keras",
    "clear_workspaces", "Average", "Dot", "LayerNormalization", "Maximum", "Minimum",
    "Multiply", "Permute", "RepeatVector", "Reshape", "Subtract", "Bidirectional",
    "AdditiveAttention", "Attention", "EinsumDense", "MultiHeadAttention",
    "AveragePooling1D", "BatchNormalization", "Conv1D", "MaxPooling1D", "SpatialDropout1D",
]
