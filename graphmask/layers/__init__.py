"""Keras-style layers. Each layer records op applications; see ``base.py``."""
from graphmask.layers.attention import AdditiveAttention, Attention, MultiHeadAttention
from graphmask.layers.base import Input, InputLayer, Layer, SymbolicTensor, Variable
from graphmask.layers.batch_norm import BatchNormalization
from graphmask.layers.convolutional import (
    AveragePooling1D,
    Conv1D,
    MaxPooling1D,
    SpatialDropout1D,
)
from graphmask.layers.core import (
    Activation,
    Add,
    Concatenate,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAveragePooling1D,
    GlobalMaxPooling1D,
    Masking,
    TimeDistributed,
)
from graphmask.layers.einsum_dense import EinsumDense
from graphmask.layers.lambda_layer import Lambda
from graphmask.layers.merging import Average, Dot, Maximum, Minimum, Multiply, Subtract
from graphmask.layers.normalization import LayerNormalization
from graphmask.layers.recurrent import GRU, LSTM, SimpleRNN
from graphmask.layers.reshaping import Permute, RepeatVector, Reshape
from graphmask.layers.rnn_cells import RNN, GRUCell, LSTMCell, SimpleRNNCell, StackedRNNCells
from graphmask.layers.wrappers import Bidirectional

__all__ = ["Input", "InputLayer", "Layer", "SymbolicTensor", "Variable", "Activation", "Add",
           "Concatenate", "Dense", "Dropout", "Embedding", "Flatten", "GlobalAveragePooling1D",
           "GlobalMaxPooling1D", "Lambda", "Masking", "TimeDistributed", "LSTM", "GRU", "SimpleRNN",
           "Average", "Dot", "LayerNormalization", "Maximum", "Minimum", "Multiply", "Permute",
           "RepeatVector", "Reshape", "Subtract", "Bidirectional", "AdditiveAttention",
           "Attention", "EinsumDense", "MultiHeadAttention"]
__all__ += ["AveragePooling1D", "BatchNormalization", "Conv1D", "MaxPooling1D", "SpatialDropout1D"]
__all__ += ["RNN", "GRUCell", "LSTMCell", "SimpleRNNCell", "StackedRNNCells"]
