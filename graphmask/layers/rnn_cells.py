"""``RNN(cell)`` and the recurrent cells ``LSTMCell``, ``GRUCell``, ``SimpleRNNCell`` and
``StackedRNNCells`` (Keras 3's signatures, defaults, initializers, weight order, configs
and mask rule).

A cell is a layer computing one time step: ``call(inputs, states)`` returns ``(output,
new_states)``; its ``state_size`` says how many state tensors it carries and how wide they
are. ``RNN`` runs a cell over the time axis, two ways:

* ``RNN(LSTMCell(...))``, ``RNN(GRUCell(...))`` and ``RNN(SimpleRNNCell(...))`` record the
  coarse ``lstm``/``gru``/``simple_rnn`` op of ``LSTM``/``GRU``/``SimpleRNN`` with the
  cell's weights: the same fast kernels and the same numbers as those layers;
* any other cell (a user's cell written with ``graphmask.ops``, ``StackedRNNCells``, a
  subclass of a built-in cell) is *unrolled*: its ``call`` is traced once per time step of
  the input's static length, every step sharing the cell's weights, with Keras's mask rule
  applied per step (``where(mask_t, new, old)`` for each state and the output);
  gradients through time come from autodiff on the unrolled graph.
"""
from __future__ import annotations

import inspect

import numpy as np

from graphmask import ops
from graphmask.errors import ConfigError, ShapeError
from graphmask.layers import initializers
from graphmask.layers.base import Layer, SymbolicTensor, Variable
from graphmask.layers.core import _positive_int
from graphmask.layers.recurrent import (
    LSTM_ACTIVATIONS,
    LSTM_RECURRENT_ACTIVATIONS,
    StatefulRNN,
    _choice,
    check_initial_state,
)
from graphmask.layers.tensors import flatten
from graphmask.layers.wrappers import deserialize_layer, serialize_layer
from graphmask.ops import lstm as lstm_op
from graphmask.ops import rnn_state

__all__ = ["GRUCell", "LSTMCell", "RNN", "SimpleRNNCell", "StackedRNNCells"]


def _activate(name: str, x):
    """Keras 3's activation ``name`` with ``graphmask.ops``."""
    if name == "tanh":
        return ops.tanh(x)
    if name == "sigmoid":
        return ops.sigmoid(x)
    if name == "relu":
        return ops.relu(x)
    if name == "hard_sigmoid":  # Keras 3: relu6(x + 3) / 6
        return ops.clip(x / 6.0 + 0.5, 0.0, 1.0)
    return x


def _first_state(states):
    return states[0] if isinstance(states, (list, tuple)) else states


class _Cell(Layer):
    """What the built-in cells share: units, activation, bias, the three initializers,
    and Keras's dropout arguments (only 0, except for LSTMCell inside an RNN)."""

    #: whether the cell's coarse op implements Keras's dropout (LSTMCell's)
    _dropout_op = False

    @property
    def _has_dropout(self) -> bool:
        return bool(self.dropout or self.recurrent_dropout)

    def _init_cell(self, units, activation, use_bias, kernel_initializer,
                   recurrent_initializer, bias_initializer, dropout, recurrent_dropout, seed):
        who = f"{type(self).__name__} {self.name!r}"
        self.units = _positive_int(who, "units", units)
        self.activation = _choice(who, "activation", activation, LSTM_ACTIVATIONS)
        if type(self)._dropout_op:  # LSTMCell: the dropout of the coarse lstm op
            self.dropout, self.recurrent_dropout, self.seed = lstm_op.check_dropout(
                who, dropout, recurrent_dropout, seed, self.name)
        else:
            for arg, value in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
                if value not in (0, 0.0, None):
                    raise ConfigError(f"{who}: {arg}={value!r} is not supported (graphmask's "
                                      f"{type(self).__name__} has no dropout); use 0.0")
            if seed is not None and (isinstance(seed, bool) or
                                     not isinstance(seed, (int, np.integer)) or seed < 0):
                raise ConfigError(f"{who}: seed must be None or an int >= 0, got {seed!r}")
            self.dropout = 0.0
            self.recurrent_dropout = 0.0
            self.seed = None if seed is None else int(seed)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer, self.name,
                                                   "kernel_initializer")
        self.recurrent_initializer = initializers.get(recurrent_initializer, self.name,
                                                      "recurrent_initializer")
        self.bias_initializer = initializers.get(bias_initializer, self.name, "bias_initializer")
        self.output_size = self.units

    def _check_input_shape(self, input_shape):
        shape = tuple(getattr(input_shape, "shape", input_shape))
        if len(shape) < 2 or shape[-1] is None:
            raise ShapeError(f"{type(self).__name__} {self.name!r}: a step input must be "
                             f"(batch, features) with known features, got shape {shape}")
        return shape[-1]

    def _weights(self, n_gates, bias_init=None, bias_shape=None, input_dim=None):
        h = self.units
        self.kernel = self.add_weight(shape=(input_dim, n_gates * h),
                                      initializer=self.kernel_initializer, name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(h, n_gates * h),
                                                initializer=self.recurrent_initializer,
                                                name="recurrent_kernel")
        self.bias = self.add_weight(
            shape=bias_shape or (n_gates * h,), initializer=bias_init or self.bias_initializer,
            name="bias") if self.use_bias else None

    def get_initial_state(self, batch_size=None):
        """Zeros, one (batch_size, units) float array per state (Keras's cells: a list)."""
        sizes = self.state_size if isinstance(self.state_size, list) else [self.state_size]
        return [np.zeros((batch_size, n), self.dtype) for n in sizes]

    def _cell_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.name_of(self.kernel_initializer),
                "recurrent_initializer": initializers.name_of(self.recurrent_initializer),
                "bias_initializer": initializers.name_of(self.bias_initializer),
                "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
                "seed": self.seed}


