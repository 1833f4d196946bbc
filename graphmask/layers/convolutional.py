"""Conv1D, MaxPooling1D, AveragePooling1D and SpatialDropout1D, as Keras 3's.

Each records one coarse op (``conv1d``, ``max_pooling_1d``, ``average_pooling_1d``,
``spatial_dropout_1d``; see ``graphmask/ops/``). channels_last only. A convolution or a
pooling window mixes neighbouring steps, so none of them can take a padding mask: a mask
reaching one is a compile-time ``MaskError`` naming both layers (Keras 3 only warns and
drops it). To drop a mask on purpose, put a layer in between whose ``compute_mask``
returns None, e.g. ``gm.Lambda(lambda t: t, mask=lambda inputs, mask: None)``
(docs/masking.md). SpatialDropout1D passes the mask on.
"""
from __future__ import annotations

import numpy as np

from graphmask.errors import ConfigError, ShapeError
from graphmask.layers import initializers
from graphmask.layers.base import Layer, coarse_call
from graphmask.layers.core import _activation_name

__all__ = ["AveragePooling1D", "Conv1D", "MaxPooling1D", "SpatialDropout1D"]


def _one_int(who: str, arg: str, value, allow_none=False):
    """Keras's ``standardize_tuple(value, 1, arg)``: an int or a 1-tuple/list of an int,
    positive; returned as an int."""
    if value is None and allow_none:
        return None
    v = value
    if isinstance(v, (tuple, list)) and len(v) == 1:
        v = v[0]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ConfigError(f"{who}: {arg} must be a positive int (or a tuple of one), "
                          f"got {value!r}")
    return int(v)


def _padding(who: str, value, allowed):
    p = value.lower() if isinstance(value, str) else value
    if p not in allowed:
        raise ConfigError(f"{who}: padding must be one of {allowed}, got {value!r}")
    return p


def _data_format(who: str, value):
    if value not in (None, "channels_last"):
        raise ConfigError(f"{who}: data_format must be 'channels_last' (graphmask's only "
                          f"layout), got {value!r}")
    return "channels_last"


def _check_steps(who: str, spec):
    if spec.rank != 3 or spec.shape[-1] is None:
        raise ShapeError(f"{who}: input must be (batch, steps, channels) with a known number "
                         f"of channels, got shape {spec.shape}")


