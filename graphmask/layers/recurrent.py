"""The LSTM layer (Keras 3 signature, defaults, initializers and weight order)."""
from __future__ import annotations

import numpy as np

from graphmask import initializers
from graphmask.errors import ConfigError, ShapeError
from graphmask.layers.base import Layer, coarse_call
from graphmask.layers.core import _positive_int

LSTM_ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")
LSTM_RECURRENT_ACTIVATIONS = ("sigmoid", "hard_sigmoid", "tanh", "linear")


def _choice(layer, arg, value, valid):
    v = "linear" if value is None else value
    if not isinstance(v, str) or v.lower() not in valid:
        raise ConfigError(f"LSTM {layer!r}: {arg} must be one of {list(valid)}, got {value!r}")
    return v.lower()


class LSTM(Layer):
    """Long short-term memory, gates in Keras order (i, f, c, o).

    With a mask the state is carried over masked timesteps and the previous output is
    repeated there (see docs/masking.md). Weights: ``[kernel (D, 4H),
    recurrent_kernel (H, 4H), bias (4H,)]``.
    """

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, dropout=0.0, recurrent_dropout=0.0,
                 return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, zero_output_for_mask=False,
                 name=None, **kwargs):
        kwargs.pop("seed", None)
        kwargs.pop("use_cudnn", None)
        super().__init__(name=name, **kwargs)
        self.units = _positive_int(f"LSTM {self.name!r}", "units", units)
        self.activation = _choice(self.name, "activation", activation, LSTM_ACTIVATIONS)
        self.recurrent_activation = _choice(self.name, "recurrent_activation",
                                            recurrent_activation, LSTM_RECURRENT_ACTIVATIONS)
        for arg, value in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if value not in (0, 0.0, None):
                raise ConfigError(f"LSTM {self.name!r}: {arg}={value!r} is not supported "
                                  f"(graphmask's LSTM has no dropout); use 0.0")
        if stateful:
            raise ConfigError(f"LSTM {self.name!r}: stateful=True is not supported")
        self.use_bias = bool(use_bias)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.unroll = bool(unroll)  # accepted for Keras compatibility; no effect
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.kernel_initializer = initializers.get(kernel_initializer, self.name,
                                                   "kernel_initializer")
        self.recurrent_initializer = initializers.get(recurrent_initializer, self.name,
                                                      "recurrent_initializer")
        self.bias_initializer = initializers.get(bias_initializer, self.name, "bias_initializer")

    def build(self, spec):
        if spec.rank != 3 or spec.shape[-1] is None:
            raise ShapeError(f"LSTM {self.name!r}: input must be (batch, timesteps, features) "
                             f"with known features, got shape {spec.shape}")
        h = self.units
        self.kernel = self.add_weight(shape=(spec.shape[-1], 4 * h),
                                      initializer=self.kernel_initializer, name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(h, 4 * h),
                                                initializer=self.recurrent_initializer,
                                                name="recurrent_kernel")
        if self.use_bias:
            if self.unit_forget_bias:
                init = self.bias_initializer

                def bias_init(shape, dtype):
                    return np.concatenate([init((h,), dtype), np.ones((h,), dtype),
                                           init((2 * h,), dtype)])
            else:
                bias_init = self.bias_initializer
            self.bias = self.add_weight(shape=(4 * h,), initializer=bias_init, name="bias")
        else:
            self.bias = None

    @coarse_call
    def call(self, x):
        attrs = {"units": self.units, "activation": self.activation,
                 "recurrent_activation": self.recurrent_activation, "use_bias": self.use_bias,
                 "return_sequences": self.return_sequences, "return_state": self.return_state,
                 "go_backwards": self.go_backwards,
                 "zero_output_for_mask": self.zero_output_for_mask}
        return self._apply("lstm", attrs, {"x": x, "kernel": self.kernel,
                                           "recurrent_kernel": self.recurrent_kernel,
                                           "bias": self.bias})

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "recurrent_activation": self.recurrent_activation, "use_bias": self.use_bias,
                "unit_forget_bias": self.unit_forget_bias,
                "return_sequences": self.return_sequences, "return_state": self.return_state,
                "go_backwards": self.go_backwards,
                "zero_output_for_mask": self.zero_output_for_mask,
                "kernel_initializer": initializers.name_of(self.kernel_initializer),
                "recurrent_initializer": initializers.name_of(self.recurrent_initializer),
                "bias_initializer": initializers.name_of(self.bias_initializer)}