class LSTMCell(_Cell):
    """One LSTM step (Keras 3's ``keras.layers.LSTMCell``), gates in Keras order
    (i, f, c, o).

    ``call(inputs, states)`` with ``states = [h, c]`` returns ``(h_new, [h_new, c_new])``.
    Weights ``[kernel (D, 4H), recurrent_kernel (H, 4H), bias (4H,)]``;
    ``unit_forget_bias`` starts the forget gate's bias at 1. ``state_size`` is
    ``[units, units]``. ``RNN(LSTMCell(...))`` computes what ``LSTM(...)`` does with the
    same kernels, ``dropout``/``recurrent_dropout``/``seed`` included (Keras 3's; active
    while training, on the coarse kernel only: a cell with dropout is not unrolled).
    """

    _dropout_op = True

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 **kwargs):
        kwargs.pop("implementation", None)
        super().__init__(**kwargs)
        self._init_cell(units, activation, use_bias, kernel_initializer,
                        recurrent_initializer, bias_initializer, dropout, recurrent_dropout,
                        seed)
        self.recurrent_activation = _choice(f"LSTMCell {self.name!r}", "recurrent_activation",
                                            recurrent_activation, LSTM_RECURRENT_ACTIVATIONS)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.state_size = [self.units, self.units]

    def build(self, input_shape):
        d, h = self._check_input_shape(input_shape), self.units
        bias_init = None
        if self.use_bias and self.unit_forget_bias:
            init = self.bias_initializer

            def bias_init(shape, dtype):
                return np.concatenate([init((h,), dtype), np.ones((h,), dtype),
                                       init((2 * h,), dtype)])
        self._weights(4, bias_init, input_dim=d)

    def call(self, inputs, states, training=False):
        if training and self._has_dropout:
            raise ConfigError(f"LSTMCell {self.name!r}: dropout={self.dropout}, "
                              f"recurrent_dropout={self.recurrent_dropout} run only in "
                              f"RNN(LSTMCell(...)) on the coarse LSTM kernel, not in a "
                              f"step-by-step call with training=True")
        h_tm1, c_tm1 = states[0], states[1]
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_tm1, self.recurrent_kernel)
        if self.use_bias:
            z = z + self.bias
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=1)
        act, rec = self.activation, self.recurrent_activation
        c = _activate(rec, z_f) * c_tm1 + _activate(rec, z_i) * _activate(act, z_c)
        h = _activate(rec, z_o) * _activate(act, c)
        return h, [h, c]

    def get_config(self):
        return {**self._cell_config(), "recurrent_activation": self.recurrent_activation,
                "unit_forget_bias": self.unit_forget_bias}


class GRUCell(_Cell):
    """One GRU step (Keras 3's ``keras.layers.GRUCell``), gates in Keras order (z, r, h).

    ``reset_after=True`` (the default) applies the reset gate after the recurrent product
    with a bias of shape (2, 3H) (row 0 for the input, row 1 for the recurrent product);
    ``False`` applies it to the state before, with a bias (3H,). ``call(inputs, states)``
    returns ``(h_new, [h_new])`` (``h_new`` alone when ``states`` is one tensor).
    ``state_size`` is ``units``.
    """

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 dropout=0.0, recurrent_dropout=0.0, reset_after=True, seed=None, **kwargs):
        kwargs.pop("implementation", None)
        super().__init__(**kwargs)
        self._init_cell(units, activation, use_bias, kernel_initializer,
                        recurrent_initializer, bias_initializer, dropout, recurrent_dropout,
                        seed)
        who = f"GRUCell {self.name!r}"
        self.recurrent_activation = _choice(who, "recurrent_activation", recurrent_activation,
                                            LSTM_RECURRENT_ACTIVATIONS)
        if not isinstance(reset_after, (bool, np.bool_)):
            raise ConfigError(f"{who}: reset_after must be True or False, got {reset_after!r}")
        self.reset_after = bool(reset_after)
        self.state_size = self.units

    def build(self, input_shape):
        d, h = self._check_input_shape(input_shape), self.units
        self._weights(3, bias_shape=(2, 3 * h) if self.reset_after else (3 * h,), input_dim=d)

    def call(self, inputs, states, training=False):
        h_tm1, u = _first_state(states), self.units
        act, rec = self.activation, self.recurrent_activation
        x = ops.matmul(inputs, self.kernel)
        if self.use_bias:
            x = x + (self.bias[0] if self.reset_after else self.bias)
        x_z, x_r, x_h = ops.split(x, 3, axis=-1)
        if self.reset_after:
            inner = ops.matmul(h_tm1, self.recurrent_kernel)
            if self.use_bias:
                inner = inner + self.bias[1]
            r_z, r_r, r_h = ops.split(inner, 3, axis=-1)
            z, r = _activate(rec, x_z + r_z), _activate(rec, x_r + r_r)
            hh = _activate(act, x_h + r * r_h)
        else:
            inner = ops.matmul(h_tm1, self.recurrent_kernel[:, :2 * u])
            r_z, r_r = ops.split(inner, 2, axis=-1)
            z, r = _activate(rec, x_z + r_z), _activate(rec, x_r + r_r)
            hh = _activate(act, x_h + ops.matmul(r * h_tm1, self.recurrent_kernel[:, 2 * u:]))
        h = z * h_tm1 + (1.0 - z) * hh
        return h, ([h] if isinstance(states, (list, tuple)) else h)

    def get_config(self):
        return {**self._cell_config(), "recurrent_activation": self.recurrent_activation,
                "reset_after": self.reset_after}


