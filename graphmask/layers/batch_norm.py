"""``BatchNormalization``, as Keras 3's (over the last axis), on the
``batch_normalization`` op (``graphmask/ops/batch_norm.py``)."""
from __future__ import annotations

import numpy as np

from graphmask.errors import ConfigError, ShapeError
from graphmask.layers import initializers
from graphmask.layers.base import Layer, coarse_call

__all__ = ["BatchNormalization"]

_KERAS_ONLY = ("beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint")


def _number(who, arg, value, low=None):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not np.isfinite(value) or (low is not None and value < low):
        bound = "" if low is None else f" >= {low}"
        raise ConfigError(f"{who}: {arg} must be a finite number{bound}, got {value!r}")
    return float(value)


class BatchNormalization(Layer):
    """Normalises each channel with the batch's moments while training and with moving
    averages of them otherwise, as Keras 3's ``keras.layers.BatchNormalization``.

    Training (``fit``, ``train_on_batch``): ``y = (x - mean) / sqrt(var + epsilon) *
    gamma + beta`` with the batch's mean and (biased) variance over every axis but the
    last; then, once the step succeeded, ``moving_mean <- moving_mean * momentum + mean *
    (1 - momentum)`` and the same for ``moving_variance`` (once per train step and
    layer call). Predict and evaluate use the moving statistics.

    With a padding mask (e.g. after ``Embedding(mask_zero=True)``), only kept positions
    count in the batch moments, each sum divided by ``count + 1e-7`` as in Keras 3 (a
    batch with no kept position gives mean 0 and variance 0); every position is
    normalised and the mask passes on.

    Parameters
    ----------
    axis : int
        The channel axis: the last one (``-1``, the default, or ``rank - 1``).
    momentum : float
        Of the moving averages (default 0.99).
    epsilon : float
        Added to the variance (default 1e-3).
    center, scale : bool
        Create and add ``beta`` / create and multiply by ``gamma`` (default True).
    beta_initializer, gamma_initializer, moving_mean_initializer,
    moving_variance_initializer
        Default ``"zeros"``, ``"ones"``, ``"zeros"``, ``"ones"``.
    beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint : None
        Accepted at None only.
    renorm, synchronized : False
        Batch renormalisation and cross-device statistics are not supported (False only).
    **kwargs
        ``name``, ``dtype``, ``trainable``.

    Notes
    -----
    Weights in Keras's order: ``gamma``, ``beta`` (trainable), ``moving_mean``,
    ``moving_variance`` (non-trainable, saved and loaded with the others). As in Keras,
    a layer with ``trainable=False`` runs in inference mode even while fitting and its
    moving statistics stay as they are; graphmask reads ``trainable`` when the layer is
    called (build the model after freezing). ``training=`` at a symbolic call is refused:
    fitting is training, predict and evaluate are not. An eager call on arrays with
    ``training=True`` uses the batch's moments and moves the statistics, as Keras's.
    """

    _training_sensitive = True

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, renorm=False, renorm_clipping=None,
                 renorm_momentum=0.99, synchronized=False, **kwargs):
        super().__init__(**kwargs)
        who = f"BatchNormalization {self.name!r}"
        given = {"beta_regularizer": beta_regularizer, "gamma_regularizer": gamma_regularizer,
                 "beta_constraint": beta_constraint, "gamma_constraint": gamma_constraint}
        unsupported = [k for k in _KERAS_ONLY if given[k] is not None]
        if renorm or renorm_clipping is not None:
            unsupported.append("renorm")
        if synchronized:
            unsupported.append("synchronized")
        if unsupported:
            raise ConfigError(f"{who}: {unsupported} are not supported by graphmask (leave "
                              f"them at their defaults)")
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ConfigError(f"{who}: axis must be an int (the last axis), got {axis!r}")
        self.axis = int(axis)
        self.momentum = _number(who, "momentum", momentum)
        self.epsilon = _number(who, "epsilon", epsilon, low=0)
        for arg, value in (("center", center), ("scale", scale)):
            if not isinstance(value, (bool, np.bool_)):
                raise ConfigError(f"{who}: {arg} must be True or False, got {value!r}")
        self.center, self.scale = bool(center), bool(scale)
        self.renorm_momentum = _number(who, "renorm_momentum", renorm_momentum)
        self.beta_initializer = initializers.get(beta_initializer, who, "beta_initializer")
        self.gamma_initializer = initializers.get(gamma_initializer, who, "gamma_initializer")
        self.moving_mean_initializer = initializers.get(moving_mean_initializer, who,
                                                        "moving_mean_initializer")
        self.moving_variance_initializer = initializers.get(
            moving_variance_initializer, who, "moving_variance_initializer")
        self.supports_masking = True

    def build(self, spec):
        who = f"BatchNormalization {self.name!r}"
        rank = spec.rank
        if rank < 2:
            raise ShapeError(f"{who}: input must be (batch, ..., channels), got shape "
                             f"{spec.shape}")
        if self.axis not in (-1, rank - 1):
            raise ShapeError(f"{who}: axis={self.axis} is not supported for an input of rank "
                             f"{rank}: graphmask normalises the last axis (-1 or {rank - 1})")
        channels = spec.shape[-1]
        if channels is None:
            raise ShapeError(f"{who}: the last axis of input shape {spec.shape} must have a "
                             f"known size")
        self.axis = -1 if self.axis == -1 else rank - 1
        shape = (channels,)
        self.gamma = self.add_weight(shape=shape, initializer=self.gamma_initializer,
                                     name="gamma") if self.scale else None
        self.beta = self.add_weight(shape=shape, initializer=self.beta_initializer,
                                    name="beta") if self.center else None
        self.moving_mean = self.add_weight(shape=shape, initializer=self.moving_mean_initializer,
                                           trainable=False, name="moving_mean")
        self.moving_variance = self.add_weight(
            shape=shape, initializer=self.moving_variance_initializer, trainable=False,
            name="moving_variance")

    @coarse_call
    def call(self, x):
        attrs = {"momentum": self.momentum, "epsilon": self.epsilon,
                 "frozen": not self.trainable,
                 "moving_mean_var": self.moving_mean.name,
                 "moving_variance_var": self.moving_variance.name}
        return self._apply("batch_normalization", attrs, {
            "x": x, "gamma": self.gamma, "beta": self.beta, "moving_mean": self.moving_mean,
            "moving_variance": self.moving_variance})

    def get_config(self):
        name_of = initializers.name_of
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                "beta_initializer": name_of(self.beta_initializer),
                "gamma_initializer": name_of(self.gamma_initializer),
                "moving_mean_initializer": name_of(self.moving_mean_initializer),
                "moving_variance_initializer": name_of(self.moving_variance_initializer),
                "beta_regularizer": None, "gamma_regularizer": None,
                "beta_constraint": None, "gamma_constraint": None, "synchronized": False,
                "renorm": False, "renorm_clipping": None,
                "renorm_momentum": self.renorm_momentum}
