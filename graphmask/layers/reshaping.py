"""``RepeatVector``, ``Reshape`` and ``Permute``, as Keras 3's, written with
``graphmask.ops``.

None of the three supports masking in Keras 3, which only warns when a mask reaches one
and drops it. graphmask refuses at model-building time: a :class:`MaskError` naming the
layer that made the mask and the layer it reaches, as for graphmask's ``Flatten``.
"""
from __future__ import annotations

import math

import numpy as np

from graphmask import ops as gops
from graphmask.errors import ConfigError, MaskError, ShapeError
from graphmask.layers.base import Layer
from graphmask.layers.merging import cast_floats
from graphmask.layers.tensors import SymbolicTensor, flatten, mask_creator

__all__ = ["Permute", "RepeatVector", "Reshape"]


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


class _NoMask(Layer):
    """A layer that neither uses nor passes a mask (Keras 3: no ``supports_masking``)."""

    def _input(self, inputs, mask):
        if not isinstance(inputs, SymbolicTensor):
            raise ConfigError(f"{type(self).__name__} {self.name!r}: must be called on one "
                              f"tensor, got {inputs!r}")
        arriving = [m for m in flatten(mask) if m is not None]
        if arriving:
            raise MaskError(
                f"the mask created by {mask_creator(arriving[0])} reaches layer "
                f"{self.name!r} ({type(self).__name__}), which cannot take a mask. Keras 3 "
                f"would only warn and drop it, and padded positions would count in "
                f"everything after it. Consume the mask first (LSTM, "
                f"GlobalAveragePooling1D) or do not create it.")
        return cast_floats(self, inputs)


class RepeatVector(_NoMask):
    """``(batch, features)`` -> ``(batch, n, features)``: the input repeated ``n`` times
    (Keras 3's ``keras.layers.RepeatVector``).

    Parameters
    ----------
    n : int
        The number of repetitions (positive).
    **kwargs
        ``name``, ``dtype``, ``trainable``.
    """

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        if not _is_int(n) or n <= 0:
            raise ConfigError(f"RepeatVector {self.name!r}: n must be a positive int, got "
                              f"{n!r}")
        self.n = int(n)

    def call(self, inputs, mask=None):
        x = self._input(inputs, mask)
        if len(x.shape) != 2:
            raise ShapeError(f"RepeatVector {self.name!r}: input must have rank 2 (batch, "
                             f"features), got shape {tuple(x.shape)}")
        return gops.repeat(gops.expand_dims(x, 1), self.n, axis=1)

    def get_config(self):
        return {**super().get_config(), "n": self.n}


class Reshape(_NoMask):
    """Each sample reshaped to ``target_shape`` (Keras 3's ``keras.layers.Reshape``).

    Parameters
    ----------
    target_shape : tuple of int
        The shape of a sample (the batch axis excluded). One entry may be ``-1`` (or
        ``None``): the size that keeps the number of values.
    **kwargs
        ``name``, ``dtype``, ``trainable``.

    Notes
    -----
    graphmask's reshape infers one unknown size per reshape, and the batch size is one
    already: when the input has unknown sizes besides the batch, the target must be
    fully known, or the batch size must be fixed (``Input(..., batch_size=)``).
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            target = tuple(target_shape)
        except TypeError:
            raise ConfigError(f"Reshape {self.name!r}: target_shape must be a tuple of ints, "
                              f"got {target_shape!r}") from None
        if not all(d is None or _is_int(d) for d in target) or any(
                d is not None and d < -1 for d in target):
            raise ConfigError(f"Reshape {self.name!r}: target_shape entries must be sizes "
                              f">= 0 or -1 for one unknown size, got {target_shape!r}")
        target = tuple(-1 if d is None else int(d) for d in target)
        if target.count(-1) > 1:
            raise ConfigError(f"Reshape {self.name!r}: target_shape may hold one unknown size "
                              f"(-1), got {target_shape!r}")
        self.target_shape = target
        self.built = True  # as in Keras: no weights

    def _resolved(self, shape) -> tuple:
        """``target_shape`` with its -1 resolved when the sample size is known."""
        sample = shape[1:]
        who = f"Reshape {self.name!r}"
        if None in sample:
            return self.target_shape
        size = math.prod(sample)
        if -1 not in self.target_shape:
            if math.prod(self.target_shape) != size:
                raise ShapeError(f"{who}: cannot reshape a sample of shape {tuple(sample)} "
                                 f"({size} values) to target_shape {self.target_shape} "
                                 f"({math.prod(self.target_shape)} values)")
            return self.target_shape
        known = math.prod(d for d in self.target_shape if d != -1)
        if known == 0 or size % known:
            raise ShapeError(f"{who}: cannot reshape a sample of shape {tuple(sample)} "
                             f"({size} values) to target_shape {self.target_shape}")
        return tuple(size // known if d == -1 else d for d in self.target_shape)

    def call(self, inputs, mask=None):
        x = self._input(inputs, mask)
        if not x.shape:
            raise ShapeError(f"Reshape {self.name!r}: input must have a batch axis, got a "
                             f"scalar")
        target = self._resolved(tuple(x.shape))
        batch = x.shape[0]
        if -1 in target and batch is None:
            raise ShapeError(
                f"Reshape {self.name!r}: target_shape {self.target_shape} has an unknown "
                f"size and so has input shape {tuple(x.shape)} besides the batch axis; "
                f"graphmask's reshape infers one size only: give the target's sizes, or fix "
                f"the batch size with Input(..., batch_size=)")
        return gops.reshape(x, (-1 if batch is None else batch,) + tuple(target))

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class Permute(_NoMask):
    """The axes of each sample reordered (Keras 3's ``keras.layers.Permute``).

    Parameters
    ----------
    dims : tuple of int
        A permutation of ``1 .. rank - 1`` (the batch axis 0 stays first): ``(2, 1)``
        swaps the two axes of a ``(batch, T, F)`` input.
    **kwargs
        ``name``, ``dtype``, ``trainable``.
    """

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        try:
            dims = tuple(dims)
        except TypeError:
            raise ConfigError(f"Permute {self.name!r}: dims must be a tuple of ints, got "
                              f"{dims!r}") from None
        if not all(_is_int(d) for d in dims) or \
                sorted(int(d) for d in dims) != list(range(1, len(dims) + 1)):
            raise ConfigError(f"Permute {self.name!r}: dims must be a permutation of 1 .. "
                              f"{len(dims)} (axis 0 is the batch), got {dims!r}")
        self.dims = tuple(int(d) for d in dims)

    def call(self, inputs, mask=None):
        x = self._input(inputs, mask)
        if len(x.shape) != len(self.dims) + 1:
            raise ShapeError(f"Permute {self.name!r}: dims={self.dims} needs an input of "
                             f"rank {len(self.dims) + 1}, got shape {tuple(x.shape)}")
        return gops.transpose(x, (0,) + self.dims)

    def get_config(self):
        return {**super().get_config(), "dims": list(self.dims)}
