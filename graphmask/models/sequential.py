"""``Sequential``: a plain stack of layers, as ``keras.Sequential``.

It is a :class:`Model` whose graph is built as soon as the input shape is known: from an
``Input(...)`` given as the first element, from ``input_shape=`` on the first layer, or
from the first data passed to ``fit`` / ``predict`` / ``evaluate`` (Keras's deferred
build). ``compile`` before that point is remembered and applied once built.
"""
from __future__ import annotations

import numpy as np

from graphmask.errors import ConfigError
from graphmask.layers.base import Input, InputLayer, Layer, SymbolicTensor
from graphmask.models.functional import Model


class Sequential(Model):
    def __init__(self, layers=None, name: str | None = None):
        Layer.__init__(self, name=name or "sequential")
        self._stack: list[Layer] = []
        self._input: SymbolicTensor | None = None
        self._pending_compile = None
        self.compiled, self.optimizer, self.loss = False, None, None
        self._graph, self._plans, self.stop_training = None, {}, False
        self.built = False
        for layer in layers or []:
            self.add(layer)

    def add(self, layer) -> None:
        if self.built:
            raise ConfigError(f"Sequential {self.name!r}: cannot add layers after the model "
                              f"was built")
        if isinstance(layer, SymbolicTensor):
            if self._stack or self._input is not None:
                raise ConfigError("Sequential: an Input must be the first element")
            if not isinstance(layer.call.layer, InputLayer):
                raise ConfigError("Sequential: only Input(...) tensors may be added")
            self._input = layer
            return
        if isinstance(layer, InputLayer):
            self.add(layer.output)
            return
        if not isinstance(layer, Layer):
            raise ConfigError(f"Sequential: expected a layer, got {type(layer).__name__}")
        self._stack.append(layer)
        if self._input is None and len(self._stack) == 1 and layer.input_shape_hint:
            self._input = Input(shape=layer.input_shape_hint)

    def _build(self) -> None:
        if not self._stack:
            return
        out = self._input
        for layer in self._stack:
            out = layer(out)
        if isinstance(out, list):
            raise ConfigError("Sequential: every layer must have a single output")
        Model.__init__(self, self._input, out, name=self.name)
        self.built = True
        if self._pending_compile is not None:
            Model.compile(self, **self._pending_compile)

    def _build_from_tensors(self, first_arg) -> None:
        """Build on first use as a layer, from the tensor it is called on (its dtype too:
        integer ids stay integers)."""
        if not isinstance(first_arg, SymbolicTensor):
            raise ConfigError(f"Sequential {self.name!r}: call it on one symbolic tensor, "
                              f"got {type(first_arg).__name__}")
        if self._input is None:
            self._input = Input(shape=first_arg.shape[1:], dtype=first_arg.dtype)
        self._ensure_built()

    def build(self, input_shape) -> None:
        """Build for ``input_shape`` (with the batch axis, as Keras's ``build``)."""
        if not self.built:
            self._input = Input(shape=tuple(input_shape)[1:])
            self._build()

    def _ensure_built(self, x=None) -> None:
        if self.built:
            return
        if not self._stack:
            raise ConfigError(f"Sequential {self.name!r}: the model has no layers")
        if self._input is not None:
            self._build()
            return
        if x is None:
            raise ConfigError(f"Sequential {self.name!r}: the input shape is not known yet; "
                              f"give an Input first, input_shape= on the first layer, or "
                              f"call build/fit/predict")
        arr = np.asarray(x[0] if isinstance(x, (list, tuple)) and x and
                         isinstance(x[0], np.ndarray) else x)
        if arr.ndim < 1:
            raise ConfigError(f"Sequential {self.name!r}: cannot infer the input shape from "
                              f"data of shape {arr.shape}")
        self._input = Input(shape=arr.shape[1:])
        self._build()

    def compile(self, *args, **kwargs):
        if not self.built and self._input is not None and self._stack:
            self._build()
        if not self.built:
            names = ["optimizer", "loss", "loss_weights", "metrics", "weighted_metrics"]
            self._pending_compile = {**dict(zip(names, args)), **kwargs}
            return
        Model.compile(self, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._ensure_built(x)
        return Model.predict(self, x, *args, **kwargs)

    def predict_on_batch(self, x):
        self._ensure_built(x)
        return Model.predict_on_batch(self, x)

    def evaluate(self, x=None, *args, **kwargs):
        self._ensure_built(x)
        return Model.evaluate(self, x, *args, **kwargs)

    def fit(self, x=None, *args, **kwargs):
        self._ensure_built(x)
        return Model.fit(self, x, *args, **kwargs)

    def train_on_batch(self, x, *args, **kwargs):
        self._ensure_built(x)
        return Model.train_on_batch(self, x, *args, **kwargs)

    def test_on_batch(self, x, *args, **kwargs):
        self._ensure_built(x)
        return Model.test_on_batch(self, x, *args, **kwargs)

    @property
    def layers(self):
        return list(self._stack)

    @layers.setter
    def layers(self, value):
        pass  # Model.__init__ assigns the functional layer list; Keras hides the InputLayer

    @property
    def graph(self):
        self._ensure_built()
        return Model.graph.fget(self)

    def get_weights(self):
        self._ensure_built()
        return Model.get_weights(self)

    def set_weights(self, weights):
        self._ensure_built()
        Model.set_weights(self, weights)

    def summary(self, *args, **kwargs):
        self._ensure_built()
        return Model.summary(self, *args, **kwargs)
