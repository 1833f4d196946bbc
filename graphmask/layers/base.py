"""Layers: the Keras-style front end (``Layer``, ``InputLayer``, ``Input``).

Built-in layers record one coarse op per call (``self._apply(op, attrs, ports)``) whose
mask rule the mask pass applies. A user's layer subclasses :class:`Layer`; calling it
traces its ``call`` (see ``graphmask/layers/calling.py``): the primitives it records form
one named group in the graph, and Keras 3's mask hand-over decides which mask ``call``
receives and which mask its outputs carry. Symbolic values live in ``tensors.py``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphmask.errors import ConfigError, GraphmaskError, ShapeError
from graphmask.layers import initializers
from graphmask.layers.tensors import (
    Call,
    LayerNode,
    SymbolicTensor,
    Variable,
    calls_of,
    flatten,
    record,
)
from graphmask.utils import snake_case, unique_name

__all__ = ["Call", "Input", "InputLayer", "Layer", "SymbolicTensor", "Variable", "calls_of"]


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]






#: Keras layer arguments graphmask accepts only at their default (None): regularizers,
#: constraints and the like. Any other value is a clear error, never silently ignored.
KERAS_ONLY = ("kernel_regularizer", "bias_regularizer", "activity_regularizer",
              "recurrent_regularizer", "embeddings_regularizer", "kernel_constraint",
              "bias_constraint", "recurrent_constraint", "embeddings_constraint",
              "lora_rank", "autocast")


def coarse_call(fn):
    """Marks a built-in layer's ``call``: it records one coarse op (``self._apply``) whose
    mask rule the mask pass applies, instead of being traced like a custom layer's."""
    fn.coarse = True
    return fn


