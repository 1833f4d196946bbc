"""``LayerNormalization``, as Keras 3's, written with ``graphmask.ops``.

The layer is traced like a custom layer: its ``call`` records primitives (mean, square,
sqrt, ...) that autodiff differentiates, so it needs no kernel of its own. It passes the
mask on unchanged (``supports_masking``), as Keras 3's does: each position is normalised
on its own, so padded positions never mix with kept ones.
"""
from __future__ import annotations

import warnings

import numpy as np

from graphmask import ops as gops
from graphmask.errors import ConfigError, ShapeError
from graphmask.layers import initializers
from graphmask.layers.base import Layer

__all__ = ["LayerNormalization"]

_KERAS_ONLY = ("beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


class LayerNormalization(Layer):
    """Normalises each sample over ``axis``: ``(x - mean) / sqrt(var + epsilon)``, then
    ``* gamma + beta`` (Keras 3's ``keras.layers.LayerNormalization``).

    Parameters
    ----------
    axis : int or list of int
        The axis or axes to normalise over (never the batch axis 0); default the last.
    epsilon : float
        Added to the (biased) variance; default 1e-3.
    center, scale : bool
        Create and add ``beta`` / create and multiply by ``gamma`` (default True).
    beta_initializer, gamma_initializer
        Initializers of ``beta`` (default ``"zeros"``) and ``gamma`` (``"ones"``).
    beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint : None
        Accepted at their default only (anything else is a :class:`ConfigError`).
    rms_scaling : bool
        Keras 3's deprecated option, kept with its exact meaning: ``x / sqrt(var +
        epsilon) * gamma`` with no centring and no ``beta`` (the variance, not the mean
        square: use it only to reproduce a Keras model). Warns, as Keras does.
    **kwargs
        ``name``, ``dtype``, ``trainable``.

    Notes
    -----
    The weights are ``gamma`` then ``beta`` (Keras's order), each of the shape of the
    normalised axes taken in the order of ``sorted(axis)``, as Keras 3 builds them; the
    values are computed in at least float32 and the output is cast to the layer's dtype.
    Floats of another dtype are not cast on the way in (Keras's ``autocast=False``).
    """

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 **kwargs):
        rms_scaling = kwargs.pop("rms_scaling", False)
        super().__init__(**kwargs)
        who = f"LayerNormalization {self.name!r}"
        given = {"beta_regularizer": beta_regularizer, "gamma_regularizer": gamma_regularizer,
                 "beta_constraint": beta_constraint, "gamma_constraint": gamma_constraint}
        unsupported = [k for k in _KERAS_ONLY if given[k] is not None]
        if unsupported:
            raise ConfigError(f"{who}: {unsupported} are not supported by graphmask "
                              f"(leave them at None)")
        if _is_int(axis):
            self.axis = int(axis)
        elif isinstance(axis, (list, tuple)) and axis and all(_is_int(a) for a in axis):
            self.axis = [int(a) for a in axis]
        else:
            raise ConfigError(f"{who}: axis must be an int or a non-empty list of ints, "
                              f"got {axis!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.floating)) \
                or not np.isfinite(epsilon) or epsilon < 0:
            raise ConfigError(f"{who}: epsilon must be a finite number >= 0, got {epsilon!r}")
        for arg, value in (("center", center), ("scale", scale), ("rms_scaling", rms_scaling)):
            if not isinstance(value, (bool, np.bool_)):
                raise ConfigError(f"{who}: {arg} must be True or False, got {value!r}")
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.rms_scaling = bool(rms_scaling)
        self.beta_initializer = initializers.get(beta_initializer, who, "beta_initializer")
        self.gamma_initializer = initializers.get(gamma_initializer, who, "gamma_initializer")
        self.supports_masking = True
        if self.rms_scaling:
            warnings.warn(f"{who}: rms_scaling=True is deprecated in Keras 3: it divides by "
                          f"sqrt(variance + epsilon), not by the root mean square",
                          UserWarning, stacklevel=2)

    def _axes(self, rank: int) -> list[int]:
        """``sorted(axis)`` as given (Keras's order of the weight's axes), checked."""
        given = self.axis if isinstance(self.axis, list) else [self.axis]
        bad = [a for a in given if not -rank <= a < rank or a % rank == 0]
        if bad:
            raise ShapeError(f"LayerNormalization {self.name!r}: axis {bad[0]} is out of range "
                             f"for an input of rank {rank} (the batch axis 0 cannot be "
                             f"normalised); axis={self.axis!r}")
        if len({a % rank for a in given}) != len(given):
            raise ShapeError(f"LayerNormalization {self.name!r}: axis={self.axis!r} names an "
                             f"axis twice for an input of rank {rank}")
        return sorted(given)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        axes = self._axes(len(input_shape))
        shape = tuple(input_shape[a] for a in axes)
        if None in shape:
            raise ShapeError(f"LayerNormalization {self.name!r}: the normalised axes {axes} "
                             f"of input shape {input_shape} must have known sizes")
        self.axis = axes
        self.gamma = self.add_weight(shape=shape, initializer=self.gamma_initializer,
                                     name="gamma") if self.scale or self.rms_scaling else None
        self.beta = self.add_weight(shape=shape, initializer=self.beta_initializer,
                                    name="beta") \
            if self.center and not self.rms_scaling else None

    def call(self, inputs):
        x = inputs
        rank = len(x.shape)
        axes = self._axes(rank)
        positional = [a % rank for a in axes]
        built = tuple(x.shape[a] for a in axes)
        weight = self.gamma if self.gamma is not None else self.beta
        weight_shape = built if weight is None else weight.shape
        if tuple(weight_shape) != built:
            raise ShapeError(f"LayerNormalization {self.name!r}: was built for sizes "
                             f"{tuple(weight_shape)} on axes {axes}, got input shape "
                             f"{tuple(x.shape)}")
        if np.dtype(x.dtype).kind != "f" or np.dtype(x.dtype).itemsize < 4:
            x = gops.cast(x, "float32")  # at least float32, as Keras computes it
        mean = gops.mean(x, axis=positional, keepdims=True)
        centred = x - mean
        variance = gops.mean(gops.square(centred), axis=positional, keepdims=True)
        inv = 1.0 / gops.sqrt(variance + self.epsilon)
        if self.rms_scaling:
            out = x * inv
        else:
            out = centred * inv
        broadcast = [1] * rank
        for a in positional:
            broadcast[a] = x.shape[a]
        last_only = positional == [rank - 1]
        if self.gamma is not None:
            gamma = gops.cast(self.gamma, x.dtype) if self.gamma.dtype != x.dtype \
                else self.gamma
            out = out * (gamma if last_only else gops.reshape(gamma, broadcast))
        if self.beta is not None:
            beta = gops.cast(self.beta, x.dtype) if self.beta.dtype != x.dtype else self.beta
            out = out + (beta if last_only else gops.reshape(beta, broadcast))
        if out.dtype != self.dtype and np.dtype(self.dtype).kind == "f":
            out = gops.cast(out, self.dtype)
        return out

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale, "rms_scaling": self.rms_scaling,
                "beta_initializer": initializers.name_of(self.beta_initializer),
                "gamma_initializer": initializers.name_of(self.gamma_initializer),
                "beta_regularizer": None, "gamma_regularizer": None,
                "beta_constraint": None, "gamma_constraint": None}
