"""Layers, symbolic tensors and variables: the Keras-style front end.

Calling a layer on a :class:`SymbolicTensor` records a :class:`Call` (op, attrs and the
tensors or variables on each port) and returns new symbolic tensors whose shapes come
from the op's shape rule, so shape errors appear at the line that made them.
``Model(inputs, outputs)`` walks the calls back from the outputs to build the graph.
Masks are *not* handled here: the mask pass derives them from the ops' mask rules.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphmask.errors import ConfigError, ShapeError
from graphmask.ops import OpError, Spec, get_op
from graphmask.utils import snake_case, unique_name

_call_counter = itertools.count()


@dataclass(eq=False)
class Variable:
    """A layer weight: a float array owned by the layer, fed to ``variable`` nodes."""

    name: str
    value: np.ndarray
    trainable: bool = True

    @property
    def shape(self) -> tuple:
        return tuple(self.value.shape)


@dataclass(eq=False)
class Call:
    """One application of a layer: an op with attrs and its connected ports."""

    layer: Layer
    op: str
    attrs: dict
    inputs: dict  # port -> SymbolicTensor | Variable
    outputs: list = field(default_factory=list)
    order: int = field(default_factory=lambda: next(_call_counter))


@dataclass(eq=False)
class SymbolicTensor:
    """The symbolic result of a layer call (Keras's ``KerasTensor``)."""

    call: Call
    index: int
    spec: Spec

    @property
    def shape(self) -> tuple:
        return self.spec.shape

    @property
    def dtype(self) -> str:
        return self.spec.dtype

    def __repr__(self) -> str:
        return (f"<SymbolicTensor shape={self.shape} dtype={self.dtype} "
                f"from {self.call.layer.name!r}>")


def calls_of(outputs) -> list[Call]:
    """Every layer call the ``outputs`` depend on, in creation (so topological) order."""
    calls, stack, seen = [], [t.call for t in outputs], set()
    while stack:
        c = stack.pop()
        if id(c) in seen:
            continue
        seen.add(id(c))
        calls.append(c)
        stack.extend(v.call for v in c.inputs.values() if isinstance(v, SymbolicTensor))
    calls.sort(key=lambda c: c.order)
    return calls


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


#: Keras layer arguments graphmask accepts only at their default (None): regularizers,
#: constraints and the like. Any other value is a clear error, never silently ignored.
KERAS_ONLY = ("kernel_regularizer", "bias_regularizer", "activity_regularizer",
              "recurrent_regularizer", "embeddings_regularizer", "kernel_constraint",
              "bias_constraint", "recurrent_constraint", "embeddings_constraint",
              "lora_rank", "autocast")


class Layer:
    """Base class: naming, weights in Keras order, get/set_weights, calling."""

    supports_masking = True

    def __init__(self, name: str | None = None, trainable: bool = True, dtype=None, **kwargs):
        unsupported = sorted(k for k in KERAS_ONLY if kwargs.get(k) is not None)
        if unsupported:
            raise ConfigError(f"{type(self).__name__}: {unsupported} are not supported by "
                              f"graphmask (leave them at None)")
        unknown = sorted(k for k in kwargs if k not in KERAS_ONLY
                         and k not in ("input_shape", "batch_input_shape", "input_length"))
        if unknown:
            raise ConfigError(f"{type(self).__name__}: unexpected argument(s) {unknown}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError(f"{type(self).__name__}: name must be a non-empty str, "
                              f"got {name!r}")
        self.name = name or unique_name(snake_case(type(self).__name__))
        # Keras's (deprecated but common) way to give a Sequential model its input shape
        self.input_shape_hint = kwargs.get("input_shape")
        if kwargs.get("batch_input_shape") is not None:
            self.input_shape_hint = tuple(kwargs["batch_input_shape"])[1:]
        self.trainable = bool(trainable)
        self.dtype = "float32" if dtype is None else str(np.dtype(dtype))
        self.built = False
        self._variables: list[Variable] = []
        self._calls: list[Call] = []

    # ---- weights ---------------------------------------------------------------------
    def add_weight(self, name: str, shape, initializer, trainable: bool = True) -> Variable:
        value = np.ascontiguousarray(initializer(tuple(shape), self.dtype), dtype=self.dtype)
        var = Variable(f"{self.name}/{name}", value, trainable)
        self._variables.append(var)
        return var

    @property
    def weights(self) -> list[Variable]:
        return list(self._variables)

    @property
    def trainable_weights(self) -> list[Variable]:
        return [v for v in self._variables if v.trainable and self.trainable]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        return [v for v in self._variables if not (v.trainable and self.trainable)]

    def get_weights(self) -> list[np.ndarray]:
        return [v.value.copy() for v in self._variables]

    def set_weights(self, weights) -> None:
        """Replace all weights at once; nothing changes unless every array fits."""
        weights = list(weights)
        if len(weights) != len(self._variables):
            raise ShapeError(f"layer {self.name!r}: set_weights expected "
                             f"{len(self._variables)} arrays "
                             f"({[v.name for v in self._variables]}), got {len(weights)}")
        new = []
        for var, w in zip(self._variables, weights):
            arr = np.asarray(w)
            if arr.dtype.kind not in "fiub":
                raise ShapeError(f"layer {self.name!r}: weight {var.name!r} must be numeric, "
                                 f"got dtype {arr.dtype}")
            if tuple(arr.shape) != var.shape:
                raise ShapeError(f"layer {self.name!r}: weight {var.name!r} has shape "
                                 f"{var.shape}, got {tuple(arr.shape)}")
            if not np.all(np.isfinite(arr)):
                raise ShapeError(f"layer {self.name!r}: weight {var.name!r} contains NaN or inf")
            new.append(np.ascontiguousarray(arr, dtype=var.value.dtype))
        for var, arr in zip(self._variables, new):
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
        return int(sum(v.value.size for v in self._variables))

    # ---- calling ---------------------------------------------------------------------
    def build(self, spec: Spec) -> None:
        """Create the weights for an input of this spec (subclasses override)."""

    def __call__(self, inputs, **kwargs):
        tensors = _as_list(inputs)
        for t in tensors:
            if not isinstance(t, SymbolicTensor):
                raise ConfigError(f"layer {self.name!r}: expected a symbolic tensor "
                                  f"(from Input or another layer), got {type(t).__name__}")
        if kwargs:
            raise ConfigError(f"layer {self.name!r}: unexpected call argument(s) "
                              f"{sorted(kwargs)}")
        if not self.built:
            self.build(tensors[0].spec if len(tensors) == 1 else [t.spec for t in tensors])
            self.built = True
        out = self.call(inputs)
        return out

    def call(self, inputs):
        raise ConfigError(f"layer {type(self).__name__} cannot be called")

    def _apply(self, op: str, attrs: dict, ports: dict[str, Any]):
        """Record a call of ``op``; returns one symbolic tensor per visible output."""
        ports = {p: v for p, v in ports.items() if v is not None}
        specs_in = {p: (v.spec if isinstance(v, SymbolicTensor)
                        else Spec(v.shape, str(v.value.dtype))) for p, v in ports.items()}
        try:
            specs = get_op(op).infer(attrs, specs_in)
        except OpError as e:
            shapes = {p: s.shape for p, s in specs_in.items()}
            raise ShapeError(f"layer {self.name!r} ({type(self).__name__}): {e} "
                             f"[input shapes {shapes}]") from None
        call = Call(self, op, dict(attrs), ports)
        call.outputs = [SymbolicTensor(call, i, s) for i, s in enumerate(specs)]
        self._calls.append(call)
        return call.outputs[0] if len(call.outputs) == 1 else list(call.outputs)

    # ---- config ----------------------------------------------------------------------
    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


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
        self._apply("input", attrs, {})
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


def Input(shape=None, dtype="float32", name: str | None = None, batch_size=None):
    """A symbolic model input, as ``keras.Input``: ``shape`` excludes the batch axis."""
    return InputLayer(shape=shape, dtype=dtype, name=name, batch_size=batch_size).output
