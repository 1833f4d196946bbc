"""The recurrent layers LSTM, GRU and SimpleRNN (Keras 3 signatures, defaults,
initializers and weight order)."""
from __future__ import annotations

import weakref

import numpy as np

from graphmask.errors import ConfigError, ShapeError
from graphmask.layers import initializers
from graphmask.layers.base import Layer, SymbolicTensor, Variable, coarse_call
from graphmask.layers.core import _positive_int
from graphmask.ops import lstm as lstm_op
from graphmask.ops import rnn_state

LSTM_ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")
LSTM_RECURRENT_ACTIVATIONS = ("sigmoid", "hard_sigmoid", "tanh", "linear")


def _choice(who, arg, value, valid):
    v = "linear" if value is None else value
    if not isinstance(v, str) or v.lower() not in valid:
        raise ConfigError(f"{who}: {arg} must be one of {list(valid)}, got {value!r}")
    return v.lower()


def _shape_and_dtype(value):
    """(shape, dtype) of a symbolic tensor or array-like; None if it has neither."""
    if isinstance(value, (SymbolicTensor, Variable)):
        return tuple(value.shape), np.dtype(value.dtype)
    if isinstance(value, (np.ndarray, np.generic, list, tuple, int, float)):
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError):
            return None
        return arr.shape, arr.dtype
    return None


def _is_state_tensor(value) -> bool:
    """One state tensor (not a list of them): symbolic, or an array of rank >= 1."""
    return isinstance(value, (SymbolicTensor, Variable, np.ndarray))


def check_initial_state(layer, x, initial_state):
    """Validate ``initial_state`` of a recurrent layer's call on ``x``: LSTM takes a list
    or tuple ``[h, c]`` of two float tensors (or arrays) of shape (batch, units), the
    batch of ``x``; GRU and SimpleRNN take ``h`` alone or a list ``[h]``.

    Returns
    -------
    tuple
        The states (``(h, c)`` or ``(h,)``).

    Raises
    ------
    ConfigError
        Not a tensor / list of the right number of tensors, or a NumPy array where ``x``
        is symbolic.
    ShapeError
        A state of another rank, width, batch or a non-float dtype.
    """
    parts = layer._state_names
    n = len(parts)
    who = f"{type(layer).__name__} {layer.name!r}: initial_state"
    if n == 1 and _is_state_tensor(initial_state):
        initial_state = [initial_state]
    if not isinstance(initial_state, (list, tuple)) or len(initial_state) != n:
        got = (f"{len(initial_state)} tensors" if isinstance(initial_state, (list, tuple))
               else type(initial_state).__name__)
        what = ("a list [h, c] of 2 tensors" if n == 2
                else "a tensor h or a list [h] of 1 tensor")
        raise ConfigError(f"{who} must be {what} of shape (batch, {layer.units}), got {got}")
    x_info = _shape_and_dtype(x)
    symbolic = isinstance(x, SymbolicTensor)
    for i, (state, part) in enumerate(zip(initial_state, parts)):
        what = f"{who}[{i}] ({part})"
        info = _shape_and_dtype(state)
        if info is None:
            raise ConfigError(f"{what} must be a tensor of shape (batch, {layer.units}), got "
                              f"{type(state).__name__}")
        if symbolic and not isinstance(state, SymbolicTensor):
            raise ConfigError(f"{what} must be a symbolic tensor (from Input or another layer) "
                              f"when the layer is called on a symbolic tensor, got "
                              f"{type(state).__name__}")
        shape, dtype = info
        if dtype.kind != "f":
            raise ShapeError(f"{what} must be a float tensor, got dtype {dtype}")
        batch = x_info[0][0] if x_info is not None and len(x_info[0]) else None
        if len(shape) != 2 or shape[1] not in (None, layer.units) or (
                None not in (batch, shape[0]) and batch != shape[0]):
            raise ShapeError(f"{what} must have shape ({batch}, {layer.units}) (batch, units), "
                             f"got {tuple(shape)}")
    return tuple(initial_state)