class Layer:
    """Base class of every layer, built in or written by a user (Keras 3's protocol).

    A user's layer subclasses it and defines ``build(input_shape)`` (optional; create
    weights with :meth:`add_weight`), ``call(self, inputs, mask=None, training=None)``
    made of ``graphmask.ops`` functions and other layers, and optionally
    ``compute_mask(inputs, previous_mask)``. Calling the layer on symbolic tensors traces
    ``call`` into the graph; calling it on NumPy arrays computes at once (see
    ``docs/custom_layers.md``).
    """

    #: extra keyword arguments a built-in layer's ``call`` takes (LSTM: ``initial_state``)
    _call_kwargs: tuple = ()
    #: a built-in layer whose op behaves differently while training (Dropout)
    _training_sensitive: bool = False

    def __init__(self, name: str | None = None, trainable: bool = True, dtype=None, **kwargs):
        unsupported = sorted(k for k in KERAS_ONLY if kwargs.get(k) is not None)
        if unsupported:
            raise ConfigError(f"{type(self).__name__}: {unsupported} are not supported by "
                              f"graphmask (leave them at None)")
        unknown = sorted(k for k in kwargs if k not in KERAS_ONLY
                         and k not in ("input_shape", "batch_input_shape", "input_length"))
        if unknown:
            raise ConfigError(f"{type(self).__name__}: unexpected argument(s) {unknown}")
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ConfigError(f"{type(self).__name__}: name must be a non-empty str without "
                              f"'/', got {name!r}")
        object.__setattr__(self, "_layers", [])
        self.name = name or unique_name(snake_case(type(self).__name__))
        # Keras's (deprecated but common) way to give a Sequential model its input shape
        self.input_shape_hint = kwargs.get("input_shape")
        if kwargs.get("batch_input_shape") is not None:
            self.input_shape_hint = tuple(kwargs["batch_input_shape"])[1:]
        self._trainable = bool(trainable)
        try:
            self.dtype = "float32" if dtype is None else str(np.dtype(dtype))
        except TypeError:
            raise ConfigError(f"{type(self).__name__} {self.name!r}: unknown dtype "
                              f"{dtype!r}") from None
        self.built = False
        self._own_weights: list[Variable] = []
        self._calls: list = []
        self._nodes: list = []  # LayerNode per call (graphmask.layers.tensors)

    # ---- tracking of nested layers (Keras's auto-tracking on attribute assignment) ----
    def __setattr__(self, key, value):
        if not key.startswith("_") and "_layers" in self.__dict__:
            for item in flatten(value) if isinstance(value, (list, tuple, dict)) else [value]:
                if isinstance(item, Layer) and item is not self and \
                        all(item is not known for known in self._layers):
                    self._layers.append(item)
        object.__setattr__(self, key, value)

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value) -> None:
        self._trainable = bool(value)
        for layer in self._layers:
            layer.trainable = value

    @property
    def supports_masking(self) -> bool:
        """Whether the layer passes or computes a mask (Keras 3: true when
        ``compute_mask`` is overridden, unless set otherwise)."""
        explicit = self.__dict__.get("_supports_masking")
        if explicit is not None:
            return explicit
        if self._builtin:
            return True
        return type(self).compute_mask is not Layer.compute_mask

    @supports_masking.setter
    def supports_masking(self, value) -> None:
        self.__dict__["_supports_masking"] = bool(value)

    def compute_mask(self, inputs, previous_mask):
        return previous_mask

    @property
    def _builtin(self) -> bool:
        """A graphmask layer whose ``call`` records one coarse op with a mask rule
        (marked :func:`coarse_call`); a subclass that overrides ``call`` is traced."""
        return getattr(type(self).call, "coarse", False)

    # ---- weights -------------------------------------------------------------------
    def add_weight(self, shape=None, initializer=None, dtype=None, trainable=True,
                   autocast=True, regularizer=None, constraint=None, aggregation="none",
                   overwrite_with_gradient=False, name=None) -> Variable:
        """Create a weight, as Keras 3's ``Layer.add_weight``; returns a :class:`Variable`."""
        who = f"{type(self).__name__} {self.name!r}: add_weight"
        if regularizer is not None or constraint is not None:
            raise ConfigError(f"{who}: regularizer and constraint are not supported "
                              f"(leave them at None)")
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError(f"{who}: name must be a non-empty str, got {name!r}")
        name = name or ("variable" if not self._own_weights else
                        f"variable_{len(self._own_weights)}")
        try:
            shape = () if shape is None else tuple(int(d) for d in _as_list(shape))
        except (TypeError, ValueError):
            raise ConfigError(f"{who}: shape of weight {name!r} must be a tuple of ints, "
                              f"got {shape!r}") from None
        if any(d < 0 for d in shape):
            raise ConfigError(f"{who}: shape of weight {name!r} has a negative dimension: "
                              f"{shape}")
        try:
            dt = np.dtype(self.dtype if dtype is None else dtype)
        except TypeError:
            raise ConfigError(f"{who}: unknown dtype {dtype!r} for weight {name!r}") from None
        if initializer is None:
            initializer = "glorot_uniform" if dt.kind == "f" else "zeros"
        init = initializers.get(initializer, f"{type(self).__name__} {self.name!r}",
                                f"initializer of weight {name!r}")
        try:
            value = np.asarray(init(shape, str(dt)))
        except GraphmaskError as e:
            raise type(e)(f"{who}: initializer of weight {name!r}: {e}") from None
        except Exception as e:
            raise ConfigError(f"{who}: initializer {initializer!r} of weight {name!r} failed "
                              f"for shape {shape}: {e}") from None
        if value.shape != shape:
            raise ConfigError(f"{who}: initializer {initializer!r} of weight {name!r} returned "
                              f"shape {value.shape}, expected {shape}")
        if value.dtype.kind not in "fiub":
            raise ConfigError(f"{who}: initializer {initializer!r} of weight {name!r} returned "
                              f"non-numeric dtype {value.dtype}")
        full = f"{self.name}/{name}"
        if any(v.name == full for v in self._own_weights):
            raise ConfigError(f"{who}: the layer already has a weight named {name!r}")
        # np.array, not ascontiguousarray: that makes a scalar weight shape (1,)
        var = Variable(full, np.array(value, dtype=dt, order="C"), bool(trainable))
        self._own_weights.append(var)
        return var

    @property
    def weights(self) -> list[Variable]:
        """Own trainable weights, own non-trainable ones, then nested layers' (Keras order)."""
        own = [v for v in self._own_weights if v.trainable] + \
              [v for v in self._own_weights if not v.trainable]
        seen, out = set(), []
        for v in own + [w for layer in self._layers for w in layer.weights]:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
        return out

    @property
    def trainable_weights(self) -> list[Variable]:
        if not self.trainable:
            return []
        own = [v for v in self._own_weights if v.trainable]
        seen, out = set(), []
        for v in own + [w for layer in self._layers for w in layer.trainable_weights]:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
        return out

    @property
    def non_trainable_weights(self) -> list[Variable]:
        trainable = {id(v) for v in self.trainable_weights}
        return [v for v in self.weights if id(v) not in trainable]

    def get_weights(self) -> list[np.ndarray]:
        return [v.value.copy() for v in self.weights]

    def set_weights(self, weights) -> None:
        """Replace all weights at once; nothing changes unless every array fits."""
        weights = list(weights)
        own = self.weights
        if len(weights) != len(own):
            raise ShapeError(f"layer {self.name!r}: set_weights expected "
                             f"{len(own)} arrays ({[v.name for v in own]}), got {len(weights)}")
        new = []
        for var, w in zip(own, weights):
            arr = np.asarray(w)
            if arr.dtype.kind not in "fiub":
                raise ShapeError(f"layer {self.name!r}: weight {var.name!r} must be numeric, "
                                 f"got dtype {arr.dtype}")
            if tuple(arr.shape) != var.shape:
                raise ShapeError(f"layer {self.name!r}: weight {var.name!r} has shape "
                                 f"{var.shape}, got {tuple(arr.shape)}")
            if not np.all(np.isfinite(arr)):
                raise ShapeError(f"layer {self.name!r}: weight {var.name!r} contains NaN or inf")
            new.append(np.array(arr, dtype=var.value.dtype, order="C"))
        for var, arr in zip(own, new):
            var.value[...] = arr  # in place: compiled plans keep referring to the same array

    @property
    def output(self):
        """The output of the layer's only call (as Keras's ``layer.output``)."""
        outs = self._only_call("output").outputs
        return outs[0] if len(outs) == 1 else list(outs)

    @property
    def input(self):
        """The input of the layer's only call (as Keras's ``layer.input``)."""
        ins = [v for v in self._only_call("input").inputs.values()
               if isinstance(v, SymbolicTensor)]
        return ins[0] if len(ins) == 1 else ins

    def _only_call(self, what):
        if len(self._calls) != 1:
            raise ConfigError(f"layer {self.name!r}: {what} is defined for a layer called "
                              f"exactly once; it was called {len(self._calls)} times")
        return self._calls[0]

    def count_params(self) -> int:
        return int(sum(v.value.size for v in self.weights))

    # ---- calling ---------------------------------------------------------------------
    def build(self, input_shape) -> None:
        """Create the weights (built-in layers get a ``Spec``, custom layers a shape tuple,
        or a list of them, as in Keras)."""

    def __call__(self, *args, **kwargs):
        from graphmask.layers.calling import call_layer
        return call_layer(self, args, kwargs)

    def call(self, inputs):
        raise ConfigError(f"layer {type(self).__name__} {self.name!r} defines no call()")

    def _apply(self, op: str, attrs: dict, ports: dict[str, Any]):
        """Record a call of ``op`` (built-in layers); one symbolic tensor per output."""
        return record(self, op, attrs, ports)

    # ---- config ----------------------------------------------------------------------
    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