class SimpleRNNCell(_Cell):
    """One fully-connected RNN step (Keras 3's ``keras.layers.SimpleRNNCell``):
    ``h = activation(inputs kernel + bias + h_prev recurrent_kernel)``, returned as the
    output and the new state. Weights ``[kernel (D, H), recurrent_kernel (H, H),
    bias (H,)]``; ``state_size`` is ``units``."""

    def __init__(self, units, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", dropout=0.0, recurrent_dropout=0.0, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self._init_cell(units, activation, use_bias, kernel_initializer,
                        recurrent_initializer, bias_initializer, dropout, recurrent_dropout,
                        seed)
        self.state_size = self.units

    def build(self, input_shape):
        self._weights(1, input_dim=self._check_input_shape(input_shape))

    def call(self, sequence, states, training=False):
        h = ops.matmul(sequence, self.kernel)
        if self.use_bias:
            h = h + self.bias
        out = _activate(self.activation, h + ops.matmul(_first_state(states),
                                                        self.recurrent_kernel))
        return out, ([out] if isinstance(states, (list, tuple)) else out)

    def get_config(self):
        return self._cell_config()


# ---- checks shared by RNN and StackedRNNCells ----------------------------------------------
def _describe(cell) -> str:
    return f"{type(cell).__name__} {getattr(cell, 'name', repr(cell))!r}"


def _check_cell(who: str, cell) -> None:
    if isinstance(cell, type):
        raise ConfigError(f"{who}: cell must be a cell instance, got the class "
                          f"{cell.__name__} (write {cell.__name__}(units))")
    if not callable(getattr(cell, "call", None)):
        raise ConfigError(f"{who}: the cell must have a `call(inputs, states)` method, got "
                          f"{type(cell).__name__} {cell!r}")
    if not hasattr(cell, "state_size"):
        raise ConfigError(f"{who}: the cell {_describe(cell)} has no `state_size` attribute "
                          f"(an int, or a list of ints: one per state tensor)")
    _check_state_size(who, cell, cell.state_size)


def _check_state_size(who, cell, size):
    """An int, or a (nested) non-empty list of positive ints."""
    def ok(s):
        if isinstance(s, (list, tuple)):
            return bool(s) and all(ok(item) for item in s)
        return isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0
    if not ok(size):
        raise ConfigError(f"{who}: the state_size of {_describe(cell)} must be a positive int "
                          f"or a list of them (one per state tensor), got {size!r}")


def _flat_sizes(size) -> list[int]:
    if isinstance(size, (list, tuple)):
        return [int(s) for item in size for s in _flat_sizes(item)]
    return [int(size)]


def _nest_like(structure, flat: list):
    """``flat`` (a list of tensors) in the nest of ``structure`` (a state_size)."""
    it = iter(flat)

    def rebuild(s):
        if isinstance(s, (list, tuple)):
            return [rebuild(item) for item in s]
        return next(it)
    return rebuild(structure)


def _check_initial_state_fn(who: str, cell) -> None:
    """Keras starts from ``cell.get_initial_state(batch_size)`` when the cell defines it;
    graphmask starts every state at zeros, so a user's ``get_initial_state`` must give
    zeros (checked on a batch of 1), never be silently replaced."""
    cells = cell.cells if isinstance(cell, StackedRNNCells) else [cell]
    for c in cells:
        fn = getattr(c, "get_initial_state", None)
        if fn is None or type(c) in _COARSE or isinstance(c, StackedRNNCells):
            continue
        try:
            flat = flatten(fn(batch_size=1))
            ok = all(np.all(np.asarray(v) == 0) for v in flat) and \
                [np.shape(v) for v in flat] == [(1, n) for n in _flat_sizes(c.state_size)]
        except Exception:  # noqa: BLE001 (any failure: the same clear refusal)
            ok = False
        if not ok:
            raise ConfigError(f"{who}: the cell {_describe(c)} defines get_initial_state(), "
                              f"which graphmask does not call: every state starts at zeros. "
                              f"Pass the states as rnn(x, initial_state=...) instead (or make "
                              f"get_initial_state(batch_size) return NumPy zeros of shape "
                              f"(batch_size, size) per state)")