class StatefulRNN:
    """``stateful=True`` for the layers running a coarse recurrent op (``LSTM``, ``GRU``,
    ``SimpleRNN``, ``RNN`` on a built-in cell): the state carried from one call to the
    next lives in ``ops/rnn_state.py`` under the layer's ``state_key``, an op attribute.
    The layer provides ``units``, ``_state_names``, ``_who()`` and ``dtype``."""

    def _init_stateful(self, stateful):
        self.stateful = bool(stateful)
        self._state_key = rnn_state.state_key(self.name) if self.stateful else None
        self._state_batch = None
        if self.stateful:  # the carried state goes with the layer
            weakref.finalize(self, rnn_state.discard, self._state_key)

    def _build_state(self, shape):
        """A stateful layer's zero state, for the static batch size of ``shape``."""
        if self.stateful:  # Keras: the state needs a static batch size
            rnn_state.check_stateful_batch(self._who(), shape)
            self._state_batch = int(shape[0])
            rnn_state.new_state(self._state_key, self._state_batch, self.units, self.dtype,
                                len(self._state_names))

    def _state_attrs(self, x) -> dict:
        """The op attribute of a stateful layer (none otherwise); a call on a batch of
        another static size is refused here, as Keras refuses it at call time."""
        if not self.stateful:
            return {}
        batch = x.shape[0] if isinstance(x, SymbolicTensor) else None
        if batch is not None and self._state_batch is not None and batch != self._state_batch:
            raise ShapeError(f"{self._who()}: a stateful layer needs the same batch size at "
                             f"every call: its state holds {self._state_batch} samples, the "
                             f"batch has {batch}")
        return {"state_key": self._state_key}

    @property
    def states(self):
        """A stateful layer's carried states (copies: ``[h, c]`` for an LSTM, ``[h]``
        for a GRU or SimpleRNN), else None (as Keras's)."""
        state = rnn_state.get_state(self._state_key) if self.stateful else None
        return None if state is None else list(state)

    def reset_states(self):
        """Zero the carried states of a stateful layer (Keras's alias of reset_state)."""
        self.reset_state()

    def reset_state(self):
        """Zero the carried states of a stateful layer; a no-op otherwise (as Keras)."""
        if self.stateful:
            rnn_state.reset_state(self._state_key)


class _Recurrent(StatefulRNN, Layer):
    """What Keras 3's recurrent layers share: the options of ``keras.layers.RNN``
    (``return_sequences``, ``return_state``, ``go_backwards``, ``zero_output_for_mask``,
    ``unroll``), the three initializers, the ``initial_state`` call argument and input
    checks. Subclasses set ``_state_names`` and build their weights."""

    _call_kwargs = ("initial_state",)
    _state_names: tuple = ("h",)

    def _init_common(self, units, activation, use_bias, kernel_initializer,
                     recurrent_initializer, bias_initializer, dropout, recurrent_dropout,
                     return_sequences, return_state, go_backwards, stateful, unroll,
                     zero_output_for_mask):
        who = self._who()
        self.units = _positive_int(who, "units", units)
        self.activation = _choice(who, "activation", activation, LSTM_ACTIVATIONS)
        for arg, value in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if value not in (0, 0.0, None):
                raise ConfigError(f"{who}: {arg}={value!r} is not supported "
                                  f"(graphmask's {type(self).__name__} has no dropout); "
                                  f"use 0.0")
        self._init_stateful(stateful)
        self.use_bias = bool(use_bias)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.unroll = bool(unroll)  # accepted for Keras compatibility; no effect
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.kernel_initializer = initializers.get(kernel_initializer, self.name,
                                                   "kernel_initializer")
        self.recurrent_initializer = initializers.get(recurrent_initializer, self.name,
                                                      "recurrent_initializer")
        self.bias_initializer = initializers.get(bias_initializer, self.name, "bias_initializer")

    def _who(self) -> str:
        return f"{type(self).__name__} {self.name!r}"

    def _check_input(self, spec):
        if isinstance(spec, (list, tuple)):
            states = "[h, c]" if len(self._state_names) == 2 else "h"
            raise ConfigError(f"{self._who()}: call it on one (batch, timesteps, features) "
                              f"tensor and pass the state as initial_state={states}, got "
                              f"{len(spec)} input tensors")
        if spec.rank != 3 or spec.shape[-1] is None:
            raise ShapeError(f"{self._who()}: input must be (batch, timesteps, features) "
                             f"with known features, got shape {spec.shape}")

    def __call__(self, *args, **kwargs):
        # checked before anything changes (the first call builds the weights)
        if args and kwargs.get("initial_state") is not None:
            check_initial_state(self, args[0], kwargs["initial_state"])
        return super().__call__(*args, **kwargs)

    def _common_attrs(self):
        return {"units": self.units, "activation": self.activation, "use_bias": self.use_bias,
                "return_sequences": self.return_sequences, "return_state": self.return_state,
                "go_backwards": self.go_backwards,
                "zero_output_for_mask": self.zero_output_for_mask}

    def _common_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias, "return_sequences": self.return_sequences,
                "return_state": self.return_state, "go_backwards": self.go_backwards,
                "zero_output_for_mask": self.zero_output_for_mask,
                "kernel_initializer": initializers.name_of(self.kernel_initializer),
                "recurrent_initializer": initializers.name_of(self.recurrent_initializer),
                "bias_initializer": initializers.name_of(self.bias_initializer)}