class Conv1D(Layer):
    """1-D convolution over steps: ``activation(conv1d(x, kernel) + bias)``, as Keras 3.

    Parameters
    ----------
    filters : int
        Number of output channels.
    kernel_size : int or tuple of one int
        Taps of the window.
    strides : int or tuple of one int
        Step between windows (default 1; ``> 1`` excludes ``dilation_rate > 1``).
    padding : {"valid", "same", "causal"}
        ``same`` pads ``total // 2`` steps on the left and the rest on the right;
        ``causal`` pads ``dilation_rate * (kernel_size - 1)`` on the left only.
    data_format : None or "channels_last"
        Only channels_last (B, steps, channels).
    dilation_rate : int or tuple of one int
        Spacing between taps (default 1).
    groups : int
        Channels split into ``groups`` independent convolutions; must divide the input
        channels and ``filters``.
    activation : str or None
        Any activation of ``Dense`` (default linear).
    use_bias : bool
    kernel_initializer, bias_initializer
        Default ``"glorot_uniform"`` (fans from the (K, C/groups, F) kernel) and
        ``"zeros"``.
    kernel_regularizer, bias_regularizer, activity_regularizer, kernel_constraint,
    bias_constraint : None
        Accepted at None only.

    Notes
    -----
    Weights in Keras order: ``kernel`` (kernel_size, channels // groups, filters), then
    ``bias`` (filters,). A mask reaching it is a compile-time ``MaskError``.
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        who = f"Conv1D {self.name!r}"
        self.filters = _one_int(who, "filters", filters)
        self.kernel_size = _one_int(who, "kernel_size", kernel_size)
        self.strides = _one_int(who, "strides", strides)
        self.dilation_rate = _one_int(who, "dilation_rate", dilation_rate)
        self.groups = _one_int(who, "groups", groups)
        self.padding = _padding(who, padding, ("valid", "same", "causal"))
        self.data_format = _data_format(who, data_format)
        if self.filters % self.groups:
            raise ConfigError(f"{who}: filters ({self.filters}) must be divisible by groups "
                              f"({self.groups})")
        if self.strides > 1 and self.dilation_rate > 1:
            raise ConfigError(f"{who}: strides > 1 is not supported with dilation_rate > 1 "
                              f"(as in Keras 3), got strides={strides!r}, "
                              f"dilation_rate={dilation_rate!r}")
        self.activation = _activation_name(who, activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer, who,
                                                   "kernel_initializer")
        self.bias_initializer = initializers.get(bias_initializer, who, "bias_initializer")
        self.supports_masking = False

    def build(self, spec):
        who = f"Conv1D {self.name!r}"
        _check_steps(who, spec)
        channels = spec.shape[-1]
        if channels % self.groups:
            raise ShapeError(f"{who}: the input's {channels} channels are not divisible by "
                             f"groups={self.groups}")
        self.kernel = self.add_weight(
            shape=(self.kernel_size, channels // self.groups, self.filters),
            initializer=self.kernel_initializer, name="kernel")
        self.bias = (self.add_weight(shape=(self.filters,), initializer=self.bias_initializer,
                                     name="bias") if self.use_bias else None)

    @coarse_call
    def call(self, x):
        attrs = {"strides": self.strides, "padding": self.padding,
                 "dilation_rate": self.dilation_rate, "groups": self.groups,
                 "activation": self.activation}
        return self._apply("conv1d", attrs, {"x": x, "kernel": self.kernel, "bias": self.bias})

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": (self.kernel_size,), "strides": (self.strides,),
                "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": (self.dilation_rate,), "groups": self.groups,
                "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": initializers.name_of(self.kernel_initializer),
                "bias_initializer": initializers.name_of(self.bias_initializer),
                "kernel_regularizer": None, "bias_regularizer": None,
                "activity_regularizer": None, "kernel_constraint": None,
                "bias_constraint": None}


class _Pooling1D(Layer):
    op = ""

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None,
                 name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        who = f"{type(self).__name__} {self.name!r}"
        self.pool_size = _one_int(who, "pool_size", pool_size)
        strides = _one_int(who, "strides", strides, allow_none=True)
        self.strides = self.pool_size if strides is None else strides
        self.padding = _padding(who, padding, ("valid", "same"))
        self.data_format = _data_format(who, data_format)
        self.supports_masking = False

    def build(self, spec):
        _check_steps(f"{type(self).__name__} {self.name!r}", spec)

    @coarse_call
    def call(self, x):
        attrs = {"pool_size": self.pool_size, "strides": self.strides,
                 "padding": self.padding}
        return self._apply(self.op, attrs, {"x": x})

    def get_config(self):
        return {**super().get_config(), "pool_size": (self.pool_size,), "padding": self.padding,
                "strides": (self.strides,), "data_format": self.data_format}


class MaxPooling1D(_Pooling1D):
    """Maximum over windows of ``pool_size`` steps every ``strides`` (default
    ``pool_size``) steps, ``padding`` ``"valid"`` or ``"same"``, as Keras 3's. Padded
    steps never win; the gradient goes to each window's first maximum. A mask reaching it
    is a compile-time ``MaskError``."""

    op = "max_pooling_1d"


class AveragePooling1D(_Pooling1D):
    """Mean over windows of ``pool_size`` steps every ``strides`` (default ``pool_size``)
    steps, as Keras 3's: with ``padding="same"`` the padded steps do not count when the
    padding is equal on both sides, and repeat the edge steps when it is not (Keras 3 on
    its torch backend). A mask reaching it is a compile-time ``MaskError``."""

    op = "average_pooling_1d"

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, name=None,
                 **kwargs):  # pool_size has no default here, as in Keras 3
        super().__init__(pool_size, strides, padding, data_format, name=name, **kwargs)


class SpatialDropout1D(Layer):
    """Drops whole channels: while training each (sample, channel) is zeroed for every
    step at once with probability ``rate``, the rest scaled by ``1 / (1 - rate)``; the
    identity in predict and evaluate. Passes the mask. Draws follow
    ``graphmask.set_random_seed``."""

    _training_sensitive = True

    def __init__(self, rate, seed=None, name=None, dtype=None, **kwargs):
        super().__init__(name=name, dtype=dtype, **kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ConfigError(f"SpatialDropout1D {self.name!r}: rate must be in [0, 1), got "
                              f"{rate!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError(f"SpatialDropout1D {self.name!r}: seed must be an int or None, "
                              f"got {seed!r}")
        self.rate = float(rate)
        self.seed = seed  # accepted as Keras's; graphmask.set_random_seed seeds the draws

    def build(self, spec):
        if spec.rank != 3:
            raise ShapeError(f"SpatialDropout1D {self.name!r}: input must be (batch, steps, "
                             f"channels), got shape {spec.shape}")

    @coarse_call
    def call(self, x):
        return self._apply("spatial_dropout_1d", {"rate": self.rate}, {"x": x})

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed,
                "noise_shape": None}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("noise_shape", None)
        return cls(**config)
