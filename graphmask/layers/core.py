"""Embedding, Dense, Activation, Masking, Flatten, pooling and merge layers."""
from __future__ import annotations

import numpy as np

from graphmask.errors import ConfigError, ShapeError
from graphmask.layers import initializers
from graphmask.layers.base import Layer, coarse_call
from graphmask.ops.activation import check_activation


def _positive_int(layer: str, arg: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConfigError(f"{layer}: {arg} must be a positive int, got {value!r}")
    return int(value)


def _activation_name(layer: str, activation) -> str:
    name = "linear" if activation is None else activation
    if not isinstance(name, str):
        raise ConfigError(f"{layer}: activation must be a name like 'relu', got {activation!r}")
    check_activation(name)
    return name.lower()


class Embedding(Layer):
    """Turns ids into vectors: ``W[ids]``; with ``mask_zero`` id 0 also creates a mask.

    The vector of id 0 is still returned as it is (it is *not* zeroed): the mask is a
    separate value that travels to later layers (see docs/masking.md).
    """

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 mask_zero=False, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.input_dim = _positive_int(f"Embedding {self.name!r}", "input_dim", input_dim)
        self.output_dim = _positive_int(f"Embedding {self.name!r}", "output_dim", output_dim)
        self.mask_zero = bool(mask_zero)
        self.embeddings_initializer = initializers.get(
            embeddings_initializer, f"Embedding {self.name!r}", "embeddings_initializer")

    def build(self, spec):
        self.embeddings = self.add_weight(shape=(self.input_dim, self.output_dim),
                                          initializer=self.embeddings_initializer,
                                          name="embeddings")

    @coarse_call
    def call(self, x):
        attrs = {"input_dim": self.input_dim, "output_dim": self.output_dim,
                 "mask_zero": self.mask_zero}
        return self._apply("embedding", attrs, {"ids": x, "embeddings": self.embeddings})

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim,
                "output_dim": self.output_dim, "mask_zero": self.mask_zero,
                "embeddings_initializer": initializers.name_of(self.embeddings_initializer)}


class Dense(Layer):
    """``activation(x @ kernel + bias)`` on the last axis of an input of rank >= 2."""

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.units = _positive_int(f"Dense {self.name!r}", "units", units)
        self.activation = _activation_name(f"Dense {self.name!r}", activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer, self.name,
                                                   "kernel_initializer")
        self.bias_initializer = initializers.get(bias_initializer, self.name, "bias_initializer")

    def build(self, spec):
        if spec.rank < 2 or spec.shape[-1] is None:
            raise ShapeError(f"Dense {self.name!r}: input must have rank >= 2 and a known "
                             f"last dimension, got shape {spec.shape}")
        self.kernel = self.add_weight(shape=(spec.shape[-1], self.units),
                                      initializer=self.kernel_initializer, name="kernel")
        self.bias = (self.add_weight(shape=(self.units,), initializer=self.bias_initializer,
                                     name="bias") if self.use_bias else None)

    @coarse_call
    def call(self, x):
        attrs = {"units": self.units, "activation": self.activation}
        return self._apply("dense", attrs, {"x": x, "kernel": self.kernel, "bias": self.bias})

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.name_of(self.kernel_initializer),
                "bias_initializer": initializers.name_of(self.bias_initializer)}