class LSTM(_Recurrent):
    """Long short-term memory, gates in Keras order (i, f, c, o).

    With a mask the state is carried over masked timesteps and the previous output is
    repeated there (see docs/masking.md). Weights: ``[kernel (D, 4H),
    recurrent_kernel (H, 4H), bias (4H,)]``.

    Called as ``lstm(x, initial_state=[h, c], mask=None)``: ``initial_state`` is the
    state the first step starts from (zeros when omitted), two float tensors of shape
    (batch, units), typically the states of an encoder LSTM with ``return_state=True``;
    gradients flow into them. Their masks are ignored, as in Keras. As in Keras, the
    output at masked steps before the first kept step is zeros (not ``h``), and the
    single output of ``return_sequences=False`` is zeros for a sample with no kept step,
    while the returned states are then the initial state.
    """

    _state_names = ("h", "c")

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, dropout=0.0, recurrent_dropout=0.0,
                 return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, zero_output_for_mask=False,
                 name=None, **kwargs):
        seed = kwargs.pop("seed", None)
        kwargs.pop("use_cudnn", None)
        super().__init__(name=name, **kwargs)
        self.dropout, self.recurrent_dropout, self.seed = lstm_op.check_dropout(
            self._who(), dropout, recurrent_dropout, seed, self.name)
        self._training_sensitive = bool(self.dropout or self.recurrent_dropout)
        self._init_common(units, activation, use_bias, kernel_initializer,
                          recurrent_initializer, bias_initializer, 0.0, 0.0,
                          return_sequences, return_state, go_backwards, stateful, unroll,
                          zero_output_for_mask)
        self.recurrent_activation = _choice(self._who(), "recurrent_activation",
                                            recurrent_activation, LSTM_RECURRENT_ACTIVATIONS)
        self.unit_forget_bias = bool(unit_forget_bias)

    def build(self, spec):
        self._check_input(spec)
        h = self.units
        self._build_state(spec.shape)
        self.kernel = self.add_weight(shape=(spec.shape[-1], 4 * h),
                                      initializer=self.kernel_initializer, name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(h, 4 * h),
                                                initializer=self.recurrent_initializer,
                                                name="recurrent_kernel")
        if self.use_bias:
            if self.unit_forget_bias:
                init = self.bias_initializer

                def bias_init(shape, dtype):
                    return np.concatenate([init((h,), dtype), np.ones((h,), dtype),
                                           init((2 * h,), dtype)])
            else:
                bias_init = self.bias_initializer
            self.bias = self.add_weight(shape=(4 * h,), initializer=bias_init, name="bias")
        else:
            self.bias = None

    @coarse_call
    def call(self, x, initial_state=None):
        """Record the ``lstm`` op on ``x`` (and ``initial_state=[h, c]``, if given)."""
        h0 = c0 = None
        if initial_state is not None:
            h0, c0 = check_initial_state(self, x, initial_state)
        attrs = {**self._common_attrs(), "recurrent_activation": self.recurrent_activation,
                 **lstm_op.dropout_attrs(self.dropout, self.recurrent_dropout, self.seed,
                                         self.name),
                 **self._state_attrs(x)}
        return self._apply("lstm", attrs, {"x": x, "kernel": self.kernel,
                                           "recurrent_kernel": self.recurrent_kernel,
                                           "bias": self.bias, "h0": h0, "c0": c0})

    def get_config(self):
        return {**self._common_config(), "recurrent_activation": self.recurrent_activation,
                "unit_forget_bias": self.unit_forget_bias, "dropout": self.dropout,
                "recurrent_dropout": self.recurrent_dropout, "seed": self.seed,
                "stateful": self.stateful}


