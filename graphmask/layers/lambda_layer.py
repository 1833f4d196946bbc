"""``Lambda``: a Python function of ``graphmask.ops`` as a layer (Keras 3 semantics).

``Lambda(function, output_shape=None, mask=None, arguments=None)``:

* ``function(inputs, **arguments)`` is traced like a custom layer's ``call``; it also
  receives ``mask=`` / ``training=`` when its signature names them;
* ``mask``: ``None`` (the layer does not support masking: no output mask), a callable
  ``mask(inputs, previous_mask)`` (Keras's ``compute_mask``), or a fixed mask tensor;
* ``output_shape``: optional, checked against the traced shape (a tuple without the
  batch axis, or a function of the input shape).

A mask reaching a ``Lambda`` that neither passes ``mask=`` nor reads the mask in its
function is a :class:`MaskError` (Keras 3 warns and drops it); drop it on purpose with
``mask=lambda inputs, mask: None``. A ``Lambda`` holding Python code is saved by name
only; loading it needs ``safe_mode=False`` (see ``graphmask.saving``).
"""
from __future__ import annotations

import inspect

from graphmask.errors import ConfigError, MaskError, ShapeError
from graphmask.layers.base import Layer
from graphmask.layers.tensors import SymbolicTensor, flatten, mask_creator


class Lambda(Layer):
    """Wraps ``function`` (made of ``graphmask.ops``) as a layer."""

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise ConfigError(f"Lambda {self.name!r}: function must be callable, got "
                              f"{function!r}")
        if arguments is not None and not isinstance(arguments, dict):
            raise ConfigError(f"Lambda {self.name!r}: arguments must be a dict, got "
                              f"{arguments!r}")
        self.function = function
        self.arguments = dict(arguments or {})
        self.mask = mask
        self.supports_masking = mask is not None
        self._output_shape = output_shape
        try:
            params = inspect.signature(function).parameters
        except (TypeError, ValueError):
            params = {}
        self._fn_expects_mask_arg = "mask" in params
        self._fn_expects_training_arg = "training" in params

    def call(self, inputs, mask=None, training=None):
        arriving = [m for m in flatten(mask) if m is not None]
        if arriving and self.mask is None and not self._fn_expects_mask_arg:
            raise MaskError(
                f"the mask created by {mask_creator(arriving[0])} reaches Lambda "
                f"{self.name!r}, which neither reads it (its function has no mask argument) "
                f"nor passes it (mask=None). Keras 3 would drop it silently. Pass "
                f"mask=lambda inputs, mask: mask to keep it, or mask=lambda inputs, mask: "
                f"None to drop it on purpose.")
        kwargs = dict(self.arguments)
        if self._fn_expects_mask_arg:
            kwargs["mask"] = mask
        if self._fn_expects_training_arg:
            kwargs["training"] = training
        out = self.function(inputs, **kwargs)
        if self._output_shape is not None:
            self._check_output_shape(inputs, out)
        return out

    def compute_mask(self, inputs, previous_mask=None):
        if callable(self.mask):
            return self.mask(inputs, previous_mask)
        return self.mask

    def _check_output_shape(self, inputs, out):
        got = [tuple(t.shape) for t in flatten(out) if isinstance(t, SymbolicTensor)]
        if callable(self._output_shape):
            in_shapes = [tuple(t.shape) for t in flatten(inputs)]
            want = self._output_shape(in_shapes[0] if len(in_shapes) == 1 else in_shapes)
            want = [tuple(want)] if not isinstance(want, list) else [tuple(w) for w in want]
        else:
            spec = self._output_shape
            specs = spec if isinstance(spec, list) else [spec]
            want = [(g[0],) + tuple(s) for g, s in zip(got, specs)]
        for g, w in zip(got, want):
            if len(g) != len(w) or any(a is not None and b is not None and a != b
                                       for a, b in zip(g, w)):
                raise ShapeError(f"Lambda {self.name!r}: output_shape says {w}, but the "
                                 f"function returns shape {g}")

    def get_config(self):
        """The function (and a callable ``mask``) by module and name only: loading needs
        ``safe_mode=False`` or ``custom_objects`` (see ``graphmask.saving``)."""
        config = {**super().get_config(), "arguments": self.arguments,
                  "function": _reference(self.function)}
        if self._output_shape is not None:
            if callable(self._output_shape):
                raise ConfigError(f"Lambda {self.name!r}: a callable output_shape cannot be "
                                  f"saved; give a tuple")
            config["output_shape"] = list(self._output_shape)
        if self.mask is not None:
            if not callable(self.mask):
                raise ConfigError(f"Lambda {self.name!r}: a fixed mask tensor cannot be "
                                  f"saved; give mask as a function")
            config["mask"] = _reference(self.mask)
        return config


def _reference(fn) -> dict:
    return {"module": getattr(fn, "__module__", None),
            "name": getattr(fn, "__qualname__", getattr(fn, "__name__", repr(fn)))}