def _where_once(picked: dict, keep, new, old):
    """``where(keep, new, old)``, made once per pair in a step: a cell whose output is its
    state (both starting at zeros) carries one value, not two equal ones."""
    key = (id(new), id(old))
    if key not in picked:
        picked[key] = ops.where(keep, new, old)
    return picked[key]


def _call_has_training(cell) -> bool:
    try:
        return "training" in inspect.signature(cell.call).parameters
    except (TypeError, ValueError):
        return False


class StackedRNNCells(Layer):
    """Several cells run as one (Keras 3's ``keras.layers.StackedRNNCells``): at each
    step the first cell reads the input, each next cell reads the previous cell's output.

    ``state_size`` is the list of the cells' state sizes (so the states are nested:
    ``[[h1, c1], h2]`` for an LSTMCell then a GRUCell); ``output_size`` is the last
    cell's. Weights: the cells', in order. ``RNN(StackedRNNCells(cells))`` (or
    ``RNN(cells)``) is unrolled over the time axis.
    """

    def __init__(self, cells, **kwargs):
        super().__init__(**kwargs)
        who = f"StackedRNNCells {self.name!r}"
        if not isinstance(cells, (list, tuple)) or not cells:
            raise ConfigError(f"{who}: cells must be a non-empty list of cells, got {cells!r}")
        for cell in cells:
            _check_cell(who, cell)
        self.cells = list(cells)

    @property
    def state_size(self):
        return [c.state_size for c in self.cells]

    @property
    def output_size(self):
        last = self.cells[-1]
        if getattr(last, "output_size", None) is not None:
            return last.output_size
        size = last.state_size
        return size[0] if isinstance(size, (list, tuple)) else size

    def build(self, input_shape):
        shape = tuple(getattr(input_shape, "shape", input_shape))
        for cell in self.cells:
            if isinstance(cell, Layer) and not cell.built:
                cell.build(shape)
                cell.built = True
            out = getattr(cell, "output_size", None)
            if out is None:
                out = _first_state(cell.state_size)
            shape = (shape[0], int(out))

    def call(self, inputs, states, training=False):
        new_states = []
        for cell, state in zip(self.cells, states):
            is_list = isinstance(state, (list, tuple))
            state = list(state) if is_list else [state]
            kwargs = {"training": training} if _call_has_training(cell) else {}
            inputs, state = cell(inputs, state, **kwargs) if isinstance(cell, Layer) \
                else cell.call(inputs, state, **kwargs)
            state = list(state) if isinstance(state, (list, tuple)) else [state]
            new_states.append(state[0] if len(state) == 1 and not is_list else state)
        return inputs, new_states

    def get_config(self):
        return {**super().get_config(), "cells": [serialize_layer(c) for c in self.cells]}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        who = f"StackedRNNCells {config.get('name')!r}"
        config["cells"] = [deserialize_layer(c, who, custom_objects)
                           for c in config.get("cells") or []]
        return cls(**config)


#: built-in cells whose RNN is one coarse op (the kernels of LSTM, GRU, SimpleRNN)
_COARSE = {LSTMCell: "lstm", GRUCell: "gru", SimpleRNNCell: "simple_rnn"}


