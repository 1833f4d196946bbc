"""``EinsumDense``, as Keras 3's: a dense layer whose product is an einsum equation.

It is traced like a custom layer: ``einsum(equation, inputs, kernel)`` (one BLAS product,
``prim.einsum``), ``+ bias``, then the activation. ``MultiHeadAttention`` builds its
query/key/value/output projections from it, as Keras does.
"""
from __future__ import annotations

import re

import numpy as np

from graphmask import ops as gops
from graphmask.errors import ConfigError, ShapeError
from graphmask.layers import initializers
from graphmask.layers.base import Layer
from graphmask.layers.core import _activation_name

__all__ = ["EinsumDense"]

_EQUATION = re.compile(r"^([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)$")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


class EinsumDense(Layer):
    """``activation(einsum(equation, inputs, kernel) + bias)`` (Keras 3's
    ``keras.layers.EinsumDense``).

    Parameters
    ----------
    equation : str
        ``"<input>,<kernel>-><output>"`` with one letter per axis, the batch axis
        included (``"abc,cd->abd"``: a dense layer on the last axis of a sequence).
        Keras's forms with ``...`` are refused (write the axes out).
    output_shape : int or tuple
        The output shape without the batch axis; ``None`` for an axis taken from the input.
    activation : str or None
        Any activation name of :class:`~graphmask.layers.Dense`.
    bias_axes : str or None
        Output letters that get a bias; the bias spans the output axes from the first of
        them to the last, with size 1 on those not named (Keras's rule).
    kernel_initializer, bias_initializer
        As Keras: a variance-scaling initializer (``"glorot_uniform"``, the default)
        counts its fans over the kernel axes shared with the input / the output.
    kernel_regularizer, bias_regularizer, kernel_constraint, bias_constraint, lora_rank
        Accepted at None only.
    **kwargs
        ``name``, ``dtype``, ``trainable``.

    Notes
    -----
    Weights: ``kernel`` (the kernel letters' sizes), then ``bias``. No mask is taken or
    passed (as Keras, the layer does not support masking).
    """

    def __init__(self, equation, output_shape, activation=None, bias_axes=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, lora_rank=None, **kwargs):
        for key in ("lora_alpha", "gptq_unpacked_column_size", "quantization_config"):
            if kwargs.pop(key, None) is not None:
                raise ConfigError(f"EinsumDense: {key} is not supported by graphmask (leave "
                                  f"it at None)")
        super().__init__(kernel_regularizer=kernel_regularizer,
                         bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
                         bias_constraint=bias_constraint, lora_rank=lora_rank, **kwargs)
        who = self._who
        if not isinstance(equation, str):
            raise ConfigError(f"{who}: equation must be a str like 'abc,cd->abd', got "
                              f"{equation!r}")
        found = _EQUATION.match(equation.replace(" ", ""))
        if found is None:
            hint = (" ('...' is not supported by graphmask: write the axes out)"
                    if "..." in equation else "")
            raise ConfigError(f"{who}: equation must have the form '<input>,<kernel>->"
                              f"<output>' with one letter per axis, got {equation!r}{hint}")
        self.equation = equation.replace(" ", "")
        self._spec_in, self._spec_kernel, self._spec_out = found.groups()
        for what, letters in (("input", self._spec_in), ("kernel", self._spec_kernel),
                              ("output", self._spec_out)):
            if len(set(letters)) != len(letters):
                raise ConfigError(f"{who}: equation {equation!r} repeats a letter in its "
                                  f"{what}")
        stray = [c for c in self._spec_out if c not in self._spec_in + self._spec_kernel]
        if stray:
            raise ConfigError(f"{who}: output letter {stray[0]!r} of equation {equation!r} is "
                              f"in neither the input nor the kernel")
        loose = [c for c in self._spec_kernel if c not in self._spec_in + self._spec_out]
        if loose:
            raise ConfigError(f"{who}: kernel letter {loose[0]!r} of equation {equation!r} is "
                              f"in neither the input nor the output")
        shape = (output_shape,) if _is_int(output_shape) or output_shape is None \
            else output_shape
        if not isinstance(shape, (list, tuple)) or not all(
                d is None or (_is_int(d) and d > 0) for d in shape):
            raise ConfigError(f"{who}: output_shape must be a positive int or a tuple of "
                              f"positive ints / None, got {output_shape!r}")
        if len(shape) != len(self._spec_out) - 1:
            raise ConfigError(f"{who}: output_shape {tuple(shape)} must give the "
                              f"{len(self._spec_out) - 1} output axes after the batch axis "
                              f"of {self._spec_out!r}")
        self.partial_output_shape = tuple(None if d is None else int(d) for d in shape)
        if bias_axes is not None:
            if not isinstance(bias_axes, str) or not bias_axes or any(
                    c not in self._spec_out for c in bias_axes):
                raise ConfigError(f"{who}: bias_axes must be letters of the output "
                                  f"{self._spec_out!r}, got {bias_axes!r}")
        self.bias_axes = bias_axes
        self.activation = _activation_name(who, activation)
        self.kernel_initializer = initializers.get(kernel_initializer, who,
                                                   "kernel_initializer")
        self.bias_initializer = initializers.get(bias_initializer, who, "bias_initializer")
        self.kernel = self.bias = None

    @property
    def _who(self) -> str:
        return f"EinsumDense {self.name!r}"

    def _sizes(self, input_shape) -> dict:
        """The size of each letter, checked against the input shape and ``output_shape``."""
        input_shape = tuple(input_shape)
        if len(input_shape) != len(self._spec_in):
            raise ShapeError(f"{self._who}: equation {self.equation!r} expects an input of "
                             f"rank {len(self._spec_in)}, got shape {input_shape}")
        sizes = dict(zip(self._spec_in, input_shape))
        for c, d in zip(self._spec_out[1:], self.partial_output_shape):
            if c in sizes and d is not None and sizes[c] is not None and sizes[c] != d:
                raise ShapeError(f"{self._who}: output_shape gives axis {c!r} size {d}, but "
                                 f"the input has {sizes[c]} (input shape {input_shape})")
            if d is not None or c not in sizes:
                sizes[c] = d if d is not None else sizes.get(c)
        return sizes

    def build(self, input_shape):
        sizes = self._sizes(input_shape)
        kernel_shape = tuple(sizes.get(c) for c in self._spec_kernel)
        if None in kernel_shape:
            raise ShapeError(f"{self._who}: the kernel axes {self._spec_kernel!r} need known "
                             f"sizes, got {kernel_shape} from input shape {tuple(input_shape)} "
                             f"and output_shape {self.partial_output_shape}")
        init = self.kernel_initializer
        if isinstance(init, initializers.VarianceScaling) and (
                init.input_axes is None or init.output_axes is None):
            config = {**init.get_config(),
                      "input_axes": [i for i, c in enumerate(self._spec_kernel)
                                     if c not in self._spec_out],
                      "output_axes": [i for i, c in enumerate(self._spec_kernel)
                                      if c in self._spec_out]}
            init = type(init).from_config(config)
        self.kernel = self.add_weight(shape=kernel_shape, initializer=init, name="kernel")
        if self.bias_axes is not None:
            first = min(self._spec_out.index(c) for c in self.bias_axes)
            bias_shape = tuple(sizes.get(c) if c in self.bias_axes else 1
                               for c in self._spec_out[first:])
            if None in bias_shape:
                raise ShapeError(f"{self._who}: the bias axes {self.bias_axes!r} need known "
                                 f"sizes, got {bias_shape}")
            self.bias = self.add_weight(shape=bias_shape, initializer=self.bias_initializer,
                                        name="bias")

    def call(self, inputs):
        self._sizes(inputs.shape)
        x = inputs
        if np.dtype(x.dtype).kind != "f":
            x = gops.cast(x, self.dtype)
        out = gops.einsum(self.equation, x, self.kernel)
        if self.bias is not None:
            out = out + self.bias
        if self.activation != "linear":
            out = self._apply("activation", {"activation": self.activation}, {"x": out})
        return out

    def get_config(self):
        return {**super().get_config(), "output_shape": list(self.partial_output_shape),
                "equation": self.equation, "activation": self.activation,
                "bias_axes": self.bias_axes,
                "kernel_initializer": initializers.name_of(self.kernel_initializer),
                "bias_initializer": initializers.name_of(self.bias_initializer),
                "kernel_regularizer": None, "bias_regularizer": None,
                "activity_regularizer": None, "kernel_constraint": None,
                "bias_constraint": None, "quantization_config": None}