class OpLayer(Layer):
    """Stands for a ``graphmask.ops`` function applied outside any layer (Keras records
    such calls as operations, not layers: they are not in ``model.layers``)."""

    is_op = True

    def __init__(self, op: str):
        super().__init__(name=unique_name(op.split(".")[-1]))
        self.built = True


class InputLayer(Layer):
    """The layer behind :func:`Input`; it owns the model input's ``input`` node."""

    def __init__(self, shape=None, dtype="float32", name=None, batch_size=None):
        super().__init__(name=name or unique_name("input_layer"))
        shape = _check_input_shape(shape, self.name)
        try:
            self.input_dtype = str(np.dtype(dtype))
        except TypeError:
            raise ConfigError(f"Input {self.name!r}: unknown dtype {dtype!r}") from None
        if np.dtype(self.input_dtype).kind not in "fiub":
            raise ConfigError(f"Input {self.name!r}: dtype must be numeric, got {dtype!r}")
        self.shape = (batch_size,) + shape
        attrs = {"shape": list(self.shape), "dtype": self.input_dtype, "name": self.name}
        out = record(self, "input", attrs, {}, keep=False)
        self._calls.append(out.call)  # kept even while an eager call traces
        out.node = LayerNode(self, (), {}, [out])
        self.built = True

    def get_config(self) -> dict:
        return {"name": self.name, "shape": list(self.shape[1:]), "dtype": self.input_dtype,
                "batch_size": self.shape[0]}


def _check_input_shape(shape, name):
    if shape is None:
        raise ConfigError(f"Input {name!r}: shape is required, e.g. Input(shape=(4,))")
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    try:
        shape = tuple(None if d is None else int(d) for d in shape)
    except (TypeError, ValueError):
        raise ConfigError(f"Input {name!r}: shape must be a tuple of ints or None, "
                          f"got {shape!r}") from None
    if any(d is not None and d <= 0 for d in shape):
        raise ConfigError(f"Input {name!r}: every dimension of shape must be positive or None, "
                          f"got {shape!r}")
    return shape


def Input(shape=None, dtype="float32", name: str | None = None, batch_size=None,
          batch_shape=None):
    """A symbolic model input, as ``keras.Input``: ``shape`` excludes the batch axis;
    ``batch_shape`` (as Keras) includes it, e.g. ``batch_shape=(None, 20)``."""
    if batch_shape is not None:
        for arg, val in (("shape", shape), ("batch_size", batch_size)):
            if val is not None:
                raise ConfigError(f"Input {name or 'input_layer'!r}: give batch_shape or "
                                  f"{arg}, not both (got {arg}={val!r}, "
                                  f"batch_shape={batch_shape!r})")
        if isinstance(batch_shape, (str, bytes)) or not hasattr(batch_shape, "__len__") \
                or len(batch_shape) < 2:
            raise ConfigError(f"Input {name or 'input_layer'!r}: batch_shape must be a tuple "
                              f"of the batch size (or None) and at least one more axis, e.g. "
                              f"(None, 20); got {batch_shape!r}")
        shape, batch_size = tuple(batch_shape)[1:], batch_shape[0]
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(
            batch_size, (int, np.integer)) or batch_size <= 0):
        raise ConfigError(f"Input {name or 'input_layer'!r}: the batch size must be a positive "
                          f"int or None, got {batch_size!r}")
    return InputLayer(shape=shape, dtype=dtype, name=name, batch_size=batch_size).output