class RNN(StatefulRNN, Layer):
    """A recurrent layer running ``cell`` over the time axis (Keras 3's
    ``keras.layers.RNN``).

    Parameters
    ----------
    cell : Layer or list of Layer
        An object with ``call(inputs, states)`` returning ``(output, new_states)`` and a
        ``state_size`` (an int or a list of ints); a list of cells is a
        :class:`StackedRNNCells`. ``output_size`` (default: the first state's size)
        gives the output width.
    return_sequences : bool
        Return the output of every step (batch, timesteps, output_size) instead of the
        last one.
    return_state : bool
        Also return the final states: ``[output, *states]``.
    go_backwards : bool
        Process the sequence from its end; with ``return_sequences`` the outputs are in
        processing order (reversed), as Keras.
    stateful : bool
        Carry the final states of a batch into the next (as ``LSTM(stateful=True)``):
        the input needs a fixed batch size; ``states`` and ``reset_states()``. Runs on
        the coarse kernels only: a built-in cell, or a ``StackedRNNCells`` of them
        without ``go_backwards``; an unrolled cell with ``stateful=True`` is a
        ``ConfigError`` (carry its states yourself with ``return_state`` and
        ``initial_state``).
    unroll : bool
        Accepted as Keras; a user cell is always unrolled, a built-in cell never needs to.
        As Keras, ``unroll=True`` needs a known number of timesteps.
    zero_output_for_mask : bool
        Output zeros at masked steps instead of repeating the previous output.

    Notes
    -----
    Masks as Keras: at a masked step every state keeps its previous value and the output
    repeats the previous output (zeros before the first kept step); the output carries
    the input's mask with ``return_sequences``, none otherwise. Called as ``rnn(x,
    initial_state=states, mask=None, training=None)``; ``initial_state`` is nested as
    ``state_size`` (zeros when omitted; gradients flow into it); unlike Keras, the mask
    of ``x`` still applies when ``initial_state`` is given (as for ``LSTM``).

    ``RNN(LSTMCell(...))``, ``RNN(GRUCell(...))`` and ``RNN(SimpleRNNCell(...))`` run the
    coarse kernels of ``LSTM``, ``GRU`` and ``SimpleRNN`` (a stack of them, one kernel per
    cell); other cells are traced once per step (the input needs a static number of
    timesteps: ``Input(shape=(T, features))``). The cell's weights are named by their
    Keras path (``rnn/lstm_cell/kernel``). See ``docs/recurrent.md``.
    """

    _call_kwargs = ("initial_state",)
    #: compute_mask only picks among the masks it gets (no op): ``layers/order.py``
    _compute_mask_selects = True

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, zero_output_for_mask=False, **kwargs):
        super().__init__(**kwargs)
        who = self._who()
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(list(cell))
        _check_cell(who, cell)
        for arg, value in (("return_sequences", return_sequences),
                           ("return_state", return_state), ("go_backwards", go_backwards),
                           ("unroll", unroll), ("zero_output_for_mask", zero_output_for_mask)):
            if not isinstance(value, (bool, np.bool_)):
                raise ConfigError(f"{who}: {arg} must be True or False, got {value!r}")
        _check_initial_state_fn(who, cell)
        #: weights the cell had before this RNN (a shared cell): their names stay
        self._foreign = {id(v) for v in cell.weights} if isinstance(cell, Layer) else set()
        self.cell = cell
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self._init_stateful(stateful)
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        size = cell.state_size
        self.single_state = not isinstance(size, (list, tuple))
        self.state_size = [size] if self.single_state else list(size)
        self.supports_masking = True
        cells = cell.cells if isinstance(cell, StackedRNNCells) else [cell]
        dropping = [c for c in cells if getattr(c, "_has_dropout", False)]
        if dropping and self._coarse_op is None and self._coarse_stack() is None:
            raise ConfigError(f"{who}: the cell {_describe(dropping[0])} has dropout, which "
                              f"graphmask runs on the coarse LSTM kernel only, and this RNN "
                              f"unrolls its cell (a subclass, a stack with go_backwards or "
                              f"a user cell, or zero_output_for_mask without "
                              f"return_sequences); use dropout=0.0 here")
        if self.stateful and self._coarse_op is None and self._coarse_stack() is None:
            raise ConfigError(f"{who}: stateful=True runs on the coarse kernels of "
                              f"LSTMCell, GRUCell and SimpleRNNCell (one, or a "
                              f"StackedRNNCells of them without go_backwards), and this RNN "
                              f"unrolls its cell {_describe(cell)} (a subclass, a stack with "
                              f"go_backwards or a user cell, or zero_output_for_mask without "
                              f"return_sequences); carry the states between batches yourself "
                              f"with return_state=True and initial_state=")

    @property
    def _training_sensitive(self) -> bool:
        """A built-in cell with dropout: the op follows the plan (on in fit)."""
        return self._builtin and getattr(self.cell, "_has_dropout", False)

    def _who(self) -> str:
        return f"RNN {self.name!r}"

    # ---- the coarse path (built-in cells) ------------------------------------------------
    @property
    def _coarse_op(self):
        """The coarse op of a built-in cell, or None (the cell is unrolled). The coarse
        ops return the last *kept* output with ``zero_output_for_mask`` and no
        ``return_sequences``, where Keras returns the last step's (zeros when it is
        masked): that one combination is unrolled, to give Keras's numbers."""
        if self.zero_output_for_mask and not self.return_sequences:
            return None
        return _COARSE.get(type(self.cell))

    @property
    def _builtin(self) -> bool:
        return self._coarse_op is not None

    @property
    def units(self):
        return getattr(self.cell, "units", None)

    @property
    def _state_names(self):
        return ("h", "c") if self._coarse_op == "lstm" else ("h",)

    # ---- calling -------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        state = kwargs.get("initial_state")
        if args and state is not None:  # checked before anything is built
            if self._builtin:
                check_initial_state(self, args[0], state)
            else:
                self._initial_state(args[0], state)
            # graphmask applies x's mask with an initial state too (Keras hands a call with
            # two tensor arguments no mask); as LSTM, see docs/recurrent.md
            if kwargs.get("mask") is None and isinstance(args[0], SymbolicTensor) \
                    and args[0].keras_mask is not None and not self._builtin:
                kwargs["mask"] = args[0].keras_mask
        return super().__call__(*args, **kwargs)

    def build(self, sequences_shape, initial_state_shape=None):
        shape = tuple(getattr(sequences_shape, "shape", sequences_shape))
        if isinstance(sequences_shape, (list, tuple)) and sequences_shape and \
                not isinstance(sequences_shape[0], (int, type(None), np.integer)):
            raise ConfigError(f"{self._who()}: call it on one (batch, timesteps, features) "
                              f"tensor and pass the states as initial_state=, got "
                              f"{len(sequences_shape)} input tensors")
        if len(shape) != 3 or shape[-1] is None:
            raise ShapeError(f"{self._who()}: input must be (batch, timesteps, features) with "
                             f"known features, got shape {shape}")
        if self.unroll and shape[1] is None:
            raise ShapeError(f"{self._who()}: unroll=True needs a known number of timesteps; "
                             f"give the input a time length, e.g. Input(shape=(T, "
                             f"{shape[-1]})), got shape {shape}")
        if self.stateful:  # the stack's RNNs make their states when they are called
            rnn_state.check_stateful_batch(self._who(), shape)
            if self._builtin:
                self._build_state(shape)
        if isinstance(self.cell, Layer) and not self.cell.built:
            self.cell.build((shape[0],) + shape[2:])
            self.cell.built = True
        self._name_cell_weights()

    def _name_cell_weights(self) -> None:
        """Name the cell's weights by their path, as Keras 3 does (``rnn/lstm_cell/kernel``,
        ``rnn/stacked_rnn_cells/gru_cell/bias``): two RNNs whose cells have one name (the
        two copies Bidirectional makes) then never share a weight name."""
        if not isinstance(self.cell, Layer) or self.__dict__.get("_part_of_stack"):
            return
        claimed = self.__dict__.setdefault("_claimed", set())

        def walk(layer, prefix):
            for v in layer._own_weights:
                if id(v) not in self._foreign and id(v) not in claimed:
                    claimed.add(id(v))
                    v.name = prefix + v.name
            for sub in layer._layers:
                walk(sub, f"{prefix}{layer.name}/")
        walk(self.cell, f"{self.name}/")

    def call(self, sequences, initial_state=None, mask=None, training=None):
        """Record the coarse op of a built-in cell, else unroll the cell over time."""
        if self._builtin:
            return self._call_coarse(sequences, initial_state, training)
        stack = self._coarse_stack()
        if stack is not None:
            return self._call_stack(stack, sequences, initial_state, mask)
        out = self._unrolled(sequences, initial_state, mask, training)
        self._name_cell_weights()  # weights a cell made in its first call()
        return out

    def _coarse_stack(self):
        """One coarse RNN per cell for a :class:`StackedRNNCells` of built-in cells (their
        weights are the cells'), or None. Exact: at a masked step every cell keeps its
        state, so what the cells below feed it there does not matter, and a layer that
        repeats its previous output is as good as the cell's own. Not with
        ``go_backwards`` (the cells above would need the reversed mask) nor with
        ``zero_output_for_mask`` and no ``return_sequences`` (see ``_coarse_op``)."""
        cell = self.cell
        if type(cell) is not StackedRNNCells or self.go_backwards or \
                (self.zero_output_for_mask and not self.return_sequences) or \
                not all(type(c) in _COARSE for c in cell.cells):
            return None
        if self.__dict__.get("_stack") is None:
            last = len(cell.cells) - 1
            self._stack = [RNN(c, return_sequences=i < last or self.return_sequences,
                               return_state=self.return_state,
                               zero_output_for_mask=i == last and self.zero_output_for_mask,
                               stateful=self.stateful, name=f"{self.name}_{c.name}",
                               dtype=self.dtype)
                           for i, c in enumerate(cell.cells)]
            for layer in self._stack:  # the outer RNN names the cells' weights
                layer._part_of_stack = True
        return self._stack

    def _call_stack(self, stack, sequences, initial_state, mask):
        states = None if initial_state is None else \
            _nest_like(self.state_size, self._initial_state(sequences, initial_state))
        x, final = sequences, []
        for i, layer in enumerate(stack):
            kwargs = {"mask": mask} if i == 0 and mask is not None else {}
            if states is not None:
                kwargs["initial_state"] = states[i]
            y = layer(x, **kwargs)
            if self.return_state:
                x = y[0]
                final.append(list(y[1:]) if isinstance(self.state_size[i], (list, tuple))
                             else y[1])
            else:
                x = y
        return [x, *final] if self.return_state else x

    def _call_coarse(self, x, initial_state, training=None):
        cell, op = self.cell, self._coarse_op
        states = {}
        if initial_state is not None:
            values = check_initial_state(self, x, initial_state)
            states = dict(zip(("h0", "c0") if op == "lstm" else ("h0",), values))
        attrs = {"units": cell.units, "activation": cell.activation,
                 "use_bias": cell.use_bias, "return_sequences": self.return_sequences,
                 "return_state": self.return_state, "go_backwards": self.go_backwards,
                 "zero_output_for_mask": self.zero_output_for_mask}
        if op != "simple_rnn":
            attrs["recurrent_activation"] = cell.recurrent_activation
        if op == "gru":
            attrs["reset_after"] = cell.reset_after
        if op == "lstm":
            attrs.update(lstm_op.dropout_attrs(cell.dropout, cell.recurrent_dropout, cell.seed,
                                               cell.name))
            if training is not None and cell._has_dropout:
                attrs["training"] = bool(training)  # pinned at call time, as Keras
        attrs.update(self._state_attrs(x))
        ports = {"x": x, "kernel": cell.kernel, "recurrent_kernel": cell.recurrent_kernel,
                 "bias": cell.bias}
        ports.update({"h0": None} if op != "lstm" else {"h0": None, "c0": None})
        ports.update(states)
        return self._apply(op, attrs, ports)

    def _initial_state(self, x, initial_state) -> list:
        """The flat list of initial states, checked against ``state_size``."""
        who = f"{self._who()}: initial_state"
        sizes = _flat_sizes(self.state_size)
        flat = flatten(initial_state) if isinstance(initial_state, (list, tuple)) \
            else [initial_state]
        if len(flat) != len(sizes):
            raise ConfigError(f"{who} must hold {len(sizes)} tensor(s), nested as the cell's "
                              f"state_size {self._size_text()}, got {len(flat)}")
        batch = x.shape[0] if isinstance(x, (SymbolicTensor, np.ndarray)) else None
        for i, (state, size) in enumerate(zip(flat, sizes)):
            if not isinstance(state, (SymbolicTensor, Variable, np.ndarray)):
                raise ConfigError(f"{who}[{i}] must be a tensor of shape (batch, {size}), got "
                                  f"{type(state).__name__}")
            if isinstance(x, SymbolicTensor) and not isinstance(state, SymbolicTensor):
                raise ConfigError(f"{who}[{i}] must be a symbolic tensor (from Input or another "
                                  f"layer) when the layer is called on a symbolic tensor, got "
                                  f"{type(state).__name__}")
            shape = tuple(state.shape)
            if np.dtype(state.dtype).kind != "f":
                raise ShapeError(f"{who}[{i}] must be a float tensor, got dtype {state.dtype}")
            if len(shape) != 2 or shape[1] not in (None, size) or (
                    None not in (batch, shape[0]) and batch != shape[0]):
                raise ShapeError(f"{who}[{i}] must have shape ({batch}, {size}) (batch, state "
                                 f"size {self._size_text()}), got {shape}")
        return flat

    def _size_text(self) -> str:
        return str(self.state_size[0] if self.single_state else self.state_size)

    def _cell_call(self, x_t, states, training, step):
        cell = self.cell
        kwargs = {"training": training} if _call_has_training(cell) else {}
        try:
            result = cell(x_t, states, **kwargs) if isinstance(cell, Layer) else \
                cell.call(x_t, states, **kwargs)
        except TypeError as e:
            raise ConfigError(f"{self._who()}: calling the cell {_describe(cell)} as "
                              f"call(inputs, states) failed at step {step}: {e}") from e
        if not isinstance(result, (list, tuple)) or len(result) != 2:
            n = f" of length {len(result)}" if isinstance(result, (list, tuple)) else ""
            raise ConfigError(f"{self._who()}: the cell {_describe(cell)} must return "
                              f"(output, new_states), got {type(result).__name__}{n}")
        return result

    def _check_step(self, output, new_flat, sizes, step):
        who = f"{self._who()}: the cell {_describe(self.cell)}"
        if not isinstance(output, SymbolicTensor):
            raise ConfigError(f"{who} must return a tensor as its output, got "
                              f"{type(output).__name__}")
        if len(new_flat) != len(sizes):
            raise ConfigError(f"{who} returned {len(new_flat)} state(s) at step {step}; its "
                              f"state_size {self._size_text()} needs {len(sizes)}")
        for i, (s, size) in enumerate(zip(new_flat, sizes)):
            if not isinstance(s, SymbolicTensor) or len(s.shape) != 2 or \
                    s.shape[1] not in (None, size):
                got = tuple(s.shape) if isinstance(s, SymbolicTensor) else type(s).__name__
                raise ShapeError(f"{who} returned state {i} of shape {got} at step {step}; its "
                                 f"state_size {self._size_text()} needs (batch, {size})")
        declared = getattr(self.cell, "output_size", None)
        if len(output.shape) != 2 or (isinstance(declared, (int, np.integer)) and
                                      output.shape[-1] not in (None, declared)):
            want = f"(batch, {declared}) (its output_size)" if isinstance(
                declared, (int, np.integer)) else "(batch, units)"
            raise ShapeError(f"{who} returned an output of shape {tuple(output.shape)} at step "
                             f"{step}; it must be {want}")

    def _unrolled(self, sequences, initial_state, mask, training):
        steps = sequences.shape[1]
        if steps is None:
            raise ShapeError(f"{self._who()}: the cell {_describe(self.cell)} is unrolled over "
                             f"the time axis, which needs a known number of timesteps; give "
                             f"the input one, e.g. Input(shape=(T, {sequences.shape[-1]})), got "
                             f"shape {tuple(sequences.shape)}")
        sizes = _flat_sizes(self.state_size)
        zeros: dict = {}  # one zero tensor per (width, dtype), shared by states and output

        def zeros_of(width, dtype):
            if (width, dtype) not in zeros:
                zeros[width, dtype] = self._zeros(sequences, width, dtype)
            return zeros[width, dtype]

        if initial_state is None:
            flat = [zeros_of(n, sequences.dtype) for n in sizes]
        else:
            flat = [ops.cast(s, sequences.dtype) if s.dtype != sequences.dtype else s
                    for s in self._initial_state(sequences, initial_state)]
        if mask is not None and isinstance(mask, (list, tuple)):
            mask = mask[0]
        order = range(steps - 1, -1, -1) if self.go_backwards else range(steps)
        outputs, prev = [], None
        for i, t in enumerate(order):
            states = _nest_like(self.state_size, flat)
            x_t = sequences[:, t, :]
            if mask is not None:
                # a masked step's input is zeros: its result is thrown away, and so nothing
                # of the cell's step (nor its gradient: 0 * NaN) depends on padded values
                keep = mask[:, t:t + 1]
                x_t = ops.where(keep, x_t, 0.0)
            output, new_states = self._cell_call(x_t, states, training, i)
            new_states = new_states if isinstance(new_states, (list, tuple)) else [new_states]
            new_flat = flatten(new_states)
            self._check_step(output, new_flat, sizes, i)
            if mask is not None:
                picked = {}
                if prev is None:  # Keras's previous output starts at zeros
                    prev = zeros_of(output.shape[-1], output.dtype)
                output = _where_once(picked, keep, output, zeros_of(
                    output.shape[-1], output.dtype) if self.zero_output_for_mask else prev)
                new_flat = [_where_once(picked, keep, n, s) for n, s in zip(new_flat, flat)]
            outputs.append(output)
            prev, flat = output, new_flat
        output = ops.stack(outputs, axis=1) if self.return_sequences else outputs[-1]
        if not self.return_state:
            return output
        states = _nest_like(self.state_size, flat)
        return [output, *states]

    @staticmethod
    def _zeros(sequences, width: int, dtype=None):
        """Zeros of shape (batch, width) for a batch known only at run time: ``x < x`` is
        false for every value (NaN and inf included)."""
        first = sequences[:, 0, :1]
        dtype = dtype or sequences.dtype
        return ops.cast(ops.less(first, first), dtype) + np.zeros((int(width),), dtype)

    def compute_mask(self, inputs, previous_mask):
        """Keras's: the input mask for the output with ``return_sequences``, else none;
        none for the states."""
        mask = flatten(previous_mask)[0] if isinstance(previous_mask, (list, tuple)) \
            else previous_mask
        out = mask if self.return_sequences else None
        if self.return_state:
            return [out] + [None] * len(self.state_size)
        return out

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        b, t = sequences_shape[0], sequences_shape[1]
        size = getattr(self.cell, "output_size", None) or _first_state(self.state_size)
        size = _first_state(size) if isinstance(size, (list, tuple)) else size
        out = (b, t, size) if self.return_sequences else (b, size)
        if not self.return_state:
            return out
        return [out] + _nest_like(self.state_size,
                                  [(b, n) for n in _flat_sizes(self.state_size)])

    # ---- stateful ------------------------------------------------------------------------
    @property
    def states(self):
        """A stateful RNN's carried states (copies), nested as Keras's: ``[h, c]`` for an
        ``LSTMCell``, ``[h]`` for a one-state cell, one such list per cell of a stack;
        None when not stateful or not built."""
        stack = self._coarse_stack() if self.stateful else None
        if stack is None:
            return StatefulRNN.states.fget(self)
        got = [layer.states for layer in stack]
        return None if any(s is None for s in got) else got

    def reset_state(self):
        """Zero the carried states (every cell's, for a stack); a no-op when not
        stateful."""
        stack = self._coarse_stack() if self.stateful else None
        if stack is None:
            StatefulRNN.reset_state(self)
        else:
            for layer in stack:
                layer.reset_state()

    def get_initial_state(self, batch_size):
        """Zeros: one float32 array (batch_size, size) per state, nested as state_size."""
        return _nest_like(self.state_size, [np.zeros((batch_size, n), np.float32)
                                            for n in _flat_sizes(self.state_size)])

    def get_config(self):
        return {**super().get_config(), "return_sequences": self.return_sequences,
                "return_state": self.return_state, "go_backwards": self.go_backwards,
                "stateful": self.stateful, "unroll": self.unroll,
                "zero_output_for_mask": self.zero_output_for_mask,
                "cell": serialize_layer(self.cell)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["cell"] = deserialize_layer(config.get("cell"), f"RNN {config.get('name')!r}",
                                           custom_objects)
        return cls(**config)