class _OneState(_Recurrent):
    """GRU and SimpleRNN: one state ``h``; dropout and ``stateful`` as the LSTM's."""

    def _init_dropout(self, dropout, recurrent_dropout, seed):
        self.dropout, self.recurrent_dropout, self.seed = lstm_op.check_dropout(
            self._who(), dropout, recurrent_dropout, seed, self.name)
        self._training_sensitive = bool(self.dropout or self.recurrent_dropout)

    def _dropout_attrs(self):
        return lstm_op.dropout_attrs(self.dropout, self.recurrent_dropout, self.seed,
                                     self.name)

    def _keras_rnn_config(self):
        """The rest of Keras 3's config keys."""
        return {"dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
                "stateful": self.stateful, "unroll": self.unroll}


class GRU(_OneState):
    """Gated recurrent unit (Cho et al. 2014), gates in Keras order (z, r, h).

    ``reset_after=True`` (Keras 3's default, cuDNN's convention) applies the reset gate
    after the recurrent product, with separate input and recurrent biases; ``False``
    applies it to the state before. Weights: ``[kernel (D, 3H), recurrent_kernel
    (H, 3H), bias]``, the bias (2, 3H) with ``reset_after`` (row 0 for the input, row 1
    for the recurrent product), else (3H,).

    With a mask the state is carried over masked timesteps and the previous output is
    repeated there (zeros before the first kept step; see docs/masking.md);
    ``zero_output_for_mask=True`` gives zeros at masked steps. Called as
    ``gru(x, initial_state=h, mask=None)`` (``h`` or ``[h]``, float (batch, units); zeros
    when omitted; gradients flow into it). ``return_state=True`` returns ``[output, h]``.

    ``dropout`` / ``recurrent_dropout`` act while training only, as Keras 3's cell: one
    input mask per sample fixed along the sequence; with recurrent dropout one input and
    one state mask per gate (Keras's implementation 1), on a slower NumPy step loop.
    ``seed`` fixes the layer's masks.

    ``stateful=True`` (as the LSTM's, Keras 3's): the input needs a fixed batch size;
    the final ``h`` of sample ``i`` starts sample ``i`` of the next call, in predict,
    evaluate and training alike; a masked step does not advance it; an ``initial_state``
    given at the call replaces it for that call; ``states`` is ``[h]`` (a copy) and
    ``reset_states()`` zeroes it.
    """

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 dropout=0.0, recurrent_dropout=0.0, seed=None,
                 return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, reset_after=True, use_cudnn="auto",
                 zero_output_for_mask=False, name=None, **kwargs):
        kwargs.pop("implementation", None)
        super().__init__(name=name, **kwargs)
        if use_cudnn not in ("auto", True, False):
            raise ConfigError(f"{self._who()}: use_cudnn must be 'auto', True or False, got "
                              f"{use_cudnn!r}")
        if not isinstance(reset_after, (bool, np.bool_)):
            raise ConfigError(f"{self._who()}: reset_after must be True or False, got "
                              f"{reset_after!r}")
        self._init_dropout(dropout, recurrent_dropout, seed)
        self._init_common(units, activation, use_bias, kernel_initializer,
                          recurrent_initializer, bias_initializer, 0.0, 0.0,
                          return_sequences, return_state, go_backwards, stateful, unroll,
                          zero_output_for_mask)
        self.recurrent_activation = _choice(self._who(), "recurrent_activation",
                                            recurrent_activation, LSTM_RECURRENT_ACTIVATIONS)
        self.reset_after = bool(reset_after)

    def build(self, spec):
        self._check_input(spec)
        h = self.units
        self._build_state(spec.shape)
        self.kernel = self.add_weight(shape=(spec.shape[-1], 3 * h),
                                      initializer=self.kernel_initializer, name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(h, 3 * h),
                                                initializer=self.recurrent_initializer,
                                                name="recurrent_kernel")
        self.bias = self.add_weight(
            shape=(2, 3 * h) if self.reset_after else (3 * h,),
            initializer=self.bias_initializer, name="bias") if self.use_bias else None

    @coarse_call
    def call(self, x, initial_state=None):
        """Record the ``gru`` op on ``x`` (and ``initial_state=h``, if given)."""
        h0 = None
        if initial_state is not None:
            (h0,) = check_initial_state(self, x, initial_state)
        attrs = {**self._common_attrs(), "recurrent_activation": self.recurrent_activation,
                 "reset_after": self.reset_after, **self._dropout_attrs(),
                 **self._state_attrs(x)}
        return self._apply("gru", attrs, {"x": x, "kernel": self.kernel,
                                          "recurrent_kernel": self.recurrent_kernel,
                                          "bias": self.bias, "h0": h0})

    def get_config(self):
        return {**self._common_config(), **self._keras_rnn_config(),
                "recurrent_activation": self.recurrent_activation,
                "reset_after": self.reset_after, "seed": self.seed}