class Activation(Layer):
    """Applies an activation function; passes the mask through."""

    def __init__(self, activation, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.activation = _activation_name(f"Activation {self.name!r}", activation)

    @coarse_call
    def call(self, x):
        return self._apply("activation", {"activation": self.activation}, {"x": x})

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class Masking(Layer):
    """Masks timesteps whose features all equal ``mask_value`` and zeroes them."""

    def __init__(self, mask_value=0.0, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        try:
            self.mask_value = float(mask_value)
        except (TypeError, ValueError):
            raise ConfigError(f"Masking {self.name!r}: mask_value must be a number, "
                              f"got {mask_value!r}") from None

    @coarse_call
    def call(self, x):
        return self._apply("masking", {"mask_value": self.mask_value}, {"x": x})

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value}


class Dropout(Layer):
    """Zeroes inputs with probability ``rate`` while training (scaling the rest by
    ``1 / (1 - rate)``); the identity in predict and evaluate. Passes the mask."""

    _training_sensitive = True

    def __init__(self, rate, noise_shape=None, seed=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ConfigError(f"Dropout {self.name!r}: rate must be in [0, 1), got {rate!r}")
        if noise_shape is not None:
            raise ConfigError(f"Dropout {self.name!r}: noise_shape is not supported")
        self.rate = float(rate)
        self.seed = seed  # accepted for Keras compatibility; set_random_seed seeds draws

    @coarse_call
    def call(self, x, training=None):
        # training=None: follow the plan (on in fit); True/False pins it (as Keras's
        # explicit training=), see graphmask/layers/calling.py
        attrs = {"rate": self.rate}
        if training is not None:
            attrs["training"] = bool(training)
        return self._apply("dropout", attrs, {"x": x})

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


class Flatten(Layer):
    """(B, d1, d2, ...) -> (B, d1*d2*...). Cannot take a mask (a compile-time error)."""

    supports_masking = False

    @coarse_call
    def call(self, x):
        return self._apply("flatten", {}, {"x": x})


class GlobalAveragePooling1D(Layer):
    """Mean over time of kept steps: ``sum_t x*m / sum_t m`` (0 for an all-masked row)."""

    @coarse_call
    def call(self, x):
        return self._apply("global_average_pooling_1d", {}, {"x": x})


class GlobalMaxPooling1D(Layer):
    """Max over time. Keras 3's layer does not support masking: a mask reaching it is a
    compile-time error here (Keras only warns and drops it)."""

    supports_masking = False

    @coarse_call
    def call(self, x):
        return self._apply("global_max_pooling_1d", {}, {"x": x})


class TimeDistributed(Layer):
    """Applies ``layer`` to every timestep: for the layers that act on the last axis
    (Dense, Activation, Dropout) that is the layer itself. Passes the mask, as Keras 3.
    Its weights are the wrapped layer's."""

    WRAPPABLE = ("Dense", "Activation", "Dropout")

    def __init__(self, layer, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if type(layer).__name__ not in self.WRAPPABLE or not isinstance(layer, Layer):
            raise ConfigError(f"TimeDistributed {self.name!r}: can wrap {self.WRAPPABLE}, "
                              f"got {layer!r}")
        self.layer = layer

    @coarse_call
    def call(self, x):
        if x.spec.rank < 3:
            raise ShapeError(f"TimeDistributed {self.name!r}: input must have a time axis "
                             f"(rank >= 3), got shape {x.shape}")
        out = self.layer(x)
        call = self.layer._calls.pop()
        call.layer = self  # the graph shows the wrapper, as Keras's model.layers does
        self._calls.append(call)
        self._own_weights = self.layer._own_weights
        return out

    def get_config(self):
        return {**super().get_config(), "layer": {"class_name": type(self.layer).__name__,
                                                  "config": self.layer.get_config()}}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        inner = config.pop("layer")
        classes = {"Dense": Dense, "Activation": Activation, "Dropout": Dropout}
        if not isinstance(inner, dict) or inner.get("class_name") not in classes:
            raise ConfigError(f"TimeDistributed: cannot wrap {inner!r}")
        return cls(classes[inner["class_name"]].from_config(inner["config"]), **config)


class _Merge(Layer):
    op = ""

    def _attrs(self, n):
        return {"n": n}

    @coarse_call
    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            raise ConfigError(f"{type(self).__name__} {self.name!r}: needs a list of at least "
                              f"2 tensors, got {inputs!r}")
        ports = {f"x{i}": t for i, t in enumerate(inputs)}
        return self._apply(self.op, self._attrs(len(inputs)), ports)


class Add(_Merge):
    """Elementwise sum. Masks: OR of the input masks, none if any input is unmasked."""

    op = "add"


class Concatenate(_Merge):
    """Concatenation along ``axis``. Masks combine as for :class:`Add`."""

    op = "concatenate"

    def __init__(self, axis=-1, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ConfigError(f"Concatenate {self.name!r}: axis must be an int, got {axis!r}")
        self.axis = int(axis)

    def _attrs(self, n):
        return {"n": n, "axis": self.axis}

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
