"""The LSTM layer (Keras 3 signature, defaults, initializers and weight order)."""
from __future__ import annotations

import numpy as np

from graphmask.errors import ConfigError, ShapeError
from graphmask.layers import initializers
from graphmask.layers.base import Layer, SymbolicTensor, Variable, coarse_call
from graphmask.layers.core import _positive_int

LSTM_ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")
LSTM_RECURRENT_ACTIVATIONS = ("sigmoid", "hard_sigmoid", "tanh", "linear")


def _choice(layer, arg, value, valid):
    v = "linear" if value is None else value
    if not isinstance(v, str) or v.lower() not in valid:
        raise ConfigError(f"LSTM {layer!r}: {arg} must be one of {list(valid)}, got {value!r}")
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


def check_initial_state(layer, x, initial_state):
    """Validate ``initial_state`` of an LSTM call on ``x``: a list or tuple ``[h, c]`` of
    two float tensors (or arrays) of shape (batch, units), the batch of ``x``.

    Returns
    -------
    tuple
        ``(h, c)``.

    Raises
    ------
    ConfigError
        Not a list/tuple of two tensors, or a NumPy array where ``x`` is symbolic.
    ShapeError
        A state of another rank, width, batch or a non-float dtype.
    """
    who = f"LSTM {layer.name!r}: initial_state"
    if not isinstance(initial_state, (list, tuple)) or len(initial_state) != 2:
        got = (f"{len(initial_state)} tensors" if isinstance(initial_state, (list, tuple))
               else type(initial_state).__name__)
        raise ConfigError(f"{who} must be a list [h, c] of 2 tensors of shape "
                          f"(batch, {layer.units}), got {got}")
    x_info = _shape_and_dtype(x)
    symbolic = isinstance(x, SymbolicTensor)
    for i, (state, part) in enumerate(zip(initial_state, "hc")):
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


class LSTM(Layer):
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

    _call_kwargs = ("initial_state",)

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, dropout=0.0, recurrent_dropout=0.0,
                 return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, zero_output_for_mask=False,
                 name=None, **kwargs):
        kwargs.pop("seed", None)
        kwargs.pop("use_cudnn", None)
        super().__init__(name=name, **kwargs)
        self.units = _positive_int(f"LSTM {self.name!r}", "units", units)
        self.activation = _choice(self.name, "activation", activation, LSTM_ACTIVATIONS)
        self.recurrent_activation = _choice(self.name, "recurrent_activation",
                                            recurrent_activation, LSTM_RECURRENT_ACTIVATIONS)
        for arg, value in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if value not in (0, 0.0, None):
                raise ConfigError(f"LSTM {self.name!r}: {arg}={value!r} is not supported "
                                  f"(graphmask's LSTM has no dropout); use 0.0")
        if stateful:
            raise ConfigError(f"LSTM {self.name!r}: stateful=True is not supported")
        self.use_bias = bool(use_bias)
        self.unit_forget_bias = bool(unit_forget_bias)
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

    def build(self, spec):
        if isinstance(spec, (list, tuple)):
            raise ConfigError(f"LSTM {self.name!r}: call it on one (batch, timesteps, features) "
                              f"tensor and pass the state as initial_state=[h, c], got "
                              f"{len(spec)} input tensors")
        if spec.rank != 3 or spec.shape[-1] is None:
            raise ShapeError(f"LSTM {self.name!r}: input must be (batch, timesteps, features) "
                             f"with known features, got shape {spec.shape}")
        h = self.units
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

    def __call__(self, *args, **kwargs):
        # checked before anything changes (the first call builds the weights)
        if args and kwargs.get("initial_state") is not None:
            check_initial_state(self, args[0], kwargs["initial_state"])
        return super().__call__(*args, **kwargs)

    @coarse_call
    def call(self, x, initial_state=None):
        """Record the ``lstm`` op on ``x`` (and ``initial_state=[h, c]``, if given)."""
        h0 = c0 = None
        if initial_state is not None:
            h0, c0 = check_initial_state(self, x, initial_state)
        attrs = {"units": self.units, "activation": self.activation,
                 "recurrent_activation": self.recurrent_activation, "use_bias": self.use_bias,
                 "return_sequences": self.return_sequences, "return_state": self.return_state,
                 "go_backwards": self.go_backwards,
                 "zero_output_for_mask": self.zero_output_for_mask}
        return self._apply("lstm", attrs, {"x": x, "kernel": self.kernel,
                                           "recurrent_kernel": self.recurrent_kernel,
                                           "bias": self.bias, "h0": h0, "c0": c0})

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "recurrent_activation": self.recurrent_activation, "use_bias": self.use_bias,
                "unit_forget_bias": self.unit_forget_bias,
                "return_sequences": self.return_sequences, "return_state": self.return_state,
                "go_backwards": self.go_backwards,
                "zero_output_for_mask": self.zero_output_for_mask,
                "kernel_initializer": initializers.name_of(self.kernel_initializer),
                "recurrent_initializer": initializers.name_of(self.recurrent_initializer),
                "bias_initializer": initializers.name_of(self.bias_initializer)}