class SimpleRNN(_OneState):
    """Fully-connected RNN: ``h_t = activation(x_t kernel + bias + h_{t-1}
    recurrent_kernel)``, the output fed back as the state.

    Weights: ``[kernel (D, H), recurrent_kernel (H, H), bias (H,)]``. Masks, ``initial_state``
    (``h`` or ``[h]``), ``return_state`` (``[output, h]``), ``go_backwards`` and
    ``zero_output_for_mask``, ``dropout`` / ``recurrent_dropout`` (one mask each) and
    ``stateful`` (``states``, ``reset_states()``) as :class:`GRU`.
    """

    def __init__(self, units, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", dropout=0.0, recurrent_dropout=0.0,
                 return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, seed=None, zero_output_for_mask=False,
                 name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self._init_dropout(dropout, recurrent_dropout, seed)
        self._init_common(units, activation, use_bias, kernel_initializer,
                          recurrent_initializer, bias_initializer, 0.0, 0.0,
                          return_sequences, return_state, go_backwards, stateful, unroll,
                          zero_output_for_mask)

    def build(self, spec):
        self._check_input(spec)
        h = self.units
        self._build_state(spec.shape)
        self.kernel = self.add_weight(shape=(spec.shape[-1], h),
                                      initializer=self.kernel_initializer, name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(h, h),
                                                initializer=self.recurrent_initializer,
                                                name="recurrent_kernel")
        self.bias = self.add_weight(shape=(h,), initializer=self.bias_initializer,
                                    name="bias") if self.use_bias else None

    @coarse_call
    def call(self, x, initial_state=None):
        """Record the ``simple_rnn`` op on ``x`` (and ``initial_state=h``, if given)."""
        h0 = None
        if initial_state is not None:
            (h0,) = check_initial_state(self, x, initial_state)
        return self._apply("simple_rnn", {**self._common_attrs(), **self._dropout_attrs(),
                                          **self._state_attrs(x)},
                           {"x": x, "kernel": self.kernel,
                            "recurrent_kernel": self.recurrent_kernel, "bias": self.bias,
                            "h0": h0})

    def get_config(self):
        return {**self._common_config(), **self._keras_rnn_config()}
